import numpy as np
from _entry import start
from _rerun import CatalogRerun

from basins.io import add_provenance, write_dataset
from basins.minima import UNASSIGNED, align_to, assign_to_catalog
from basins.slices import slice_basins
from basins.training import resolve_device

log = start(snakemake)
params = snakemake.params
rerun = CatalogRerun(snakemake)
theta, loss = rerun.minima["theta"].values, rerun.minima["loss"].values
# A random plane through the largest basin's minimum, and the plane through the two largest.
origins, towards = [theta[0]], [None]
if len(theta) >= 2:
    origins.append(theta[0])
    towards.append(align_to(theta[0], theta[1], rerun.arch))


def assign(starts):
    final_theta, final_loss, converged = rerun.run(starts)
    labels = assign_to_catalog(final_theta, final_loss, theta, loss, rerun.arch, rerun.probes, **rerun.matching)
    labels[~converged] = UNASSIGNED
    return labels


slices = slice_basins(np.array(origins), towards, assign, seed=rerun.seed, **params.slices)
slices = add_provenance(
    slices,
    title=f"basin slices of experiment {snakemake.wildcards.experiment}, seed {rerun.seed}",
    stage="slice_basins",
    stage_config={"slices": params.slices, "training": params.training, "minima": params.minima},
    seed=rerun.seed,
    device=str(resolve_device(params.device)),
    inputs=(snakemake.input.minima, snakemake.input.dataset),
)
write_dataset(slices, snakemake.output[0])
log.info("boundary fractions: %s", slices["boundary_fraction"].values)
