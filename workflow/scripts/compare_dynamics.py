import numpy as np
from _entry import start

from basins.comparison import compare_dynamics, comparison_markdown
from basins.data import train_test_arrays
from basins.io import add_provenance, read_dataset, write_dataset
from basins.landscapes.architecture import Architecture
from basins.minima import assign_to_catalog, matching_options

log = start(snakemake)
experiments = list(snakemake.params.experiments)
catalogs = [read_dataset(path).sortby("member") for path in snakemake.input.minima]
# The starts every experiment ran (the smallest ensemble's: start i is alike in all), each
# experiment's members as (noise draw, start): member = draw * n_members + start.
n_shared = min(ensemble["n_members"] for ensemble in snakemake.params.ensembles)
runs = [
    catalog["minimum_of_member"].values.reshape(ensemble["noise_draws"], ensemble["n_members"])[:, :n_shared]
    for catalog, ensemble in zip(catalogs, snakemake.params.ensembles)
]
log.info("compared on the %d starts all of %s ran (noise draws: %s)", n_shared, experiments,
         [len(draws) for draws in runs])
reference = catalogs[0]
arch = Architecture.from_json(reference.attrs["architecture"])
matching, probes = matching_options(
    snakemake.params.minima, train_test_arrays(read_dataset(snakemake.input.dataset))[0]
)
# Each catalog's minima matched against the reference catalog (the reference maps to itself).
maps = [np.arange(reference.sizes["minimum"])] + [
    assign_to_catalog(
        catalog["theta"].values, catalog["loss"].values, reference["theta"].values,
        reference["loss"].values, arch, probes, **matching,
    )
    for catalog in catalogs[1:]
]
comparison = compare_dynamics(
    runs,
    maps,
    experiments,
    reference.sizes["minimum"],
    # each reference basin's size over the reference's whole ensemble, not only the shared members
    reference_basin_fraction=reference["n_members"].values / reference.sizes["member"],
)
comparison = add_provenance(
    comparison,
    title=f"dynamics comparison {snakemake.wildcards.comparison}, seed {snakemake.wildcards.seed}",
    stage="compare_dynamics",
    stage_config={"experiments": experiments, "minima": snakemake.params.minima},
    seed=int(snakemake.wildcards.seed),
    inputs=tuple(snakemake.input.minima),
)
write_dataset(comparison, snakemake.output.netcdf)
with open(snakemake.output.markdown, "w") as table:
    table.write(comparison_markdown(comparison))
log.info("agreement with %s: %s", experiments[0], dict(zip(experiments, comparison["agreement"].values)))
