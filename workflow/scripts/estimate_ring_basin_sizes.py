import numpy as np
import xarray as xr
from _entry import compute_options, start

from basins.basin_sizes import BasinWalk, estimate_ring_basin_sizes, summary_lines
from basins.io import add_provenance, read_dataset, write_dataset
from basins.oscillators import KuramotoRing
from basins.ring_reruns import ring_outcomes

log = start(snakemake)
compute = compute_options(snakemake)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
minima = read_dataset(snakemake.input.minima)
relaxation = xr.concat([read_dataset(path) for path in snakemake.input.shards], dim="member")
ring = KuramotoRing.from_json(minima.attrs["ring"])
sizes = dict(params.basin_sizes)
wanted = np.asarray(sizes.pop("winding_numbers"))
catalogued = minima["winding_number"].values
missing = sorted(set(wanted.tolist()) - set(catalogued.tolist()))
if missing:
    raise ValueError(f"no initial condition of ring {snakemake.wildcards.ring}, seed {seed}, reached the twisted "
                     f"states q = {missing}: remove them from basin_sizes.winding_numbers or add members")
chosen = np.array([int(np.flatnonzero(catalogued == q)[0]) for q in wanted])
log.info("measuring the basins of the twisted states q = %s", wanted.tolist())

outcomes = ring_outcomes(ring, catalogued, tolerance=params.twisted_states["tolerance"],
                         relaxation=params.relaxation, budget_factors=params.budget_factors, seed=seed, **compute)
result = estimate_ring_basin_sizes(
    outcomes, minima["minimum_of_member"].values, relaxation["initial_theta"].values, chosen, walk=BasinWalk(**sizes),
    seed=seed,
)
result = add_provenance(
    result.assign(winding_number=("minimum", wanted, minima["winding_number"].attrs)).assign_attrs(
        ring=minima.attrs["ring"]),
    title=f"basin sizes by thermodynamic integration, ring {snakemake.wildcards.ring}, seed {seed}",
    stage="estimate_ring_basin_sizes",
    stage_config={"basin_sizes": params.basin_sizes, "relaxation": params.relaxation,
                  "twisted_states": params.twisted_states, "budget_factors": list(params.budget_factors)},
    seed=seed,
    device=compute["device"],
    inputs=(snakemake.input.minima, *snakemake.input.shards),
)
write_dataset(result, snakemake.output[0])
for line in summary_lines(result):
    log.info(line)
