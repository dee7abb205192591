import numpy as np
from _entry import compute_options, start
from _rerun import probe_configured_rays

from basins.io import add_provenance, read_dataset, write_dataset
from basins.labels import BUDGET, DIVERGED, LEFT, RETURNED, SADDLE, UNDECIDED
from basins.oscillators import KuramotoRing, distance_to_twisted_state, relax_ring, winding_number
from basins.rays import select_minima_to_probe

log = start(snakemake)
compute = compute_options(snakemake)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
minima = read_dataset(snakemake.input.minima)
basins = read_dataset(snakemake.input.basins)
ring = KuramotoRing.from_json(minima.attrs["ring"])
rays = dict(params.rays)
fraction = basins["basin_fraction"].values
chosen = select_minima_to_probe(fraction, np.full(len(fraction), np.nan), n_largest=rays["n_largest"])
log.info("probing twisted states q = %s along %d rays each", minima["winding_number"].values[chosen].tolist(),
         rays["n_directions"])


def outcomes(starts, targets):
    """Relax the ring from every start: did it reach twisted state ``targets[k]``, leave, or spend its budget?

    A run within tolerance of its target counts as returned even if it spent its budget (as
    the catalogue counts members); one that spent it elsewhere is undecided.
    """
    result = relax_ring(ring, starts, np.arange(len(starts)), seed=seed,
                        budget_factors=list(params.budget_factors), **compute, **params.relaxation)
    final, status = result["final_theta"].values, result["status"].values
    q = minima["winding_number"].values[chosen[targets]]
    close = distance_to_twisted_state(final, q) <= params.twisted_states["tolerance"]
    reached = (winding_number(final) == q) & close & (status != DIVERGED)
    outcome = np.select([reached, np.isin(status, (BUDGET, SADDLE))], [RETURNED, UNDECIDED], default=LEFT)
    log.info("%d starts: %d returned, %d undecided", len(starts), int(reached.sum()), int((outcome == UNDECIDED).sum()))
    return outcome


result = probe_configured_rays(minima["theta"].values[chosen], outcomes, rays, seed=seed, minimum_ids=chosen)
result = add_provenance(
    result.assign(winding_number=("minimum", minima["winding_number"].values[chosen], minima["winding_number"].attrs)),
    title=f"ray probes of ring {snakemake.wildcards.ring}, seed {seed}",
    stage="probe_ring_rays",
    stage_config={"rays": rays, "relaxation": params.relaxation, "twisted_states": params.twisted_states},
    seed=seed,
    device=compute["device"],
    inputs=(snakemake.input.minima, snakemake.input.basins),
)
write_dataset(result, snakemake.output[0])
log.info("minimal exit radii: %s; median exit radii: %s; censored fractions: %s", result["minimal_exit_radius"].values,
         result["median_exit_radius"].values, result["censored_fraction"].values)
