from _entry import start
from _rerun import CatalogRerun, probe_configured_rays

from basins.io import add_provenance, read_dataset, write_dataset
from basins.minima import reached_minimum
from basins.rays import select_minima_to_probe
from basins.training import resolve_device

log = start(snakemake)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
rerun = CatalogRerun(snakemake)
minima = rerun.minima
basins = read_dataset(snakemake.input.basins)
rays = dict(params.rays)
chosen = select_minima_to_probe(
    basins["basin_fraction"].values, basins["test_error"].values, n_largest=rays["n_largest"]
)
log.info("probing minima %s along %d rays each", chosen.tolist(), rays["n_directions"])


def returns(starts, targets):
    """Run the experiment's own dynamics from every start; did it reach its minimum?"""
    final_theta, loss, converged = rerun.run(starts)
    reached = reached_minimum(
        final_theta, loss, minima["theta"].values, minima["loss"].values, chosen[targets],
        rerun.arch, rerun.probes, **rerun.matching,
    )
    return reached & converged


result = probe_configured_rays(minima["theta"].values[chosen], returns, rays, seed=seed, minimum_ids=chosen)
result = add_provenance(
    result,
    title=f"ray probes of experiment {snakemake.wildcards.experiment}, seed {seed}",
    stage="probe_rays",
    stage_config={"rays": rays, "training": params.training, "minima": params.minima},
    seed=seed,
    device=str(resolve_device(params.device)),
    inputs=(snakemake.input.minima, snakemake.input.basins, snakemake.input.dataset),
)
write_dataset(result, snakemake.output[0])
log.info("minimal exit radii: %s", result["minimal_exit_radius"].values)
