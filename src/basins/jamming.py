"""Stage ``sweep_jamming``: fitting P points with N weights, from under- to over-parametrized.

Geiger, Spigler, d'Ascoli, Sagun, Baity-Jesi, Biroli and Wyart (2019) show that fitting random
labels with the quadratic hinge loss 1/2 relu(1 - y f)^2 goes through a sharp, jamming-like
transition at P = r* N: below it (SAT) every point ends with margin y f >= 1, above it (UNSAT)
a finite fraction N_Delta / N of points stays unsatisfied at a minimum of positive loss.

The sweep over P is run as ensemble members of the training engine: member ``i`` trains on the
first ``n_train[i]`` points of one shared pool (a nested family of training sets), so one job
trains a whole row of the phase diagram for one network and seed.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import torch
import xarray as xr

from basins.engine.checkpoints import fingerprint_arrays
from basins.engine.descent import descend, descent_dataset, final_losses
from basins.engine.devices import TORCH_DTYPES, resolve_device
from basins.engine.dynamics import energy_and_gradient
from basins.io import variable_attrs
from basins.labels import CONVERGED, DIVERGED, SAT, UNDECIDED_PHASE, UNSAT
from basins.landscapes.losses import check_loss, l2_penalty, margins, sample_losses
from basins.landscapes.networks import Architecture, forward
from basins.landscapes.objective import data_tensors, network_chunk_size

log = logging.getLogger(__name__)

PHASE_MEANINGS = "undecided sat unsat"


@dataclasses.dataclass(frozen=True)
class PrefixObjective:
    """Loss of each member on its own first ``n_train`` pool points (``restricted_to`` as
    :func:`basins.engine.descent.descend` wants); the pool is cut to the largest prefix in use."""

    arch: Architecture
    x: torch.Tensor
    y: torch.Tensor
    n_train: torch.Tensor
    loss: str
    margin: float
    l2: float = 0.0

    def restricted_to(self, rows: torch.Tensor) -> PrefixObjective:
        n_train = self.n_train[rows]
        n_pool = int(n_train.max()) if n_train.numel() else 0
        return dataclasses.replace(self, x=self.x[:n_pool], y=self.y[:n_pool], n_train=n_train)

    def inside(self) -> torch.Tensor:
        """``(member, sample)``: whether a pool sample is in the member's training set."""
        return torch.arange(len(self.y), device=self.y.device) < self.n_train.unsqueeze(1)

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
        if batch is not None:
            raise ValueError("the jamming sweep trains full batch; minibatch dynamics are not supported")
        return energy_and_gradient(self.member_losses, theta)


@dataclasses.dataclass(frozen=True)
class PrefixSatisfied:
    """``satisfied(theta)``: every point of the member's prefix has Delta <= ``delta_tol``."""

    objective: PrefixObjective
    delta_tol: float

    def restricted_to(self, rows: torch.Tensor) -> PrefixSatisfied:
        return PrefixSatisfied(self.objective.restricted_to(rows), self.delta_tol)

    def __call__(self, theta):
        return (self.objective.margin - self.objective.per_sample(theta) <= self.delta_tol).all(1)


def train_size_grid(smallest: int, largest: int, n_sizes: int) -> np.ndarray:
    """Distinct integer training-set sizes, log-spaced from ``smallest`` to ``largest``."""
    if not 0 < smallest < largest or n_sizes < 2:
        raise ValueError(
            f"train sizes smallest={smallest}, largest={largest}, n_sizes={n_sizes}: "
            "need 0 < smallest < largest and at least 2 sizes"
        )
    return np.unique(np.round(np.geomspace(smallest, largest, n_sizes)).astype(np.int64))


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
    loss: str = "quadratic_hinge",
    margin: float = 1.0,
    l2: float = 0.0,
    dynamics: str = "adam",
    lr_decay_every: int = 0,
    lr_decay_factor: float = 1.0,
    delta_tol: float = 1e-6,
    undecided_fraction: float = 0.05,
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
    x_pool, y_pool : ndarray, shapes (sample, feature), (sample,)
        The nested training sets: member ``i`` sees rows ``0 .. n_train[i] - 1``.
    x_test, y_test : ndarray
        Held-out points for the test error.
    initial_theta : ndarray, shape (member, param)
        Starting points (orthogonal weights and zero biases in that literature).
    n_train : ndarray of int, shape (member,)
        Training-set size P of each member, at most ``len(y_pool)``.
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
    delta_tol : float
        A point counts as satisfied once Delta <= ``delta_tol``. The quadratic hinge's force
        vanishes at Delta = 0, so gradient dynamics approach the margin from above without
        crossing it: with ``delta_tol`` = 0, fitted points would stay "unsatisfied" at
        Delta ~ 1e-8 for ever. Genuinely unsatisfied points of a jammed minimum have Delta of
        order one (a vanishing fraction lies below any small tolerance).
    undecided_fraction : float
        A member whose budget ran out with fewer than ``undecided_fraction * N`` unsatisfied
        points is marked undecided: it may have been about to fit. Undecided members are
        left out of the transition estimate and counted, not silently counted as UNSAT.
    checkpoint_path, checkpoint_every_s : see :func:`basins.training.train_ensemble`; a
        checkpoint is resumed only on the same pool (``x_pool``, ``y_pool``) and sizes.

    Returns
    -------
    xarray.Dataset
        The engine's variables (dims ``(member, param)``, ``(member, step)``) plus, per
        member, ``n_train``, ``ratio`` (P / N), ``n_unsatisfied`` (N_Delta), ``train_error``,
        ``test_error`` and ``phase`` (0 SAT, 1 UNSAT, -1 undecided), and ``delta``
        ``(member, sample)``: Delta = margin - y f on the member's training points (nan
        beyond them).
    """
    if loss not in ("quadratic_hinge", "hinge"):
        check_loss(loss)
        raise ValueError(f"loss={loss!r}: the jamming sweep uses 'quadratic_hinge' or 'hinge'")
    n_train = np.asarray(n_train, dtype=np.int64)
    if n_train.ndim != 1 or n_train.min() <= 0 or n_train.max() > len(y_pool):
        raise ValueError(f"n_train={n_train}: each size must be in 1..{len(y_pool)} (the pool size)")
    if initial_theta.shape != (len(n_train), arch.n_params):
        raise ValueError(
            f"initial_theta has shape {initial_theta.shape}; expected ({len(n_train)}, {arch.n_params})"
        )
    if not 0 <= undecided_fraction < 1 or delta_tol < 0:
        raise ValueError(
            f"undecided_fraction={undecided_fraction} must be in [0, 1) and delta_tol={delta_tol} >= 0"
        )
    torch_device, torch_dtype = resolve_device(device), TORCH_DTYPES[dtype]
    x, y = data_tensors(arch, x_pool, y_pool, dtype=torch_dtype, device=torch_device)
    sizes = torch.as_tensor(n_train, device=torch_device)
    objective = PrefixObjective(arch, x, y, sizes, loss, margin, l2)
    member_ids = np.arange(len(n_train))
    out = descend(
        objective,
        initial_theta,
        member_ids,
        dynamics=dynamics,
        lr=lr,
        lr_decay_every=lr_decay_every,
        lr_decay_factor=lr_decay_factor,
        max_steps=max_steps,
        grad_tol=grad_tol,
        satisfied=PrefixSatisfied(objective, delta_tol),
        seed=seed,
        device=torch_device,
        dtype=torch_dtype,
        chunk=network_chunk_size(arch, len(y_pool), memory_budget_mb, torch_dtype, torch_device),
        run_id=("jamming", arch, loss, margin, l2, n_train, delta_tol, dtype),
        data_fingerprint=fingerprint_arrays(x_pool, y_pool),
        checkpoint_path=checkpoint_path,
        checkpoint_every_s=checkpoint_every_s,
        progress_every_s=progress_every_s,
    )
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch_dtype, device=torch_device)  # noqa: E731
    final_losses(out, objective, as_tensor)
    delta, test_error = _final_margins(out, objective, arch, x_test, y_test, as_tensor)
    result = descent_dataset(out, member_ids, initial_theta, loss_name=f"{loss} training loss")
    n_unsatisfied = np.where(out["status"] == DIVERGED, -1, (delta > delta_tol).sum(1))
    phase = classify_phase(out["status"], n_unsatisfied, n_weights=arch.n_weights, undecided_fraction=undecided_fraction)
    with np.errstate(invalid="ignore"):
        train_error = np.where(out["status"] == DIVERGED, np.nan, (delta >= margin).sum(1) / n_train)
    result = result.assign(
        n_train=("member", n_train, variable_attrs("training-set size P")),
        ratio=("member", n_train / arch.n_weights, variable_attrs("P / N (N: weights, biases excluded)")),
        n_unsatisfied=(
            "member",
            n_unsatisfied,
            variable_attrs("unsatisfied training points N_Delta (Delta > delta_tol; -1: diverged)"),
        ),
        train_error=("member", train_error, variable_attrs("training error (0-1)")),
        test_error=("member", test_error, variable_attrs("test error (0-1)")),
        phase=(
            "member",
            phase.astype(np.int8),
            variable_attrs("fitting phase", flag_values="-1 0 1", flag_meanings=PHASE_MEANINGS),
        ),
        delta=(
            ("member", "sample"),
            delta,
            variable_attrs("Delta = margin - y f on the member's training points (nan beyond them)"),
        ),
    )
    result = result.assign_coords(sample=("sample", np.arange(len(y_pool)), variable_attrs("pool sample index")))
    counts = np.bincount(phase + 1, minlength=3)
    log.info("phases: %d SAT, %d UNSAT, %d undecided", counts[1], counts[2], counts[0])
    return result.assign_attrs(
        architecture=json.dumps(arch.__dict__, sort_keys=True),
        depth=arch.depth,
        width=arch.width,
        n_params=arch.n_params,
        n_weights=arch.n_weights,
        loss_function=loss,
        margin=margin,
        delta_tol=delta_tol,
        dynamics=dynamics,
    )


def classify_phase(
    status: np.ndarray, n_unsatisfied: np.ndarray, *, n_weights: int, undecided_fraction: float
) -> np.ndarray:
    """SAT (no unsatisfied point), UNSAT (jammed at a minimum, or budget spent far from
    fitting) or undecided (diverged, or budget spent with fewer than ``undecided_fraction * N``
    unsatisfied points), per member."""
    phase = np.where(n_unsatisfied == 0, SAT, UNSAT)
    near_zero = (status != CONVERGED) & (n_unsatisfied < undecided_fraction * n_weights)
    phase = np.where((n_unsatisfied > 0) & near_zero, UNDECIDED_PHASE, phase)
    return np.where(status == DIVERGED, UNDECIDED_PHASE, phase)


def _final_margins(out, objective, arch, x_test, y_test, as_tensor):
    """Delta on each member's training points ``(member, sample)`` and the test error."""
    n_members = out["final_theta"].shape[0]
    delta = np.full((n_members, len(objective.y)), np.nan)
    test_error = np.full(n_members, np.nan)
    x, y = data_tensors(arch, x_test, y_test, dtype=objective.x.dtype, device=objective.x.device)
    with torch.no_grad():
        for start in range(0, n_members, out["chunk"]):
            rows = np.arange(start, min(start + out["chunk"], n_members))
            theta = as_tensor(out["final_theta"][rows])
            chunk = objective.restricted_to(torch.as_tensor(rows, device=theta.device))
            member_delta = objective.margin - chunk.per_sample(theta)
            delta[rows, : member_delta.shape[1]] = member_delta.cpu().numpy()
            test_error[rows] = (margins(forward(theta, x, arch), y) <= 0).to(theta.dtype).mean(1).cpu().numpy()
    delta[np.isneginf(delta)] = np.nan  # outside the member's prefix
    diverged = out["status"] == DIVERGED
    delta[diverged], test_error[diverged] = np.nan, np.nan
    return delta, test_error
