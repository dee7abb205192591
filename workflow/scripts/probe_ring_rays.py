import numpy as np
from _entry import compute_options, start
from _rerun import probe_configured_rays

from basins.basin_geometry import shell_distance
from basins.io import add_provenance, read_dataset, write_dataset
from basins.oscillators import KuramotoRing
from basins.rays import select_minima_to_probe
from basins.ring_reruns import ring_outcomes

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


relax = ring_outcomes(ring, minima["winding_number"].values, tolerance=params.twisted_states["tolerance"],
                     relaxation=params.relaxation, budget_factors=params.budget_factors, seed=seed, **compute)


def outcomes(starts, targets):
    """Relax the ring from every start: did it reach twisted state ``chosen[targets[k]]``, leave, or spend its budget?"""
    return relax(starts, chosen[targets])


shell = shell_distance(basins["start_distance"].values, basins["minimum_of_member"].values)
result = probe_configured_rays(minima["theta"].values[chosen], outcomes, rays, seed=seed, minimum_ids=chosen,
                               shell=shell)
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
