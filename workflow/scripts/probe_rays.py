import numpy as np
from _entry import start

from basins.data import train_test_arrays
from basins.io import add_provenance, read_dataset, write_dataset
from basins.minima import probe_inputs_for, reached_minimum
from basins.networks import Architecture
from basins.rays import probe_rays, select_minima_to_probe
from basins.training import CONVERGED, resolve_device, train_ensemble

log = start(snakemake)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
minima = read_dataset(snakemake.input.minima)
basins = read_dataset(snakemake.input.basins)
data = train_test_arrays(read_dataset(snakemake.input.dataset))
arch = Architecture.from_json(minima.attrs["architecture"])
matching = dict(params.minima)
probes = probe_inputs_for(data[0], matching.pop("n_probe"))
matching.pop("n_neighbors")
rays = dict(params.rays)
chosen = select_minima_to_probe(
    basins["basin_fraction"].values, basins["test_error"].values, n_largest=rays["n_largest"]
)
log.info("probing minima %s along %d rays each", chosen.tolist(), rays["n_directions"])


def returns(starts, targets):
    """Run the experiment's own dynamics from every start; did it reach its minimum?"""
    result = train_ensemble(
        arch, *data, starts, np.arange(len(starts)), seed=seed, device=params.device,
        memory_budget_mb=params.memory_budget_mb, **params.training,
    )
    reached = reached_minimum(
        result["final_theta"].values, result["loss"].values, minima["theta"].values,
        minima["loss"].values, chosen[targets], arch, probes, **matching,
    )
    log.info("%d starts: %d returned", len(starts), int(reached.sum()))
    return reached & (result["status"].values == CONVERGED)


result = probe_rays(
    minima["theta"].values[chosen],
    returns,
    radii=np.geomspace(rays["smallest_radius"], rays["largest_radius"], rays["n_radii"]),
    n_directions=rays["n_directions"],
    n_bisection=rays["n_bisection"],
    seed=seed,
    minimum_ids=chosen,
)
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
