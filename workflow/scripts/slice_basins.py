import numpy as np
from _entry import start
from _rerun import CatalogRerun

from basins.io import add_provenance, write_dataset
from basins.reruns import labels_of
from basins.symmetry import nearest_image
from basins.slices import slice_basins
from basins.training import resolve_device

log = start(snakemake)
params = snakemake.params
rerun = CatalogRerun(snakemake)
theta = rerun.minima["theta"].values
# A random plane through the largest basin's minimum, and the plane through the two largest.
origins, towards = [theta[0]], [None]
if len(theta) >= 2:
    origins.append(theta[0])
    towards.append(nearest_image(theta[0], theta[1], rerun.arch)[0])


def assign(starts):
    final_theta, final_loss, status = rerun.run(starts)
    return labels_of(rerun.assign(final_theta, final_loss), status)


slices = slice_basins(np.array(origins), towards, assign, seed=rerun.seed, **params.slices)
slices = add_provenance(
    slices,
    title=f"basin slices of experiment {snakemake.wildcards.experiment}, seed {rerun.seed}",
    stage="slice_basins",
    stage_config={"slices": params.slices, "training": params.training, "minima": params.minima,
                  "rerun_budget_factors": list(params.rerun_budget_factors)},
    seed=rerun.seed,
    device=str(resolve_device(params.device)),
    inputs=(snakemake.input.minima, snakemake.input.dataset, *snakemake.input.shards),
)
write_dataset(slices, snakemake.output[0])
log.info("boundary fractions: %s", slices["boundary_fraction"].values)
