import numpy as np
from _entry import engine_options, start

from basins.data import train_test_arrays
from basins.io import add_provenance, read_dataset, write_dataset
from basins.jamming import fine_scan_size, sweep_jamming, train_size_grid
from basins.landscapes.architecture import architecture_for, initial_parameters

log = start(snakemake)
options = engine_options(snakemake)
params, wildcards = snakemake.params, snakemake.wildcards
seed, depth, width = int(wildcards.seed), int(wildcards.depth), int(wildcards.width)
dataset = read_dataset(snakemake.input.dataset)
model = dict(params.model)
init, init_scale = model.pop("init"), model.pop("init_scale")
arch = architecture_for(dataset, depth=depth, width=width, **model)
n_train = train_size_grid(**params.train_sizes)
members = np.arange(len(n_train))
# The fine scan's starting points: each pass enough to split one grid interval to the resolution asked.
resolution, passes = params.training["fine_resolution"], params.training["fine_passes"]
fine_members = len(n_train) + np.arange(passes * fine_scan_size(n_train, resolution) if resolution else 0)
log.info("depth %d, width %d: N = %d weights; P from %d to %d", depth, width, arch.n_weights, n_train[0], n_train[-1])
result = sweep_jamming(
    arch,
    *train_test_arrays(dataset),
    initial_parameters(arch, members, seed=seed, init=init, init_scale=init_scale),
    n_train,
    fine_initial_theta=initial_parameters(arch, fine_members, seed=seed, init=init, init_scale=init_scale),
    seed=seed,
    **options,
    **params.training,
)
# Cover's curve calibrates perceptrons on random patterns (analyze_jamming).
result = result.assign_attrs(dataset_kind=dataset.attrs["dataset_kind"])
result = add_provenance(
    result,
    title=f"jamming sweep {wildcards.jamming}, depth {depth}, width {width}, seed {seed}",
    stage="sweep_jamming",
    stage_config={"model": params.model, "training": params.training, "train_sizes": params.train_sizes},
    seed=seed,
    device=options["device"],
    inputs=(snakemake.input.dataset,),
)
write_dataset(result, snakemake.output[0])
