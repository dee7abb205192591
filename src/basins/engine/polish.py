"""Newton polish: converged endpoints moved onto the minimum they stopped near.

A member stops when its gradient norm falls below ``grad_tol``, at a distance of about
``grad_tol / lambda`` from its minimum along each Hessian direction of curvature ``lambda``.
Along soft directions that distance is large (0.1 for ``grad_tol = 1e-5`` and
``lambda = 1e-4``), so two members of one minimum can stop further apart than the
deduplication tolerances and the number of minima would depend on ``grad_tol``. Newton steps on
the curved directions remove that distance to round-off: endpoints of one minimum then agree to
far below any tolerance, whatever ``grad_tol`` was.

Directions of curvature at most ``curvature_tol`` (flat directions of a minimum manifold,
rescalings) are left alone: along them there is no single minimum to move to. A full Newton
step is kept only where it changes the loss as the quadratic model predicts, never a shortened
one. A member whose step from a Hessian at its own point fails that test, above the round-off
floor, has stopped where a polish would decide which minimum it reaches: it is returned where
it stopped and the flow carries it on (:func:`basins.training.confirm_minima`). So is a member
whose start is not in its polished point's bowl (:func:`_in_its_own_bowl`). Known answers
(tests/test_polish.py): on a quadratic the polish lands on the minimum in one step; on two
wells, where halved Newton steps jump past the flow's minimum into the other well, the member
is returned and the flow takes it to its own minimum; from starts where full steps as modelled
land past the barrier (two landscapes), the same.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable

import numpy as np
import torch

from basins.engine.block_low_rank import ShiftedHessians
from basins.engine.curvature import (
    all_eigenvalues_above, blocks_in_place_of_dense, cholesky_solve, dense_hessians, lowest_eigenvalues, make_hvp,
)
from basins.engine.dynamics import energy_and_gradient
from basins.labels import CONVERGED

log = logging.getLogger(__name__)

#: Halvings of a refused step before the member is left where it is, where the polish may
#: travel (``newton_region_only`` false: a short enough step along -H^+ g always lowers the
#: gradient norm on the curved directions).
_HALVINGS = 12
#: A step from a kept Hessian decomposition that lowers the gradient norm by less than this
#: factor asks for a new decomposition (fresh ones gain far more near a minimum).
_SLOW = 10.0
#: A Newton step is taken where it changes the loss by the quadratic model's prediction to
#: within this fraction of it ...
_MODEL_AGREEMENT = 0.5
#: ... where that prediction exceeds this many round-offs of the loss (below, the loss must not rise)
_MODEL_RESOLVED = 100.0
#: Points along the segment from a member's start to its polished point at which the loss must
#: fall (:func:`_in_its_own_bowl`).
_SEGMENT_POINTS = 16


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
    stationary_tol: float,
    newton_region_only: bool = True,
    device: torch.device,
    dtype: torch.dtype,
    chunk: int,
    dense_chunk: int | None = None,
) -> Polished:
    """Newton-polish every converged member of a run (:class:`basins.engine.descent.Descent`).

    ``final_theta (member, param)``, ``grad_norm`` and ``status`` are where the members
    stopped; ``energy`` maps ``(member, param) -> (member,)`` (the final landscape). Up to
    ``newton_steps`` steps ``-sum_k (v_k . g / lambda_k) v_k`` over the Hessian eigenpairs with
    ``lambda_k > curvature_tol``; a member whose gradient norm is at most ``stationary_tol``
    stops once a Newton step no longer gains much (it is at the round-off floor: further steps
    would only trade round-off). With ``newton_region_only`` (the catalogue's polish) a step is
    taken only where the quadratic model holds, and a member that leaves Newton's region above
    ``stationary_tol`` is returned unpolished (``shift`` nan), so that the flow, not the polish,
    decides which minimum it reaches; without it (an optimizer's finish) refused steps are
    halved until they lower the gradient norm. Above ``max_dense_params`` parameters the
    Hessians come as blocks plus low rank where the loss gives them so
    (:class:`_BlockLowRankDecompositions`), ``chunk`` members at a time; members with an
    eigenvalue at most ``curvature_tol`` (flat directions, which the polish leaves alone along
    the dense Hessian's eigenvectors) are then polished with dense Hessians where the loss writes
    them out (``dense_chunk`` at a time); other networks that large are not polished (their
    ``shift`` stays nan). Where ``lowest_eigenvalue`` is given it is recomputed
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
    hvp = make_hvp(energy)
    structured = blocks_in_place_of_dense(hvp, n_params, max_dense_params)
    if n_params > max_dense_params and structured is None:
        log.info("no Newton polish: %d parameters > max_dense_params=%d", n_params, max_dense_params)
        return polished
    lowest_of = functools.partial(lowest_eigenvalues, hvp, max_dense_params=max_dense_params)
    decompositions = (
        functools.partial(_Decompositions, hvp=hvp) if structured is None
        else functools.partial(_BlockLowRankDecompositions, hessians_of=structured)
    )
    rows = np.flatnonzero(status == CONVERGED)
    if newton_steps == 0:
        return _with_lowest_eigenvalues(polished, rows, lowest_of, device=device, dtype=dtype, chunk=chunk)

    def polish_part(part, make_decompositions):
        """Polish members ``part`` into ``polished``; those whose decomposition could not step
        them (a flat direction, blocks plus low rank) are returned."""
        theta = torch.as_tensor(final_theta[part], dtype=dtype, device=device)
        decomposed = make_decompositions(theta, curvature_tol)
        newton = _newton(energy, hvp, decomposed, lowest_of, theta, newton_steps, stationary_tol, newton_region_only)
        moved, norm, lowest, inside = (t.cpu().numpy() for t in newton)
        kept = inside
        if lowest_eigenvalue is not None:
            saddle = inside & (lowest < -curvature_tol)
            before = _known_where_needed(lowest_eigenvalue[part], saddle, final_theta[part], lowest_of,
                                         device=device, dtype=dtype)
            kept = inside & ~(saddle & (before >= -curvature_tol))
            polished.lowest_eigenvalue[part] = np.where(kept, lowest, before)
        flat = part[decomposed.flat.cpu().numpy()]
        part, moved, norm = part[kept], moved[kept], norm[kept]
        polished.shift[part] = np.linalg.norm(moved - final_theta[part], axis=1)
        polished.final_theta[part] = moved
        polished.grad_norm[part] = norm
        return flat

    flat = [polish_part(rows[start : start + chunk], decompositions) for start in range(0, len(rows), chunk)]
    flat = np.concatenate(flat) if flat else rows[:0]
    if len(flat) and hvp.dense is not None:
        # Their flat directions are left alone by the dense polish's eigenvectors.
        log.info("%d members with an eigenvalue at most curvature_tol: polished with dense Hessians", len(flat))
        dense_chunk = dense_chunk or chunk
        for start in range(0, len(flat), dense_chunk):
            polish_part(flat[start : start + dense_chunk], functools.partial(_Decompositions, hvp=hvp))
    if len(rows):
        shifts = polished.shift[rows]
        log.info("Newton polish of %d points: gradient norm median %.2g -> %.2g, %d polished (moved up to %.3g), "
                 "%d outside Newton's region returned", len(rows), np.median(grad_norm[rows]),
                 np.median(polished.grad_norm[rows]), np.isfinite(shifts).sum(),
                 np.nanmax(shifts) if np.isfinite(shifts).any() else 0.0, np.isnan(shifts).sum())
    return _with_lowest_eigenvalues(polished, rows, lowest_of, device=device, dtype=dtype, chunk=chunk)


def _known_where_needed(lowest, needed, points, lowest_of, *, device, dtype):
    """The lowest eigenvalues ``lowest`` with their nan computed at ``points`` where ``needed``."""
    lowest = lowest.copy()
    rows = np.flatnonzero(needed & np.isnan(lowest))
    if len(rows):
        theta = torch.as_tensor(points[rows], dtype=dtype, device=device)
        lowest[rows] = lowest_of(theta).cpu().numpy()
    return lowest


def _with_lowest_eigenvalues(polished, rows, lowest_of, *, device, dtype, chunk):
    """``polished`` with the lowest Hessian eigenvalue computed where it is nan among ``rows``
    (where lowest eigenvalues are kept at all)."""
    if polished.lowest_eigenvalue is None:
        return polished
    unknown = rows[np.isnan(polished.lowest_eigenvalue[rows])]
    for start in range(0, len(unknown), chunk):
        part = unknown[start : start + chunk]
        theta = torch.as_tensor(polished.final_theta[part], dtype=dtype, device=device)
        polished.lowest_eigenvalue[part] = lowest_of(theta).cpu().numpy()
    return polished


def _newton(energy, hvp, decompositions, lowest_of, theta, newton_steps, stationary_tol, newton_region_only):
    """Polished points, their gradient norms and lowest Hessian eigenvalues, and whether each
    was polished (else it is returned where it started).

    A chord Newton method: a member's Hessian is decomposed anew only when a step from its last
    decomposition was refused or gained less than a factor :data:`_SLOW` in gradient norm. Over
    the polish's short distances the Hessian barely changes, so one decomposition serves several
    steps (each gaining many digits) where a new one per step would cost a dense Hessian each.

    With ``newton_region_only`` a full step is taken where the quadratic model holds
    (:func:`_as_modelled`), never a shortened one. A member whose step from a Hessian taken at
    its own point fails that test stops: at a gradient norm of at most ``stationary_tol`` it
    sits on its minimum to round-off; above it (or still stepping after ``newton_steps``) the
    polish returns it to where it started, for the flow to carry on
    (:func:`basins.training.confirm_minima`). Backtracked steps can travel where the flow does
    not (tests/test_polish.py: two wells). At N = 401 (the digits replicates, width 40, seed 1)
    full steps as modelled polish 695 of the 1 016 members stopped by grad_tol 1e-4 at once, and
    133 of the 205 that the damped polish had moved with >= 20 Hessians, each onto the flow's
    minimum (Rosenbrock, rtol 1e-4, to gradient 1e-7). Without ``newton_region_only`` (an optimizer's
    finish) a refused step is halved until it lowers the gradient norm without raising the loss.

    Where every eigenvalue of a Hessian exceeds ``curvature_tol`` (a minimum with weight decay:
    nearly every member) the step is -H^-1 g by a Cholesky factor, 7x cheaper than the
    eigendecomposition at 161 parameters and the same step; only the others are decomposed
    (:class:`_Decompositions`), and the lowest eigenvalue is then computed once, at the end.
    """
    start = theta.clone()
    loss, grad = energy_and_gradient(energy, theta)
    start_loss, start_norm = loss.clone(), grad.norm(dim=1)
    n_members = theta.shape[0]
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
            decompositions.renew(new, theta[new])
            at_point[new], renew[new] = True, False
        fresh = at_point[rows]
        before = grad[rows].norm(dim=1)
        step = decompositions.newton_step(rows, grad[rows])
        if newton_region_only:
            trial = theta[rows] + step
            trial_loss, trial_grad = energy_and_gradient(energy, trial)
            taken = _as_modelled(loss[rows], step, grad[rows], trial_loss)
        else:
            trial, trial_loss, trial_grad, taken = _backtracked(energy, theta[rows], loss[rows], before, step)
        chosen = rows[taken]
        theta[chosen], loss[chosen], grad[chosen] = trial[taken], trial_loss[taken], trial_grad[taken]
        slow = taken & (grad[rows].norm(dim=1) > before / _SLOW)
        at_point[chosen] = False
        renew[rows[slow | (~taken & ~fresh)]] = True
        at_floor = fresh & slow & (grad[rows].norm(dim=1) <= stationary_tol)
        # Steps leave the gradient along flat directions as it is (to first order): where that
        # part alone exceeds stationary_tol no further step can get there (at N = 401, digits
        # draw 1, 43 of 44 such members ran out of steps, 800 dense eigendecompositions).
        stuck = fresh & slow & (decompositions.left_alone[rows] > stationary_tol)
        running[rows[(~taken & fresh) | at_floor | stuck]] = False
        at_point[rows[at_floor]] = True  # it moved by round-off only: its decomposition stands
    # Above stationary_tol (stopped by a refused step, or still stepping): returned.
    inside = grad.norm(dim=1) <= stationary_tol if newton_region_only else torch.ones_like(running)
    if newton_region_only:
        # Each step as modelled is not enough: a long one can land past a barrier where the loss
        # happens to have fallen by the model's amount (independent referee, session 32).
        checked = torch.nonzero(inside).flatten()
        own = _in_its_own_bowl(energy, hvp, start[checked], start_loss[checked], theta[checked], loss[checked])
        inside[checked[~own]] = False
        if (~own).any():
            log.info("%d polished points returned: their start lies outside the polished minimum's bowl", int((~own).sum()))
    theta[~inside] = start[~inside]
    unknown = torch.nonzero(inside & ~(at_point & decompositions.by_eigenvalues)).flatten()
    if len(unknown):
        decompositions.lowest[unknown] = lowest_of(theta[unknown])
    lowest = torch.where(inside, decompositions.lowest, torch.nan)  # returned: its caller's to compute
    return theta, torch.where(inside, grad.norm(dim=1), start_norm), lowest, inside


def _backtracked(energy, theta, loss, grad_norm, step):
    """Damped Newton steps from ``theta``: each member's step halved up to :data:`_HALVINGS`
    times until it lowers the gradient norm below ``grad_norm`` without raising the loss beyond
    round-off. The trial points, their losses and gradients, and which members took one."""
    taken = torch.zeros(len(theta), dtype=torch.bool, device=theta.device)
    point, point_loss, point_grad = theta.clone(), loss.clone(), torch.zeros_like(theta)
    for _ in range(_HALVINGS + 1):
        trial = theta + step
        trial_loss, trial_grad = energy_and_gradient(energy, trial)
        better = (trial_grad.norm(dim=1) < grad_norm) & (trial_loss <= loss + _round_off(loss)) & ~taken
        point[better], point_loss[better], point_grad[better] = trial[better], trial_loss[better], trial_grad[better]
        taken |= better
        if taken.all():
            break
        step = step / 2
    return point, point_loss, point_grad, taken


def _in_its_own_bowl(energy, hvp, start, start_loss, end, end_loss):
    """``(member,)``: whether each member's ``start`` lies in the bowl of the point ``end`` it was
    polished to: the loss falls all along the straight segment from one to the other (checked at
    :data:`_SEGMENT_POINTS` points: a rise is a barrier between them), and the loss at ``start``
    is what the quadratic model of ``end`` predicts, ``(d . H d) / 2`` above it with ``d`` the
    displacement and ``H`` the Hessian at ``end``, to within :data:`_MODEL_AGREEMENT` (the test
    of each step, :func:`_as_modelled`, read backwards from the minimum).

    Each full step that changes the loss as modelled from where it starts can still land past a
    barrier, where the loss happens to have fallen by the model's amount: on the known answer
    two wells (tests/test_polish.py) from x = -0.88 ... -0.85, on asymmetric Gaussian wells and on
    Mueller-Brown's surface (111 of 18 021 polished members of the session-32 referee's 1-D scan
    were so put on another minimum than the flow's; none with this check). Together they prove
    nothing either: on Mueller-Brown's surface one of the referee's eight crossings passes both
    (the segment falls all along, as the far minimum's model predicts, while the flow curves to
    another). A member that fails either is returned to the flow, which decides."""
    if not len(start):
        return torch.ones(0, dtype=torch.bool, device=start.device)
    displacement = start - end
    round_off = _round_off(start_loss)
    previous, falls = start_loss, torch.ones(len(start), dtype=torch.bool, device=start.device)
    for k in range(1, _SEGMENT_POINTS):
        with torch.no_grad():
            here = energy(start - displacement * (k / _SEGMENT_POINTS))
        falls &= here <= previous + round_off
        previous = here
    falls &= end_loss <= previous + round_off
    rise = 0.5 * (displacement * hvp(end, displacement)).sum(1)
    # Where the model's rise is below the loss's resolution, only a change beyond it can disagree.
    change, resolution = start_loss - end_loss, _MODEL_RESOLVED * round_off
    modelled = (change - rise).abs() <= torch.maximum(_MODEL_AGREEMENT * rise.abs(), resolution)
    return falls & modelled


def _as_modelled(loss, step, grad, trial_loss):
    """``(member,)``: the Newton step ``step`` changed the loss by the quadratic model's
    ``g . s / 2`` to within :data:`_MODEL_AGREEMENT` of it (relative), or, where the model's
    change is below :data:`_MODEL_RESOLVED` round-offs of the loss, did not raise it.

    A full step that overshoots into another well (or onto a slope beyond it) changes the loss
    by anything but the model's prediction. The gradient norm is no test: at N = 401 full steps
    from grad_tol 1e-4 raise it in most members while the loss falls as modelled (anharmonic
    soft directions feed the stiff ones): asking that it fall too polished 59 of 1 016 members
    at once, this test alone 695."""
    change, predicted, round_off = trial_loss - loss, 0.5 * (grad * step).sum(1), _round_off(loss)
    resolved = predicted.abs() > _MODEL_RESOLVED * round_off
    return torch.where(resolved, (change - predicted).abs() <= _MODEL_AGREEMENT * predicted.abs(), change <= round_off)


class _Decompositions:
    """Each member's kept Hessian decomposition for :func:`_newton`: a Cholesky factor where
    every eigenvalue exceeds ``curvature_tol``, else the eigendecomposition (whose lowest
    eigenvalue is kept in ``lowest``)."""

    def __init__(self, theta: torch.Tensor, curvature_tol: float, *, hvp):
        n_members, n_params = theta.shape
        self.curvature_tol, self.hvp = curvature_tol, hvp
        # Cholesky factor or eigenvectors; every member's is written by its first renewal, before
        # any solve reads it (the all-member solve included)
        self.factors = theta.new_empty((n_members, n_params, n_params))
        self.values = theta.new_empty((n_members, n_params))
        self.lowest = theta.new_full((n_members,), torch.nan)
        self.by_eigenvalues = torch.zeros(n_members, dtype=torch.bool, device=theta.device)
        self.shown_curved = torch.zeros(n_members, dtype=torch.bool, device=theta.device)
        self.flat = torch.zeros(n_members, dtype=torch.bool, device=theta.device)  # every member stepped
        # the norm of the gradient's part along the eigenvectors a member's last step left alone
        self.left_alone = theta.new_zeros(n_members)

    def renew(self, rows: torch.Tensor, theta: torch.Tensor) -> None:
        """Decompose the Hessians of members ``rows`` at their points ``theta (row, param)``.

        A member's first decomposition is screened (``H - curvature_tol I`` has a Cholesky
        factor: every eigenvalue above ``curvature_tol``); a later one of a member so shown
        factors ``H`` alone, one factorization instead of two (the damped polish of session 30
        renewed a member 13 times on average at N = 401, its factorizations 40 % of its
        time). Over the polish's
        moves its lowest eigenvalue stays above ``curvature_tol`` (1.8e-4 median against 1e-6
        there); where ``H`` has no factor any more it is eigendecomposed, and every polished
        member's lowest eigenvalue is computed at its end point (:func:`_newton`).
        """
        hessians = dense_hessians(self.hvp, theta)
        factor, failed = torch.linalg.cholesky_ex(hessians)
        curved = (failed == 0) & self.shown_curved[rows]
        screen = (failed == 0) & ~self.shown_curved[rows]
        if screen.all():  # every member's first decomposition: no gathered copy
            curved = all_eigenvalues_above(hessians, self.curvature_tol)
        elif screen.any():
            curved[screen] = all_eigenvalues_above(hessians[screen], self.curvature_tol)
        self.shown_curved[rows] = curved
        self.by_eigenvalues[rows] = ~curved
        if curved.all():
            self.factors.index_copy_(0, rows, factor)
        else:
            self.factors[rows[curved]] = factor[curved]
        rest = rows[~curved]
        if len(rest):
            self.values[rest], self.factors[rest] = torch.linalg.eigh(hessians[~curved])
            self.lowest[rest] = self.values[rest, 0]

    def newton_step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``-H^+ g`` for members ``rows``, restricted to the eigenvectors of curvature above
        ``curvature_tol`` (all of them where the factor is Cholesky's)."""
        step = torch.empty_like(grad)
        eigen = self.by_eigenvalues[rows]
        self.left_alone[rows] = 0.0  # a member now factored by Cholesky leaves nothing alone
        cholesky = rows[~eigen]
        if 3 * len(cholesky) > len(self.factors):
            # Solving every member's system reads each factor once; gathering a third of them
            # (a copy written and read again) costs as much.
            rhs = grad.new_zeros((len(self.factors), grad.shape[1]))
            rhs[cholesky] = grad[~eigen]
            step[~eigen] = -cholesky_solve(self.factors, rhs)[cholesky]
        elif len(cholesky):
            step[~eigen] = -cholesky_solve(self.factors[cholesky], grad[~eigen])
        if eigen.any():
            vectors, values = self.factors[rows[eigen]], self.values[rows[eigen]]
            along = torch.einsum("mpk,mp->mk", vectors, grad[eigen])
            kept = values > self.curvature_tol
            inverse = torch.where(kept, 1.0 / values.clamp_min(self.curvature_tol), 0.0)
            step[eigen] = -torch.einsum("mpk,mk->mp", vectors, along * inverse)
            self.left_alone[rows[eigen]] = torch.where(kept, 0.0, along).norm(dim=1)
        return step


class _BlockLowRankDecompositions:
    """:class:`_Decompositions` for Hessians given as blocks plus low rank (``hessians_of(theta)
    ->`` :class:`basins.engine.block_low_rank.BlockLowRankHessians`): each member's factored
    ``H`` (Woodbury) where no eigenvalue is counted at or below ``curvature_tol``. A member with
    one there (a flat or negative direction) gets no step (nan, refused by the step's test) and
    is marked ``flat``: without its flat eigenvectors these factors cannot leave them alone
    (:func:`polish_minima` polishes it with dense Hessians). ``by_eigenvalues`` stays false:
    every lowest eigenvalue is computed at the end (:func:`_newton`)."""

    def __init__(self, theta: torch.Tensor, curvature_tol: float, *, hessians_of):
        self.curvature_tol, self.hessians_of = curvature_tol, hessians_of
        n_members = theta.shape[0]
        self.factors: ShiftedHessians | None = None  # every member's, written by its first renewal
        self.curved = torch.zeros(n_members, dtype=torch.bool, device=theta.device)
        self.flat = torch.zeros(n_members, dtype=torch.bool, device=theta.device)
        self.lowest = theta.new_full((n_members,), torch.nan)
        self.by_eigenvalues = torch.zeros(n_members, dtype=torch.bool, device=theta.device)
        self.left_alone = theta.new_zeros(n_members)  # flat members are not stepped at all

    def renew(self, rows: torch.Tensor, theta: torch.Tensor) -> None:
        """Factor the Hessians of members ``rows`` at their points ``theta (row, param)``."""
        hessians = self.hessians_of(theta)
        self.curved[rows] = hessians.count_below(torch.full_like(theta[:, 0], self.curvature_tol)) == 0
        self.flat[rows] |= ~self.curved[rows]
        factors = hessians.shifted(torch.zeros_like(theta[:, 0]))
        if self.factors is None:
            self.factors = factors.allocated(len(self.curved))
        self.factors.put(rows, factors)

    def newton_step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``-H^-1 g`` for members ``rows`` (nan where not curved)."""
        step = -self.factors.select(rows).solve(grad)
        return torch.where(self.curved[rows].unsqueeze(1), step, torch.nan)


def _round_off(loss):
    """Loss changes this small are round-off (64 ulps of the loss, and of 1)."""
    return 64 * torch.finfo(loss.dtype).eps * (1 + loss.abs())
