from _entry import start
from _rerun import CatalogRerun

from basins.basin_sizes import BasinWalk, estimate_basin_sizes, select_minima_to_measure, summary_lines
from basins.io import add_provenance, write_dataset
from basins.landscapes.architecture import initial_scales

log = start(snakemake)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
rerun = CatalogRerun(snakemake)
minima = rerun.minima
sizes = dict(params.basin_sizes)
chosen, small = select_minima_to_measure(
    minima["n_members"].values, minima["train_error"].values, n_largest=sizes.pop("n_largest"),
    n_small=sizes.pop("n_small"), min_members=params.min_members, fit_threshold=params.fit_threshold, seed=seed,
)
log.info("measuring the basins of minima %s (small: %s)", chosen.tolist(), small.tolist())


def run(theta):
    """The experiment's own dynamics from every point; endpoints assigned by the catalogue."""
    final_theta, loss, status = rerun.run(theta)
    return final_theta, rerun.assign(final_theta, loss), status


result = estimate_basin_sizes(
    run, rerun.arch, initial_scales(rerun.arch, init=params.model["init"], init_scale=params.model["init_scale"]),
    rerun.catalog_labels, rerun.initial_theta, rerun.catalog_theta, chosen, small,
    image_tol=params.minima["dist_tol"], walk=BasinWalk(**sizes), seed=seed,
)
result = add_provenance(
    result,
    title=f"basin sizes by thermodynamic integration, experiment {snakemake.wildcards.experiment}, seed {seed}",
    stage="estimate_basin_sizes",
    stage_config={"basin_sizes": params.basin_sizes, "min_members": params.min_members,
                  "fit_threshold": params.fit_threshold, "training": params.training, "minima": params.minima,
                  "model": params.model, "budget_factors": list(params.budget_factors)},
    seed=seed,
    device=rerun.compute["device"],
    inputs=(snakemake.input.minima, snakemake.input.dataset, *snakemake.input.shards),
)
write_dataset(result, snakemake.output[0])
for line in summary_lines(result):
    log.info(line)
