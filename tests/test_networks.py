import numpy as np
import pytest
import torch

from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.networks import forward, smallest_hidden_preactivation


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
    from basins.landscapes.architecture import initial_scales

    arch = Architecture(n_inputs=5, n_outputs=2, depth=2, width=3, activation="tanh")
    theta = initial_parameters(arch, np.arange(20000), seed=1, init=init, init_scale=0.7)
    scales = initial_scales(arch, init=init, init_scale=0.7)
    np.testing.assert_allclose(theta.std(axis=0), scales, rtol=0.05, atol=1e-12)
    assert (scales == 0).sum() == 3 + 3 + 2  # the biases


def test_initial_scales_refuse_non_gaussian_initializations():
    from basins.landscapes.architecture import initial_scales

    with pytest.raises(ValueError, match="product of Gaussians"):
        initial_scales(Architecture(n_inputs=2, n_outputs=1, depth=1, width=2, activation="tanh"), init="orthogonal")


def test_the_smallest_hidden_preactivation_by_brute_force_and_on_a_kink():
    arch = Architecture(3, 1, 2, 4, "relu")
    theta = torch.as_tensor(initial_parameters(arch, np.arange(5), seed=0, init="kaiming"))
    x = torch.randn(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = []
    for member in theta:
        (w1, b1), (w2, b2) = [
            (member[w].view(fan_out, fan_in), member[b])
            for (fan_in, fan_out), (w, b) in list(zip(arch.layer_shapes, arch.layer_slices))[:2]
        ]
        first = x @ w1.T + b1
        second = torch.relu(first) @ w2.T + b2
        expected.append(min(first.abs().min(), second.abs().min()))
    torch.testing.assert_close(smallest_hidden_preactivation(theta, x, arch), torch.stack(expected))
    # A first-layer unit put exactly on its kink at sample 2; rows of nan (outside a member's
    # training set) are skipped, so hiding sample 2 from member 0 takes it off the kink again.
    w_slice, b_slice = arch.layer_slices[0]
    theta[:, b_slice.start] = -(theta[:, w_slice.start : w_slice.start + 3] @ x[2])
    on_kink = smallest_hidden_preactivation(theta, x, arch)
    assert (on_kink < 1e-15).all()
    hidden = x.expand(5, -1, -1).clone()
    hidden[0, 2] = torch.nan
    assert smallest_hidden_preactivation(theta, hidden, arch)[0] > 1e-6
    assert torch.isinf(smallest_hidden_preactivation(theta[:, :4], x, Architecture(3, 1, 0, 0, "relu"))).all()
