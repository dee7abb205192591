"""The C kernel of the networks' objective (one output, one or more hidden layers) against torch's
hand-derived pass."""

import logging
import os

import numpy as np
import pytest
import torch

from basins.landscapes import native_mlp
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.fused_mlp import FusedMLPObjective, hessians, loss_and_gradient
from basins.landscapes.objective import member_losses

if native_mlp.library() is None:
    # CI and the study run the kernel: there a missing compiler is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError("the native kernel did not build on CI (see the log line above)")
    pytest.skip("no C compiler: the network objective runs torch's pass", allow_module_level=True)


def problem(*, n_samples=37, n_features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.standard_normal((n_samples, n_features)))
    return x, torch.as_tensor(rng.choice([-1.0, 1.0], n_samples))


def torch_pass(objective, theta):
    return loss_and_gradient(theta, objective.x, objective.arch, objective.shared, margin=objective.margin,
                             l2=objective.l2, workspace=objective.workspace)


@pytest.mark.parametrize("loss", sorted(native_mlp.LOSS_CODES))
@pytest.mark.parametrize("activation", sorted(native_mlp.ACTIVATION_CODES))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_kernel_equals_torch_s_pass(loss, activation, bias, depth):
    x, y = problem()
    arch = Architecture(n_inputs=6, n_outputs=1, depth=depth, width=5, activation=activation, bias=bias)
    # Large weights too: saturated units and sigmoids far in their tails.
    theta = torch.as_tensor(initial_parameters(arch, np.arange(50), seed=1, init="torch_default", init_scale=6.0))
    for beta in (1.0, 3.0) if loss == "cross_entropy" else (1.0,):  # the kernel skips its division at 1
        objective = FusedMLPObjective(arch, x, y, loss=loss, margin=0.7, l2=1e-2, beta=beta)
        assert objective.native is not None
        for mine, theirs in zip(objective(theta, None), torch_pass(objective, theta)):
            assert mine.shape == theirs.shape
            scale = theirs.abs().max()
            assert (mine - theirs).abs().max() <= 1e-13 * scale, float((mine - theirs).abs().max() / scale)



@pytest.mark.parametrize("loss", sorted(native_mlp.LOSS_CODES))
@pytest.mark.parametrize("activation, depth", [("tanh", 1), ("relu", 2)])
def test_the_float32_kernel_equals_torch_s_float32_pass(loss, activation, depth):
    """The float32 build against torch's pass in float32: equal to float32's round-off, and a
    member's result the same bits whoever shares its call (shard invariance)."""
    x, y = (tensor.float() for tensor in problem())
    arch = Architecture(n_inputs=6, n_outputs=1, depth=depth, width=5, activation=activation)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(50), seed=1, init="torch_default", init_scale=6.0),
                            dtype=torch.float32)
    for beta in (1.0, 3.0) if loss == "cross_entropy" else (1.0,):
        objective = FusedMLPObjective(arch, x, y, loss=loss, margin=0.7, l2=1e-2, beta=beta)
        assert objective.native is not None and objective.native.dtype == torch.float32
        mine, theirs = objective(theta, None), torch_pass(objective, theta)
        for value, reference in zip(mine, theirs):
            assert value.dtype == torch.float32 and value.shape == reference.shape
            scale = reference.abs().max()
            assert (value - reference).abs().max() <= 1e-5 * scale, float((value - reference).abs().max() / scale)
        alone = objective(theta[7:8], None)
        assert torch.equal(alone[0], mine[0][7:8]) and torch.equal(alone[1], mine[1][7:8])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("loss, activation, where", [("mse", "relu", 0), ("hinge", "tanh", -1),
                                                     ("quadratic_hinge", "relu", 0), ("cross_entropy", "relu", 3)])
def test_a_nan_parameter_gives_a_nan_loss_as_in_torch_s_pass(dtype, loss, activation, where):
    """A NaN parameter (a first-layer weight, or the output bias) must give a NaN loss, which the
    stopping test calls diverged: a relu or hinge of NaN that came out 0 gave finite losses (a
    referee's case: converged at step 0 with gradient norm 0)."""
    x, y = (tensor.to(dtype) for tensor in problem())
    arch = Architecture(n_inputs=6, n_outputs=1, depth=1, width=5, activation=activation)
    objective = FusedMLPObjective(arch, x, y, loss=loss, l2=0.0)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(3), seed=1, init="torch_default"), dtype=dtype)
    theta[1, where] = float("nan")
    mine, theirs = objective(theta, None)[0], torch_pass(objective, theta)[0]
    assert torch.isnan(mine[1]) and torch.isnan(theirs[1])
    assert torch.isfinite(mine[[0, 2]]).all()


@pytest.mark.parametrize("loss, depth", [("quadratic_hinge", 1), ("hinge", 1), ("mse", 1), ("quadratic_hinge", 2)])
def test_each_member_s_mean_over_its_own_prefix_equals_the_jamming_sweep_s_torch_pass(loss, depth):
    """The jamming sweep's members fit nested prefixes of one pool: the kernel with ``sizes``
    equals torch's pass with each member's prefix as sample weights."""
    from basins.jamming import PrefixObjective

    x, y = problem(n_samples=41)
    arch = Architecture(n_inputs=6, n_outputs=1, depth=depth, width=5, activation="relu", bias=True)
    sizes = torch.tensor([1, 7, 20, 41, 33])
    objective = PrefixObjective(arch, x, y, sizes, loss, 1.0, l2=1e-3)
    assert objective._native is not None
    theta = torch.as_tensor(initial_parameters(arch, np.arange(5), seed=2, init="orthogonal"))
    reference = loss_and_gradient(theta, x, arch, objective._labels, margin=1.0, l2=1e-3, workspace=objective.workspace)
    for mine, theirs in zip(objective(theta, None), reference):
        assert (mine - theirs).abs().max() <= 1e-13 * theirs.abs().max()
    kernel = objective._native
    with pytest.raises(ValueError):
        kernel(theta, torch.tensor([0, 7, 20, 41, 33]))
    with pytest.raises(ValueError):
        kernel(theta, torch.tensor([1, 7, 20, 42, 33]))


@pytest.mark.parametrize("depth", [1, 2])
def test_a_member_s_prefix_result_does_not_depend_on_the_longer_prefixes_beside_it(depth):
    """Members run eight to a group through the group's longest prefix: the samples beyond a
    member's own weigh nothing, to the bit (alone, beside longer ones, in another lane)."""
    x, y = problem(n_samples=45)
    arch = Architecture(n_inputs=6, n_outputs=1, depth=depth, width=5, activation="relu", bias=True)
    kernel = native_mlp.kernel_for(arch, x, y, loss="quadratic_hinge", margin=1.0, l2=0.0, beta=1.0)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(11), seed=3, init="orthogonal"))
    sizes = torch.tensor([3, 45, 17, 29, 45, 1, 38, 9, 45, 22, 13])
    losses, grads = kernel(theta, sizes)
    for row in range(len(theta)):
        alone = kernel(theta[row : row + 1], sizes[row : row + 1])
        assert torch.equal(alone[0], losses[row : row + 1]) and torch.equal(alone[1], grads[row : row + 1])
    flipped = kernel(theta.flip(0), sizes.flip(0))
    assert torch.equal(flipped[0], losses.flip(0)) and torch.equal(flipped[1], grads.flip(0))


@pytest.mark.parametrize("depth, activation", [(1, "relu"), (1, "linear"), (2, "relu")])
@pytest.mark.parametrize("loss", ["mse", "quadratic_hinge"])
def test_a_member_s_prefix_result_does_not_see_samples_beyond_it_that_overflow(depth, activation, loss):
    """A sample far out (inputs 1e300) overflows the outputs of the members that fit it; a
    member whose prefix ends before it computes it too where the block of samples or a longer
    member beside it reaches it, and must not add it, not even as 0 x inf = NaN: its loss and
    gradient are those of its own samples, finite, alone and beside others."""
    x, y = problem(n_samples=45)
    x[30] = 1e300
    arch = Architecture(n_inputs=6, n_outputs=1, depth=depth, width=5, activation=activation, bias=True)
    kernel = native_mlp.kernel_for(arch, x, y, loss=loss, margin=1.0, l2=0.0, beta=1.0)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(3), seed=3, init="orthogonal"))
    sizes = torch.tensor([10, 45, 29])  # 29: the block of samples 28-31 holds sample 30
    losses, grads = kernel(theta, sizes)
    for row in (0, 2):
        alone = kernel(theta[row : row + 1], sizes[row : row + 1])
        assert torch.isfinite(alone[0]).all() and torch.isfinite(alone[1]).all()
        assert torch.equal(alone[0], losses[row : row + 1]) and torch.equal(alone[1], grads[row : row + 1])
        own = native_mlp.kernel_for(arch, x[: sizes[row]], y[: sizes[row]], loss=loss, margin=1.0, l2=0.0, beta=1.0)
        np.testing.assert_allclose(own(theta[row : row + 1])[0], alone[0], rtol=1e-14)


def test_members_are_split_over_threads_by_their_evaluations():
    """A thread takes at least EVALUATIONS_PER_THREAD member-evaluations and a whole group of
    the kernel's lanes."""
    assert native_mlp._blocks(16, 2) == [(0, 16)]  # one evaluation of 16 members: not worth a hand-off
    assert native_mlp._blocks(16, 2, evaluations_each=15) == [(0, 8), (8, 16)]  # a window of 15 steps
    assert native_mlp._blocks(3, 8, evaluations_each=1000) == [(0, 1), (1, 2), (2, 3)]
    # whole groups of the kernel's lanes: 8 members of one group stay on one thread
    assert native_mlp._blocks(8, 2, evaluations_each=1000, lanes=8) == [(0, 8)]
    assert native_mlp._blocks(20, 2, evaluations_each=1000, lanes=8) == [(0, 8), (8, 20)]
    assert native_mlp._blocks(20, 2, evaluations_each=1000, lanes=4) == [(0, 8), (8, 20)]
    assert native_mlp._blocks(1000, 1, evaluations_each=1000) == [(0, 1000)]


@pytest.mark.parametrize("depth", [1, 3])
def test_a_member_s_result_does_not_depend_on_the_others_or_the_threads(depth):
    """Shard invariance: a member's loss and gradient are the same bits alone, in a block of
    others, and with the members split between threads."""
    x, y = problem(n_samples=61)
    arch = Architecture(n_inputs=6, n_outputs=1, depth=depth, width=7, activation="tanh")
    objective = FusedMLPObjective(arch, x, y, loss="cross_entropy", margin=1.0, l2=1e-2)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(300), seed=2, init="gaussian"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert len(native_mlp._blocks(len(theta), 3)) == 3
        split_losses, split_grads = objective(theta, None)
        torch.set_num_threads(1)
        whole_losses, whole_grads = objective(theta, None)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(split_losses, whole_losses) and torch.equal(split_grads, whole_grads)
    for rows in (slice(117, 118), slice(100, 140), torch.arange(len(theta) - 1, -1, -1)):
        losses, grads = objective(theta[rows], None)
        assert torch.equal(losses, whole_losses[rows]) and torch.equal(grads, whole_grads[rows])


@pytest.mark.parametrize("loss", sorted(native_mlp.LOSS_CODES))
@pytest.mark.parametrize("activation", sorted(native_mlp.ACTIVATION_CODES))
@pytest.mark.parametrize("bias", [True, False])
def test_the_kernel_s_hessians_equal_the_hand_derived_ones_and_autograd(loss, activation, bias):
    """Known answer: the dense Hessians the C kernel writes (one hidden layer, float64) equal
    fused_mlp.hessians to round-off (large weights too: saturated units, sigmoids in their
    tails), and autograd's second derivatives of the loss (at moderate weights: in the tails both
    hand-derived forms take l'' as s (1 - s), autograd otherwise); a member's are the same bits
    alone, among others and split over threads. A sample count that is not a multiple of the
    kernel's block, a group of lanes left partly empty."""
    x, y = problem(n_samples=37)
    arch = Architecture(n_inputs=6, n_outputs=1, depth=1, width=5, activation=activation, bias=bias)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(13), seed=3, init="torch_default", init_scale=4.0))
    moderate = torch.as_tensor(initial_parameters(arch, np.arange(3), seed=4, init="gaussian"))
    for beta in (1.0, 3.0) if loss == "cross_entropy" else (1.0,):
        options = dict(loss=loss, margin=0.7, l2=1e-2, beta=beta)
        objective = FusedMLPObjective(arch, x, y, **options)
        assert objective.native is not None and objective.hessians == objective.native.hessians
        mine = objective.hessians(theta)
        theirs = hessians(theta, x, y, arch, **options)
        assert (mine - theirs).abs().max() <= 1e-13 * theirs.abs().max()
        assert torch.equal(mine, mine.transpose(1, 2))
        autograd = torch.stack([torch.autograd.functional.hessian(
            lambda t: member_losses(t[None], x, y, arch, **options)[0], row) for row in moderate])
        assert (objective.hessians(moderate) - autograd).abs().max() <= 1e-12 * autograd.abs().max()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        split = objective.hessians(theta)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(split, mine) and torch.equal(objective.hessians(theta[5:6]), mine[5:6])


def test_the_kernel_writes_no_hessians_it_does_not_cover():
    x, y = problem()
    deep = FusedMLPObjective(Architecture(6, 1, 2, 4, "tanh"), x, y, loss="mse")
    assert deep.native is not None and not deep.native.covers_hessians and deep.hessians is None
    with pytest.raises(ValueError, match="one hidden layer"):
        deep.native.hessians(torch.zeros(2, deep.arch.n_params, dtype=torch.float64))
    single = FusedMLPObjective(Architecture(6, 1, 1, 4, "tanh"), x.float(), y.float(), loss="mse")
    assert single.native is not None and not single.native.covers_hessians and single.hessians is not single.native.hessians


@pytest.mark.parametrize(
    "arch, dtype, beta",
    [(Architecture(6, 1, 0, 0, "tanh"), torch.float64, 1.0), (Architecture(6, 1, 1, 4, "erf"), torch.float64, 1.0),
     (Architecture(6, 3, 1, 4, "tanh"), torch.float64, 1.0), (Architecture(6, 1, 1, 4, "tanh"), torch.float16, 1.0),
     (Architecture(6, 1, 1, 4, "tanh"), torch.float64, torch.tensor(2.0))],
)
def test_networks_the_kernel_does_not_cover_run_torch_s_pass(arch, dtype, beta):
    x, y = problem()
    if arch.n_outputs > 1:
        y = (y > 0).long()
    objective = FusedMLPObjective(arch, x.to(dtype), y if arch.n_outputs > 1 else y.to(dtype),
                                  loss="cross_entropy", beta=beta)
    assert objective.native is None


def test_minibatches_run_torch_s_pass():
    x, y = problem()
    arch = Architecture(6, 1, 1, 4, "tanh")
    objective = FusedMLPObjective(arch, x, y, loss="mse")
    theta = torch.as_tensor(initial_parameters(arch, np.arange(3), seed=0, init="gaussian"))
    batch = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    losses, _ = objective(theta, batch)
    expected = torch.stack([objective(theta[i : i + 1], None)[0][0] for i in range(3)])
    assert not torch.allclose(losses, expected)  # each member's own three samples, not all


def test_the_library_is_built_once_and_kept_in_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BASINS_NATIVE_CACHE", str(tmp_path))
    native_mlp.library.cache_clear()
    try:
        assert native_mlp.library() is not None
        (built,) = tmp_path.glob("native_mlp-*.so")
        stamp = built.stat().st_mtime_ns
        native_mlp.library.cache_clear()
        assert native_mlp.library() is not None
        assert [path.name for path in tmp_path.iterdir()] == [built.name] and built.stat().st_mtime_ns == stamp
    finally:
        native_mlp.library.cache_clear()


@pytest.mark.parametrize("setting", [{"BASINS_NATIVE": "0"}, {"CC": "no-such-compiler"}])
def test_without_the_kernel_the_objective_is_torch_s_pass(setting, tmp_path, monkeypatch, caplog):
    """Switched off, or with no compiler, the objective falls back to torch's pass (logged)."""
    monkeypatch.setenv("BASINS_NATIVE_CACHE", str(tmp_path))
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    x, y = problem()
    arch = Architecture(6, 1, 1, 4, "tanh")
    native_mlp.library.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="basins.landscapes.native_mlp"):
            objective = FusedMLPObjective(arch, x, y, loss="cross_entropy", l2=1e-2)
        assert objective.native is None and not list(tmp_path.iterdir())
        assert ("BASINS_NATIVE=0" if "BASINS_NATIVE" in setting else "no-such-compiler") in caplog.text
        theta = torch.as_tensor(initial_parameters(arch, np.arange(4), seed=0, init="gaussian"))
        for mine, theirs in zip(objective(theta, None), torch_pass(objective, theta)):
            assert torch.equal(mine, theirs)
    finally:
        native_mlp.library.cache_clear()
