"""The engine's windows as loops in C (native_mlp.c: gd and Dormand-Prince gradient flow).

The reference is the torch steppers' step-by-step loop (``windowed=False``), member by member:
gd must reproduce it bit for bit (statuses, step counts, points, loss histories); the
adaptive gradient flow too while its step sizes are set by accuracy (100 steps: points to
1e-8), and to the precision of its stopping rule where a run ends at the stability limit
(statuses equal, points within grad_tol / curvature, losses to 1e-9). A member's result must
not depend on which others share its lane group or chunk (shard invariance), and a stopped
member must stay where it stopped.
"""

import math
import os

import numpy as np
import pytest
import torch

from basins.engine.descent import descend
from basins.engine.dynamics import ChebyshevFlow, _chebyshev_tables, make_stepper
from basins.engine.windows import CompiledSteps
from basins.labels import BUDGET, CONVERGED, DIVERGED
from basins.landscapes import native_mlp
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.objective import data_tensors, make_objective

if native_mlp.library() is None:
    if os.environ.get("CI"):
        raise RuntimeError("the native kernel did not build on CI (see the log line above)")
    pytest.skip("no C compiler: the network objective runs torch's pass", allow_module_level=True)

N_MEMBERS = 40


def network(loss="mse", activation="tanh", bias=True, l2=0.01, depth=1, dtype=torch.float64):
    arch = Architecture(n_inputs=3, n_outputs=1, depth=depth, width=4, activation=activation, bias=bias)
    generator = np.random.default_rng(0)
    x, y = generator.normal(size=(30, 3)), np.sign(generator.normal(size=30))
    x_t, y_t = data_tensors(arch, x, y, dtype=dtype, device="cpu")
    objective = make_objective(arch, x_t, y_t, loss=loss, margin=1.0, l2=l2)
    return objective, initial_parameters(arch, np.arange(N_MEMBERS), seed=1, init="gaussian")


def run(objective, starts, windowed, **options):
    engine = dict(
        dynamics="gd", lr=0.3, max_steps=3000, grad_tol=1e-5, device="cpu", dtype=torch.float64, chunk=16,
        run_id=("native steps",), progress_every_s=1e9, windowed=windowed,
    )
    return descend(objective, starts, np.arange(len(starts)), **{**engine, **options})


def test_the_compiled_loop_is_the_default_for_the_kernel_s_networks():
    objective, _ = network()
    stops = dict(grad_tol=1e-5, divergence_threshold=1e6)
    assert objective.compiled_steps(make_stepper("gd", lr=0.1), **stops) is not None
    assert objective.compiled_steps(make_stepper("gradient_flow", lr=0.1), **stops) is not None
    assert objective.compiled_steps(make_stepper("adam", lr=0.1, lr_decay_every=5, lr_decay_factor=0.5),
                                    **stops) is not None
    # No loop in C for these: momentum, gd's decaying step size, the Rosenbrock integrator, an
    # extra stopping test on a network's objective (the jamming sweep's objective has its own).
    assert objective.compiled_steps(make_stepper("gd", lr=0.1, momentum=0.9), **stops) is None
    assert objective.compiled_steps(make_stepper("gd", lr=0.1, lr_decay_every=5, lr_decay_factor=0.5), **stops) is None
    assert objective.compiled_steps(make_stepper("gd", lr=0.1), satisfied=lambda theta, loss: loss < 0, **stops) is None
    assert objective.compiled_steps(make_stepper("gradient_flow", lr=0.1, integrator="rosenbrock"), **stops) is None


@pytest.mark.parametrize("loss, activation, bias, depth", [
    ("mse", "tanh", True, 1), ("cross_entropy", "tanh", True, 1), ("quadratic_hinge", "tanh", False, 1),
    ("mse", "relu", True, 1), ("mse", "tanh", True, 2), ("quadratic_hinge", "relu", True, 3)])
def test_gradient_descent_in_c_reproduces_the_step_by_step_loop(loss, activation, bias, depth):
    # Members converge at many different steps, some spend the budget (the ReLU networks all of
    # it, stepping across kinks): statuses, step counts, points and loss histories bit for bit
    # (theta - lr grad rounded twice, as torch's two kernels round it: an FMA's one rounding
    # differs in the last bits, which the dynamics can amplify into another outcome); gradient
    # norms to the round-off of their sums' order.
    objective, starts = network(loss, activation, bias, depth=depth)
    compiled, plain = (run(objective, starts, windowed) for windowed in (None, False))
    np.testing.assert_array_equal(compiled.status, plain.status)
    np.testing.assert_array_equal(compiled.steps, plain.steps)
    if activation == "tanh" and depth == 1:  # the deeper networks spend the 3000 steps
        assert len(np.unique(plain.steps)) > 5 and (plain.status == CONVERGED).any()
    np.testing.assert_array_equal(compiled.final_theta, plain.final_theta)
    np.testing.assert_array_equal(compiled.loss_history, plain.loss_history)
    np.testing.assert_allclose(compiled.grad_norm, plain.grad_norm, rtol=1e-12)


@pytest.mark.parametrize("loss, activation, depth", [("mse", "tanh", 1), ("cross_entropy", "tanh", 1), ("mse", "relu", 2)])
def test_gradient_descent_in_c_reproduces_the_step_by_step_loop_in_float32(loss, activation, depth):
    """The float32 build (the objective and gd's loop): the same bit for bit as the step-by-step
    loop on the same kernel's evaluations and torch's float32 update; gradient norms to the
    round-off of their sums' order. A member whose norm lies within float32's rounding of
    grad_tol can stop a step apart in the two loops (a referee forced one by setting grad_tol to
    torch's norm; none in 2 000 members x 6 natural runs): float64's gap is 1e-16, float32's 1e-7."""
    objective, starts = network(loss, activation, depth=depth, dtype=torch.float32)
    assert objective.native is not None and objective.native.dtype == torch.float32
    stops = dict(grad_tol=1e-5, divergence_threshold=1e6)
    assert objective.compiled_steps(make_stepper("gradient_flow", lr=0.1), **stops) is None  # float64's only
    assert objective.chebyshev_stages is None
    compiled, plain = (run(objective, starts, windowed, dtype=torch.float32, grad_tol=1e-3, max_steps=1500)
                       for windowed in (None, False))
    np.testing.assert_array_equal(compiled.status, plain.status)
    np.testing.assert_array_equal(compiled.steps, plain.steps)
    if activation == "tanh":
        assert len(np.unique(plain.steps)) > 5 and (plain.status == CONVERGED).any()
    np.testing.assert_array_equal(compiled.final_theta, plain.final_theta)
    np.testing.assert_array_equal(compiled.loss_history, plain.loss_history)
    np.testing.assert_allclose(compiled.grad_norm, plain.grad_norm, rtol=1e-5)


def test_gradient_descent_in_c_diverges_where_the_step_by_step_loop_does():
    objective, starts = network()
    starts = starts * np.linspace(0.5, 6.0, N_MEMBERS)[:, None]  # large weights: some run away
    options = dict(lr=1.5, max_steps=400, divergence_threshold=30.0)
    compiled, plain = (run(objective, starts, windowed, **options) for windowed in (None, False))
    assert (plain.status == DIVERGED).sum() >= 3 and (plain.status != DIVERGED).any()
    np.testing.assert_array_equal(compiled.status, plain.status)
    np.testing.assert_array_equal(compiled.steps, plain.steps)
    np.testing.assert_array_equal(compiled.final_theta, plain.final_theta)


def window(objective, theta, dynamics, lr, n_steps, grad_tol, divergence_threshold):
    """A compiled window of ``n_steps`` steps from ``theta``, run."""
    loss, grad = objective(theta, None)
    stepper = make_stepper(dynamics, lr=lr)
    steps = objective.compiled_steps(stepper, grad_tol=grad_tol, divergence_threshold=divergence_threshold)
    out = CompiledSteps(theta, stepper.init_state(theta, grad, None), loss, grad, 0, run_steps=steps)
    out.run(n_steps)
    return out


@pytest.mark.parametrize("dynamics, lr, n_steps, dtype", [("gd", 0.3, 2500, torch.float64),
                                                          ("gd", 0.3, 2500, torch.float32),
                                                          ("adam", 0.02, 300, torch.float64)])
def test_a_window_leaves_each_member_with_the_loss_where_it_ends(dynamics, lr, n_steps, dtype):
    # The windows step the cross-entropy with its loss's lower bound and evaluate the loss itself
    # where a member leaves (native_mlp.c, exact_losses): at the window's end and where it stops.
    objective, starts = network("cross_entropy", dtype=dtype)
    out = window(objective, torch.as_tensor(starts, dtype=dtype), dynamics, lr, n_steps, 1e-3, 1e6)
    stopped = ~out.running
    assert 0 < stopped.sum() < N_MEMBERS and len(np.unique(out.stop_step[stopped])) > 5
    loss, grad = objective(out.theta, None)
    assert torch.equal(out.loss, loss) and torch.equal(out.grad, grad)


@pytest.mark.filterwarnings("ignore:overflow encountered in multiply")  # gd's flow time, lr x steps, past 1e308
def test_gd_in_c_diverges_where_the_cross_entropy_overflows_inside_a_window():
    # Output weights near the largest double on saturated tanh units (their slope exactly 0, so the
    # gradient stays finite): a step can take an output past it, the loss to inf with a finite
    # gradient norm. Inside a window the steps see only the loss's lower bound, which must stop
    # these members where the step-by-step loop, which evaluates the loss itself, does.
    objective, starts = network("cross_entropy", l2=0.0)
    starts[:, :12] *= 1e6  # the hidden units' inputs: |z| >> 19, tanh = +-1 exactly
    starts[:, 16:] = np.random.default_rng(1).uniform(-0.45e308, 0.45e308, size=(N_MEMBERS, 5))
    options = dict(lr=1.5e308, max_steps=20, divergence_threshold=1.79e308)
    whole = window(objective, torch.as_tensor(starts), "gd", options["lr"], options["max_steps"], 1e-5,
                   options["divergence_threshold"])
    plain = run(objective, starts, False, **options)
    by_the_loss = (plain.status == DIVERGED) & (plain.steps > 0) & np.isfinite(plain.grad_norm)
    assert by_the_loss.sum() >= 3 and (plain.status != DIVERGED).any()
    np.testing.assert_array_equal(np.where(whole.running, BUDGET, whole.status), plain.status)
    np.testing.assert_array_equal(np.where(whole.running, options["max_steps"], whole.stop_step), plain.steps)
    np.testing.assert_array_equal(whole.theta, plain.final_theta)


def test_gd_in_c_at_a_tiny_beta_diverges_where_the_cross_entropy_overflows():
    # At a tiny beta a sample's softplus(z) / beta can overflow while relu(z) / beta, weighed by
    # 1 / count, stays below a quarter of the largest double: there the steps must evaluate the
    # loss itself (an independent reviewer's case). Units saturated at tanh(100) = 1 (slope 0),
    # so one gd step moves the output bias alone, to near the largest double; the step-by-step
    # loop sees the loss at step 1 and stops the member there where it is inf.
    arch = Architecture(n_inputs=1, n_outputs=1, depth=1, width=3, activation="tanh", bias=True)
    x, y = torch.zeros(8, 1, dtype=torch.float64), torch.tensor([-1.0] + [1.0] * 7, dtype=torch.float64)
    kernel = native_mlp.kernel_for(arch, x, y, loss="cross_entropy", margin=1.0, l2=0.0, beta=1e-307)
    start = torch.tensor([[0.0] * 3 + [100.0] * 3 + [0.0] * 3 + [0.0]], dtype=torch.float64)
    loss, grad = kernel(start)
    outcomes = []
    for lr in np.linspace(1.7976931330e308, 1.7976931348623157e308, 9) / (-grad[0, -1].item() * 4):
        step_one = kernel(start - float(lr) * grad)[0]
        steps_in_c = kernel.compiled_steps(("gd", {"lr": float(lr)}), grad_tol=1e-300, divergence_threshold=math.inf)
        status, stop = torch.full((1,), -1), torch.zeros(1, dtype=torch.int64)
        with np.errstate(all="ignore"):
            steps_in_c(start.clone(), loss.clone(), grad.clone(), {"steps": torch.zeros(1, dtype=torch.int64)}, status, stop,
                torch.full((1,), math.nan, dtype=torch.float64), 0, 3)
        outcomes.append((bool(torch.isinf(step_one)), int(status), int(stop)))
    assert sum(overflows for overflows, _, _ in outcomes) >= 3
    for overflows, status, stop in outcomes:
        if overflows:
            assert (status, stop) == (DIVERGED, 1)


def test_gradient_flow_in_c_follows_the_step_by_step_loop_while_accuracy_sets_the_steps():
    # 100 steps from the starts: every step size, acceptance and point the torch integrator's,
    # up to the round-off its adaptive step sizes pass on (exp, log and sums rounded alike only
    # to the last bits).
    objective, starts = network()
    options = dict(dynamics="gradient_flow", lr=0.05, max_steps=100, grad_tol=1e-3)
    compiled, plain = (run(objective, starts, windowed, **options) for windowed in (None, False))
    assert (plain.status == BUDGET).all()
    np.testing.assert_array_equal(compiled.status, plain.status)
    np.testing.assert_allclose(compiled.final_theta, plain.final_theta, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(compiled.flow_time, plain.flow_time, rtol=1e-8)


def test_gradient_flow_in_c_ends_every_member_where_the_step_by_step_loop_does():
    # Run to convergence, where explicit steps sit at their stability limit and the round-off
    # of the step sizes changes how many steps a member takes: the same statuses, and every
    # member ends on the same minimum, within what the stopping rule resolves (|grad| <= 1e-5
    # at curvature >= l2 = 0.01: 1e-3), with the same loss (to |grad| 1e-3 = 1e-8).
    objective, starts = network()
    options = dict(dynamics="gradient_flow", lr=0.05, grad_tol=1e-5)
    compiled, plain = (run(objective, starts, windowed, **options) for windowed in (None, False))
    np.testing.assert_array_equal(compiled.status, plain.status)
    assert (plain.status == CONVERGED).sum() > N_MEMBERS // 2
    converged = plain.status == CONVERGED
    np.testing.assert_allclose(compiled.final_theta[converged], plain.final_theta[converged], atol=1e-3)
    assert np.abs(compiled.steps - plain.steps).max() <= 0.01 * plain.steps.max()
    losses = [objective(torch.as_tensor(out.final_theta[converged]), None)[0].numpy() for out in (compiled, plain)]
    np.testing.assert_allclose(*losses, rtol=0, atol=1e-8)


@pytest.mark.parametrize("depth, activation, loss", [(1, "tanh", "mse"), (2, "tanh", "cross_entropy"),
                                                    (1, "relu", "mse")])
@pytest.mark.parametrize("decay", [{}, {"lr_decay_every": 50, "lr_decay_factor": 0.5}])
def test_adam_in_c_follows_the_step_by_step_loop(depth, activation, loss, decay):
    # 300 steps, no member stopping: every point and loss the torch stepper's to round-off (the
    # bias corrections' powers are libm's in C, torch's own vector or scalar ones in its loop:
    # their last bits differ, and the dynamics pass them on; 6e-16 to 1.5e-11 relative here).
    objective, starts = network(loss, activation, depth=depth)
    options = dict(dynamics="adam", lr=0.02, max_steps=300, grad_tol=0.0, **decay)
    compiled, plain = (run(objective, starts, windowed, **options) for windowed in (None, False))
    assert (plain.status == BUDGET).all() and (compiled.status == BUDGET).all()
    scale = np.abs(plain.final_theta).max()
    np.testing.assert_allclose(compiled.final_theta, plain.final_theta, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(compiled.loss_history, plain.loss_history, rtol=1e-10)


@pytest.mark.parametrize("depth", [1, 2])
def test_the_jamming_sweep_s_adam_in_c_stops_each_member_by_its_own_prefix_and_satisfied_test(depth):
    # The sweep's descent (Adam with a decaying step on nested prefixes, stopped by every Delta
    # <= delta_tol) as a loop in C: a member reported converged meets the satisfied test or the
    # gradient test at its end point, one that spent the budget meets neither. Against the
    # step-by-step loop the same statuses for nearly every member (ReLU networks carry the
    # powers' round-off into a few members' stopping steps).
    from basins.data import prepare_dataset, train_test_arrays
    from basins.jamming import PrefixObjective, PrefixSatisfied

    x, y = (torch.as_tensor(a) for a in train_test_arrays(prepare_dataset(
        kind="random_patterns", n_train=80, n_test=5, seed=3, n_features=6, normalize=True))[:2])
    arch = Architecture(6, 1, depth, 6, "relu")
    sizes = torch.as_tensor(np.repeat([4, 10, 20, 35, 50, 80], 4))
    objective = PrefixObjective(arch, x, y, sizes, "quadratic_hinge", 1.0)
    satisfied = PrefixSatisfied(objective, delta_tol=1e-6)
    starts = initial_parameters(arch, np.arange(len(sizes)), seed=1, init="orthogonal")
    options = dict(dynamics="adam", lr=0.02, lr_decay_every=300, lr_decay_factor=0.5, max_steps=2000, grad_tol=1e-8,
                   satisfied=satisfied, chunk=10)
    assert objective.compiled_steps(make_stepper("adam", lr=0.02), grad_tol=1e-8, divergence_threshold=1e6,
                                    satisfied=satisfied) is not None
    compiled, plain = (run(objective, starts, windowed, **options) for windowed in (None, False))
    end = torch.as_tensor(compiled.final_theta)
    loss, grad = objective(end, None)
    met = satisfied(end, loss).numpy() | (grad.norm(dim=1) <= 1e-8).numpy()
    converged = compiled.status == CONVERGED
    assert converged.sum() > 8 and (compiled.status == BUDGET).any()
    assert met[converged].all() and not met[compiled.status == BUDGET].any()
    assert (compiled.status == plain.status).mean() >= 0.9
    assert (compiled.steps == plain.steps).mean() >= 0.75
    same = (compiled.steps == plain.steps) & converged & (plain.status == CONVERGED)
    assert same.sum() >= 8
    np.testing.assert_allclose(compiled.final_theta[same], plain.final_theta[same], atol=1e-6)


@pytest.mark.parametrize("dynamics, lr", [("gd", 0.3), ("gradient_flow", 0.05), ("adam", 0.02)])
def test_a_member_s_run_in_c_does_not_depend_on_the_members_beside_it(dynamics, lr):
    objective, starts = network()
    options = dict(dynamics=dynamics, lr=lr, max_steps=600)
    whole = run(objective, starts, None, chunk=N_MEMBERS, **options)
    alone = [run(objective, starts[rows], None, chunk=5, **options) for rows in (slice(0, 13), slice(13, None))]
    for name in ("final_theta", "status", "steps", "grad_norm", "flow_time"):
        np.testing.assert_array_equal(getattr(whole, name), np.concatenate([getattr(out, name) for out in alone]))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dynamics, lr", [("gd", 0.1), ("adam", 0.02)])
def test_a_member_s_run_on_its_own_prefix_does_not_depend_on_the_members_beside_it(dynamics, lr, threads):
    # The jamming sweep's members, each on its own first samples and stopped by the satisfied
    # test: members stop at very different steps, and a lane freed takes the next member with
    # its own sample count (native_mlp.c's lane queue; on three threads each takes a block of them),
    # so a member must end the same bits whichever lane, thread and neighbours it had (one
    # chunk of 24 against chunks of 5 on one thread).
    from basins.data import prepare_dataset, train_test_arrays
    from basins.jamming import PrefixObjective, PrefixSatisfied

    x, y = (torch.as_tensor(a) for a in train_test_arrays(prepare_dataset(
        kind="random_patterns", n_train=60, n_test=5, seed=3, n_features=6, normalize=True))[:2])
    arch = Architecture(6, 1, 1, 6, "relu")
    sizes = torch.as_tensor(np.tile([4, 60, 10, 35, 20, 50], 4))
    starts = initial_parameters(arch, np.arange(len(sizes)), seed=1, init="orthogonal")

    def run_on(rows, chunk):
        objective = PrefixObjective(arch, x, y, sizes[rows], "quadratic_hinge", 1.0)
        return run(objective, starts[rows], None, chunk=chunk, dynamics=dynamics, lr=lr, max_steps=1500,
                   grad_tol=1e-8, satisfied=PrefixSatisfied(objective, delta_tol=1e-6))

    parts = [run_on(rows, 5) for rows in (slice(0, 11), slice(11, None))]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        whole = run_on(slice(None), len(sizes))
    finally:
        torch.set_num_threads(before)
    assert len(set(whole.steps.tolist())) > 6  # members leave their lanes at many different steps
    for name in ("final_theta", "status", "steps", "grad_norm"):
        np.testing.assert_array_equal(getattr(whole, name), np.concatenate([getattr(out, name) for out in parts]))


@pytest.mark.parametrize("prefixes", [False, True])
def test_threads_that_share_one_float32_group_end_with_the_bits_of_one_thread(prefixes, monkeypatch):
    """Fewer float32 members than a group of lanes (sixteen with AVX-512) are one thread's work
    unless threads share the group: each sums one part of the samples (native_mlp.c's team), all
    add the parts in order. The run on two threads must be the one-thread run bit for bit
    (statuses, steps, points, losses, norms), also where members stop at many steps and take
    each other's lanes with their own sample counts and the satisfied test (the jamming sweep's
    members), and two threads must have run it together."""
    from basins.data import prepare_dataset, train_test_arrays
    from basins.jamming import PrefixObjective, PrefixSatisfied

    lanes = native_mlp.library(torch.float32).native_mlp_lanes()
    if prefixes:
        x, y = (torch.as_tensor(a, dtype=torch.float32) for a in train_test_arrays(prepare_dataset(
            kind="random_patterns", n_train=60, n_test=5, seed=3, n_features=6, normalize=True))[:2])
        arch = Architecture(6, 1, 1, 6, "relu")
        sizes = torch.as_tensor(np.tile([4, 60, 10, 35, 20, 50], 4)[: lanes - 2])
        starts = initial_parameters(arch, np.arange(len(sizes)), seed=1, init="orthogonal")

        def trained():
            objective = PrefixObjective(arch, x, y, sizes, "quadratic_hinge", 1.0)
            return run(objective, starts, None, chunk=len(sizes), lr=0.1, max_steps=1500, grad_tol=1e-6,
                       dtype=torch.float32, satisfied=PrefixSatisfied(objective, delta_tol=1e-4))
    else:
        objective, starts = network("cross_entropy", dtype=torch.float32)
        starts = starts[: lanes - 3]

        def trained():
            return run(objective, starts, None, chunk=len(starts), dtype=torch.float32, grad_tol=1e-3,
                       max_steps=1500)

    one_thread = trained()
    teams = []
    monkeypatch.setattr(native_mlp, "_pool", lambda n: teams.append(n) or native_mlp.ThreadPoolExecutor(n))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two_threads = trained()
    finally:
        torch.set_num_threads(threads)
    # one group of lanes: a pool is used only by a team (alone, the group runs in this thread)
    assert len(teams) >= 3 and set(teams) == {2}
    assert len(set(one_thread.steps.tolist())) > 4 and (one_thread.status == CONVERGED).any()
    for name in ("final_theta", "status", "steps", "grad_norm", "loss_history"):
        np.testing.assert_array_equal(getattr(two_threads, name), getattr(one_thread, name))


def test_two_callers_whose_float32_teams_run_at_once_both_finish(monkeypatch):
    """A team's threads wait for each other every evaluation, so two callers whose team calls
    were queued interleaved (a thread preempted between its two submissions) would each hold a
    worker of the shared pool waiting for a partner queued behind the other's, for ever (found by
    the session-58 reviewer). Forced here by a pause after every submission: both callers must
    finish, each with the bits of its run alone."""
    import threading
    import time

    lanes = native_mlp.library(torch.float32).native_mlp_lanes()

    def window(objective, starts):
        theta = torch.as_tensor(starts, dtype=torch.float32).contiguous()
        loss, grad = objective.native(theta)
        run_steps = objective.native.compiled_steps(("gd", {"lr": 0.1}), grad_tol=0.0, divergence_threshold=1e6)
        n = len(theta)
        status, stop_step = torch.full((n,), -1, dtype=torch.int64), torch.zeros(n, dtype=torch.int64)
        run_steps(theta, loss, grad, {"steps": torch.zeros(n, dtype=torch.int64)}, status, stop_step,
                  torch.zeros(n, dtype=torch.float32), 0, 40)
        return theta, loss

    objectives = [network(loss, dtype=torch.float32) for loss in ("mse", "cross_entropy")]
    alone = [window(objective, starts[: lanes - 3]) for objective, starts in objectives]
    submit = native_mlp.ThreadPoolExecutor.submit

    def submit_then_pause(self, *arguments, **options):
        queued = submit(self, *arguments, **options)
        time.sleep(0.002)
        return queued

    monkeypatch.setattr(native_mlp.ThreadPoolExecutor, "submit", submit_then_pause)
    results = [[], []]

    def caller(index):
        objective, starts = objectives[index]
        for _ in range(5):
            results[index].append(window(objective, starts[: lanes - 3]))

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        callers = [threading.Thread(target=caller, args=(index,), daemon=True) for index in range(2)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in callers), "two teams' calls hold each other's workers"
    finally:
        torch.set_num_threads(threads)
    for index in range(2):
        assert len(results[index]) == 5
        for theta, loss in results[index]:
            assert torch.equal(theta, alone[index][0]) and torch.equal(loss, alone[index][1])


def test_windows_in_c_take_torch_s_threads_and_give_them_back(monkeypatch):
    """While the windows run in C, torch's own operations between them run on one thread and
    the loop splits the members over the threads torch had (OpenMP workers left spinning by
    torch would share the cores with it); the run is the one-thread run bit for bit, and torch
    has its threads back afterwards, also when the run fails."""
    objective, _ = network()
    starts = initial_parameters(objective.arch, np.arange(100), seed=1, init="gaussian")
    one_thread = run(objective, starts, None, chunk=100, max_steps=300)
    seen = []
    blocks = native_mlp._blocks
    monkeypatch.setattr(native_mlp, "_blocks", lambda n, threads, *work: seen.append((threads, torch.get_num_threads()))
                        or blocks(n, threads, *work))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        three_threads = run(objective, starts, None, chunk=100, max_steps=300)
        assert torch.get_num_threads() == 3
        assert (3, 1) in seen and set(seen) <= {(3, 1)}  # every window: the kernel on 3, torch on 1
        monkeypatch.setattr(native_mlp, "_blocks", lambda *arguments: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            run(objective, starts, None, chunk=100, max_steps=300)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    for name in ("final_theta", "status", "steps", "grad_norm", "loss_history"):
        np.testing.assert_array_equal(getattr(three_threads, name), getattr(one_thread, name))


@pytest.mark.parametrize("dynamics", ["gd", "gradient_flow", "adam"])
def test_a_member_stopped_in_c_stays_where_it_stopped(dynamics):
    # Member 1 starts at a stationary point of its landscape (all weights 0: tanh(0) = 0 and a
    # zero output layer, MSE on labels of mean 0 up to l2): its gradient norm there is below the
    # test, so the window records it at its first step and leaves it there.
    objective, starts = network(l2=0.0)
    theta = torch.as_tensor(starts[:2]).clone()
    theta[1] = 0.0
    loss, grad = objective(theta, None)
    stepper = make_stepper(dynamics, lr=0.05)
    state = stepper.init_state(theta, grad, None)
    tol = float(grad[1].norm()) * 1.5
    assert float(grad[0].norm()) > tol
    window = CompiledSteps(theta, state, loss, grad, 7,
                           run_steps=objective.compiled_steps(stepper, grad_tol=tol, divergence_threshold=1e6))
    window.run(5)
    assert window.running.tolist() == [True, False]
    assert window.status.tolist() == [-1, CONVERGED] and window.stop_step.tolist() == [0, 7]
    assert torch.equal(window.theta[1], theta[1]) and torch.equal(window.grad[1], grad[1])
    assert not torch.equal(window.theta[0], theta[0])
    assert window.state["steps"].tolist() == [5, 0] and window.step == 12


@pytest.mark.parametrize("dynamics, lr", [("gradient_flow", 0.05), ("adam", 0.02)])
def test_an_interrupted_run_in_c_resumes_from_its_checkpoint(tmp_path, preempted_at, dynamics, lr):
    objective, starts = network()
    options = dict(dynamics=dynamics, lr=lr, max_steps=800, checkpoint_every_s=0.0)
    uninterrupted = run(objective, starts, None, **options)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt), preempted_at(300):
        run(objective, starts, None, checkpoint_path=checkpoint, **options)
    assert checkpoint.exists()
    resumed = run(objective, starts, None, checkpoint_path=checkpoint, **options)
    for name in ("final_theta", "status", "steps", "flow_time"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(uninterrupted, name))


def test_the_c_loop_refuses_buffers_it_cannot_read():
    objective, starts = network()
    theta = torch.as_tensor(starts[:4]).clone()
    loss, grad = objective(theta, None)
    stepper = make_stepper("gd", lr=0.1)
    run_steps = objective.compiled_steps(stepper, grad_tol=1e-5, divergence_threshold=1e6)
    state = stepper.init_state(theta, grad, None)
    outcome = (torch.full((4,), -1), torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="int64"):
        run_steps(theta, loss, grad, state, outcome[0].to(torch.int32), *outcome[1:], 0, 3)
    with pytest.raises(ValueError, match="contiguous"):
        run_steps(theta.t().contiguous().t(), loss, grad, state, *outcome, 0, 3)
    run_steps(theta, loss, grad, state, *outcome, 0, 3)  # as the window gives them
    assert state["steps"].tolist() == [3] * 4


def _torch_stages(objective, theta, slope, h, stages):
    """ChebyshevFlow's stages by its torch recursion (the kernel's reference)."""
    stepper = make_stepper("gradient_flow", lr=0.1, integrator="chebyshev")
    return stepper._stages(theta, slope, h, stages, lambda points: objective(points, None)[1])


@pytest.mark.parametrize("loss, activation", [("mse", "tanh"), ("cross_entropy", "tanh"), ("hinge", "relu")])
def test_chebyshev_stages_in_c_follow_the_torch_recursion(loss, activation):
    objective, starts = network(loss=loss, activation=activation)
    theta = torch.as_tensor(starts)
    slope = -objective(theta, None)[1]
    generator = torch.Generator().manual_seed(0)
    stages = torch.randint(1, 40, (len(theta),), generator=generator)
    h = 0.05 * stages.to(torch.float64) ** 2 * torch.rand(len(theta), generator=generator, dtype=torch.float64)
    stepper = make_stepper("gradient_flow", lr=0.1, integrator="chebyshev")
    in_c = stepper._stages(theta, slope, h, stages, None, objective.chebyshev_stages)
    reference = _torch_stages(objective, theta, slope, h, stages)
    # The same arithmetic; only the gradient's round-off differs (summed in another order).
    np.testing.assert_allclose(in_c.numpy(), reference.numpy(), rtol=1e-12, atol=1e-13)
    assert not torch.equal(in_c, theta)


def test_chebyshev_stages_in_c_of_a_member_do_not_depend_on_the_members_beside_it():
    objective, starts = network()
    theta = torch.as_tensor(starts)
    slope = -objective(theta, None)[1]
    stages = torch.arange(len(theta)) % 7 + 1
    h = torch.full((len(theta),), 0.5, dtype=torch.float64)
    tables = _chebyshev_tables(ChebyshevFlow.max_stages)
    together = objective.chebyshev_stages(theta, slope, h, stages, tables)
    for member in (0, 5, 13):
        alone = objective.chebyshev_stages(theta[member : member + 1], slope[member : member + 1],
                                           h[member : member + 1], stages[member : member + 1], tables)
        assert torch.equal(alone[0], together[member])


def test_a_chebyshev_run_with_stages_in_c_ends_where_the_torch_stages_end(monkeypatch):
    objective, starts = network(loss="cross_entropy")
    options = dict(dynamics="gradient_flow", dynamics_options={"integrator": "chebyshev"}, lr=0.1, rtol=1e-5, atol=1e-9,
                   max_steps=2000)
    in_c = run(objective, starts, None, **options)
    monkeypatch.setattr(type(objective), "chebyshev_stages", property(lambda self: None))
    in_torch = run(objective, starts, None, **options)
    np.testing.assert_array_equal(in_c.status, in_torch.status)
    assert (in_c.status == CONVERGED).all()
    np.testing.assert_allclose(in_c.final_theta, in_torch.final_theta, atol=1e-8)
