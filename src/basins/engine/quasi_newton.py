"""Quasi-Newton finish: members that spent their step budget, driven to a stationary point if
one is near.

First-order dynamics with a decaying step (Adam as the jamming literature runs it) can freeze
short of a minimum: the step has shrunk to nothing while the gradient is still far above the
test's tolerance. The finish hands such a member to BFGS on the member's own loss, then to the
Newton polish (:func:`basins.engine.polish.polish_minima`) for the last digits; the gradient
test then decides the member as it would have decided it at the end of its budget. The finish
never decides anything itself, and a point it returns has a loss no higher than where the
member stood.

The loss of a ReLU network is piecewise smooth: its gradient jumps across the kinks where a
hidden unit switches on a training point. A strong-Wolfe line search (L-BFGS as usually run)
asks for a small directional derivative at the step, which a kink across the line does not
have, so it stops on the first kink it meets, on a slope that is still descending. BFGS with
the weak-Wolfe line search of Lewis and Overton (2013, Math. Program. 141, 135: bisection and
doubling, accepting any point of sufficient decrease whose directional derivative has risen
by a fraction) steps across kinks and is their method for nonsmooth functions; it keeps the
full inverse-Hessian approximation, which stays useful where the gradient jumps (dense, so
below ``max_dense_params`` parameters; above it L-BFGS with the strong-Wolfe search of torch).
Where the minimum itself lies on a kink no gradient vanishes and the member stays undecided.

Known answers: Rosenbrock's function (1, 1) to round-off; on |x| + y^2 (minimum on a kink) the
loss falls to the kink and the gradient test is never passed; a perceptron on random patterns,
where Adam froze at gradient norms 1e-5 to 1e-3, ends at machine-zero loss (SAT) or at a
minimum of positive loss with a gradient norm of round-off; a ReLU valley whose floor is a kink
running down to a smooth minimum, where strong-Wolfe L-BFGS stalls on the kink and BFGS reaches
the minimum (tests/test_quasi_newton.py, tests/test_jamming.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import torch

from basins.engine.dynamics import energy_and_gradient
from basins.engine.polish import polish_minima
from basins.labels import CONVERGED

log = logging.getLogger(__name__)

#: Directions the L-BFGS memory keeps (the problems finished here have at most a few thousand
#: parameters; 50 pairs cost nothing beside the loss evaluations).
_HISTORY = 50
#: Newton steps after BFGS: from where BFGS stops, a handful reaches round-off.
_NEWTON_STEPS = 30
#: Loss evaluations one weak-Wolfe line search may spend (Lewis and Overton's bisections and
#: doublings); a search that finds no point in them ends the member's BFGS run.
_LINE_SEARCH_EVALUATIONS = 60
#: Weak-Wolfe constants: sufficient decrease, and the fraction the slope must rise by.
_ARMIJO, _CURVATURE = 1e-4, 0.9


@dataclasses.dataclass(frozen=True)
class Finished:
    """Points after :func:`finish_by_quasi_newton` ``(member, param)`` and per member their
    loss, gradient norm and the (L-)BFGS iterations spent."""

    final_theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    iterations: np.ndarray


def finish_by_quasi_newton(
    theta: np.ndarray,
    member_energy: Callable[[int], Callable[[torch.Tensor], torch.Tensor]],
    *,
    max_iterations: int,
    grad_tol: float,
    max_dense_params: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Finished:
    """Run BFGS (L-BFGS above ``max_dense_params``), then Newton steps, from each row of ``theta``.

    Parameters
    ----------
    theta : ndarray, shape (member, param)
        Where the members stopped.
    member_energy : callable
        ``member_energy(i)`` is the loss of member ``i``, a map ``(1, param) -> (1,)`` (each
        member may have a landscape of its own, as the jamming sweep's training sets are).
    max_iterations : int
        BFGS iterations per member (each one or a few loss evaluations).
    grad_tol : float
        BFGS stops below a tenth of this gradient norm; the Newton polish then takes the
        gradient to round-off where the Hessian is regular.
    max_dense_params : int
        BFGS and the Newton polish keep dense matrices of this size squared; above this many
        parameters L-BFGS replaces BFGS and the polish is skipped.
    """
    if max_iterations <= 0 or grad_tol < 0:
        raise ValueError(f"max_iterations={max_iterations} must be > 0 and grad_tol={grad_tol} >= 0")
    finished = Finished(theta.copy(), np.full(len(theta), np.nan), np.full(len(theta), np.nan),
                        np.zeros(len(theta), dtype=np.int64))
    for row in range(len(theta)):
        energy = member_energy(row)
        quasi_newton = _bfgs if theta.shape[1] <= max_dense_params else _lbfgs
        point, iterations = quasi_newton(energy, torch.as_tensor(theta[row], dtype=dtype, device=device),
                                         max_iterations=max_iterations, grad_tol=grad_tol)
        _, grad = energy_and_gradient(energy, point.unsqueeze(0))
        polished = polish_minima(
            point.unsqueeze(0).cpu().numpy(), grad.norm(dim=1).cpu().numpy(), np.array([CONVERGED]), energy,
            curvature_tol=0.0, newton_steps=_NEWTON_STEPS, max_dense_params=max_dense_params,
            stationary_tol=0.0, newton_region_only=False,  # an optimizer's finish: any minimum it reaches will do
            device=device,
            dtype=dtype, chunk=1,
        )
        with torch.no_grad():  # the polish returns the gradient norm at its point, not the loss
            loss = energy(torch.as_tensor(polished.final_theta, dtype=dtype, device=device))
        finished.final_theta[row] = polished.final_theta[0]
        finished.loss[row], finished.grad_norm[row] = float(loss[0]), float(polished.grad_norm[0])
        finished.iterations[row] = iterations
    if len(theta):
        log.info("quasi-Newton finish of %d members: %d at a gradient norm <= %g", len(theta),
                 int((finished.grad_norm <= grad_tol).sum()), grad_tol)
    return finished


def _bfgs(energy, start, *, max_iterations, grad_tol):
    """The end point of BFGS with a weak-Wolfe line search from ``start`` ``(param,)`` and its
    iteration count. It stops at a gradient norm below ``grad_tol / 10``, after
    ``max_iterations``, or where the line search finds no step (on a kink it cannot cross, or at
    round-off); every accepted step lowers the loss."""
    theta = start.clone()
    loss, grad = _loss_and_gradient(energy, theta)
    inverse_hessian = torch.eye(len(theta), dtype=theta.dtype, device=theta.device)
    iterations = 0
    while iterations < max_iterations and float(grad.norm()) > grad_tol / 10:
        direction = -(inverse_hessian @ grad)
        step = _weak_wolfe(energy, theta, loss, grad, direction)
        if step is None:
            break
        new_theta, new_loss, new_grad = step
        s, y = new_theta - theta, new_grad - grad
        curvature = float(s @ y)
        if curvature > 0:  # the weak-Wolfe condition makes this hold; round-off may not
            rho = 1.0 / curvature
            left = torch.eye(len(theta), dtype=theta.dtype, device=theta.device) - rho * torch.outer(s, y)
            inverse_hessian = left @ inverse_hessian @ left.T + rho * torch.outer(s, s)
        theta, loss, grad = new_theta, new_loss, new_grad
        iterations += 1
    return theta, iterations


def _weak_wolfe(energy, theta, loss, grad, direction):
    """Lewis and Overton's inexact line search: a step t along ``direction`` with sufficient
    decrease and a slope risen to at least ``_CURVATURE`` of the initial one, by doubling until
    the decrease fails and bisecting after; ``(theta, loss, grad)`` there, or None where
    ``direction`` does not descend or no such step is found."""
    slope = float(grad @ direction)
    if not slope < 0:
        return None
    low, high, t = 0.0, float("inf"), 1.0
    for _ in range(_LINE_SEARCH_EVALUATIONS):
        trial = theta + t * direction
        trial_loss, trial_grad = _loss_and_gradient(energy, trial)
        if not trial_loss <= loss + _ARMIJO * t * slope:  # nan counts as too high
            high = t
        elif float(trial_grad @ direction) < _CURVATURE * slope:
            low = t
        else:
            return trial, trial_loss, trial_grad
        t = 2.0 * low if high == float("inf") else 0.5 * (low + high)
    return None


def _loss_and_gradient(energy, theta):
    """Loss (a float) and gradient ``(param,)`` of ``energy`` at one point ``(param,)``."""
    loss, grad = energy_and_gradient(energy, theta.unsqueeze(0))
    return float(loss[0]), grad[0]


def _lbfgs(energy, start, *, max_iterations, grad_tol):
    """The end point of L-BFGS from ``start`` ``(param,)`` and its iteration count; a point of
    higher loss than ``start`` (a line search gone wrong on a kink) is not kept."""
    theta = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [theta], lr=1.0, max_iter=max_iterations, history_size=_HISTORY, tolerance_grad=grad_tol / 10,
        tolerance_change=0.0, line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        value = energy(theta.unsqueeze(0))[0]
        value.backward()
        return value

    with torch.enable_grad():
        start_loss = float(closure().detach())
        optimizer.step(closure)
    iterations = int(optimizer.state[theta].get("n_iter", 0))
    end = theta.detach()
    with torch.no_grad():
        if not float(energy(end.unsqueeze(0))[0]) <= start_loss:
            return start, iterations
    return end, iterations
