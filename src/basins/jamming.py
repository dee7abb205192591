"""Stage ``sweep_jamming``: fitting P points with N weights, from under- to over-parametrized.

Geiger, Spigler, d'Ascoli, Sagun, Baity-Jesi, Biroli and Wyart (2019) show that fitting random
labels with the quadratic hinge loss 1/2 relu(1 - y f)^2 goes through a sharp, jamming-like
transition at P = r* N: below it (SAT) every point ends with margin y f >= 1, above it (UNSAT)
a finite fraction N_Delta / N of points stays unsatisfied at a minimum of positive loss.

The sweep over P is run as ensemble members of the training engine: member ``i`` trains on the
first ``n_train[i]`` points of one shared pool (a nested family of training sets), so one job
trains a whole row of the phase diagram for one network and seed. Each member can also have a
pool of its own (independent data sets as members of one job, as the calibration against
Cover's count of separable dichotomies wants).

Only a run that *converged* decides its phase: SAT (every point fitted), UNSAT (a minimum of
positive loss with a finite fraction of points unsatisfied) or stuck (a minimum with a handful
of unsatisfied points, which Geiger et al. set apart as an optimization failure). A run whose
step budget ran out is continued to larger budgets, then finished by quasi-Newton steps, and
otherwise undecided, whatever its loss. A run that classifies every training point right is SAT
whatever its status: its rescaled output layer is a witness that meets every margin.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from basins.engine.checkpoints import fingerprint_arrays
from basins.engine.descent import descend_until_decided, descent_dataset, with_final_losses, with_rows
from basins.engine.quasi_newton import finish_by_quasi_newton
from basins.engine.devices import TORCH_DTYPES, resolve_device
from basins.io import variable_attrs
from basins.jamming_transition import classify_phase, transition_bracket
from basins.labels import BUDGET, CONVERGED, DIVERGED, PHASE_MEANINGS, PHASE_VALUES, SAT, UNSAT
from basins.landscapes import native_mlp
from basins.landscapes.fused_mlp import LabelFactors, Workspace, loss_and_gradient
from basins.landscapes.losses import check_loss, l2_penalty, margins, sample_losses
from basins.landscapes.architecture import Architecture
from basins.landscapes.networks import forward, silenced_inputs, smallest_hidden_preactivation
from basins.landscapes.relu_kinks import MAX_PARAMS as KINK_MAX_PARAMS, KinkCertificate, certify_kink_minimum
from basins.landscapes.relu_kinks import covers as kink_certificate_covers
from basins.landscapes.softplus_homotopy import HomotopyEnd, follow_softplus_homotopy
from basins.landscapes.softplus_homotopy import check_schedule as check_homotopy_schedule
from basins.landscapes.objective import data_tensors, network_chunk_size

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PrefixObjective:
    """Loss of each member on its own first ``n_train`` pool points (``restricted_to`` as
    :func:`basins.engine.descent.descend` wants); the pool is cut to the largest prefix in use.
    The pool ``x``, ``y`` is shared, ``(sample, feature)``, ``(sample,)``, or one per member,
    ``(member, sample, feature)``, ``(member, sample)``."""

    arch: Architecture
    x: torch.Tensor
    y: torch.Tensor
    n_train: torch.Tensor
    loss: str
    margin: float
    l2: float = 0.0
    # Scratch buffers of the fused pass, shared by the restricted copies (one run at a time).
    workspace: Workspace = dataclasses.field(default_factory=Workspace, compare=False, repr=False)

    @property
    def capture_safe(self) -> bool:
        """True where an evaluation runs on the device alone (the torch pass; the C kernel is
        the CPU's), so the engine may capture it (:mod:`basins.engine.windows`)."""
        return self._native is None

    def compiled_steps(self, stepper, *, grad_tol: float, divergence_threshold: float, satisfied=None):
        """The engine's steps of ``stepper`` as a loop in the C kernel, each member on its own
        prefix, with ``satisfied`` (a :class:`PrefixSatisfied` of this objective, or None) as a
        stopping test in the loop (:meth:`basins.landscapes.native_mlp.NativeMLP.compiled_steps`);
        None where the kernel does not cover the network or has no loop for the stepper."""
        form = getattr(stepper, "compiled_form", lambda: None)()
        if self._native is None or form is None:
            return None
        if satisfied is not None and not torch.equal(satisfied.objective.n_train, self.n_train):
            raise ValueError("the satisfied test belongs to another set of members than the objective")
        return self._native.compiled_steps(
            form, grad_tol=grad_tol, divergence_threshold=divergence_threshold, sizes=self.n_train,
            delta_tol=None if satisfied is None else satisfied.delta_tol,
        )

    def threads_held(self):
        """While the engine's windows run in the C kernel's loop: torch's own operations on one
        thread (:func:`basins.landscapes.native_mlp.threads_held`); nothing without the kernel."""
        return contextlib.nullcontext() if self._native is None else native_mlp.threads_held()

    def restricted_to(self, rows: torch.Tensor) -> PrefixObjective:
        n_train = self.n_train[rows]
        n_pool = int(n_train.max()) if n_train.numel() else 0
        if self.y.dim() == 2:  # one pool per member
            return dataclasses.replace(self, x=self.x[rows, :n_pool], y=self.y[rows, :n_pool], n_train=n_train)
        return dataclasses.replace(self, x=self.x[:n_pool], y=self.y[:n_pool], n_train=n_train)

    def inside(self) -> torch.Tensor:
        """``(member, sample)``: whether a pool sample is in the member's training set."""
        return torch.arange(self.y.shape[-1], device=self.y.device) < self.n_train.unsqueeze(1)

    def per_sample(self, theta: torch.Tensor) -> torch.Tensor:
        """Margins ``(member, sample)``, with samples outside a member's prefix set to +inf."""
        member_margins = margins(forward(theta, self.x, self.arch), self.y)
        return torch.where(self.inside(), member_margins, torch.inf)

    def member_losses(self, theta: torch.Tensor) -> torch.Tensor:
        """Mean loss over each member's own training set, plus ``l2 / 2 |theta|^2``."""
        per_sample = sample_losses(forward(theta, self.x, self.arch), self.y, loss=self.loss, margin=self.margin)
        per_sample = torch.where(self.inside(), per_sample, 0.0)
        return per_sample.sum(1) / self.n_train.to(theta.dtype) + l2_penalty(theta, self.l2)

    def __call__(self, theta, batch):
        """Loss and gradient of :meth:`member_losses` by the C kernel of
        :mod:`basins.landscapes.native_mlp` where it covers the network (hidden layers, one
        shared pool: 3-5x the torch pass at the default sweep's depth-1 and depth-2 shapes), else by the
        hand-derived pass of :mod:`basins.landscapes.fused_mlp` (each member's mean over its own
        prefix as a weighted sum over the pool); both equal autograd of :meth:`member_losses` to
        round-off."""
        if batch is not None:
            raise ValueError("the jamming sweep trains full batch; minibatch dynamics are not supported")
        if self._native is not None:
            return self._native(theta, self.n_train)
        return loss_and_gradient(
            theta, self.x, self.arch, self._labels, margin=self.margin, l2=self.l2, workspace=self.workspace
        )

    @functools.cached_property
    def _native(self):
        """The C kernel over nested prefixes of one shared pool, where it covers the network
        (:mod:`basins.landscapes.native_mlp`; equal to the torch pass to round-off), else None."""
        if self.y.dim() != 1:
            return None
        return native_mlp.kernel_for(self.arch, self.x, self.y, loss=self.loss, margin=self.margin, l2=self.l2, beta=1.0)

    @functools.cached_property
    def _labels(self) -> LabelFactors:
        weights = self.inside().to(self.x.dtype) / self.n_train.to(self.x.dtype).unsqueeze(1)
        return LabelFactors(self.arch, self.y, self.loss, 1.0, self.x.dtype, sample_weights=weights)


@dataclasses.dataclass(frozen=True)
class PrefixSatisfied:
    """``satisfied(theta, loss)``: every point of the member's prefix has Delta <= ``delta_tol``.

    A member with every Delta <= ``delta_tol`` has a data loss (its mean over the prefix) of at
    most ``delta_tol`` (hinge) or ``delta_tol^2 / 2`` (quadratic hinge); members above that
    bound are not satisfied, and the forward pass that reads every Delta runs only where some
    member is below it (most steps have none)."""

    objective: PrefixObjective
    delta_tol: float

    def restricted_to(self, rows: torch.Tensor) -> PrefixSatisfied:
        return PrefixSatisfied(self.objective.restricted_to(rows), self.delta_tol)

    def __call__(self, theta, loss):
        candidate = self._data_loss(theta, loss) <= self._loss_bound()
        if not candidate.any():
            return candidate
        rows = torch.nonzero(candidate).flatten()
        met = self.objective.margin - self.objective.restricted_to(rows).per_sample(theta[rows]) <= self.delta_tol
        return candidate.index_put((rows,), met.all(1))

    @property
    def capture_safe(self) -> bool:
        return self.objective.capture_safe

    def every_member(self, theta, loss):
        """The same test with every member's Deltas read, none chosen on the host: the form a
        captured window runs (:mod:`basins.engine.windows`; one forward pass a step)."""
        candidate = self._data_loss(theta, loss) <= self._loss_bound()
        met = (self.objective.margin - self.objective.per_sample(theta) <= self.delta_tol).all(1)
        return candidate & met

    def _data_loss(self, theta, loss):
        return loss - l2_penalty(theta, self.objective.l2) if self.objective.l2 else loss

    def _loss_bound(self) -> float:
        """The largest data loss a satisfied member can have, with room for round-off."""
        bound = {"hinge": self.delta_tol, "quadratic_hinge": 0.5 * self.delta_tol**2}[self.objective.loss]
        return bound * (1 + 1e-6) + 1e-300


def train_size_grid(smallest: int, largest: int, n_sizes: int) -> np.ndarray:
    """Distinct integer training-set sizes, log-spaced from ``smallest`` to ``largest``."""
    if not 0 < smallest < largest or n_sizes < 2:
        raise ValueError(
            f"train sizes smallest={smallest}, largest={largest}, n_sizes={n_sizes}: "
            "need 0 < smallest < largest and at least 2 sizes"
        )
    return np.unique(np.round(np.geomspace(smallest, largest, n_sizes)).astype(np.int64))


# Long only by its signature and numpydoc docstring, one keyword per config key; the body is ~35 lines.
def sweep_jamming(
    arch: Architecture,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    initial_theta: np.ndarray,
    n_train: np.ndarray,
    *,
    lr: float,
    max_steps: int,
    grad_tol: float,
    budget_factors: Sequence[float] = (1,),
    loss: str = "quadratic_hinge",
    margin: float = 1.0,
    l2: float = 0.0,
    dynamics: str = "adam",
    lr_decay_every: int = 0,
    lr_decay_factor: float = 1.0,
    delta_tol: float = 1e-6,
    stuck_fraction: float = 0.1,
    fine_resolution: float = 0.0,
    fine_initial_theta: np.ndarray | None = None,
    fine_passes: int = 1,
    finish_iterations: int = 0,
    max_dense_params: int = 4096,
    homotopy_betas: Sequence[float] = (),
    homotopy_newton_steps: int = 100,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "float64",
    memory_budget_mb: float = 1024.0,
    checkpoint_path=None,
    checkpoint_every_s: float = 300.0,
    progress_every_s: float = 30.0,
) -> xr.Dataset:
    """Train member ``i`` on the first ``n_train[i]`` pool points until it fits them or jams.

    Parameters
    ----------
    arch : Architecture
        The network; its weights (biases excluded) are the N of the jamming literature.
    x_pool, y_pool : ndarray, shapes (sample, feature), (sample,) or (member, sample, feature), (member, sample)
        The nested training sets: member ``i`` sees rows ``0 .. n_train[i] - 1`` of the shared
        pool, or of its own pool (independent data per member).
    x_test, y_test : ndarray
        Held-out points for the test error.
    initial_theta : ndarray, shape (member, param)
        Starting points (orthogonal weights and zero biases in that literature).
    n_train : ndarray of int, shape (member,)
        Training-set size P of each member, at most the pool size.
    loss, margin : str, float
        ``quadratic_hinge`` (1/2 relu(margin - y f)^2) or ``hinge``; a point is satisfied
        once its margin is at least ``margin``, i.e. Delta = margin - y f <= 0.
    dynamics, lr, lr_decay_every, lr_decay_factor, max_steps : see
        :func:`basins.training.train_ensemble`; full-batch ``adam`` with a decaying step is
        the literature's choice.
    grad_tol : float
        A member that still has unsatisfied points has jammed once its gradient norm is at
        most this (a minimum of positive loss). Near the transition the relaxation slows
        down critically: too large a tolerance stops members that were still going to fit.
    budget_factors : sequence of float
        A member still running after ``max_steps`` steps is continued from where it stopped
        to ``budget_factors[k] * max_steps`` steps in all (as
        :func:`basins.engine.descent.descend_until_decided`, each member on its own training
        set); one still running after the last factor is undecided, whatever its loss: a
        budget never decides a phase.
    finish_iterations, max_dense_params : int
        Members still running after the last budget are handed to BFGS with a weak-Wolfe line
        search (which crosses the kinks of a ReLU network's loss; L-BFGS above
        ``max_dense_params`` parameters) for up to ``finish_iterations`` iterations on their own
        training set, then to Newton steps (dense Hessians, up to ``max_dense_params``
        parameters): :func:`basins.engine.quasi_newton.finish_by_quasi_newton` (0: no finish).
        Adam's decaying step freezes members short of a minimum (the perceptron's at gradient
        norms 1e-5 to 1e-3); the finish takes them there, and the gradient test (or every point
        satisfied) then decides them. It decides nothing itself: a member the finish leaves above
        ``grad_tol`` stays undecided, where it stopped or where the finish lowered its loss,
        unless it sits on kinks of a ReLU network where
        :func:`basins.landscapes.relu_kinks.certify_kink_minimum` certifies a minimum (the
        gradient jumps there and need not vanish; the Clarke stationarity measure replaces it).
    homotopy_betas, homotopy_newton_steps : sequence of float, int
        Where the certificate refuses the finish's end point (not on a clean set of kinks: BFGS
        stopped short of the kinks' right proportions), the softplus-smoothing homotopy
        (:func:`basins.landscapes.softplus_homotopy.follow_softplus_homotopy`: every hidden ReLU
        smoothed on the scale 1 / beta, damped Newton steps at each beta in turn, up to
        ``homotopy_newton_steps`` each) proposes another point, and the certificate judges that
        one, held to the end point's loss; certified, it replaces the end point, else the member
        stays undecided (empty: no homotopy). It decides nothing itself.
    delta_tol : float
        A point counts as satisfied once Delta <= ``delta_tol``. The quadratic hinge's force
        vanishes at Delta = 0, so gradient dynamics approach the margin from above without
        crossing it: with ``delta_tol`` = 0, fitted points would stay "unsatisfied" at
        Delta ~ 1e-8 for ever. Genuinely unsatisfied points of a jammed minimum have Delta of
        order one (a vanishing fraction lies below any small tolerance).
    stuck_fraction : float
        A member that converged with ``0 < N_Delta < stuck_fraction * N`` unsatisfied points
        is stuck, not UNSAT: at the jamming transition N_Delta jumps to a finite fraction of
        N (Geiger et al. 2019 find N_Delta > 0.4 N on the UNSAT side), and minima with a
        handful of unsatisfied points are optimization failures (their runs with
        1 <= N_Delta <= 4 at N = 7854 "encounter numerical precision issues"; their search
        calls a run UNSAT once N_Delta > 0.1 N, the default here). Silenced unsatisfied points
        (a hidden layer off on them) count in N_Delta, as in their rule. Stuck members are counted
        and left out of the transition estimate. For the perceptron (a convex loss) a minimum
        of positive loss has N_Delta >= N + 1 in general position, so no member is stuck.
    fine_resolution, fine_initial_theta, fine_passes : float, ndarray (member, param), int
        The fine scan (0: none). After the grid ``n_train``, the transition is bracketed by
        the decided sizes around the best SAT/UNSAT cut
        (:func:`basins.jamming_transition.transition_bracket`), and a pass fits sizes
        strictly between them, log-spaced by a factor of at most ``1 + fine_resolution``
        (:func:`fine_train_sizes`; every integer where that is finer). Passes repeat, each
        bracketing anew with every decided member so far, until the bracket is at most
        ``fine_resolution`` wide (upper / lower - 1), no size is left between its ends, or
        ``fine_passes`` passes ran; a pass whose members all came out stuck or undecided
        leaves the bracket as it was, so the next fits those sizes again from other starting
        points. Pass k starts from rows ``k * m .. (k + 1) * m - 1`` of ``fine_initial_theta``
        (``m`` = its rows / ``fine_passes``, the most sizes a pass fits; :func:`fine_scan_size`
        says how many one grid interval needs). The result's ``fine_resolution_met`` attribute
        says whether the resolution was reached. Needs one shared pool.
    checkpoint_path, checkpoint_every_s : see :func:`basins.training.train_ensemble`; a
        checkpoint is resumed only on the same pool (``x_pool``, ``y_pool``) and sizes.

    Returns
    -------
    xarray.Dataset
        The engine's variables (dims ``(member, param)``, ``(member, step)``) plus, per
        member, ``n_train``, ``ratio`` (P / N), ``n_unsatisfied`` (N_Delta), ``train_error``,
        ``test_error``, ``phase`` (:data:`basins.labels.PHASE_VALUES`: 0 SAT, 1 UNSAT,
        2 stuck, -1 undecided), ``output_scale`` (SAT by the rescaled output layer,
        :func:`_rescaled_to_sat`; 1: not rescaled), ``finish_iterations`` (0: not finished),
        the kink certificate's ``n_active_kinks``, ``kink_multiplier_margin``,
        ``kink_reduced_lowest_eigenvalue``, ``kink_shift`` and the homotopy's
        ``homotopy_iterations`` (0: not run), ``homotopy_grad_norm``, and ``scan`` (0: grid,
        1: fine scan; fine members follow the grid's), and ``delta`` ``(member, sample)``:
        Delta = margin - y f on the member's training points (nan beyond them).
    """
    n_train, x_pool, y_pool, factors = _checked_sweep_inputs(
        arch, x_pool, y_pool, initial_theta, n_train, loss=loss, stuck_fraction=stuck_fraction, delta_tol=delta_tol,
        budget_factors=budget_factors, fine_resolution=fine_resolution, fine_initial_theta=fine_initial_theta,
        fine_passes=fine_passes, finish_iterations=finish_iterations,
    )
    if len(homotopy_betas):
        check_homotopy_schedule(homotopy_betas, homotopy_newton_steps)
    n_pool = y_pool.shape[-1]
    torch_device, torch_dtype = resolve_device(device), TORCH_DTYPES[dtype]
    x, y = data_tensors(arch, x_pool, y_pool, dtype=torch_dtype, device=torch_device)
    fit = dict(
        arch=arch, x=x, y=y, x_test=x_test, y_test=y_test, loss=loss, margin=margin, l2=l2, delta_tol=delta_tol,
        stuck_fraction=stuck_fraction, budget_factors=factors, dynamics=dynamics, lr=lr,
        lr_decay_every=lr_decay_every, lr_decay_factor=lr_decay_factor, max_steps=max_steps, grad_tol=grad_tol,
        finish_iterations=finish_iterations, max_dense_params=max_dense_params, seed=seed,
        homotopy_betas=tuple(homotopy_betas), homotopy_newton_steps=homotopy_newton_steps,
        chunk=network_chunk_size(arch, n_pool, memory_budget_mb, torch_dtype, torch_device),
        data_fingerprint=fingerprint_arrays(x_pool, y_pool), checkpoint_every_s=checkpoint_every_s,
        progress_every_s=progress_every_s,
    )
    result = _fit_sizes(n_train, initial_theta, np.arange(len(n_train)), checkpoint_path=checkpoint_path, **fit)
    scans = [result.assign(scan=("member", np.zeros(len(n_train), dtype=np.int8)))]
    scans += _fine_scans(n_train, result["phase"].values, fine_resolution, fine_initial_theta, fine_passes,
                         checkpoint_path, fit)
    result = _joined_scans(scans, n_pool)
    _log_phases(result["phase"].values)
    if arch.depth == 0 and y_pool.ndim == 1 and l2 == 0:
        check_nested_phases(result["n_train"].values, result["phase"].values)
    return result.assign_attrs(
        architecture=json.dumps(arch.__dict__, sort_keys=True),
        depth=arch.depth,
        width=arch.width,
        n_params=arch.n_params,
        n_weights=arch.n_weights,
        loss_function=loss,
        margin=margin,
        delta_tol=delta_tol,
        stuck_fraction=stuck_fraction,
        budget_factors=json.dumps(factors.tolist()),
        finish_iterations=finish_iterations,
        fine_resolution=fine_resolution,
        fine_passes=fine_passes,
        fine_resolution_met=(  # nan: no fine scan asked for
            float(_resolution_met(*transition_bracket(result["n_train"].values, result["phase"].values),
                                  fine_resolution))
            if fine_resolution > 0 else np.nan
        ),
        dynamics=dynamics,
    )


def _checked_sweep_inputs(
    arch, x_pool, y_pool, initial_theta, n_train, *, loss, stuck_fraction, delta_tol, budget_factors, fine_resolution,
    fine_initial_theta, fine_passes, finish_iterations,
):
    """``n_train``, the pool and ``budget_factors`` as arrays, once :func:`sweep_jamming` can run them."""
    if loss not in ("quadratic_hinge", "hinge"):
        check_loss(loss)
        raise ValueError(f"loss={loss!r}: the jamming sweep uses 'quadratic_hinge' or 'hinge'")
    n_train = np.asarray(n_train, dtype=np.int64)
    x_pool, y_pool = np.asarray(x_pool), np.asarray(y_pool)
    per_member = y_pool.ndim == 2
    if x_pool.ndim != y_pool.ndim + 1 or (per_member and (len(y_pool) != len(n_train) or len(x_pool) != len(n_train))):
        raise ValueError(
            f"x_pool {x_pool.shape}, y_pool {y_pool.shape}: give one shared pool (sample, feature), "
            f"(sample,) or one per member ({len(n_train)}, sample, feature), ({len(n_train)}, sample)"
        )
    n_pool = y_pool.shape[-1]
    if n_train.ndim != 1 or n_train.min() <= 0 or n_train.max() > n_pool:
        raise ValueError(f"n_train={n_train}: each size must be in 1..{n_pool} (the pool size)")
    if initial_theta.shape != (len(n_train), arch.n_params):
        raise ValueError(
            f"initial_theta has shape {initial_theta.shape}; expected ({len(n_train)}, {arch.n_params})"
        )
    if not 0 <= stuck_fraction < 1 or delta_tol < 0 or finish_iterations < 0:
        raise ValueError(
            f"stuck_fraction={stuck_fraction} must be in [0, 1), delta_tol={delta_tol} and "
            f"finish_iterations={finish_iterations} >= 0"
        )
    factors = np.asarray(budget_factors, dtype=float)  # checked by descend_until_decided
    if fine_resolution < 0 or (fine_resolution > 0 and (per_member or fine_initial_theta is None)):
        raise ValueError(
            f"fine_resolution={fine_resolution}: a fine scan (> 0) needs one shared pool and fine_initial_theta"
        )
    if fine_passes < 1 or (fine_resolution > 0 and len(fine_initial_theta) % fine_passes):
        raise ValueError(
            f"fine_passes={fine_passes} must be >= 1 and divide the rows of fine_initial_theta "
            f"({0 if fine_initial_theta is None else len(fine_initial_theta)}): each pass its own starting points"
        )
    return n_train, x_pool, y_pool, factors


def _fine_scans(
    n_train, grid_phase, fine_resolution, fine_initial_theta, fine_passes, checkpoint_path, fit
) -> list[xr.Dataset]:
    """The fine scan's passes (:func:`sweep_jamming`), each inside the bracket of the transition
    that every decided member so far places; none without a fine scan or a bracket."""
    if not fine_resolution > 0:
        return []
    per_pass = len(fine_initial_theta) // fine_passes
    sizes, phases, scans = np.asarray(n_train), np.asarray(grid_phase), []
    for k in range(fine_passes):
        lower, upper = transition_bracket(sizes, phases)
        if not np.isfinite(lower) or _resolution_met(lower, upper, fine_resolution):
            break
        fine = fine_train_sizes(lower, upper, fine_resolution, at_most=per_pass)
        # A bracket wider than one interval holds sizes fitted before: decided ones are not
        # fitted again, stuck or undecided ones are, from new starting points.
        fine = fine[~np.isin(fine, sizes[(phases == SAT) | (phases == UNSAT)])]
        log.info("fine scan, pass %d: %d sizes between P = %d and %d", k + 1, fine.size, lower, upper)
        if not fine.size:
            break
        rows = k * per_pass + np.arange(fine.size)
        suffix = ".fine" if k == 0 else f".fine{k + 1}"
        more = _fit_sizes(
            fine, np.asarray(fine_initial_theta)[rows], len(n_train) + rows,
            checkpoint_path=None if checkpoint_path is None else f"{checkpoint_path}{suffix}", **fit,
        )
        scans.append(more.assign(scan=("member", np.full(fine.size, k + 1, dtype=np.int8))))
        sizes, phases = np.concatenate([sizes, fine]), np.concatenate([phases, more["phase"].values])
    return scans


def _resolution_met(lower: float, upper: float, resolution: float) -> bool:
    """Whether the bracket ``lower`` .. ``upper`` of the transition (:func:`transition_bracket`)
    is ``resolution`` wide (upper / lower - 1) or one training point wide where that is coarser;
    False without a bracket (nan)."""
    return bool(np.isfinite(lower) and (upper / lower - 1 <= resolution or upper - lower <= 1))


def _joined_scans(scans, n_pool):
    """The grid's and the fine scan's members in one dataset, with the pool's sample coordinate."""
    result = xr.concat(scans, dim="member", data_vars="minimal", coords="minimal", compat="override")
    result["scan"].attrs.update(variable_attrs("pass of the scan: 0 the grid, k >= 1 the fine scan's k-th pass"))
    return result.assign_coords(sample=("sample", np.arange(n_pool), variable_attrs("pool sample index")))


def _log_phases(phase):
    counts = {name: int((phase == value).sum()) for name, value in zip(PHASE_MEANINGS.split(), PHASE_VALUES)}
    log.info("phases: %s", ", ".join(f"{count} {name}" for name, count in counts.items()))


def _fit_sizes(
    n_train, initial_theta, member_ids, *, arch, x, y, x_test, y_test, loss, margin, l2, delta_tol, stuck_fraction,
    checkpoint_path, finish_iterations, max_dense_params, homotopy_betas, homotopy_newton_steps, **engine,
) -> xr.Dataset:
    """One pass of the sweep: members ``member_ids`` fit their ``n_train`` first pool points."""
    sizes = torch.as_tensor(n_train, device=x.device)
    objective = PrefixObjective(arch, x, y, sizes, loss, margin, l2)
    satisfied = PrefixSatisfied(objective, delta_tol)
    out = descend_until_decided(
        objective, initial_theta, member_ids, satisfied=satisfied, device=x.device, dtype=x.dtype,
        run_id=("jamming", arch, loss, margin, l2, n_train, delta_tol, str(x.dtype)), checkpoint_path=checkpoint_path,
        **engine,
    )
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=x.dtype, device=x.device)  # noqa: E731
    out, iterations = _finished(
        out, objective, satisfied, as_tensor, max_iterations=finish_iterations, grad_tol=engine["grad_tol"],
        max_dense_params=max_dense_params,
    )
    out, kinks = _on_kinks(
        out, objective, grad_tol=engine["grad_tol"], examined=iterations > 0, homotopy_betas=homotopy_betas,
        homotopy_newton_steps=homotopy_newton_steps,
    )
    delta, test_error = _final_margins(out, objective, arch, x_test, y_test, as_tensor)
    scale = np.ones(len(n_train))
    if l2 == 0:  # with a penalty, the witness would leave the minimum the phase is about
        out, scale = _rescaled_to_sat(out, objective, arch, delta, delta_tol, as_tensor)
        if (scale != 1).any():
            delta, test_error = _final_margins(out, objective, arch, x_test, y_test, as_tensor)
    out = with_final_losses(out, objective, as_tensor)
    kink_distance = _kink_distances(out, objective, arch, as_tensor)
    silenced = _silenced(out, objective, arch, as_tensor)
    result = descent_dataset(out, member_ids, initial_theta, loss_name=f"{loss} training loss")
    unsatisfied = delta > delta_tol
    n_unsatisfied = np.where(out.status == DIVERGED, -1, unsatisfied.sum(1))
    n_silenced = np.where(out.status == DIVERGED, -1, (unsatisfied & silenced).sum(1))
    # Geiger et al.'s rule: silenced points count as unsatisfied (analyze_jamming also reports
    # the transition with runs left with fewer than stuck_fraction N seen points set apart).
    phase = classify_phase(out.status, n_unsatisfied, n_weights=arch.n_weights, stuck_fraction=stuck_fraction)
    phase[scale != 1] = SAT  # whatever the status: the witness meets every margin
    with np.errstate(invalid="ignore"):
        train_error = np.where(out.status == DIVERGED, np.nan, (delta >= margin).sum(1) / n_train)
    return result.assign(
        n_train=("member", n_train, variable_attrs("training-set size P")),
        ratio=("member", n_train / arch.n_weights, variable_attrs("P / N (N: weights, biases excluded)")),
        n_unsatisfied=(
            "member",
            n_unsatisfied,
            variable_attrs("unsatisfied training points N_Delta (Delta > delta_tol; -1: diverged)"),
        ),
        train_error=("member", train_error, variable_attrs("training error (0-1)")),
        test_error=("member", test_error, variable_attrs("test error (0-1)")),
        phase=("member", phase.astype(np.int8), phase_attrs()),
        output_scale=("member", scale, variable_attrs(
            "factor the output layer (weights and bias) was scaled by after the run, 1 where it was not: "
            "every training point was classified right (y f > 0) where the run stopped, so scaling by "
            "margin / min(y f) meets every margin, a witness of SAT (checked); final_theta, loss and "
            "delta are the witness's, the run's own end point is final_theta with that layer divided by it")),
        finish_iterations=("member", iterations, variable_attrs(
            "BFGS iterations of the quasi-Newton finish after the step budget (0: not finished)")),
        n_active_kinks=("member", kinks.n_active, variable_attrs(
            "ReLU kinks a member the quasi-Newton finish left undecided sits on ("
            "basins.landscapes.relu_kinks): where its multipliers certify a minimum on them, status is "
            "converged and grad_norm is the Clarke stationarity measure there (0: not on kinks, or not examined)")),
        kink_multiplier_margin=("member", kinks.margin, variable_attrs(
            "smallest of s_k, 1 - s_k over the active kinks' multipliers, -1 with a concave kink: > 0 with "
            "a Clarke stationarity measure <= grad_tol certifies a minimum (nan: not examined or no kinks)")),
        kink_reduced_lowest_eigenvalue=("member", kinks.reduced_lowest_eigenvalue, variable_attrs(
            "lowest eigenvalue of the loss's Hessian along the active kinks' manifold at the point balanced (each "
            "hidden unit's incoming and outgoing norms equal), ReLU rescalings taken out (above 1e-8 of the "
            "largest: a strict minimum along them to second order; within +-1e-8 of the largest: flat, certified "
            "only where the loss falls along no flat direction at the probes (1e-6, 1e-4, 1e-2 either way, back on "
            "the kinks); below: a saddle, not certified; nan: not examined or no kinks)")),
        kink_shift=("member", kinks.shift, variable_attrs(
            "distance the kink certificate moved the member onto its kinks and along them, from the quasi-Newton "
            "finish's end point (through the softplus homotopy where only its end point was certified; the loss "
            "not raised; nan: not examined)")),
        homotopy_iterations=("member", kinks.homotopy_iterations, variable_attrs(
            "Newton iterations of the softplus homotopy (basins.landscapes.softplus_homotopy), all betas, run where "
            "the kink certificate refused the finish's end point (0: not run); converged with a nonzero count: "
            "certified at the homotopy's end point")),
        homotopy_grad_norm=("member", kinks.homotopy_grad_norm, variable_attrs(
            "gradient norm of the softplus-smoothed loss at the homotopy's end, at its last beta (nan: not run)")),
        kink_verdict=("member", kinks.verdict.astype(str), variable_attrs(
            "the kink certificate's verdict in words: where it certified, and where it refused why, at the "
            "finish's end point and at the softplus homotopy's (empty: not examined)")),
        n_silenced_unsatisfied=("member", n_silenced, variable_attrs(
            "unsatisfied points on which a hidden layer is off: they get the output biases alone and "
            "move no weight; counted in N_Delta (Geiger et al.'s rule), and set apart in analyze_jamming's "
            "transition_ratio_silenced_apart (-1: diverged)")),
        kink_distance=("member", kink_distance, variable_attrs(
            "smallest |pre-activation| of a hidden unit on the member's training points: near 0 the run "
            "ends on a kink of the ReLU network's loss, where it is not differentiable and the gradient "
            "of a minimum need not vanish (the gradient test cannot decide such a run)")),
        delta=(
            ("member", "sample"),
            delta,
            variable_attrs("Delta = margin - y f on the member's training points (nan beyond them)"),
        ),
    )


def fine_train_sizes(lower: float, upper: float, resolution: float, *, at_most: int) -> np.ndarray:
    """Integer sizes strictly between ``lower`` and ``upper``, log-spaced so that neighbours
    differ by a factor of at most about ``1 + resolution`` (every integer where that is finer),
    thinned evenly to ``at_most`` sizes."""
    if resolution <= 0 or not 0 < lower < upper:
        raise ValueError(f"resolution={resolution} > 0 and 0 < lower={lower} < upper={upper} are needed")
    n_steps = max(int(np.ceil(np.log(upper / lower) / np.log1p(resolution))), 1)
    sizes = np.unique(np.round(np.geomspace(lower, upper, n_steps + 1)).astype(np.int64))
    sizes = sizes[(sizes > lower) & (sizes < upper)]
    if sizes.size > at_most:
        kept = np.unique(np.round(np.linspace(0, sizes.size - 1, at_most)).astype(int)) if at_most else []
        sizes = sizes[kept]
    return sizes


def fine_scan_size(n_train: np.ndarray, resolution: float, *, intervals: int = 2) -> int:
    """Fine-scan sizes needed to resolve the widest span of ``intervals`` consecutive
    intervals of the grid ``n_train`` to ``resolution`` (the number of starting points a fine
    scan is given; two intervals: a bracket with one undecided or stuck grid size inside)."""
    grid = np.unique(np.asarray(n_train))
    span = min(intervals, len(grid) - 1)
    return max(
        (len(fine_train_sizes(a, b, resolution, at_most=b - a)) for a, b in zip(grid[:-span], grid[span:])), default=0
    )


def check_nested_phases(n_train: np.ndarray, phase: np.ndarray) -> None:
    """Refuse the decided phases of a perceptron on nested training sets that contradict each other.

    The perceptron's loss is convex, so a converged run is at the global minimum: SAT says its
    first P points are fitted with every margin met, which then holds for every smaller prefix
    of the same pool, and UNSAT says no weights meet them, nor for any larger prefix. An UNSAT
    size below a SAT size is a wrong decision (a tolerance or a stopping rule deciding), never
    data. Undecided runs say nothing and are skipped."""
    largest_sat = n_train[phase == SAT].max(initial=0)
    contradicted = (phase == UNSAT) & (n_train < largest_sat)
    if contradicted.any():
        raise RuntimeError(
            f"perceptron on nested training sets: UNSAT at P = {sorted(n_train[contradicted].tolist())} "
            f"below SAT at P = {largest_sat}; a convex loss cannot do that, so a phase was decided wrongly"
        )


def phase_attrs() -> dict:
    """Attributes of a ``phase`` variable (CF flags from :mod:`basins.labels`)."""
    return variable_attrs(
        "fitting phase", flag_values=" ".join(map(str, PHASE_VALUES)), flag_meanings=PHASE_MEANINGS
    )


def _finished(out, objective, satisfied, as_tensor, *, max_iterations, grad_tol, max_dense_params):
    """``out`` with its members still running after the budget moved by the quasi-Newton finish
    (:func:`sweep_jamming`), and the BFGS iterations of each member (0: not finished). Those at a
    gradient norm of at most ``grad_tol``, or with every point satisfied, have converged."""
    rows = np.flatnonzero(out.status == BUDGET) if max_iterations else np.array([], dtype=np.int64)
    iterations = np.zeros(len(out.status), dtype=np.int64)
    if not len(rows):
        return out, iterations
    device = objective.x.device

    def member_energy(i):
        return _MemberLoss(objective.restricted_to(torch.as_tensor(rows[i : i + 1], device=device)))

    finished = finish_by_quasi_newton(
        out.final_theta[rows], member_energy, max_iterations=max_iterations, grad_tol=grad_tol,
        max_dense_params=max_dense_params, device=device, dtype=objective.x.dtype,
    )
    met = satisfied.restricted_to(torch.as_tensor(rows, device=device))(
        as_tensor(finished.final_theta), as_tensor(finished.loss)
    ).cpu().numpy()
    decided = (finished.grad_norm <= grad_tol) | met
    iterations[rows] = finished.iterations
    out = dataclasses.replace(
        out, final_theta=with_rows(out.final_theta, rows, finished.final_theta),
        grad_norm=with_rows(out.grad_norm, rows, finished.grad_norm),
    )
    log.info("quasi-Newton finish decided %d of %d members that spent their budget", int(decided.sum()), len(rows))
    return out.with_status(rows[decided], CONVERGED), iterations


@dataclasses.dataclass(frozen=True)
class _KinkRecords:
    """Per member, what :func:`_on_kinks` found (see the variables of :func:`_fit_sizes`)."""

    margin: np.ndarray
    reduced_lowest_eigenvalue: np.ndarray
    shift: np.ndarray
    n_active: np.ndarray
    homotopy_iterations: np.ndarray
    homotopy_grad_norm: np.ndarray
    verdict: np.ndarray

    @classmethod
    def empty(cls, n_members: int) -> _KinkRecords:
        nan, zero = np.full(n_members, np.nan), np.zeros(n_members, dtype=np.int64)
        return cls(nan, nan.copy(), nan.copy(), zero, zero.copy(), nan.copy(), np.full(n_members, "", dtype=object))


def _on_kinks(out, objective, *, grad_tol, examined, homotopy_betas=(), homotopy_newton_steps=100):
    """``out`` with the members the finish examined (``examined``) but left undecided, and that sit
    on kinks of a ReLU network, judged by
    :func:`basins.landscapes.relu_kinks.certify_kink_minimum` on their own training set (where it
    refuses the finish's end point, again at the end of the softplus homotopy from there,
    :func:`_judged_on_kinks`): a certified member is moved onto its kinks and polished along them
    (``kink_shift``, the loss not raised) and converged, its ``grad_norm`` the Clarke
    stationarity measure."""
    n_members = len(out.status)
    records = _KinkRecords.empty(n_members)
    arch = objective.arch
    if not kink_certificate_covers(arch, objective.loss):
        return out, records
    rows = np.flatnonzero(examined & (out.status == BUDGET))
    if rows.size and arch.n_params > KINK_MAX_PARAMS:
        log.info("%d undecided members not examined for minima on kinks: %d parameters > %d", rows.size,
                 arch.n_params, KINK_MAX_PARAMS)
        return out, records
    certified, points, norms = [], [], []
    for row in rows:
        n_train = int(objective.n_train[row])
        x = objective.x[row] if objective.x.dim() == 3 else objective.x
        y = objective.y[row] if objective.y.dim() == 2 else objective.y
        found, homotopy, records.verdict[row] = _judged_on_kinks(
            out.final_theta[row], x[:n_train].cpu().numpy(), y[:n_train].cpu().numpy(), objective.arch,
            loss=objective.loss, margin=objective.margin, l2=objective.l2, grad_tol=grad_tol,
            homotopy_betas=homotopy_betas, homotopy_newton_steps=homotopy_newton_steps, member=row,
        )
        records.n_active[row], records.margin[row] = found.n_active, found.multiplier_margin
        records.reduced_lowest_eigenvalue[row] = found.reduced_lowest_eigenvalue
        records.shift[row] = np.linalg.norm(found.theta - out.final_theta[row])
        if homotopy is not None:
            records.homotopy_iterations[row] = homotopy.iterations.sum()
            records.homotopy_grad_norm[row] = homotopy.grad_norm[-1]
        if found.certified:
            certified.append(row)
            points.append(found.theta)
            norms.append(found.subgradient_norm)
    if rows.size:
        log.info("kink certificate: %d of %d undecided members certified at a minimum on ReLU kinks",
                 len(certified), len(rows))
    if not certified:
        return out, records
    certified = np.asarray(certified)
    out = dataclasses.replace(
        out, final_theta=with_rows(out.final_theta, certified, np.stack(points)),
        grad_norm=with_rows(out.grad_norm, certified, np.asarray(norms)),
    )
    return out.with_status(certified, CONVERGED), records


def _judged_on_kinks(
    theta, x, y, arch, *, loss, margin, l2, grad_tol, homotopy_betas, homotopy_newton_steps, member=-1,
) -> tuple[KinkCertificate, HomotopyEnd | None, str]:
    """The kink certificate of one member's end point ``theta (param,)`` on its training set
    ``x``, ``y``; where it refuses and ``homotopy_betas`` are given, the certificate of the
    softplus homotopy's end point from there
    (:func:`basins.landscapes.softplus_homotopy.follow_softplus_homotopy`), held to ``theta``'s
    loss, if it certifies it (else the first refusal); the homotopy's end (None: not run); and
    the verdict in words, with each refusal's reason where both points were refused.
    Which point is kept is the certificate's decision alone: the homotopy only proposes one."""
    certify = functools.partial(certify_kink_minimum, x=x, y=y, arch=arch, loss=loss, margin=margin, l2=l2,
                                grad_tol=grad_tol)
    found = certify(theta)
    verdict = "certified at the finish's end point" if found.certified else f"finish's end point: {found.reason}"
    if found.certified or not len(homotopy_betas):
        if not found.certified:
            log.info("member %d (P = %d) not certified on kinks: %s", member, len(y), found.reason)
        return found, None, verdict
    start = time.perf_counter()
    homotopy = follow_softplus_homotopy(theta, x, y, arch, loss=loss, margin=margin, l2=l2, betas=homotopy_betas,
                                        newton_steps=homotopy_newton_steps)
    again = certify(homotopy.theta, no_higher_than=homotopy.start_loss)
    log.info(
        "member %d (P = %d) not certified on kinks at the finish's end point (%s); softplus homotopy (%.1f s, Newton "
        "iterations %s, smooth gradient norms %s): %s", member, len(y), found.reason, time.perf_counter() - start,
        homotopy.iterations.tolist(), np.array2string(homotopy.grad_norm, precision=2),
        f"certified, {again.n_active} kinks, loss {again.loss:.8g}" if again.certified
        else f"not certified: {again.reason}",
    )
    if again.certified:
        return again, homotopy, "certified at the softplus homotopy's end point"
    return found, homotopy, f"{verdict}; homotopy's end point: {again.reason}"


@dataclasses.dataclass(frozen=True)
class _MemberLoss:
    """One member's loss as the engine's energies are called, with the fused gradient pass
    (:meth:`PrefixObjective.__call__`) as its ``loss_and_gradient``."""

    objective: PrefixObjective

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return self.objective.member_losses(theta)

    def loss_and_gradient(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.objective(theta, None)


def _rescaled_to_sat(out, objective, arch, delta, delta_tol, as_tensor):
    """``out`` with the output layer of each member whose training set it classifies right, but
    not yet with every margin met, scaled to meet them all, and the factor of each member.

    The output is linear in the last layer's weights and bias, so scaling them by c scales every
    margin y f by c: where every training point has y f > 0, c = margin / min(y f) meets every
    margin exactly. That is a witness of SAT (the training set can be fitted), whatever the run's
    status, exact rather than a tolerance: a run approaching the margins from above (the
    quadratic hinge's force vanishes there) can crawl at Delta ~ 1e-5 for ever, undecided or
    near-stationary. It never contradicts a converged UNSAT minimum, where scaling the output
    cannot lower the loss, so some unsatisfied point has y f <= 0. Each witness is checked by a
    forward pass before it replaces the end point.
    """
    scale = np.ones(len(out.status))
    with np.errstate(invalid="ignore"):
        worst = np.nanmax(delta, axis=1)  # margin - the smallest y f on the training set
    rows = np.flatnonzero((out.status != DIVERGED) & (worst > delta_tol) & (worst < objective.margin))
    if not len(rows):
        return out, scale
    factor = objective.margin / (objective.margin - worst[rows]) * (1 + 1e-9)
    theta = as_tensor(out.final_theta[rows]).clone()
    for part in arch.layer_slices[-1]:
        if part is not None:
            theta[:, part] *= as_tensor(factor).unsqueeze(1)
    with torch.no_grad():
        met = (objective.restricted_to(torch.as_tensor(rows, device=theta.device)).per_sample(theta)
               >= objective.margin - delta_tol).all(1).cpu().numpy()
    scale[rows[met]] = factor[met]
    theta, rows = theta[torch.as_tensor(met, device=theta.device)], rows[met]
    if len(rows):
        log.info("%d members fit every training point once their output layer is rescaled: SAT", len(rows))
    final_theta = with_rows(out.final_theta, rows, theta.cpu().numpy())
    return dataclasses.replace(out, final_theta=final_theta), scale


def _kink_distances(out, objective, arch, as_tensor):
    """:func:`basins.landscapes.networks.smallest_hidden_preactivation` of each member's final
    point on its own training points (nan for diverged members)."""
    distance = np.full(out.final_theta.shape[0], np.nan)
    with torch.no_grad():
        for rows, theta, x in _own_training_inputs(out, objective, as_tensor):
            distance[rows] = smallest_hidden_preactivation(theta, x, arch).cpu().numpy()
    distance[out.status == DIVERGED] = np.nan
    return distance


def _silenced(out, objective, arch, as_tensor):
    """:func:`basins.landscapes.networks.silenced_inputs` of each member's final point on its own
    training points ``(member, sample)`` (False beyond them and for diverged members)."""
    silenced = np.zeros((out.final_theta.shape[0], objective.y.shape[-1]), dtype=bool)
    with torch.no_grad():
        for rows, theta, x in _own_training_inputs(out, objective, as_tensor):
            member_silenced = silenced_inputs(theta, x, arch).cpu().numpy()
            silenced[rows, : member_silenced.shape[1]] = member_silenced
    silenced[out.status == DIVERGED] = False
    return silenced


def _member_chunks(out, objective, as_tensor):
    """Chunk by chunk, the members' rows, their final points and the objective restricted to them."""
    n_members = out.final_theta.shape[0]
    for start in range(0, n_members, out.chunk):
        rows = np.arange(start, min(start + out.chunk, n_members))
        yield rows, as_tensor(out.final_theta[rows]), objective.restricted_to(
            torch.as_tensor(rows, device=objective.x.device)
        )


def _own_training_inputs(out, objective, as_tensor):
    """Chunk by chunk, the members' rows, final points and their own training inputs
    ``(member, sample, feature)`` (nan beyond each member's prefix)."""
    for rows, theta, chunk in _member_chunks(out, objective, as_tensor):
        x = chunk.x if chunk.x.dim() == 3 else chunk.x.expand(len(rows), -1, -1)
        yield rows, theta, torch.where(chunk.inside().unsqueeze(-1), x, torch.nan)


def _final_margins(out, objective, arch, x_test, y_test, as_tensor):
    """Delta on each member's training points ``(member, sample)`` and the test error."""
    n_members = out.final_theta.shape[0]
    delta = np.full((n_members, objective.y.shape[-1]), np.nan)
    test_error = np.full(n_members, np.nan)
    x, y = data_tensors(arch, x_test, y_test, dtype=objective.x.dtype, device=objective.x.device)
    with torch.no_grad():
        for rows, theta, chunk in _member_chunks(out, objective, as_tensor):
            member_delta = objective.margin - chunk.per_sample(theta)
            delta[rows, : member_delta.shape[1]] = member_delta.cpu().numpy()
            test_error[rows] = (margins(forward(theta, x, arch), y) <= 0).to(theta.dtype).mean(1).cpu().numpy()
    delta[np.isneginf(delta)] = np.nan  # outside the member's prefix
    diverged = out.status == DIVERGED
    delta[diverged], test_error[diverged] = np.nan, np.nan
    return delta, test_error
