import xarray as xr
from _entry import start

from basins.io import add_provenance, read_dataset, write_dataset
from basins.minima import deduplicate_minima
from basins.networks import Architecture

log = start(snakemake)
training = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member")
arch = Architecture.from_json(training.attrs["architecture"])
minima = deduplicate_minima(training, arch, **snakemake.params.minima)
minima = add_provenance(
    minima.assign_attrs(architecture=training.attrs["architecture"]),
    title=f"minima of experiment {snakemake.wildcards.experiment}, seed {snakemake.wildcards.seed}",
    stage="deduplicate_minima",
    stage_config=snakemake.params.minima,
    seed=int(snakemake.wildcards.seed),
    inputs=tuple(snakemake.input.shards),
)
write_dataset(minima, snakemake.output[0])
log.info("%d members -> %d minima", training.sizes["member"], minima.sizes["minimum"])
