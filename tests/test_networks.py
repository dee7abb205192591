import numpy as np
import pytest
import torch

from basins.landscapes.networks import Architecture, forward, initial_parameters


@pytest.mark.parametrize("depth, activation, bias", [(0, "tanh", True), (1, "relu", False), (3, "erf", True)])
def test_forward_matches_torch_nn_for_every_member(depth, activation, bias):
    arch = Architecture(n_inputs=4, n_outputs=3, depth=depth, width=5, activation=activation, bias=bias)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(3), seed=0, init="torch_default"))
    x = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    batched = forward(theta, x, arch)
    act = {"tanh": torch.nn.Tanh(), "relu": torch.nn.ReLU()}.get(activation)
    for member in range(3):
        h = x
        for index, ((fan_in, fan_out), (w, b)) in enumerate(zip(arch.layer_shapes, arch.layer_slices)):
            h = h @ theta[member, w].view(fan_out, fan_in).T + (theta[member, b] if b is not None else 0)
            if index < depth:
                h = act(h) if act is not None else torch.erf(h)
        torch.testing.assert_close(batched[member], h)
    # Per-member inputs (minibatches) give the same result as shared ones.
    torch.testing.assert_close(forward(theta, x.expand(3, 7, 4), arch), batched)


def test_parameter_counts():
    arch = Architecture(n_inputs=10, n_outputs=1, depth=2, width=4)
    assert arch.n_weights == 10 * 4 + 4 * 4 + 4
    assert arch.n_params == arch.n_weights + 4 + 4 + 1


def test_a_member_starts_at_the_same_point_whatever_the_shard():
    arch = Architecture(n_inputs=3, n_outputs=1, depth=1, width=4)
    whole = initial_parameters(arch, np.arange(6), seed=5, init="orthogonal")
    part = initial_parameters(arch, np.arange(3, 6), seed=5, init="orthogonal")
    np.testing.assert_array_equal(whole[3:], part)


def test_orthogonal_init_has_orthonormal_rows_or_columns():
    arch = Architecture(n_inputs=3, n_outputs=1, depth=1, width=5, bias=False)
    theta = initial_parameters(arch, [0], seed=1, init="orthogonal")
    w = theta[0, arch.layer_slices[0][0]].reshape(5, 3)
    np.testing.assert_allclose(w.T @ w, np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(activation="softsign"), "activation='softsign'"),
        (dict(depth=-1), "depth=-1"),
        (dict(width=0), "width=0"),
    ],
)
def test_bad_architectures_name_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        Architecture(**{**dict(n_inputs=2, n_outputs=1, depth=1, width=2), **options})


def test_an_empty_ensemble_has_empty_outputs():
    arch = Architecture(n_inputs=3, n_outputs=2, depth=2, width=4)
    out = forward(torch.zeros(0, arch.n_params, dtype=torch.float64), torch.zeros(5, 3, dtype=torch.float64), arch)
    assert out.shape == (0, 5, 2)


@pytest.mark.parametrize("init", ["gaussian", "kaiming"])
def test_initial_scales_are_the_spread_of_drawn_parameters(init):
    from basins.landscapes.networks import initial_scales

    arch = Architecture(n_inputs=5, n_outputs=2, depth=2, width=3, activation="tanh")
    theta = initial_parameters(arch, np.arange(20000), seed=1, init=init, init_scale=0.7)
    scales = initial_scales(arch, init=init, init_scale=0.7)
    np.testing.assert_allclose(theta.std(axis=0), scales, rtol=0.05, atol=1e-12)
    assert (scales == 0).sum() == 3 + 3 + 2  # the biases


def test_initial_scales_refuse_non_gaussian_initializations():
    from basins.landscapes.networks import initial_scales

    with pytest.raises(ValueError, match="product of Gaussians"):
        initial_scales(Architecture(n_inputs=2, n_outputs=1, depth=1, width=2, activation="tanh"), init="orthogonal")
