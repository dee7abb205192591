from _entry import start

from basins.basin_geometry import measure_tentacles
from basins.io import add_provenance, read_dataset, write_dataset

log = start(snakemake)
subject = snakemake.wildcards.get("experiment") or f"ring {snakemake.wildcards.ring}"
basins = read_dataset(snakemake.input.basins)
rays = read_dataset(snakemake.input.rays)
tentacles = measure_tentacles(
    basins["start_distance"].values,
    basins["minimum_of_member"].values,
    rays["exit_radius"].values,
    rays["exit_observed"].values.astype(bool),
    rays["minimum"].values,
    seed=int(snakemake.wildcards.seed),
)
tentacles = add_provenance(
    tentacles,
    title=f"tentacle index of {subject}, seed {snakemake.wildcards.seed}",
    stage=snakemake.rule,
    stage_config={"n_bootstrap": tentacles.attrs["n_bootstrap"]},
    seed=int(snakemake.wildcards.seed),
    inputs=(snakemake.input.basins, snakemake.input.rays),
)
write_dataset(tentacles, snakemake.output[0])
log.info("tentacle fractions: %s (%s)", tentacles["tentacle_fraction"].values, tentacles["reason"].values.tolist())
