from _entry import start
from _rerun import CatalogRerun

from basins.io import add_provenance, write_dataset
from basins.landscapes.symmetry import nearest_image
from basins.reruns import labels_of
from basins.slices import slice_basins

log = start(snakemake)
params = snakemake.params
rerun = CatalogRerun(snakemake)
theta = rerun.minima["theta"].values
# A random plane through the largest basin's minimum, and the plane through the two largest;
# none where the catalogue is empty (every member diverged or stopped short of a minimum).
if len(theta) >= 2:
    origins, towards = theta[[0, 0]], [None, nearest_image(theta[0], theta[1], rerun.arch)[0]]
else:
    origins, towards = theta[:1], [None]
if not len(theta):
    log.warning("the catalogue holds no minimum: no plane to slice")


def assign(starts):
    final_theta, final_loss, status = rerun.run(starts)
    return labels_of(rerun.assign(final_theta, final_loss), status)


slices = slice_basins(origins, towards, assign, seed=rerun.seed, **params.slices)
slices = add_provenance(
    slices,
    title=f"basin slices of experiment {snakemake.wildcards.experiment}, seed {rerun.seed}",
    stage="slice_basins",
    stage_config={"slices": params.slices, "training": params.training, "minima": params.minima,
                  "budget_factors": list(params.budget_factors)},
    seed=rerun.seed,
    device=rerun.compute["device"],
    inputs=(snakemake.input.minima, snakemake.input.dataset, *snakemake.input.shards),
)
write_dataset(slices, snakemake.output[0])
log.info("boundary fractions: %s", slices["boundary_fraction"].values)
