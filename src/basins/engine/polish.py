"""Newton polish: converged endpoints moved onto the minimum they stopped near.

A member stops when its gradient norm falls below ``grad_tol``, at a distance of about
``grad_tol / lambda`` from its minimum along each Hessian direction of curvature ``lambda``.
Along soft directions that distance is large (0.1 for ``grad_tol = 1e-5`` and
``lambda = 1e-4``), so two members of one minimum can stop further apart than the
deduplication tolerances and the number of minima would depend on ``grad_tol``. Newton steps on
the curved directions remove that distance to round-off: endpoints of one minimum then agree to
far below any tolerance, whatever ``grad_tol`` was.

Directions of curvature at most ``curvature_tol`` (flat directions of a minimum manifold,
rescalings) are left alone: along them there is no single minimum to move to. A step is kept
only if it lowers the gradient norm and does not raise the loss beyond round-off; otherwise the
member keeps its point, so a polish never moves a point to a worse one. Known answer: on a
quadratic the polish lands on the minimum in one step (tests/test_polish.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import numpy as np
import torch

from basins.engine.curvature import all_eigenvalues_above, cholesky_solve, dense_hessians, make_hvp
from basins.engine.dynamics import energy_and_gradient
from basins.labels import CONVERGED

log = logging.getLogger(__name__)

#: Backtracking halvings of a refused Newton step before the member is left where it is (a
#: short enough step along -H^+ g always lowers the gradient norm on the curved directions).
_HALVINGS = 12
#: A step from a kept Hessian decomposition that lowers the gradient norm by less than this
#: factor asks for a new decomposition (fresh ones gain far more near a minimum).
_SLOW = 10.0


@dataclasses.dataclass(frozen=True)
class Polished:
    """Points after :func:`polish_minima`, ``(member, param)``, and per member ``(member,)``
    their gradient norm, lowest Hessian eigenvalue (None where none was given) and the
    distance the polish moved them (nan: not polished)."""

    final_theta: np.ndarray
    grad_norm: np.ndarray
    lowest_eigenvalue: np.ndarray | None
    shift: np.ndarray


def polish_minima(
    final_theta: np.ndarray,
    grad_norm: np.ndarray,
    status: np.ndarray,
    energy: Callable[[torch.Tensor], torch.Tensor],
    *,
    lowest_eigenvalue: np.ndarray | None = None,
    curvature_tol: float,
    newton_steps: int,
    max_dense_params: int,
    stationary_tol: float = 0.0,
    device: torch.device,
    dtype: torch.dtype,
    chunk: int,
) -> Polished:
    """Newton-polish every converged member of a run (:class:`basins.engine.descent.Descent`).

    ``final_theta (member, param)``, ``grad_norm`` and ``status`` are where the members
    stopped; ``energy`` maps ``(member, param) -> (member,)`` (the final landscape). Up to
    ``newton_steps`` steps ``-sum_k (v_k . g / lambda_k) v_k`` over the Hessian eigenpairs with
    ``lambda_k > curvature_tol``; a member whose gradient norm is at most ``stationary_tol``
    stops once a Newton step no longer gains much (it is at the round-off floor: further steps
    would only trade round-off). Networks above ``max_dense_params`` parameters are not
    polished (their ``shift`` stays nan). Where ``lowest_eigenvalue`` is given it is recomputed
    at the polished points, and a polish that would make a minimum a saddle is undone; a nan
    there (not computed: the saddle check of training leaves it so where a Cholesky factor
    showed every eigenvalue above ``-curvature_tol``) is computed where that rule needs it and
    where the point is not polished. The inputs are left as they are.
    """
    if newton_steps < 0 or curvature_tol < 0:
        raise ValueError(f"newton_steps={newton_steps} and curvature_tol={curvature_tol} must be >= 0")
    n_members, n_params = final_theta.shape
    polished = Polished(
        final_theta.copy(), grad_norm.copy(), None if lowest_eigenvalue is None else lowest_eigenvalue.copy(),
        np.full(n_members, np.nan),
    )
    if n_params > max_dense_params:
        log.info("no Newton polish: %d parameters > max_dense_params=%d", n_params, max_dense_params)
        return polished
    hvp = make_hvp(energy)
    rows = np.flatnonzero(status == CONVERGED)
    if newton_steps == 0:
        return _with_lowest_eigenvalues(polished, rows, hvp, device=device, dtype=dtype, chunk=chunk)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        theta = torch.as_tensor(final_theta[part], dtype=dtype, device=device)
        newton = _newton(energy, hvp, theta, curvature_tol, newton_steps, stationary_tol)
        moved, norm, lowest = (t.cpu().numpy() for t in newton)
        if lowest_eigenvalue is not None:
            before = _known_where_needed(lowest_eigenvalue[part], lowest < -curvature_tol, final_theta[part], hvp,
                                         device=device, dtype=dtype)
            polished.lowest_eigenvalue[part] = before
            kept = ~((lowest < -curvature_tol) & (before >= -curvature_tol))
            part, moved, norm, lowest = part[kept], moved[kept], norm[kept], lowest[kept]
            polished.lowest_eigenvalue[part] = lowest
        polished.shift[part] = np.linalg.norm(moved - final_theta[part], axis=1)
        polished.final_theta[part] = moved
        polished.grad_norm[part] = norm
    if len(rows):
        log.info("Newton polish of %d points: gradient norm median %.2g -> %.2g, moved up to %.3g",
                 len(rows), np.median(grad_norm[rows]), np.median(polished.grad_norm[rows]),
                 np.nanmax(polished.shift[rows]))
    return _with_lowest_eigenvalues(polished, rows, hvp, device=device, dtype=dtype, chunk=chunk)


def _lowest_eigenvalues(hvp, theta):
    """The lowest eigenvalue ``(member,)`` of each member's dense Hessian at ``theta``."""
    return torch.linalg.eigvalsh(dense_hessians(hvp, theta))[:, 0]


def _known_where_needed(lowest, needed, points, hvp, *, device, dtype):
    """The lowest eigenvalues ``lowest`` with their nan computed at ``points`` where ``needed``."""
    lowest = lowest.copy()
    rows = np.flatnonzero(needed & np.isnan(lowest))
    if len(rows):
        theta = torch.as_tensor(points[rows], dtype=dtype, device=device)
        lowest[rows] = _lowest_eigenvalues(hvp, theta).cpu().numpy()
    return lowest


def _with_lowest_eigenvalues(polished, rows, hvp, *, device, dtype, chunk):
    """``polished`` with the lowest Hessian eigenvalue computed where it is nan among ``rows``
    (where lowest eigenvalues are kept at all)."""
    if polished.lowest_eigenvalue is None:
        return polished
    unknown = rows[np.isnan(polished.lowest_eigenvalue[rows])]
    for start in range(0, len(unknown), chunk):
        part = unknown[start : start + chunk]
        theta = torch.as_tensor(polished.final_theta[part], dtype=dtype, device=device)
        polished.lowest_eigenvalue[part] = _lowest_eigenvalues(hvp, theta).cpu().numpy()
    return polished


def _newton(energy, hvp, theta, curvature_tol, newton_steps, stationary_tol):
    """Polished points, their gradient norms and lowest Hessian eigenvalues.

    A chord Newton method: a member's Hessian is decomposed anew only when a step from its last
    decomposition was refused or gained less than a factor :data:`_SLOW` in gradient norm. Over
    the polish's short distances the Hessian barely changes, so one decomposition serves several
    steps (each gaining many digits) where a new one per step would cost a dense Hessian each.
    A member leaves once a step from a Hessian taken at its own point is refused (it then sits
    on its minimum to round-off, or no Newton step helps), or gains less than :data:`_SLOW` at a
    gradient norm already at most ``stationary_tol`` (exact Newton steps gain far more until
    round-off stops them); the decomposition at its point gives its lowest eigenvalue.

    Where every eigenvalue of a Hessian exceeds ``curvature_tol`` (a minimum with weight decay:
    nearly every member) the step is -H^-1 g by a Cholesky factor, 7x cheaper than the
    eigendecomposition at 161 parameters and the same step; only the others are decomposed
    (:class:`_Decompositions`), and the lowest eigenvalue is then computed once, at the end.
    """
    loss, grad = energy_and_gradient(energy, theta)
    n_members = theta.shape[0]
    decompositions = _Decompositions(theta, curvature_tol)
    flags = dict(dtype=torch.bool, device=theta.device)
    at_point = torch.zeros(n_members, **flags)  # the kept decomposition was taken at the member's point
    renew = torch.ones(n_members, **flags)  # a new decomposition before the member's next step
    running = torch.ones(n_members, **flags)
    for _ in range(newton_steps):
        rows = torch.nonzero(running).flatten()
        if not len(rows):
            break
        new = rows[renew[rows]]
        if len(new):
            decompositions.renew(new, dense_hessians(hvp, theta[new]))
            at_point[new], renew[new] = True, False
        fresh = at_point[rows]
        before = grad[rows].norm(dim=1)
        step = decompositions.newton_step(rows, grad[rows])
        accepted = torch.zeros(len(rows), **flags)
        for _ in range(_HALVINGS + 1):
            trial = theta[rows] + step
            trial_loss, trial_grad = energy_and_gradient(energy, trial)
            better = (trial_grad.norm(dim=1) < before) & (trial_loss <= loss[rows] + _round_off(loss[rows]))
            better &= ~accepted
            chosen = rows[better]
            theta[chosen], loss[chosen], grad[chosen] = trial[better], trial_loss[better], trial_grad[better]
            accepted |= better
            if accepted.all():
                break
            step = step / 2
        slow = accepted & (grad[rows].norm(dim=1) > before / _SLOW)
        at_point[rows[accepted]] = False
        renew[rows[slow | (~accepted & ~fresh)]] = True
        at_floor = fresh & slow & (grad[rows].norm(dim=1) <= stationary_tol)
        running[rows[(~accepted & fresh) | at_floor]] = False
        at_point[rows[at_floor]] = True  # it moved by round-off only: its decomposition stands
    unknown = torch.nonzero(~(at_point & decompositions.by_eigenvalues)).flatten()
    if len(unknown):
        decompositions.lowest[unknown] = _lowest_eigenvalues(hvp, theta[unknown])
    return theta, grad.norm(dim=1), decompositions.lowest


class _Decompositions:
    """Each member's kept Hessian decomposition for :func:`_newton`: a Cholesky factor where
    every eigenvalue exceeds ``curvature_tol``, else the eigendecomposition (whose lowest
    eigenvalue is kept in ``lowest``)."""

    def __init__(self, theta: torch.Tensor, curvature_tol: float):
        n_members, n_params = theta.shape
        self.curvature_tol = curvature_tol
        self.factors = theta.new_empty((n_members, n_params, n_params))  # Cholesky factor or eigenvectors
        self.values = theta.new_empty((n_members, n_params))
        self.lowest = theta.new_full((n_members,), torch.nan)
        self.by_eigenvalues = torch.zeros(n_members, dtype=torch.bool, device=theta.device)

    def renew(self, rows: torch.Tensor, hessians: torch.Tensor) -> None:
        """Decompose the Hessians ``(row, param, param)`` of members ``rows``."""
        above = all_eigenvalues_above(hessians, self.curvature_tol)
        factor, failed = torch.linalg.cholesky_ex(hessians)
        curved = above & (failed == 0)  # every eigenvalue above curvature_tol
        self.factors[rows[curved]] = factor[curved]
        self.by_eigenvalues[rows] = ~curved
        rest = rows[~curved]
        if len(rest):
            self.values[rest], self.factors[rest] = torch.linalg.eigh(hessians[~curved])
            self.lowest[rest] = self.values[rest, 0]

    def newton_step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``-H^+ g`` for members ``rows``, restricted to the eigenvectors of curvature above
        ``curvature_tol`` (all of them where the factor is Cholesky's)."""
        step = torch.empty_like(grad)
        eigen = self.by_eigenvalues[rows]
        if len(rows) == len(self.factors) and not eigen.any():  # every member: no gathered copy of the factors
            return -cholesky_solve(self.factors, grad)
        if (~eigen).any():
            step[~eigen] = -cholesky_solve(self.factors[rows[~eigen]], grad[~eigen])
        if eigen.any():
            vectors, values = self.factors[rows[eigen]], self.values[rows[eigen]]
            along = torch.einsum("mpk,mp->mk", vectors, grad[eigen])
            inverse = torch.where(values > self.curvature_tol, 1.0 / values.clamp_min(self.curvature_tol), 0.0)
            step[eigen] = -torch.einsum("mpk,mk->mp", vectors, along * inverse)
        return step


def _round_off(loss):
    """Loss changes this small are round-off (64 ulps of the loss, and of 1)."""
    return 64 * torch.finfo(loss.dtype).eps * (1 + loss.abs())
