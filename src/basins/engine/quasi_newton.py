"""Quasi-Newton finish: members that spent their step budget, driven to a stationary point if a
smooth one is near.

First-order dynamics with a decaying step (Adam as the jamming literature runs it) can freeze
short of a minimum: the step has shrunk to nothing while the gradient is still far above the
test's tolerance. The finish hands such a member to L-BFGS with a strong-Wolfe line search on
the member's own loss, then to the Newton polish (:func:`basins.engine.polish.polish_minima`)
for the last digits. Where the loss is smooth near the member (a convex piecewise-quadratic
loss, a tanh network) both converge fast and the gradient test then decides the member as it
would have decided it at the end of its budget. Where the loss is not differentiable (the kinks
of a ReLU network) neither reaches the tolerance and the member stays where the finish left it,
undecided: the finish never decides anything itself, and a point it returns has a loss no
higher than where the member stood.

Known answer: a perceptron on random patterns, where Adam froze at gradient norms 1e-5 to
1e-3, ends at machine-zero loss (SAT) or at a minimum of positive loss with a gradient norm of
round-off (tests/test_quasi_newton.py, tests/test_jamming.py).
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
#: Newton steps after L-BFGS: from where L-BFGS stops, a handful reaches round-off.
_NEWTON_STEPS = 30


@dataclasses.dataclass(frozen=True)
class Finished:
    """Points after :func:`finish_by_quasi_newton` ``(member, param)`` and per member their
    loss, gradient norm and the L-BFGS iterations spent."""

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
    """Run L-BFGS, then Newton steps, from each row of ``theta``.

    Parameters
    ----------
    theta : ndarray, shape (member, param)
        Where the members stopped.
    member_energy : callable
        ``member_energy(i)`` is the loss of member ``i``, a map ``(1, param) -> (1,)`` (each
        member may have a landscape of its own, as the jamming sweep's training sets are).
    max_iterations : int
        L-BFGS iterations per member (each one or a few loss evaluations).
    grad_tol : float
        L-BFGS stops below a tenth of this gradient norm; the Newton polish then takes the
        gradient to round-off where the Hessian is regular.
    max_dense_params : int
        The Newton polish builds dense Hessians; above this many parameters it is skipped.
    """
    if max_iterations <= 0 or grad_tol < 0:
        raise ValueError(f"max_iterations={max_iterations} must be > 0 and grad_tol={grad_tol} >= 0")
    finished = Finished(theta.copy(), np.full(len(theta), np.nan), np.full(len(theta), np.nan),
                        np.zeros(len(theta), dtype=np.int64))
    for row in range(len(theta)):
        energy = member_energy(row)
        point, iterations = _lbfgs(energy, torch.as_tensor(theta[row], dtype=dtype, device=device),
                                   max_iterations=max_iterations, grad_tol=grad_tol)
        _, grad = energy_and_gradient(energy, point.unsqueeze(0))
        polished = polish_minima(
            point.unsqueeze(0).cpu().numpy(), grad.norm(dim=1).cpu().numpy(), np.array([CONVERGED]), energy,
            curvature_tol=0.0, newton_steps=_NEWTON_STEPS, max_dense_params=max_dense_params, device=device,
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
