import numpy as np
from _entry import start
from _rerun import CatalogRerun

from basins.io import add_provenance, read_dataset, write_dataset
from basins.reruns import outcomes_of
from basins.landscapes.symmetry import nearest_images
from basins.tentacles import measure_tentacles

log = start(snakemake)
seed = int(snakemake.wildcards.seed)
rerun = CatalogRerun(snakemake)
basins = read_dataset(snakemake.input.basins)
rays = read_dataset(snakemake.input.rays)
if not np.array_equal(basins["member"].values, rerun.member):
    raise ValueError("the basins file and the training shards list different members: re-make analyze_basins")
# Each member's minimum as the symmetric image of its end point nearest to its start.
images, _ = nearest_images(rerun.initial_theta, rerun.catalog_theta, rerun.arch)


def outcomes(starts, targets):
    """Run the experiment's own dynamics from every start: returned to minimum targets[k], left or undecided?"""
    final_theta, loss, status = rerun.run(starts)
    return outcomes_of(rerun.assign(final_theta, loss), status, targets)


tentacles = measure_tentacles(
    rays,
    basins["basin_fraction"].values,
    basins["start_distance"].values,
    basins["minimum_of_member"].values,
    rerun.initial_theta,
    images,
    outcomes,
    seed=seed,
    **snakemake.params.tentacles,
)
tentacles = add_provenance(
    tentacles.assign_coords(member=("member", basins["member"].values[tentacles["member"].values],
                                    tentacles["member"].attrs)),
    title=f"basin shape of experiment {snakemake.wildcards.experiment}, seed {seed}",
    stage=snakemake.rule,
    stage_config={"tentacles": dict(snakemake.params.tentacles), "training": snakemake.params.training,
                  "minima": snakemake.params.minima, "budget_factors": list(snakemake.params.budget_factors)},
    seed=seed,
    device=rerun.compute["device"],
    inputs=(snakemake.input.minima, snakemake.input.basins, snakemake.input.rays, snakemake.input.dataset,
            *snakemake.input.shards),
)
write_dataset(tentacles, snakemake.output[0])
log.info("reach %s, leaving fraction %s, thickness ratio %s (%s)", tentacles["reach"].values,
         tentacles["leaving_fraction"].values, tentacles["median_thickness_ratio"].values,
         tentacles["reason"].values.tolist())
