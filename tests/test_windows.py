"""The engine's windows (basins.engine.windows): many steps at a time, stopping as a mask.

Known answers: gradient descent on per-member quadratics, whose stopping steps are written in
closed form; and the step-by-step loop, which a windowed run must reproduce member by member.
BASINS_TEST_DEVICE=cuda runs them on a GPU, where the windows are captured as CUDA graphs.
"""

import math
import os

import numpy as np
import pytest
import torch

from basins.engine.descent import descend
from basins.engine.windows import MaskedSteps
from basins.labels import BUDGET, CONVERGED, DIVERGED
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.objective import data_tensors, make_objective

DEVICE = torch.device(os.environ.get("BASINS_TEST_DEVICE", "cpu"))


class Quadratics:
    """``0.5 c_m |theta|^2`` for member m: each member its own curvature ``c_m``."""

    capture_safe = True

    def __init__(self, curvature):
        self.curvature = curvature

    def __call__(self, theta, batch=None):
        grad = self.curvature.unsqueeze(1) * theta
        return 0.5 * (grad * theta).sum(1), grad

    def restricted_to(self, rows):
        return Quadratics(self.curvature[rows])


class WithoutCompiledLoop:
    """``objective`` without its loop in C (tests/test_native_steps.py tests that one), so that
    the windows here are :class:`MaskedSteps` on the CPU too."""

    def __init__(self, objective):
        self.objective, self.capture_safe = objective, objective.capture_safe

    def __call__(self, theta, batch=None):
        return self.objective(theta, batch)


def run(objective, starts, windowed, **options):
    engine = dict(
        dynamics="gd", lr=0.1, max_steps=400, grad_tol=1e-6, device=DEVICE, dtype=torch.float64, chunk=64,
        run_id=("windows",), progress_every_s=1e9, windowed=windowed,
    )
    return descend(objective, starts, np.arange(len(starts)), **{**engine, **options})


def test_gradient_descent_on_quadratics_stops_where_the_closed_form_says():
    # theta_k = (1 - lr c)^k theta_0: converged at the first k with c |1 - lr c|^k |theta_0| <= tol,
    # diverged at the first k with |1 - lr c|^k > threshold, the budget spent otherwise; the
    # curvatures put stops at many steps, inside windows and on their edges.
    lr, tol, threshold, max_steps = 0.1, 1e-6, 1e6, 400
    curvature = np.concatenate([np.linspace(0.5, 19.0, 40), [20.5, 22.0, 25.0], [0.01, 0.02]])
    starts = np.ones((len(curvature), 3))
    out = run(Quadratics(torch.as_tensor(curvature, device=DEVICE)), starts, windowed=True, lr=lr, grad_tol=tol,
              max_steps=max_steps, divergence_threshold=threshold)
    factor = np.abs(1 - lr * curvature)
    grad_norm_0 = curvature * math.sqrt(3)
    with np.errstate(divide="ignore"):
        converge_at = np.where(factor < 1, np.ceil(np.log(tol / grad_norm_0) / np.log(factor)), np.inf)
        diverge_at = np.where(factor > 1, np.floor(np.log(threshold) / np.log(factor)) + 1, np.inf)
    expected_steps = np.minimum(np.minimum(converge_at, diverge_at), max_steps)
    expected = np.where(converge_at <= max_steps, CONVERGED, np.where(diverge_at <= max_steps, DIVERGED, BUDGET))
    # Round-off can move a stop by one step where the closed form sits on the threshold.
    np.testing.assert_array_equal(out.status, expected)
    assert np.abs(out.steps - expected_steps).max() <= 1
    assert {CONVERGED, DIVERGED, BUDGET} <= set(out.status.tolist())
    assert len(np.unique(out.steps)) > 30
    stopped = out.status == CONVERGED
    at_stop = (1 - lr * curvature[stopped]) ** out.steps[stopped]
    np.testing.assert_allclose(out.final_theta[stopped], np.repeat(at_stop[:, None], 3, 1), rtol=1e-12)


@pytest.mark.parametrize("dynamics, lr", [("gd", 0.3), ("adam", 0.02), ("fire", 0.05), ("gradient_flow", 0.05)])
def test_windows_reproduce_the_step_by_step_loop(dynamics, lr):
    # A tanh network with members that converge at many different steps, and a few that the
    # budget stops: the windowed run must give every member the same status and step count,
    # and the same point to round-off.
    arch = Architecture(n_inputs=3, n_outputs=1, depth=1, width=4, activation="tanh")
    generator = np.random.default_rng(0)
    x, y = generator.normal(size=(30, 3)), np.sign(generator.normal(size=30))
    x_t, y_t = data_tensors(arch, x, y, dtype=torch.float64, device=DEVICE)
    objective = WithoutCompiledLoop(make_objective(arch, x_t, y_t, loss="mse", margin=1.0, l2=0.01))
    starts = initial_parameters(arch, np.arange(40), seed=1, init="gaussian")
    options = dict(dynamics=dynamics, lr=lr, max_steps=3000, grad_tol=1e-5, chunk=16)
    windowed, plain = (run(objective, starts, windowed, **options) for windowed in (True, False))
    np.testing.assert_array_equal(windowed.status, plain.status)
    np.testing.assert_array_equal(windowed.steps, plain.steps)
    assert len(np.unique(plain.steps)) > 10 and (plain.status == CONVERGED).any()
    # Adam's normalised step amplifies round-off near a minimum (on a GPU, where kernels block by
    # batch size, points then differ by ~5e-8 relative; statuses and steps still agree).
    rtol = 1e-6 if dynamics == "adam" else 1e-10
    np.testing.assert_allclose(windowed.final_theta, plain.final_theta, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(windowed.grad_norm, plain.grad_norm, rtol=max(rtol, 1e-8), atol=1e-14)
    np.testing.assert_allclose(windowed.loss_history, plain.loss_history, rtol=rtol)
    if dynamics == "gradient_flow":
        np.testing.assert_allclose(windowed.flow_time, plain.flow_time, rtol=1e-10)


def test_a_stopped_member_stays_where_it_stopped():
    # Step the masked window by hand: the member whose gradient is already small is frozen at
    # step 0 with its status, while the other moves on.
    curvature = torch.tensor([1.0, 1e-8], dtype=torch.float64, device=DEVICE)
    objective = Quadratics(curvature)
    theta = torch.ones(2, 2, dtype=torch.float64, device=DEVICE)
    loss, grad = objective(theta)
    tol = 1e-6

    def stops(theta, loss, grad, state):
        norm = grad.norm(dim=1)
        return torch.where(norm <= tol, CONVERGED, -1), norm

    from basins.engine.dynamics import make_stepper

    stepper = make_stepper("gd", lr=0.1)
    window = MaskedSteps(theta, stepper.init_state(theta, grad, None), loss, grad, 7, stepper=stepper,
                         objective=objective, stops=stops, capture=True)
    window.run(5)
    assert window.running.tolist() == [True, False]
    assert window.status.tolist() == [-1, CONVERGED] and window.stop_step.tolist() == [0, 7]
    np.testing.assert_allclose(window.theta[1].cpu(), [1.0, 1.0])
    np.testing.assert_allclose(window.theta[0].cpu(), [0.9**5] * 2, rtol=1e-14)
    assert window.state["steps"].tolist() == [5, 0] and int(window.step) == 12


def test_windows_are_refused_where_the_dynamics_reads_the_host():
    starts = np.ones((2, 2))
    objective = Quadratics(torch.ones(2, dtype=torch.float64, device=DEVICE))
    with pytest.raises(ValueError, match="windowed=True"):
        run(objective, starts, windowed=True, dynamics="sgd", batch_size=1, n_samples=2)
    with pytest.raises(ValueError, match="windowed=True"):
        run(objective, starts, windowed=True, dynamics="gd", satisfied=lambda theta, loss: loss < 0)


def test_an_interrupted_windowed_run_resumes_from_its_checkpoint(tmp_path, preempted_at):
    # Checkpoints are written between windows; the resumed run steps the same windows again.
    curvature = torch.as_tensor(np.linspace(0.5, 25.0, 30), device=DEVICE)
    starts = np.ones((30, 2))
    options = dict(max_steps=300, checkpoint_every_s=0.0)
    uninterrupted = run(Quadratics(curvature), starts, windowed=True, **options)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt), preempted_at(120):
        run(Quadratics(curvature), starts, windowed=True, checkpoint_path=checkpoint, **options)
    assert checkpoint.exists()
    resumed = run(Quadratics(curvature), starts, windowed=True, checkpoint_path=checkpoint, **options)
    np.testing.assert_array_equal(resumed.final_theta, uninterrupted.final_theta)
    np.testing.assert_array_equal(resumed.steps, uninterrupted.steps)
    np.testing.assert_array_equal(resumed.status, uninterrupted.status)
    assert not checkpoint.exists()


def test_windows_reproduce_the_jamming_sweeps_descent(monkeypatch):
    # Adam on nested prefixes of random patterns, each member its own training set, stopped
    # by the satisfied test (every Delta <= delta_tol) at small P and by the gradient or the
    # budget at large P: the windows run the test on every member (every_member) and must
    # stop each member where the step-by-step loop's host-side test does. (The loop in C, the
    # CPU's window for these networks, is tests/test_native_steps.py's.)
    from basins.data import prepare_dataset, train_test_arrays
    from basins.jamming import PrefixObjective, PrefixSatisfied

    monkeypatch.setattr(PrefixObjective, "compiled_steps", lambda self, *args, **options: None)

    x, y = train_test_arrays(prepare_dataset(kind="random_patterns", n_train=80, n_test=5, seed=3, n_features=6,
                                             normalize=True))[:2]
    arch = Architecture(6, 1, 1, 6, "relu")
    sizes = np.repeat([4, 10, 20, 35, 50, 80], 4)
    objective = PrefixObjective(arch, torch.as_tensor(x, device=DEVICE), torch.as_tensor(y, device=DEVICE),
                                torch.as_tensor(sizes, device=DEVICE), "quadratic_hinge", 1.0)
    satisfied = PrefixSatisfied(objective, delta_tol=1e-6)
    starts = initial_parameters(arch, np.arange(len(sizes)), seed=1, init="orthogonal")
    options = dict(dynamics="adam", lr=0.02, max_steps=2000, grad_tol=1e-8, satisfied=satisfied, chunk=10)
    windowed, plain = (run(objective, starts, windowed, **options) for windowed in (True, False))
    np.testing.assert_array_equal(windowed.status, plain.status)
    np.testing.assert_array_equal(windowed.steps, plain.steps)
    assert (plain.steps < 2000).sum() > 8 and len(np.unique(plain.steps)) > 8
    assert (plain.status == BUDGET).any()
    np.testing.assert_allclose(windowed.final_theta, plain.final_theta, rtol=1e-6, atol=1e-10)
