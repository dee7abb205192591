import numpy as np
import xarray as xr
from _entry import start

from basins.basin_geometry import analyze_basins
from basins.io import add_provenance, read_dataset, write_dataset
from basins.landscapes.architecture import Architecture
from basins.landscapes.symmetry import nearest_images

log = start(snakemake)
minima = read_dataset(snakemake.input.minima)
training = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member").sortby("member")
minima = minima.sel(member=training["member"])
arch = Architecture.from_json(minima.attrs["architecture"])
images, exact = nearest_images(training["initial_theta"].values, training["final_theta"].values, arch)
basins = analyze_basins(
    minima["minimum_of_member"].values,
    training["initial_theta"].values,
    training["final_theta"].values,
    minima["train_error"].values,
    minima["test_error"].values,
    distance=lambda starts, ends: np.linalg.norm(starts - images, axis=1),
    **snakemake.params.basins,
).assign_coords(member=training["member"])
basins["start_distance"].attrs["exact"] = (
    "exact nearest image for every member" if exact[np.isfinite(images).all(1)].all()
    else "an upper bound on the nearest image's distance for some members (basins.landscapes.symmetry)"
)
# The catalogue's honesty flags travel with the basins to the summary and figures.
for name in ("on_tolerance_plateau", "saddle_fraction", "undecided_fraction", "diverged_fraction"):
    basins[name] = minima[name]
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
