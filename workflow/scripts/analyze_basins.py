from functools import partial

import xarray as xr
from _entry import start

from basins.basin_geometry import analyze_basins, nearest_image_distance
from basins.io import add_provenance, read_dataset, write_dataset
from basins.networks import Architecture

log = start(snakemake)
minima = read_dataset(snakemake.input.minima)
training = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member")
basins = analyze_basins(
    minima["minimum_of_member"].values,
    training["initial_theta"].values,
    training["final_theta"].values,
    minima["train_error"].values,
    minima["test_error"].values,
    distance=partial(nearest_image_distance, arch=Architecture.from_json(minima.attrs["architecture"])),
    **snakemake.params.basins,
).assign_coords(member=training["member"])
basins = add_provenance(
    basins,
    title=f"basins of experiment {snakemake.wildcards.experiment}, seed {snakemake.wildcards.seed}",
    stage="analyze_basins",
    stage_config=snakemake.params.basins,
    seed=int(snakemake.wildcards.seed),
    inputs=(snakemake.input.minima, *snakemake.input.shards),
)
write_dataset(basins, snakemake.output[0])
log.info("basin fractions of the 5 largest: %s", basins["basin_fraction"].values[:5])
