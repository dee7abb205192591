from functools import partial

import numpy as np
import pytest
import torch

from basins.engine.curvature import dense_hessians, hutchinson_trace, lanczos, make_hvp
from basins.flatness import hessian_chunk_size, local_energy, measure_flatness
from basins.labels import CONVERGED
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.losses import margins
from basins.landscapes.networks import forward
from basins.landscapes.objective import member_losses, network_errors_and_losses
from basins.training import train_ensemble


@pytest.fixture
def tiny_problem(teacher_data):
    """A bias-free tanh net on the teacher task, its loss and a few random points."""
    arch = Architecture(n_inputs=3, n_outputs=1, depth=1, width=3, activation="tanh", bias=False)
    x, y = (torch.as_tensor(a, dtype=torch.float64) for a in teacher_data[:2])
    loss = partial(member_losses, x=x, y=y, arch=arch, loss="mse", margin=1.0, l2=1e-3)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(4), seed=2, init="gaussian"))
    return arch, x, y, loss, theta


def test_hessian_vector_products_match_finite_differences_of_gradients(tiny_problem):
    _, _, _, loss, theta = tiny_problem
    vectors = torch.randn(theta.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    step = 1e-5

    def gradient(point):
        point = point.detach().requires_grad_(True)
        return torch.autograd.grad(loss(point).sum(), point)[0]

    finite = (gradient(theta + step * vectors) - gradient(theta - step * vectors)) / (2 * step)
    torch.testing.assert_close(make_hvp(loss)(theta, vectors), finite, rtol=1e-6, atol=1e-8)


def test_dense_hessians_are_each_members_own(tiny_problem):
    _, _, _, loss, theta = tiny_problem
    hessians = dense_hessians(make_hvp(loss), theta)
    for row in range(len(theta)):
        expected = torch.autograd.functional.hessian(lambda t: loss(t[None])[0], theta[row])
        torch.testing.assert_close(hessians[row], expected, rtol=1e-10, atol=1e-12)


def test_dense_hessians_by_blocks_of_columns_and_of_a_linear_loss(teacher_data):
    """Columns in blocks smaller than the parameters give the same Hessians (cross-entropy, biases);
    a loss linear in the parameters has none."""
    arch = Architecture(n_inputs=3, n_outputs=1, depth=1, width=3, activation="tanh", bias=True)
    x, y = (torch.as_tensor(a, dtype=torch.float64) for a in teacher_data[:2])
    loss = partial(member_losses, x=x, y=torch.sign(y), arch=arch, loss="cross_entropy", margin=1.0, l2=1e-3)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(3), seed=5, init="gaussian"))
    whole = dense_hessians(make_hvp(loss), theta)
    expected = torch.autograd.functional.hessian(lambda t: loss(t[None])[0], theta[1])
    torch.testing.assert_close(whole[1], expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dense_hessians(make_hvp(loss), theta, block=4), whole, rtol=1e-12, atol=1e-14)
    linear = dense_hessians(make_hvp(lambda t: t @ torch.arange(1.0, 4.0, dtype=t.dtype)), torch.ones(2, 3))
    torch.testing.assert_close(linear, torch.zeros(2, 3, 3))


def test_lanczos_gives_the_dense_spectrum_and_its_top_first(tiny_problem):
    _, _, _, loss, theta = tiny_problem
    hvp = make_hvp(loss)
    exact = torch.linalg.eigvalsh(dense_hessians(hvp, theta))
    full, weights = lanczos(hvp, theta, theta.shape[1], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(full, exact, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(weights.sum(1), torch.ones(len(theta), dtype=theta.dtype))
    # Fewer iterations approach the largest eigenvalue from below (Ritz values interlace).
    few, _ = lanczos(hvp, theta, 6, generator=torch.Generator().manual_seed(1))
    assert (few[:, -1] <= exact[:, -1] + 1e-12).all()
    torch.testing.assert_close(few[:, -1], exact[:, -1], rtol=1e-2, atol=1e-8)


def test_lanczos_survives_an_exhausted_krylov_space():
    # A diagonal Hessian with a start vector on two eigenvectors: the space closes after 2 steps.
    diagonal = torch.tensor([[3.0, -1.0, 2.0, 5.0]], dtype=torch.float64)

    def hvp(theta, vectors):
        return diagonal * vectors

    values, _ = lanczos(hvp, torch.zeros(1, 4, dtype=torch.float64), 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(values[0], torch.tensor([-1.0, 2.0, 3.0, 5.0], dtype=torch.float64))


def test_hutchinson_trace_is_unbiased_within_its_error(tiny_problem):
    _, _, _, loss, theta = tiny_problem
    hvp = make_hvp(loss)
    exact = torch.diagonal(dense_hessians(hvp, theta), dim1=1, dim2=2).sum(1)
    estimate, error = hutchinson_trace(hvp, theta, 400, generator=torch.Generator().manual_seed(3))
    assert ((estimate - exact).abs() < 4 * error + 1e-12).all()
    assert (error > 0).all()


def test_local_energy_starts_at_zero_and_grows_with_the_perturbation(teacher_data):
    arch = Architecture(n_inputs=3, n_outputs=1, depth=1, width=4, activation="tanh")
    start = initial_parameters(arch, np.arange(3), seed=4, init="gaussian")
    trained = train_ensemble(arch, *teacher_data, start, np.arange(3), loss="mse", dynamics="gd", lr=0.5,
                             max_steps=3000, grad_tol=1e-6, l2=1e-3, device="cpu", progress_every_s=1e9)
    x, y = (torch.as_tensor(a, dtype=torch.float64) for a in teacher_data[:2])
    evaluate = network_errors_and_losses(arch, x, y, loss="mse", margin=1.0, l2=1e-3)
    sigmas = np.array([0.0, 0.05, 0.3, 1.0])
    energy = local_energy(trained["final_theta"].values, evaluate, sigmas, n_draws=300, seed=0)
    np.testing.assert_array_equal(energy["local_energy"][:, 0], 0.0)
    # Non-decreasing in expectation: each step up in sigma raises the mean loss beyond its noise.
    rise = np.diff(energy["loss"], axis=1)
    noise = np.hypot(energy["loss_se"][:, 1:], energy["loss_se"][:, :-1])
    assert (rise > -2 * noise).all()
    assert (energy["local_energy"][:, -1] > energy["local_energy"][:, 1]).all()


def test_a_trained_minimum_has_index_zero_and_the_origin_is_a_saddle(tiny_problem, teacher_data):
    arch, x, y, _, theta = tiny_problem
    # A stronger L2 makes every minimum well conditioned, so GD reaches a tiny gradient quickly.
    loss = partial(member_losses, x=x, y=y, arch=arch, loss="mse", margin=1.0, l2=1e-2)
    trained = train_ensemble(arch, *teacher_data, theta.numpy(), np.arange(4), loss="mse", dynamics="gd", lr=0.5,
                             max_steps=10000, grad_tol=1e-8, l2=1e-2, device="cpu", progress_every_s=1e9)
    converged = trained["final_theta"].values[trained["status"].values == CONVERGED]
    assert len(converged) >= 2
    # The origin is a critical point of a bias-free tanh net, and a saddle once the data pull.
    points = np.vstack([converged, np.zeros((1, arch.n_params))])
    evaluate = network_errors_and_losses(arch, x, y, loss="mse", margin=1.0, l2=1e-2)
    flatness = measure_flatness(points, loss, evaluate, n_top=3, n_hutchinson=16, sigmas=[0.0, 0.1], n_draws=8)
    np.testing.assert_array_equal(flatness["index"].values[:-1], 0)
    assert int(flatness["index"][-1]) > 0
    np.testing.assert_allclose(flatness["top_eigenvalue"].values, flatness["spectrum"].values[:, ::-1][:, :3],
                               rtol=1e-8, atol=1e-10)
    assert flatness.attrs["hessian"] == "dense"
    # The same through Lanczos alone (no dense Hessian): the top eigenvalues agree.
    sparse = measure_flatness(points, loss, evaluate, n_top=3, n_lanczos=arch.n_params, n_hutchinson=16,
                              max_dense_params=0, sigmas=[0.0, 0.1], n_draws=8)
    np.testing.assert_allclose(sparse["top_eigenvalue"].values, flatness["top_eigenvalue"].values, rtol=1e-8)
    assert "spectrum" not in sparse and int(sparse["index"][-1]) > 0


def test_chunks_of_minima_give_the_same_spectra_and_local_energy(tiny_problem):
    arch, x, y, loss, theta = tiny_problem
    points = theta.numpy()
    evaluate = network_errors_and_losses(arch, x, y, loss="mse", margin=1.0, l2=1e-3)
    options = dict(n_top=2, n_lanczos=arch.n_params, n_hutchinson=8, sigmas=[0.0, 0.1], n_draws=8)
    whole = measure_flatness(points, loss, evaluate, **options)
    chunked = measure_flatness(points, loss, evaluate, chunk=3, **options)
    for name in ("spectrum", "exact_trace", "index", "top_eigenvalue", "local_energy", "perturbed_loss"):
        np.testing.assert_allclose(chunked[name].values, whole[name].values, rtol=1e-8, atol=1e-12, err_msg=name)
    # an unchunked run draws its probes as before: one chunk of everything is the same run
    np.testing.assert_array_equal(measure_flatness(points, loss, evaluate, chunk=4, **options)["trace"], whole["trace"])


@pytest.mark.parametrize("loss, beta", [("mse", 1.0), ("cross_entropy", 3.0), ("quadratic_hinge", 1.0)])
def test_errors_and_losses_are_the_member_losses_from_one_forward_pass(tiny_problem, loss, beta):
    # The same operations as member_losses and the margins' sign: the same bits.
    arch, x, y, _, theta = tiny_problem
    points = np.vstack([theta.numpy(), 3.0 * theta.numpy()])
    options = dict(loss=loss, margin=1.0, l2=1e-3, beta=beta)
    errors, losses = network_errors_and_losses(arch, x, y, **options)(points)
    block = torch.as_tensor(points)
    np.testing.assert_array_equal(losses, member_losses(block, x, y, arch, **options).numpy())
    np.testing.assert_array_equal(errors, (margins(forward(block, x, arch), y) <= 0).double().mean(1).numpy())
    assert 0 < errors.max() and errors.min() < 1


def test_the_hessian_chunk_fits_the_memory_budget():
    # 500 parameters, dense: 3 x 2 MB of Hessian and 0.3 MB of Lanczos basis per minimum
    assert hessian_chunk_size(500, dense=True, n_lanczos=40, memory_budget_mb=1024, network_chunk=10**6) == 169
    assert hessian_chunk_size(500, dense=True, n_lanczos=40, memory_budget_mb=1024, network_chunk=40) == 10
    assert hessian_chunk_size(10**6, dense=False, n_lanczos=40, memory_budget_mb=1, network_chunk=10**6) == 1
