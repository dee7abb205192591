"""The NumPy outputs (the catalogue's fingerprints) are the engine's forward pass."""

import numpy as np
import pytest
import torch

from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.networks import forward
from basins.landscapes.losses import margins
from basins.landscapes.outputs import network_outputs, output_margins


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf", "linear"])
@pytest.mark.parametrize("depth, bias, n_outputs", [(0, True, 1), (1, True, 1), (2, False, 3), (3, True, 2)])
def test_numpy_outputs_equal_the_forward_pass(activation, depth, bias, n_outputs):
    arch = Architecture(n_inputs=5, n_outputs=n_outputs, depth=depth, width=4, activation=activation, bias=bias)
    theta = initial_parameters(arch, np.arange(6), seed=2, init="torch_default")
    theta += np.random.default_rng(1).normal(0, 0.3, theta.shape)  # biases off zero too
    x = np.random.default_rng(0).normal(size=(9, 5))
    expected = forward(torch.as_tensor(theta), torch.as_tensor(x), arch).numpy()
    outputs = network_outputs(theta, x, arch)
    assert outputs.shape == (6, 9, n_outputs)
    np.testing.assert_allclose(outputs, expected, rtol=1e-12, atol=1e-12)
    assert np.abs(expected).max() > 0.1  # not two zeros agreeing


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_numpy_margins_equal_the_losses_margins(n_outputs):
    rng = np.random.default_rng(3)
    outputs = rng.normal(size=(4, 50, n_outputs))
    y = rng.choice([-1.0, 1.0], size=50) if n_outputs == 1 else rng.integers(0, n_outputs, size=50)
    expected = margins(torch.as_tensor(outputs), torch.as_tensor(y, dtype=torch.float64 if n_outputs == 1 else torch.long))
    np.testing.assert_array_equal(output_margins(outputs, y), expected.numpy())
    assert (expected > 0).any() and (expected < 0).any()
