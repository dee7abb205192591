import numpy as np
from _entry import engine_options, shard_starts, start

from basins.io import add_provenance, write_dataset
from basins.oscillators import KuramotoRing, relax_ring, uniform_phases

log = start(snakemake)
options = engine_options(snakemake)
params, wildcards = snakemake.params, snakemake.wildcards
seed, shard = int(wildcards.seed), int(wildcards.shard)
ring = KuramotoRing(**params.ring)
members, initial_theta = shard_starts(
    snakemake, ring.n_params, draw=lambda members: uniform_phases(ring.n_oscillators, members, seed=seed)
)
log.info("shard %d: members %d..%d of a ring of %d oscillators", shard, members[0], members[-1], ring.n_oscillators)
result = relax_ring(
    ring,
    initial_theta,
    members,
    seed=seed,
    budget_factors=list(params.budget_factors),
    **options,
    **params.relaxation,
)
result = add_provenance(
    result,
    title=f"relaxation of ring {wildcards.ring}, seed {seed}, shard {shard}",
    stage="relax_ring",
    stage_config={"ring": params.ring, "relaxation": params.relaxation, "ensemble": params.ensemble},
    seed=seed,
    device=options["device"],
    inputs=tuple(snakemake.input.starting_points),
)
write_dataset(result, snakemake.output[0])
log.info("status counts (converged, budget, diverged): %s", np.bincount(result.status.values, minlength=3))
