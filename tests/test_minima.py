import numpy as np
import pytest
import torch
import xarray as xr

from basins.minima import canonicalize, deduplicate_minima, group_endpoints
from basins.networks import Architecture, forward, initial_parameters
from basins.training import BUDGET, CONVERGED


def apply_symmetry(theta, arch, rng):
    """A random element of the network's symmetry group applied to one parameter vector."""
    theta = theta.copy()
    layers = list(zip(arch.layer_shapes, arch.layer_slices))
    for ((fan_in, width), (w_in, b_in)), ((_, fan_out), (w_out, _)) in zip(layers[:-1], layers[1:]):
        incoming = theta[w_in].reshape(width, fan_in)
        bias = theta[b_in]
        outgoing = theta[w_out].reshape(fan_out, width)
        if arch.activation == "tanh":
            factor = rng.choice([-1.0, 1.0], size=width)
            incoming, bias, outgoing = incoming * factor[:, None], bias * factor, outgoing * factor
        else:
            factor = rng.uniform(0.3, 3.0, size=width)
            incoming, bias, outgoing = incoming * factor[:, None], bias * factor, outgoing / factor
        order = rng.permutation(width)
        theta[w_in], theta[b_in] = incoming[order].ravel(), bias[order]
        theta[w_out] = outgoing[:, order].ravel()
    return theta


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_canonical_form_is_invariant_under_the_symmetries(activation):
    arch = Architecture(n_inputs=3, n_outputs=2, depth=2, width=4, activation=activation)
    theta = initial_parameters(arch, np.arange(5), seed=0, init="torch_default")
    rng = np.random.default_rng(1)
    images = np.array([apply_symmetry(t, arch, rng) for t in theta])
    x = torch.randn(6, 3, dtype=torch.float64)
    # The images are the same functions ...
    torch.testing.assert_close(forward(torch.as_tensor(images), x, arch), forward(torch.as_tensor(theta), x, arch))
    # ... and have the same canonical form; distinct members keep distinct forms.
    np.testing.assert_allclose(canonicalize(images, arch), canonicalize(theta, arch), atol=1e-12)
    assert np.linalg.norm(canonicalize(theta, arch)[0] - canonicalize(theta, arch)[1]) > 0.1
    torch.testing.assert_close(
        forward(torch.as_tensor(canonicalize(theta, arch)), x, arch), forward(torch.as_tensor(theta), x, arch)
    )


def brute_force_groups(points, loss, loss_tol, dist_tol):
    n = len(points)
    labels = np.arange(n)
    for i in range(n):
        for j in range(n):
            close = np.linalg.norm(points[i] - points[j]) <= dist_tol and abs(loss[i] - loss[j]) <= loss_tol
            if close:
                labels[labels == labels[j]] = labels[i]
    return labels


def same_partition(a, b):
    return all(len(np.unique(b[a == value])) == 1 for value in np.unique(a)) and len(np.unique(a)) == len(np.unique(b))


def test_grouping_agrees_with_all_pairs_brute_force():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 4)) * 2
    which = rng.integers(0, 6, size=120)
    points = centres[which] + rng.normal(scale=0.05, size=(120, 4))
    loss = which * 0.1 + rng.normal(scale=1e-4, size=120)
    # Two centres share a position but not a loss: the loss window must keep them apart.
    points[which == 5] = centres[0] + rng.normal(scale=0.05, size=((which == 5).sum(), 4))
    fast = group_endpoints(points, loss, loss_tol=1e-2, dist_tol=0.3)
    assert same_partition(fast, brute_force_groups(points, loss, 1e-2, 0.3))
    assert len(np.unique(fast)) == 6


def training_dataset(final_theta, loss, status):
    n, p = final_theta.shape
    zeros = np.zeros(n)
    return xr.Dataset(
        {
            "final_theta": (("member", "param"), final_theta),
            "loss": ("member", loss),
            "train_error": ("member", zeros),
            "test_error": ("member", loss * 2),
            "grad_norm": ("member", zeros),
            "status": ("member", status),
        },
        coords={"member": np.arange(n), "param": np.arange(p)},
    )


def test_catalog_is_ordered_by_basin_size_and_skips_unconverged_members():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2, activation="tanh")
    base = initial_parameters(arch, np.arange(2), seed=4, init="gaussian")
    rng = np.random.default_rng(0)
    which = np.array([0, 1, 1, 0, 1])
    images = np.array([apply_symmetry(base[k], arch, rng) for k in which])
    loss = np.where(which == 0, 0.2, 0.1)
    status = np.array([CONVERGED] * 4 + [BUDGET])
    minima = deduplicate_minima(training_dataset(images, loss, status), arch, loss_tol=1e-6, dist_tol=1e-6)
    np.testing.assert_array_equal(minima["minimum_of_member"].values, [1, 0, 0, 1, -1])
    np.testing.assert_array_equal(minima["n_members"].values, [2, 2])
    # Equal basin sizes are ordered by loss.
    np.testing.assert_allclose(minima["loss"].values, [0.1, 0.2])
    swept = minima["n_minima_at_tolerance"].values
    assert (np.diff(swept) <= 0).all()


def test_bad_tolerances_are_rejected():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2)
    with pytest.raises(ValueError, match="dist_tol=0"):
        deduplicate_minima(training_dataset(np.zeros((1, 9)), np.zeros(1), np.zeros(1)), arch, loss_tol=0, dist_tol=0)
