"""The hand-derived loss and gradient of the MLP objectives against autograd (float64)."""

import os

import numpy as np
import pytest
import torch

from basins.engine.curvature import dense_hessians, make_hvp
from basins.engine.dynamics import energy_and_gradient
from basins.landscapes.fused_mlp import (
    FusedMLPObjective,
    LabelFactors,
    has_hand_derived_hessian,
    hessians,
    loss_and_gradient,
)
from basins.landscapes.losses import LOSSES
from basins.landscapes.architecture import ACTIVATIONS, Architecture, initial_parameters
from basins.landscapes.objective import NetworkLoss, member_losses


# BASINS_TEST_DEVICE=cuda runs the torch pass's test on a GPU.
DEVICE = os.environ.get("BASINS_TEST_DEVICE", "cpu")


def problem(n_outputs, *, n_samples=13, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.standard_normal((n_samples, n_features)))
    if n_outputs == 1:
        y = torch.as_tensor(rng.choice([-1.0, 1.0], n_samples))
    else:
        y = torch.as_tensor(rng.integers(0, n_outputs, n_samples))
    return x, y


def autograd_reference(theta, x, y, arch, **options):
    return energy_and_gradient(lambda t: member_losses(t, x, y, arch, **options), theta)


def assert_close(fused, reference):
    for mine, theirs in zip(fused, reference):
        scale = theirs.abs().max()
        assert (mine - theirs).abs().max() <= 1e-10 * scale, float((mine - theirs).abs().max() / scale)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_loss_and_gradient_equal_autograd(loss, activation, bias, n_outputs):
    x, y = problem(n_outputs)
    # Margins and beta away from their defaults, so every factor of the losses is exercised.
    options = dict(loss=loss, margin=0.7, l2=1e-2, beta=3.0 if loss == "cross_entropy" else 1.0)
    for depth in (0, 1, 2):
        arch = Architecture(n_inputs=5, n_outputs=n_outputs, depth=depth, width=4, activation=activation, bias=bias)
        theta = torch.as_tensor(
            initial_parameters(arch, np.arange(7), seed=depth, init="torch_default", init_scale=2.0)
        )
        fused = FusedMLPObjective(arch, x, y, **options)(theta, None)
        assert fused[1].shape == theta.shape
        assert_close(fused, autograd_reference(theta, x, y, arch, **options))


@pytest.mark.parametrize("scale_below_one_unit", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_torch_pass_of_one_output_networks_equals_autograd(activation, scale_below_one_unit):
    # The networks the C kernel serves on the CPU (one output), by the torch pass itself, both
    # ways: below the output unit the backward pass keeps f'(z) delta and applies the output
    # weights to the small results (never forming their outer product with delta; a GPU's
    # default), or forms it (the CPU's). BASINS_TEST_DEVICE=cuda runs it on a GPU, where tanh is
    # ATen's own (one kernel) instead of 2 sigmoid(2 z) - 1.
    x, y = (t.to(DEVICE) for t in problem(1))
    options = dict(loss="cross_entropy", margin=0.7, l2=1e-2, beta=3.0)
    for depth in (1, 2, 3):
        arch = Architecture(n_inputs=5, n_outputs=1, depth=depth, width=6, activation=activation)
        theta = torch.as_tensor(initial_parameters(arch, np.arange(9), seed=depth, init="gaussian"), device=DEVICE)
        labels = LabelFactors(arch, y, options["loss"], options["beta"], x.dtype)
        fused = loss_and_gradient(
            theta, x, arch, labels, margin=0.7, l2=1e-2, scale_below_one_unit=scale_below_one_unit
        )
        assert_close(fused, autograd_reference(theta, x, y, arch, **options))


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_minibatches_of_each_member_equal_autograd(n_outputs):
    x, y = problem(n_outputs, n_samples=20)
    arch = Architecture(n_inputs=5, n_outputs=n_outputs, depth=2, width=3, activation="tanh")
    theta = torch.as_tensor(initial_parameters(arch, np.arange(4), seed=1, init="gaussian"))
    batch = torch.stack([torch.randperm(20, generator=torch.Generator().manual_seed(i))[:6] for i in range(4)])
    options = dict(loss="cross_entropy", margin=1.0, l2=1e-3)
    fused = FusedMLPObjective(arch, x, y, **options)(theta, batch)
    for member in range(4):
        rows = batch[member]
        reference = autograd_reference(theta[member : member + 1], x[rows], y[rows], arch, **options)
        assert_close((fused[0][member : member + 1], fused[1][member : member + 1]), reference)


def test_strongly_misclassified_points_follow_softplus_linear_branch():
    """softplus(z) is z above z = 20 in torch; its derivative there is exactly 1, as autograd's."""
    x, y = problem(1)
    arch = Architecture(n_inputs=5, n_outputs=1, depth=1, width=4, activation="tanh")
    theta = torch.as_tensor(initial_parameters(arch, np.arange(5), seed=2, init="gaussian", init_scale=30.0))
    options = dict(loss="cross_entropy", margin=1.0, l2=0.0, beta=8.0)
    fused = FusedMLPObjective(arch, x, y, **options)(theta, None)
    assert_close(fused, autograd_reference(theta, x, y, arch, **options))


def test_unknown_losses_and_bad_beta_are_refused():
    x, y = problem(1)
    arch = Architecture(n_inputs=5, n_outputs=1, depth=1, width=2)
    with pytest.raises(ValueError, match="loss"):
        FusedMLPObjective(arch, x, y, loss="l1")
    with pytest.raises(ValueError, match="beta"):
        FusedMLPObjective(arch, x, y, loss="cross_entropy", beta=0.0)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("depth", [0, 1])
def test_hand_derived_hessians_equal_autograd(loss, activation, bias, depth):
    x, y = problem(1)
    options = dict(loss=loss, margin=0.7, l2=1e-2, beta=3.0 if loss == "cross_entropy" else 1.0)
    arch = Architecture(n_inputs=5, n_outputs=1, depth=depth, width=4, activation=activation, bias=bias)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(6), seed=depth, init="torch_default", init_scale=2.0))
    mine = hessians(theta, x, y, arch, **options)
    reference = dense_hessians(make_hvp(lambda t: member_losses(t, x, y, arch, **options)), theta)
    assert mine.shape == (6, arch.n_params, arch.n_params)
    scale = reference.abs().max()
    assert (mine - reference).abs().max() <= 1e-10 * scale, float((mine - reference).abs().max() / scale)


def test_hessians_refuse_networks_they_do_not_cover():
    x, y = problem(3)
    for arch in (Architecture(n_inputs=5, n_outputs=3, depth=1, width=2), Architecture(n_inputs=5, n_outputs=1, depth=2, width=2)):
        assert not has_hand_derived_hessian(arch)
        with pytest.raises(ValueError, match="Hessian"):
            hessians(torch.zeros(1, arch.n_params, dtype=torch.float64), x, y, arch, loss="mse")


def test_the_curvature_code_takes_a_network_loss_own_derivatives():
    """Gradients always, dense Hessians where they are written out; equal to autograd's."""
    x, y = problem(1)
    options = dict(loss="cross_entropy", margin=1.0, l2=1e-2)
    for depth, hand_derived in ((1, True), (2, False)):
        arch = Architecture(n_inputs=5, n_outputs=1, depth=depth, width=3)
        theta = torch.as_tensor(initial_parameters(arch, np.arange(4), seed=0, init="gaussian"))
        network_loss = NetworkLoss(arch, x, y, **options)
        hvp = make_hvp(network_loss)
        assert (hvp.dense is not None) == hand_derived
        plain = lambda t: member_losses(t, x, y, arch, **options)  # noqa: E731
        assert torch.allclose(dense_hessians(hvp, theta), dense_hessians(make_hvp(plain), theta), rtol=0, atol=1e-12)
        assert_close(energy_and_gradient(network_loss, theta), autograd_reference(theta, x, y, arch, **options))
