import numpy as np
from _entry import engine_options, shard_starts, start

from basins.data import train_test_arrays
from basins.io import add_provenance, read_dataset, write_dataset
from basins.landscapes.architecture import architecture_for, initial_parameters
from basins.training import train_ensemble

log = start(snakemake)
options = engine_options(snakemake)
params, wildcards = snakemake.params, snakemake.wildcards
seed, shard = int(wildcards.seed), int(wildcards.shard)
dataset = read_dataset(snakemake.input.dataset)
model = dict(params.model)
init, init_scale = model.pop("init"), model.pop("init_scale")
arch = architecture_for(dataset, **model)
members, initial_theta = shard_starts(
    snakemake, arch.n_params,
    draw=lambda members: initial_parameters(arch, members, seed=seed, init=init, init_scale=init_scale),
)
log.info("shard %d: members %d..%d of a %d-parameter network", shard, members[0], members[-1], arch.n_params)
result = train_ensemble(
    arch,
    *train_test_arrays(dataset),
    initial_theta,
    members,
    seed=seed,
    budget_factors=list(params.budget_factors),
    **options,
    **params.training,
)
result = add_provenance(
    result,
    title=f"training ensemble of experiment {wildcards.experiment}, seed {seed}, shard {shard}",
    stage="train_ensemble",
    stage_config={"model": params.model, "training": params.training, "ensemble": params.ensemble,
                  "budget_factors": list(params.budget_factors)},
    seed=seed,
    device=options["device"],
    inputs=(snakemake.input.dataset, *snakemake.input.starting_points),
)
write_dataset(result, snakemake.output[0])
log.info("status counts (converged, budget, diverged, saddle): %s", np.bincount(result.status.values, minlength=4))
