from _entry import start

from basins.io import add_provenance, read_dataset, write_dataset
from basins.protocols import compare_protocols

log = start(snakemake)
params, wildcards = snakemake.params, snakemake.wildcards
experiments = list(params.experiments)
comparison = compare_protocols(
    experiments,
    [read_dataset(path) for path in snakemake.input.minima],
    [read_dataset(path) for path in snakemake.input.flatness],
    reference_sigma=params.reference_sigma,
    n_starts=list(params.n_starts),
)
comparison = add_provenance(
    comparison,
    title=f"flatness by training protocol, {wildcards.protocols}, seed {wildcards.seed}",
    stage="compare_protocols",
    stage_config={"experiments": experiments, "reference_sigma": params.reference_sigma},
    seed=int(wildcards.seed),
    inputs=(*snakemake.input.minima, *snakemake.input.flatness),
)
write_dataset(comparison, snakemake.output[0])
log.info(
    "local energy at sigma %g: %s; test error: %s",
    comparison.attrs["reference_sigma"],
    dict(zip(experiments, comparison["local_energy"].sel(sigma=comparison.attrs["reference_sigma"]).values.round(4))),
    dict(zip(experiments, comparison["test_error"].values.round(4))),
)
