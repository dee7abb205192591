from _entry import start
from _rerun import CatalogRerun, probe_configured_rays

from basins.basin_geometry import shell_distance
from basins.io import add_provenance, read_dataset, write_dataset
from basins.rays import Probing
from basins.reruns import outcomes_of

log = start(snakemake)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
rerun = CatalogRerun(snakemake)
minima = rerun.minima
basins = read_dataset(snakemake.input.basins)
rays = dict(params.rays)
# Good and bad among the minima whose shape measure_tentacles can measure (min_members) and
# that fit the training set (the answer's fit_threshold): the hypothesis's terms, matched in
# basin fraction as the answer compares them (its match_factor). The answer redraws this very
# choice from the catalogue's counts (its selection shortfall and slope attenuation).
probing = Probing(rays["n_largest"], rays["n_size_neighbours"], params.min_members, params.fit_threshold,
                  params.match_factor)
chosen = probing.probed(minima["n_members"].values, int(minima.attrs["n_members_total"]),
                        minima["train_error"].values, minima["test_error"].values)
log.info("probing minima %s along %d rays each", chosen.tolist(), rays["n_directions"])


def outcomes(starts, targets):
    """Run the experiment's own dynamics from every start: returned, left or undecided?"""
    final_theta, loss, status = rerun.run(starts)
    return outcomes_of(rerun.assign(final_theta, loss), status, chosen[targets])


shell = shell_distance(basins["start_distance"].values, basins["minimum_of_member"].values)
result = probe_configured_rays(minima["theta"].values[chosen], outcomes, rays, seed=seed, minimum_ids=chosen,
                               shell=shell)
result = add_provenance(
    result,
    title=f"ray probes of experiment {snakemake.wildcards.experiment}, seed {seed}",
    stage="probe_rays",
    stage_config={"rays": rays, "min_members": params.min_members, "fit_threshold": params.fit_threshold,
                  "match_factor": params.match_factor, "training": params.training, "minima": params.minima,
                  "budget_factors": list(params.budget_factors)},
    seed=seed,
    device=rerun.compute["device"],
    inputs=(snakemake.input.minima, snakemake.input.basins, snakemake.input.dataset, *snakemake.input.shards),
)
write_dataset(result, snakemake.output[0])
log.info("median exit radii (Kaplan-Meier): %s; undecided runs: %s", result["median_exit_radius"].values,
         result["run_undecided_fraction"].values)
