from _entry import compute_options, landscape_options, start

from basins.data import train_test_arrays
from basins.engine.devices import resolve_device
from basins.flatness import hessian_chunk_size, measure_flatness
from basins.io import add_provenance, read_dataset, write_dataset
from basins.landscapes.architecture import Architecture
from basins.landscapes.objective import NetworkLoss, data_tensors, network_chunk_size, network_errors_and_losses

log = start(snakemake)
compute = compute_options(snakemake)
params, seed = snakemake.params, int(snakemake.wildcards.seed)
minima = read_dataset(snakemake.input.minima)
arch = Architecture.from_json(minima.attrs["architecture"])
device = resolve_device(compute["device"])
x_train, y_train, _, _ = train_test_arrays(read_dataset(snakemake.input.dataset))
x, y = data_tensors(arch, x_train, y_train, device=device)
landscape = landscape_options(params.training)
loss = NetworkLoss(arch, x, y, **landscape)
chunk = hessian_chunk_size(
    arch.n_params,
    dense=arch.n_params <= params.flatness["max_dense_params"],
    n_lanczos=params.flatness["n_lanczos"],
    memory_budget_mb=compute["memory_budget_mb"],
    network_chunk=network_chunk_size(arch, len(y), compute["memory_budget_mb"], x.dtype, device),
)
log.info("%d minima, Hessians of %d at a time", minima.sizes["minimum"], chunk)
flatness = measure_flatness(
    minima["theta"].values,
    loss,
    network_errors_and_losses(arch, x, y, **landscape),
    seed=seed,
    device=str(device),
    chunk=chunk,
    **params.flatness,
)
flatness = add_provenance(
    flatness,
    title=f"flatness of the minima of experiment {snakemake.wildcards.experiment}, seed {seed}",
    stage="measure_flatness",
    stage_config={"flatness": params.flatness, "loss": landscape},
    seed=seed,
    device=str(device),
    inputs=(snakemake.input.minima, snakemake.input.dataset),
)
write_dataset(flatness, snakemake.output[0])
log.info("top eigenvalues of the 5 largest basins' minima: %s", flatness["top_eigenvalue"].values[:5, 0])
