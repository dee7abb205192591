
import torch

from _entry import landscape_options, start
from _rerun import CatalogRerun

from basins.connectivity import connect_minima
from basins.io import add_provenance, write_dataset
from basins.labels import CONVERGED
from basins.landscapes.objective import NetworkLoss, data_tensors, network_chunk_size, network_errors_and_losses
from basins.landscapes.symmetry import nearest_image
from basins.minima import assign_to_catalog, canonicalize

log = start(snakemake)
params, wildcards = snakemake.params, snakemake.wildcards
rerun = CatalogRerun(snakemake)
arch, minima = rerun.arch, rerun.minima
device = torch.device(rerun.compute["device"])
x_train, y_train, x_test, y_test = rerun.data
loss_options = landscape_options(params.training)
x, y = data_tensors(arch, x_train, y_train, device=device)
energy = NetworkLoss(arch, x, y, **loss_options)
# A band is n_images + 2 networks evaluated together: bands per chunk within the memory budget.
images_per_band = params.connectivity.get("n_images", 16) + 2
network_chunk = network_chunk_size(arch, len(x_train), rerun.compute["memory_budget_mb"], x.dtype, x.device)
band_chunk = max(1, network_chunk // images_per_band)


def descend_from(points, grad_tol=None):
    """The experiment's own dynamics from each point, to gradient norm ``grad_tol`` (None: the
    experiment's); endpoints in the catalog's frame, and whether a kick off a saddle was taken."""
    final_theta, loss, status, kicks = rerun.run_counting_kicks(
        points, **({} if grad_tol is None else {"grad_tol": grad_tol}))
    return canonicalize(final_theta, arch), loss, status == CONVERGED, kicks > 0


def assign(endpoints, energies, theta, minimum_energy):
    return assign_to_catalog(endpoints, energies, theta, minimum_energy, arch, rerun.probes, **rerun.matching)


graph = connect_minima(
    minima["theta"].values,
    minima["loss"].values,
    energy,
    align=lambda reference, theta: nearest_image(reference, theta, arch)[0],
    descend_from=descend_from,
    assign=assign,
    descent_grad_tol=params.training["grad_tol"],
    device=str(device),
    chunk=band_chunk,
    **params.connectivity,
)
x, y = data_tensors(arch, x_test, y_test, device=device)
test_error, _ = network_errors_and_losses(arch, x, y, **loss_options)(graph["theta"].values)
graph["test_error"] = ("minimum", test_error, {"long_name": "test error of the minimum", "units": "1"})
graph = add_provenance(
    graph.assign_attrs(
        experiment=wildcards.experiment,
        n_train=len(x_train),
        data_seed=rerun.data_seed,
        depth=arch.depth,
        width=arch.width,
    ),
    title=f"transition states and disconnectivity graph of experiment {wildcards.experiment}, seed {rerun.seed}",
    stage="connect_minima",
    stage_config={"connectivity": params.connectivity, "training": params.training, "minima": params.minima},
    seed=rerun.seed,
    device=str(device),
    inputs=(snakemake.input.minima, snakemake.input.dataset),
)
write_dataset(graph, snakemake.output[0])
log.info("%d edges among %d minima; funnel fraction %.3f", graph.attrs["n_edges"], graph.sizes["minimum"],
         graph.attrs["funnel_fraction"])
