"""Stage ``train_ensemble``: run the dynamics from many starting points at once.

Every basin measurement is "start many networks at chosen points, let the dynamics run, see
where each ends". The engine holds the parameters of all members as one ``(member, param)``
tensor, steps them together, and drops each member from the computation once it has
converged, diverged or spent its budget.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from basins.checkpoints import fingerprint_arrays, load_checkpoint, run_fingerprint, save_checkpoint
from basins.dynamics import Objective, energy_and_gradient, make_stepper  # noqa: F401 (re-exported)
from basins.flatness import lowest_eigenpairs, make_hvp
from basins.io import variable_attrs
from basins.labels import BUDGET, CONVERGED, DIVERGED, SADDLE, STATUS_MEANINGS  # noqa: F401 (re-exported)
from basins.losses import check_loss, l2_penalty, margins, sample_losses
from basins.networks import Architecture, forward
from basins.polish import polish_minima

log = logging.getLogger(__name__)

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA where available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(device)


def data_tensors(arch, x, y, *, dtype=torch.float64, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels as the losses want them: +-1 labels in ``dtype`` for one output, class
    indices (long) for several."""
    labels = dtype if arch.n_outputs == 1 else torch.long
    return (
        torch.as_tensor(np.asarray(x), dtype=dtype, device=device),
        torch.as_tensor(np.asarray(y), dtype=labels, device=device),
    )


def member_losses(theta, x, y, arch, *, loss, margin, l2, beta=1.0) -> torch.Tensor:
    """Training loss ``(member,)``: the mean sample loss plus ``l2 / 2 |theta|^2``; differentiable."""
    output = forward(theta, x, arch)
    return sample_losses(output, y, loss=loss, margin=margin, beta=beta).mean(1) + l2_penalty(theta, l2)


def make_objective(arch, x, y, *, loss, margin, l2, beta=1.0, compile=False):
    """``objective(theta, batch) -> (loss, grad)``, per member, as :mod:`basins.dynamics` wants.

    ``compile`` evaluates it through :func:`compiled_loss_and_gradient` instead of eager autograd.
    """
    if compile:
        gradient = compiled_loss_and_gradient(arch, loss, margin, l2)
        beta_tensor = torch.tensor(beta, dtype=x.dtype, device=x.device)

    def objective(theta, batch):
        inputs, labels = (x, y) if batch is None else (x[batch], y[batch])
        if compile:
            grad, (_, values) = gradient(theta, inputs, labels, beta_tensor)
            return values, grad
        return energy_and_gradient(
            lambda t: member_losses(t, inputs, labels, arch, loss=loss, margin=margin, l2=l2, beta=beta), theta
        )

    return objective


@functools.cache
def compiled_loss_and_gradient(arch, loss, margin, l2):
    """``(theta, x, y, beta) -> (grad, (sum, losses))`` of :func:`member_losses`, by ``torch.compile``.

    Inductor fuses the element-wise chain around the GEMMs (activation, its derivative, the
    loss), which dominates the evaluation of narrow networks on the CPU (2-3x faster at h = 16;
    benchmarks/README.md). Shapes are dynamic and beta is a tensor input, so neither members
    dropping out nor an annealed beta recompiles it. Fused kernels round differently: results
    agree with eager autograd to round-off, not bit for bit.
    """

    def total(theta, x, y, beta):
        losses = member_losses(theta, x, y, arch, loss=loss, margin=margin, l2=l2, beta=beta)
        return losses.sum(), losses

    return torch.compile(torch.func.grad_and_value(total, has_aux=True), dynamic=True)


def beta_at(step: int, *, beta: float, beta_start: float, ramp_steps: int) -> float:
    """Inverse temperature of the cross-entropy after ``step`` steps: geometric from
    ``beta_start`` to ``beta`` over ``ramp_steps`` steps, then ``beta``."""
    if step >= ramp_steps:
        return beta
    return beta_start * (beta / beta_start) ** (step / ramp_steps)


def log_spaced_steps(max_steps: int, n_points: int = 40) -> np.ndarray:
    """Distinct integer steps 0, 1, ..., max_steps spaced evenly in log(1 + step)."""
    return np.unique(np.round(np.expm1(np.linspace(0, np.log1p(max_steps), n_points)))).astype(int)


def train_ensemble(
    arch: Architecture,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    initial_theta: np.ndarray,
    member_ids: np.ndarray,
    *,
    loss: str,
    dynamics: str,
    lr: float,
    max_steps: int,
    grad_tol: float,
    budget_factors: Sequence[float] = (1,),
    l2: float = 0.0,
    margin: float = 1.0,
    momentum: float = 0.0,
    batch_size: int | None = None,
    lr_decay_every: int = 0,
    lr_decay_factor: float = 1.0,
    beta: float = 1.0,
    beta_start: float | None = None,
    beta_ramp_steps: int = 0,
    compile: bool = False,
    stop_when_satisfied: bool = False,
    curvature_tol: float = 1e-6,
    saddle_kick: float = 1e-2,
    max_saddle_escapes: int = 3,
    max_dense_params: int = 600,
    n_lanczos: int = 60,
    newton_steps: int = 16,
    stationary_tol: float = 1e-9,
    max_refinements: int = 2,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    check_every: int = 100,
    divergence_threshold: float = 1e6,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "float64",
    memory_budget_mb: float = 1024.0,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every_s: float = 300.0,
    progress_every_s: float = 30.0,
) -> xr.Dataset:
    """Train every member from its starting point until it stops.

    Parameters
    ----------
    arch : Architecture
        The network, shared by all members.
    x_train, y_train, x_test, y_test : ndarray
        Data ``(sample, feature)`` and labels ``(sample,)``: +-1 for binary tasks (one output),
        class indices otherwise.
    initial_theta : ndarray, shape (member, param)
        Starting points (see :func:`basins.networks.initial_parameters`, or points chosen by
        the basin stage).
    member_ids : ndarray, shape (member,)
        Global member indices; they seed the minibatch order, so results do not depend on
        how members are split into shards or chunks.
    loss : {"mse", "hinge", "quadratic_hinge", "cross_entropy"}
        Training loss, averaged over the training set, plus ``l2 / 2 |theta|^2``.
    dynamics : {"gradient_flow", "gd", "sgd", "adam", "fire"}
        ``lr`` is the step size (the first step for the adaptive gradient flow).
    max_steps : int
        Step budget per member (for ``gradient_flow``: attempted integrator steps).
    budget_factors : sequence of float
        A member that spends ``max_steps`` is continued up to ``budget_factors[-1] * max_steps``
        steps in all, in stages (:func:`descend_until_decided`); one still running then ends
        with status ``BUDGET``. The same for every continuation after a saddle kick.
    grad_tol : float
        A member has converged when its full-batch gradient norm is at most this. Too large
        stops members on plateaus before the minimum; too small spends the budget on
        round-off near flat minima.
    lr_decay_every, lr_decay_factor : int, float
        ``gd``, ``sgd``, ``adam``: multiply the step size by the factor every so many steps
        (0: constant step size).
    beta, beta_start, beta_ramp_steps : float, float, int
        ``cross_entropy`` only: its inverse temperature (see :func:`basins.losses.sample_losses`)
        grows geometrically from ``beta_start`` to ``beta`` over the first ``beta_ramp_steps``
        steps (a slow ramp anneals, 0 quenches at ``beta``); members converge only on the final
        landscape, after the ramp. Not for ``gradient_flow``, whose steps are not times.
    compile : bool
        Evaluate the loss and gradient through ``torch.compile`` (needs a C++ compiler on the
        CPU, Triton on CUDA): faster for narrow networks, equal to round-off, and a few seconds
        of compilation per job.
    stop_when_satisfied : bool
        Also stop a member once every training point has margin >= ``margin``. Such stopping
        points are not claimed to be minima: they get no saddle check.
    curvature_tol, saddle_kick, max_saddle_escapes : float, float, int
        Minima, not saddles: at every member that converged by its gradient the lowest
        Hessian eigenvalue is computed (:func:`escape_saddles`); below ``-curvature_tol`` the
        member is kicked along that eigenvector and the same dynamics continues, up to
        ``max_saddle_escapes`` times; one still at a saddle then ends with status ``SADDLE``.
        Too large a ``curvature_tol`` lets shallow saddles pass as minima; too small flags the
        round-off of flat minima (near-zero eigenvalues) as saddles.
    max_dense_params, n_lanczos : int
        The lowest eigenpair comes from dense Hessians up to ``max_dense_params`` parameters,
        else from ``n_lanczos`` Lanczos iterations.
    newton_steps : int
        Then up to this many Newton steps on the directions of curvature above
        ``curvature_tol`` move each converged member onto its minimum, to round-off
        (:func:`basins.polish.polish_minima`; networks up to ``max_dense_params`` parameters;
        0: no polish), so that members of one minimum agree whatever ``grad_tol`` was.
    stationary_tol, max_refinements : float, int
        A converged member is a minimum once its polished gradient norm is at most
        ``stationary_tol``; others are continued with a tighter gradient test, up to
        ``max_refinements`` rounds, and then left undecided (:func:`confirm_minima`). Above
        ``max_dense_params`` parameters there is no polish and the gradient test alone decides
        (a warning says so).
    rtol, atol : float
        Local error tolerances of ``gradient_flow``.
    check_every : int
        ``sgd`` only: steps between full-batch convergence checks.
    divergence_threshold : float
        A member whose loss is not finite, or whose largest parameter exceeds this, is marked
        diverged and frozen.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:k]"``.
    memory_budget_mb : float
        Members are processed in chunks sized to stay within this working memory.
    checkpoint_path : path, optional
        Where to save progress every ``checkpoint_every_s`` seconds; an existing checkpoint of
        the same run is resumed from: same settings, starting points, training data
        (``x_train``, ``y_train``), package source code and torch version
        (:mod:`basins.checkpoints`). Any other checkpoint there is discarded, with a log line
        saying which of these differ; any edit to ``src/basins`` discards them all. It is
        removed once the run is complete.

    Returns
    -------
    xarray.Dataset
        Dims ``(member, param)`` and ``(member, step)``: ``initial_theta``, ``final_theta``,
        ``loss``, ``train_error``, ``test_error``, ``n_unsatisfied``, ``grad_norm``,
        ``steps``, ``flow_time``, ``wall_time``, ``status`` (0 converged at a minimum, 1 budget,
        2 diverged, 3 saddle), ``lowest_eigenvalue`` and ``n_escapes`` (without
        ``stop_when_satisfied``) and ``loss_history`` at log-spaced steps (of the first run, before
        any saddle escape).
    """
    check_loss(loss)
    if max_steps <= 0 or grad_tol < 0:
        raise ValueError(f"max_steps={max_steps} must be > 0 and grad_tol={grad_tol} >= 0")
    beta_start = beta if beta_start is None else beta_start
    check_beta_schedule(loss, dynamics, beta, beta_start, beta_ramp_steps)
    if initial_theta.shape != (len(member_ids), arch.n_params):
        raise ValueError(
            f"initial_theta has shape {initial_theta.shape}; expected "
            f"({len(member_ids)}, {arch.n_params}) for {len(member_ids)} members of this network"
        )
    torch_device = resolve_device(device)
    torch_dtype = TORCH_DTYPES[dtype]
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch_dtype, device=torch_device)  # noqa: E731
    data = {
        "train": data_tensors(arch, x_train, y_train, dtype=torch_dtype, device=torch_device),
        "test": data_tensors(arch, x_test, y_test, dtype=torch_dtype, device=torch_device),
    }
    def landscape(inverse_temperature):
        return make_objective(
            arch, *data["train"], loss=loss, margin=margin, l2=l2, beta=inverse_temperature, compile=compile
        )

    objective = landscape(beta)
    annealed = None
    if beta_ramp_steps:
        annealed = lambda step: landscape(  # noqa: E731
            beta_at(step, beta=beta, beta_start=beta_start, ramp_steps=beta_ramp_steps)
        )
    satisfied = None
    if stop_when_satisfied:
        x, y = data["train"]
        satisfied = lambda theta: (margins(forward(theta, x, arch), y) < margin).sum(1) == 0  # noqa: E731
    chunk = network_chunk_size(arch, len(y_train), memory_budget_mb, torch_dtype, torch_device)
    engine = dict(
        dynamics=dynamics, lr=lr, max_steps=max_steps, grad_tol=grad_tol, momentum=momentum,
        batch_size=batch_size, lr_decay_every=lr_decay_every, lr_decay_factor=lr_decay_factor,
        n_samples=len(y_train), satisfied=satisfied, rtol=rtol, atol=atol, check_every=check_every,
        divergence_threshold=divergence_threshold, seed=seed, device=torch_device, dtype=torch_dtype,
        chunk=chunk, run_id=(arch, loss, l2, margin, beta, beta_start, stop_when_satisfied, dtype, compile),
        progress_every_s=progress_every_s,
    )
    out = descend_until_decided(
        objective, initial_theta, member_ids, budget_factors=budget_factors,
        annealed=annealed, anneal_steps=beta_ramp_steps,
        checkpoint_path=checkpoint_path, checkpoint_every_s=checkpoint_every_s,
        data_fingerprint=fingerprint_arrays(x_train, y_train), **engine,
    )
    if not stop_when_satisfied:
        x, y = data["train"]
        energy = lambda t: member_losses(t, x, y, arch, loss=loss, margin=margin, l2=l2, beta=beta)  # noqa: E731
        hessian_bytes = 8 * 4 * arch.n_params**2

        def continue_from(theta, ids, tol):
            return descend_until_decided(
                objective, theta, ids, budget_factors=budget_factors, **dict(engine, grad_tol=tol)
            )

        def settle(run, ids, tol):
            """Saddles kicked off and continued, then the Newton polish, for the members of ``run``."""
            escape_saddles(
                run, ids,
                continue_from=lambda theta, kicked: continue_from(theta, kicked, tol),
                energy=energy,
                curvature_tol=curvature_tol, saddle_kick=saddle_kick, grad_tol=tol,
                max_saddle_escapes=max_saddle_escapes, max_dense_params=max_dense_params,
                n_lanczos=n_lanczos, seed=seed, device=torch_device, dtype=torch_dtype,
                memory_budget_mb=memory_budget_mb,
            )
            polish_minima(
                run, energy, curvature_tol=curvature_tol, newton_steps=newton_steps,
                max_dense_params=max_dense_params, device=torch_device, dtype=torch_dtype,
                chunk=max(1, min(run["chunk"], int(memory_budget_mb * 2**20 // hessian_bytes))),
            )
            return run

        settle(out, member_ids, grad_tol)
        if arch.n_params <= max_dense_params and newton_steps > 0:
            confirm_minima(
                out, member_ids, refine=lambda theta, ids, tol: settle(continue_from(theta, ids, tol), ids, tol),
                grad_tol=grad_tol, stationary_tol=stationary_tol, max_refinements=max_refinements,
            )
        else:
            log.warning(
                "no Newton polish (%d parameters, max_dense_params=%d, newton_steps=%d): minima are "
                "confirmed by the gradient test at grad_tol alone, and their count can depend on it",
                arch.n_params, max_dense_params, newton_steps,
            )
    final_losses(out, objective, as_tensor)
    with torch.no_grad():
        _evaluate_final(out, arch, data, margin, out["chunk"], as_tensor)
    return _as_dataset(out, member_ids, initial_theta, arch, dynamics)


def confirm_minima(
    out: dict,
    member_ids: np.ndarray,
    *,
    refine: Callable[[np.ndarray, np.ndarray, float], dict],
    grad_tol: float,
    stationary_tol: float,
    max_refinements: int,
) -> None:
    """Catalogue as minima only members shown to sit on a stationary point.

    A member that passed the gradient test but whose Newton polish did not bring its gradient
    norm to ``stationary_tol`` (round-off, far below any ``grad_tol``) has not been shown to be
    at a minimum: the dynamics may only be slow there (a shallow slope on which GD or FIRE
    crawls, with no stationary point nearby), or the polish may have fallen short in an
    anharmonic valley. Such members are continued by ``refine(points, member_ids, tol)`` (the
    same dynamics from where they stopped, with the gradient test tightened to ``tol``, then the
    saddle check and the polish) with ``tol = grad_tol * 0.01**k`` in round ``k``; after
    ``max_refinements`` rounds a member still unconfirmed gets status ``BUDGET``: undecided,
    never a minimum. Adds ``n_refinements`` to ``out``; the other variables of a refined member
    are its continued run's (``steps``, ``wall_time``, ``flow_time`` and ``n_escapes`` summed).
    """
    if not 0 < stationary_tol or max_refinements < 0:
        raise ValueError(f"stationary_tol={stationary_tol} must be > 0 and max_refinements={max_refinements} >= 0")
    out["n_refinements"] = np.zeros(len(member_ids), dtype=np.int64)

    def unconfirmed():
        return np.flatnonzero((out["status"] == CONVERGED) & ~(out["grad_norm"] <= stationary_tol))

    for round_ in range(1, max_refinements + 1):
        rows = unconfirmed()
        if not len(rows):
            break
        tol = grad_tol * 0.01**round_
        log.info("%d members not yet on a stationary point (gradient up to %.2g): continued to grad_tol %.2g",
                 len(rows), out["grad_norm"][rows].max(), tol)
        refined = refine(out["final_theta"][rows], member_ids[rows], tol)
        _merge_continued(out, rows, refined, also_replaced=("lowest_eigenvalue", "polish_shift", "grad_norm_before_polish"),
                         also_summed=("n_escapes",))
        out["n_refinements"][rows] = round_
    rows = unconfirmed()
    if len(rows):
        log.info("%d members still not on a stationary point: undecided (status budget)", len(rows))
    out["status"][rows] = BUDGET


def escape_saddles(
    out: dict,
    member_ids: np.ndarray,
    *,
    continue_from: Callable[[np.ndarray, np.ndarray], dict],
    energy: Callable[[torch.Tensor], torch.Tensor],
    curvature_tol: float,
    saddle_kick: float,
    grad_tol: float,
    max_saddle_escapes: int,
    max_dense_params: int,
    n_lanczos: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    memory_budget_mb: float = 1024.0,
) -> None:
    """Make every converged member of :func:`descend`'s ``out`` a minimum, or say it is not.

    A gradient test cannot tell a minimum from a saddle: flows started on a ridge stop on it.
    At each converged member the lowest Hessian eigenpair of ``energy`` (the final landscape,
    ``(member, param) -> (member,)``) is computed; where the eigenvalue is below
    ``-curvature_tol`` the member is moved along the eigenvector, to the side its own flow was
    heading (:func:`_downhill_side`), by ``max(saddle_kick, 2 grad_tol / |lambda|)``, capped at 1 (a kick whose
    quadratic gradient exceeds ``grad_tol``, so the dynamics must move), and
    ``continue_from(points, member_ids)`` (the same dynamics, a fresh budget) carries it on.
    After ``max_saddle_escapes`` kicks a member still at a saddle gets status ``SADDLE``.

    Adds ``lowest_eigenvalue`` (at the final point; nan where not converged) and
    ``n_escapes`` to ``out`` and updates ``final_theta``, ``status``, ``grad_norm``, ``steps``,
    ``wall_time`` and ``flow_time`` (summed over the continued runs).
    """
    if curvature_tol < 0 or saddle_kick <= 0 or max_saddle_escapes < 0:
        raise ValueError(
            f"curvature_tol={curvature_tol} must be >= 0, saddle_kick={saddle_kick} > 0 and "
            f"max_saddle_escapes={max_saddle_escapes} >= 0"
        )
    n_members = len(member_ids)
    out["lowest_eigenvalue"] = np.full(n_members, np.nan)
    out["n_escapes"] = np.zeros(n_members, dtype=np.int64)
    hvp = make_hvp(energy)
    generator = torch.Generator().manual_seed(seed)
    n_params = out["final_theta"].shape[1]
    per_member = 8 * (3 * n_params**2 if n_params <= max_dense_params else 2 * n_lanczos * n_params)
    chunk = max(1, min(out["chunk"], int(memory_budget_mb * 2**20 // per_member)))
    rows = np.flatnonzero(out["status"] == CONVERGED)
    for attempt in range(max_saddle_escapes + 1):
        if not len(rows):
            break
        value, vector = np.empty(len(rows)), np.empty((len(rows), n_params))
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            theta = torch.as_tensor(out["final_theta"][part], dtype=dtype, device=device)
            low, direction = lowest_eigenpairs(
                hvp, theta, max_dense_params=max_dense_params, n_lanczos=n_lanczos, generator=generator
            )
            value[start : start + chunk], vector[start : start + chunk] = _np(low), _np(direction)
        out["lowest_eigenvalue"][rows] = value
        at_saddle = value < -curvature_tol
        rows, value, vector = rows[at_saddle], value[at_saddle], vector[at_saddle]
        if attempt == max_saddle_escapes or not len(rows):
            out["status"][rows] = SADDLE
            break
        log.info("%d members stopped at saddles (lowest eigenvalue down to %.3g): kick %d", len(rows),
                 value.min(), attempt + 1)
        sign = _downhill_side(energy, out["final_theta"][rows], vector, member_ids[rows], seed, attempt, device, dtype)
        kick = np.minimum(np.maximum(saddle_kick, 2 * grad_tol / np.abs(value)), 1.0)
        continued = continue_from(out["final_theta"][rows] + (sign * kick)[:, None] * vector, member_ids[rows])
        _merge_continued(out, rows, continued)
        out["n_escapes"][rows] += 1
        out["lowest_eigenvalue"][rows] = np.nan
        rows = rows[continued["status"] == CONVERGED]


def _downhill_side(energy, theta, vector, member_ids, seed, attempt, device, dtype):
    """The side of the saddle each member was already moving to: the sign of -grad . v.

    Near a saddle the gradient's component along the unstable direction v points away from the
    side the point lies on, so following -grad continues the flow's own motion and the outcome
    is the landscape's, not a coin's. Only where that component vanishes exactly (a start on the
    ridge itself, a set of measure zero) is the side drawn, seeded by ``(seed, member)``.
    """
    points = torch.as_tensor(theta, dtype=dtype, device=device)
    _, grad = energy_and_gradient(energy, points)
    along = -(_np(grad) * vector).sum(1)
    drawn = np.array([np.random.default_rng([seed, int(member), attempt]).choice([-1.0, 1.0]) for member in member_ids])
    return np.where(along > 0, 1.0, np.where(along < 0, -1.0, drawn))


def check_beta_schedule(loss: str, dynamics: str, beta: float, beta_start: float, ramp_steps: int) -> None:
    """The inverse temperature is the cross-entropy's, and ramps only under stepwise dynamics."""
    if beta <= 0 or beta_start <= 0 or ramp_steps < 0:
        raise ValueError(f"beta={beta} and beta_start={beta_start} must be > 0, beta_ramp_steps={ramp_steps} >= 0")
    if loss != "cross_entropy" and (beta != 1.0 or beta_start != 1.0):
        raise ValueError(f"beta applies to the cross_entropy loss, not {loss!r}")
    if ramp_steps and dynamics == "gradient_flow":
        raise ValueError("beta_ramp_steps needs a stepwise dynamics (gd, sgd, adam, fire), not gradient_flow")
    if beta_start != beta and not ramp_steps:
        raise ValueError(f"beta_start={beta_start} differs from beta={beta} but beta_ramp_steps is 0")
    if ramp_steps and beta_start == beta:
        raise ValueError(f"beta_ramp_steps={ramp_steps} ramps beta from {beta} to itself; set beta_start")


def descend(
    objective: Objective,
    initial_theta: np.ndarray,
    member_ids: np.ndarray,
    *,
    dynamics: str,
    lr: float,
    max_steps: int,
    grad_tol: float,
    device: torch.device,
    dtype: torch.dtype,
    chunk: int,
    run_id: tuple,
    momentum: float = 0.0,
    batch_size: int | None = None,
    lr_decay_every: int = 0,
    lr_decay_factor: float = 1.0,
    n_samples: int | None = None,
    satisfied: Callable[[torch.Tensor], torch.Tensor] | None = None,
    annealed: Callable[[int], Objective] | None = None,
    anneal_steps: int = 0,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    check_every: int = 100,
    max_move: float = float("inf"),
    divergence_threshold: float = 1e6,
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every_s: float = 300.0,
    data_fingerprint: str = "",
    progress_every_s: float = 30.0,
) -> dict:
    """Run the dynamics on any landscape given by its ``objective``; the engine of every stage.

    ``objective(theta, batch) -> (loss (member,), grad (member, param))`` as
    :mod:`basins.dynamics` wants; ``satisfied(theta) -> bool (member,)`` is an extra stopping
    test; ``max_move`` caps a FIRE step's length. Members are processed ``chunk`` at a time.
    Landscapes that differ between members (each member its own training set) give the
    objective and ``satisfied`` a method ``restricted_to(rows)`` returning the callable for the
    members at those rows of ``initial_theta``; the engine calls it whenever its set of
    running members changes. A landscape that moves in time gives ``annealed(step)``, the
    objective of the first ``anneal_steps`` steps (``objective`` is the final one): the point
    reached by a step is evaluated on the next step's landscape (as is minibatch SGD's gradient
    for that step), and no member converges by its gradient before the landscape has stopped
    moving. ``run_id`` names the landscape for the checkpoint and ``data_fingerprint`` hashes
    the data its objective reads (:func:`basins.checkpoints.fingerprint_arrays`; empty for a
    landscape with no data beyond ``run_id``): a checkpoint is only resumed by the same run,
    on the same data, code and torch version (:mod:`basins.checkpoints`). See
    :func:`train_ensemble` for the other options. Returns the per-member arrays (``final_theta``, ``status``, ``steps``,
    ``grad_norm``, ``wall_time``, ``flow_time``, ``loss_history`` at ``history_steps``).
    """
    stepper = make_stepper(
        dynamics,
        lr=lr,
        momentum=momentum,
        batch_size=batch_size,
        n_samples=n_samples,
        seed=seed,
        rtol=rtol,
        atol=atol,
        check_every=check_every,
        max_move=max_move,
        lr_decay_every=lr_decay_every,
        lr_decay_factor=lr_decay_factor,
    )
    n_members = len(member_ids)
    history_steps = log_spaced_steps(max_steps)
    fingerprint = run_fingerprint(
        *run_id, initial_theta, member_ids, dynamics, lr, max_steps, grad_tol, momentum,
        batch_size, rtol, atol, seed, dtype, max_move, lr_decay_every, lr_decay_factor, anneal_steps,
        check_every, divergence_threshold, data=data_fingerprint,
    )
    out = _load_checkpoint(checkpoint_path, fingerprint) or _empty_results(
        initial_theta, history_steps
    )
    # The chunk size is kept from a checkpoint so a resumed run splits members the same way.
    chunk = out.setdefault("chunk", chunk)
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
    progress = _Progress(n_members, progress_every_s)
    last_checkpoint = time.monotonic()

    def landscape(step):
        return objective if annealed is None or step >= anneal_steps else annealed(step)

    def save(live=None):
        if checkpoint_path is not None:
            _save_checkpoint(checkpoint_path, fingerprint, out, live)

    with torch.no_grad():
        for start in range(out["next_member"], n_members, chunk):
            rows = np.arange(start, min(start + chunk, n_members))
            live = out.pop("live", None)
            if live is None:
                theta = as_tensor(initial_theta[rows])
                active = torch.as_tensor(rows, device=device)
                loss_now, grad = restricted(landscape(0), active)(theta, None)
                ids = torch.as_tensor(member_ids[rows], device=device)
                state = stepper.init_state(theta, grad, ids)
                step = 0
            else:
                theta, state, loss_now, grad, active, step = _to_device(live, device)
            running_objective, running_satisfied = restricted(landscape(step), active), restricted(satisfied, active)
            chunk_start = time.monotonic() - out["elapsed"]
            while active.numel():
                # 1. Classify members from the full-batch loss and gradient at this point.
                status = torch.full_like(active, -1)
                if grad is not None:
                    grad_norm = grad.norm(dim=1)
                    bad = ~torch.isfinite(loss_now) | ~torch.isfinite(grad_norm)
                    bad |= theta.abs().amax(1) > divergence_threshold
                    good = (grad_norm <= grad_tol) & (step >= anneal_steps)
                    if satisfied is not None:
                        good |= running_satisfied(theta)
                    status = torch.where(good, CONVERGED, status)
                    status = torch.where(bad, DIVERGED, status)
                else:
                    grad_norm = torch.full_like(theta[:, 0], float("nan"))
                    bad = ~torch.isfinite(theta).all(1) | (theta.abs().amax(1) > divergence_threshold)
                    status = torch.where(bad, DIVERGED, status)
                over = (step >= max_steps) | getattr(stepper, "finished", _never)(state)
                status = torch.where((status < 0) & over, BUDGET, status)
                finished = status >= 0
                # 2. Record the loss history and the members that stop here.
                if step in out["history_index"]:
                    if loss_now is None:
                        loss_now, grad = running_objective(theta, None)
                    out["loss_history"][_np(active), out["history_index"][step]] = _np(loss_now)
                if finished.any():
                    rows_done = _np(active[finished])
                    out["final_theta"][rows_done] = _np(theta[finished])
                    out["status"][rows_done] = _np(status[finished])
                    out["steps"][rows_done] = step
                    out["grad_norm"][rows_done] = _np(grad_norm[finished])
                    out["wall_time"][rows_done] = time.monotonic() - chunk_start
                    if "time" in state:
                        out["flow_time"][rows_done] = _np(state["time"][finished])
                    keep = ~finished
                    theta, active = theta[keep], active[keep]
                    state = {name: value[keep] for name, value in state.items()}
                    loss_now = None if loss_now is None else loss_now[keep]
                    grad = None if grad is None else grad[keep]
                    running_objective = restricted(landscape(step), active)
                    running_satisfied = restricted(satisfied, active)
                    progress.finished(out["status"][rows_done])
                if not active.numel():
                    break
                # 3. One step of the dynamics for the members still running.
                if step < anneal_steps:
                    running_objective = restricted(landscape(step + 1), active)
                theta, state, loss_now, grad = stepper.step(theta, state, loss_now, grad, running_objective)
                step += 1
                progress.report(step, active.numel())
                if time.monotonic() - last_checkpoint > checkpoint_every_s:
                    out["elapsed"] = time.monotonic() - chunk_start
                    save((theta, state, loss_now, grad, active, step))
                    last_checkpoint = time.monotonic()
            out["next_member"] = rows[-1] + 1
            out["elapsed"] = 0.0
            save()
    if dynamics == "gd":
        out["flow_time"] = stepper.lr.total(out["steps"])
    out["history_steps"] = history_steps
    if checkpoint_path is not None:
        Path(checkpoint_path).unlink(missing_ok=True)
    return out


def descend_until_decided(
    objective: Objective,
    initial_theta: np.ndarray,
    member_ids: np.ndarray,
    *,
    budget_factors: Sequence[float] = (1,),
    **engine,
) -> dict:
    """:func:`descend`, with members that spend their budget continued rather than given up.

    A member that ends with status ``BUDGET`` under ``budget_factors[k] * max_steps`` steps is
    continued from where it stopped for ``(budget_factors[k+1] - budget_factors[k]) * max_steps``
    more, so its total budget is the next factor's; the last factor is the cap, and what is
    still undecided then keeps status ``BUDGET`` (censored, never a basin of its own). The
    continuation runs the rest of the schedule: the annealed landscape (``annealed``) and the
    step-size decay resume where they were; state the dynamics carries (Adam's moments,
    momentum, FIRE's velocity) restarts from zero, as after a restart of those methods. Each
    continuation is checkpointed beside the first run's checkpoint (``<path>.after<steps>``).
    ``steps``, ``wall_time`` and ``flow_time`` add up over
    the continuations; ``loss_history`` is the first run's.
    """
    factors = np.asarray(budget_factors, dtype=float)
    if len(factors) == 0 or factors[0] != 1 or (np.diff(factors) <= 0).any():
        raise ValueError(f"budget_factors={list(budget_factors)}: give increasing factors starting at 1")
    if len(factors) > 1 and hasattr(objective, "restricted_to"):
        raise ValueError("budget_factors beyond the first need a landscape shared by all members")
    out = descend(objective, initial_theta, member_ids, **engine)
    max_steps = engine["max_steps"]
    for done, factor in zip(factors[:-1], factors[1:]):
        again = np.flatnonzero(out["status"] == BUDGET)
        if not len(again):
            break
        log.info("%d members spent %g x the step budget: continued to %g x", len(again), done, factor)
        continued = descend(
            objective, out["final_theta"][again], member_ids[again],
            **_continuation(engine, steps_done=int(round(done * max_steps)),
                            more_steps=int(round((factor - done) * max_steps))),
        )
        _merge_continued(out, again, continued)
    return out


def _merge_continued(out, rows, continued, *, also_replaced=(), also_summed=()):
    """The members at ``rows`` of ``out`` continued by the run ``continued``: its end point and
    status replace theirs; steps and times add up."""
    for name in ("final_theta", "status", "grad_norm", *also_replaced):
        out[name][rows] = continued[name]
    for name in ("steps", "wall_time", "flow_time", *also_summed):
        out[name][rows] = out[name][rows] + continued[name]


def _continuation(engine, *, steps_done, more_steps):
    """:func:`descend`'s options for a run continued after ``steps_done`` steps."""
    continued = dict(engine, max_steps=more_steps)
    if engine.get("checkpoint_path") is not None:
        # Its own checkpoint: the first run's is removed once that run completes.
        continued["checkpoint_path"] = f"{engine['checkpoint_path']}.after{steps_done}"
    every = continued.get("lr_decay_every", 0)
    if every:
        continued["lr"] = continued["lr"] * continued.get("lr_decay_factor", 1.0) ** (steps_done // every)
    annealed, anneal_steps = continued.get("annealed"), continued.get("anneal_steps", 0)
    if annealed is not None and anneal_steps > steps_done:
        continued["annealed"] = lambda step: annealed(step + steps_done)
        continued["anneal_steps"] = anneal_steps - steps_done
    else:
        continued["annealed"], continued["anneal_steps"] = None, 0
    return continued


def _never(state):
    return False


def restricted(function, rows: torch.Tensor):
    """``function`` for the members at ``rows`` (see :func:`descend`); shared ones as they are."""
    if function is not None and hasattr(function, "restricted_to"):
        return function.restricted_to(rows)
    return function


def _np(tensor):
    return tensor.detach().cpu().numpy()


# On the CPU, one layer's activations (sample, member, unit) are kept to a few MB: larger
# tensors are mmap-ed afresh by the C allocator at every evaluation, and the page faults cost
# more than the arithmetic; small ones also stay in cache (h = 16, E = 1024 on the 2-core VM:
# 4000 member-steps/s unchunked, 10000 at 16 MB, 13000 at 4 MB, 11000 at 2 MB).
CPU_LARGEST_TEMPORARY_BYTES = 4 * 2**20


def chunk_size(
    working_bytes_per_member: int, largest_temporary_per_member: int, memory_budget_mb: float, device: torch.device
) -> int:
    """Members processed at once: within the memory budget, and on the CPU within
    :data:`CPU_LARGEST_TEMPORARY_BYTES` for the largest temporary tensor."""
    chunk = int(memory_budget_mb * 2**20 // working_bytes_per_member)
    if device.type == "cpu":
        chunk = min(chunk, CPU_LARGEST_TEMPORARY_BYTES // largest_temporary_per_member)
    return max(1, chunk)


def network_chunk_size(arch, n_train, memory_budget_mb, dtype, device) -> int:
    """:func:`chunk_size` for members of ``arch`` evaluated on ``n_train`` samples."""
    activations = n_train * (arch.width * arch.depth + arch.n_outputs) * 4
    layer = n_train * max(arch.width, arch.n_outputs)
    return chunk_size(
        dtype.itemsize * (arch.n_params * 12 + activations), dtype.itemsize * layer, memory_budget_mb, device
    )


def _empty_results(initial_theta, history_steps):
    n_members = initial_theta.shape[0]
    nan = lambda *shape: np.full(shape, np.nan)  # noqa: E731
    return {
        "next_member": 0,
        "elapsed": 0.0,
        "final_theta": nan(*initial_theta.shape),
        "status": np.full(n_members, -1, dtype=np.int8),
        "steps": np.zeros(n_members, dtype=np.int64),
        "grad_norm": nan(n_members),
        "wall_time": nan(n_members),
        "flow_time": nan(n_members),
        "loss_history": nan(n_members, len(history_steps)),
        "history_index": {int(s): i for i, s in enumerate(history_steps)},
    }


def _evaluate_final(out, arch, data, margin, chunk, as_tensor):
    """Loss, errors and unsatisfied points of every final point, chunk by chunk."""
    n_members = out["final_theta"].shape[0]
    for name in ("train_error", "test_error", "n_unsatisfied"):
        out[name] = np.full(n_members, np.nan)
    for start in range(0, n_members, chunk):
        rows = slice(start, start + chunk)
        theta = as_tensor(out["final_theta"][rows])
        for split in ("train", "test"):
            x, y = data[split]
            member_margins = margins(forward(theta, x, arch), y)
            out[f"{split}_error"][rows] = _np((member_margins <= 0).to(theta.dtype).mean(1))
            if split == "train":
                out["n_unsatisfied"][rows] = _np((member_margins < margin).sum(1))
    diverged = out["status"] == DIVERGED
    for name in ("train_error", "test_error"):
        out[name][diverged] = np.nan
    out["n_unsatisfied"][diverged] = -1


def final_losses(out: dict, objective: Objective, as_tensor) -> None:
    """Add ``loss`` at every final point to :func:`descend`'s output; complete the history."""
    n_members = out["final_theta"].shape[0]
    out["loss"] = np.full(n_members, np.nan)
    with torch.no_grad():
        for start in range(0, n_members, out["chunk"]):
            rows = np.arange(start, min(start + out["chunk"], n_members))
            theta = as_tensor(out["final_theta"][rows])
            chunk_objective = restricted(objective, torch.as_tensor(rows, device=theta.device))
            out["loss"][rows] = _np(chunk_objective(theta, None)[0])
    diverged = out["status"] == DIVERGED
    out["loss"][diverged] = np.nan
    # After a member stops, its loss stays where it stopped (nan once diverged).
    stopped_at = out["steps"][:, None] < out["history_steps"][None, :]
    out["loss_history"] = np.where(stopped_at, out["loss"][:, None], out["loss_history"])


def descent_dataset(out: dict, member_ids: np.ndarray, initial_theta: np.ndarray, *, loss_name: str) -> xr.Dataset:
    """The variables every run of :func:`descend` writes, dims ``(member, param)`` and ``(member, step)``."""
    member_param = ("member", "param")
    data_vars = {
        "initial_theta": (member_param, initial_theta, variable_attrs("initial parameters")),
        "final_theta": (member_param, out["final_theta"], variable_attrs("final parameters")),
        "loss": ("member", out["loss"], variable_attrs(f"final {loss_name}")),
        "grad_norm": ("member", out["grad_norm"], variable_attrs("final gradient norm")),
        "steps": ("member", out["steps"], variable_attrs("steps taken")),
        "flow_time": (
            "member",
            out["flow_time"],
            variable_attrs("gradient-flow time reached (gd: steps x lr; nan: not a flow)"),
        ),
        "wall_time": ("member", out["wall_time"], variable_attrs("wall time until stop", "s")),
        "status": (
            "member",
            out["status"],
            variable_attrs("stop reason", flag_values="0 1 2 3", flag_meanings=STATUS_MEANINGS),
        ),
        "loss_history": (
            ("member", "step"),
            out["loss_history"],
            variable_attrs(f"{loss_name}; after a member stops, its final value"),
        ),
    }
    coords = {
        "member": ("member", np.asarray(member_ids, dtype=np.int64), variable_attrs("member index")),
        "param": ("param", np.arange(initial_theta.shape[1]), variable_attrs("flat parameter index")),
        "step": ("step", out["history_steps"], variable_attrs("optimizer step")),
    }
    return xr.Dataset(data_vars, coords=coords)


#: Per-member records of the saddle check, the confirmation and the Newton polish.
_MINIMUM_CHECKS = {
    "lowest_eigenvalue": "lowest Hessian eigenvalue at the final point (nan: not converged)",
    "n_escapes": "kicks along a negative-curvature direction before the final point",
    "n_refinements": "rounds continued with a tighter gradient test before the polish confirmed a stationary point",
    "polish_shift": "distance moved by the Newton polish (nan: not polished)",
    "grad_norm_before_polish": "gradient norm where the dynamics stopped, before the Newton polish",
}


def _as_dataset(out, member_ids, initial_theta, arch, dynamics):
    result = descent_dataset(out, member_ids, initial_theta, loss_name="training loss including L2")
    result["train_error"] = ("member", out["train_error"], variable_attrs("training error (0-1)"))
    result["test_error"] = ("member", out["test_error"], variable_attrs("test error (0-1)"))
    for name, long_name in _MINIMUM_CHECKS.items():
        if name in out:  # absent for stopping points (stop_when_satisfied) and unpolished runs
            result[name] = ("member", out[name], variable_attrs(long_name))
    result["n_unsatisfied"] = (
        "member",
        out["n_unsatisfied"].astype(np.int64),
        variable_attrs("training points with margin below the loss margin (-1: diverged)"),
    )
    return result.assign_attrs(
        architecture=json.dumps(arch.__dict__, sort_keys=True),
        n_params=arch.n_params,
        n_weights=arch.n_weights,
        dynamics=dynamics,
        parameter_layout="per layer: weight (fan_out, fan_in) row-major, then bias",
    )


def _save_checkpoint(path, fingerprint, out, live):
    payload = {"out": out}
    if live is not None:
        theta, state, loss_now, grad, active, step = live
        payload["live"] = tuple(_to_cpu(value) for value in (theta, state, loss_now, grad, active)) + (step,)
    save_checkpoint(path, fingerprint, payload)
    log.info("checkpoint written: %s (members done: %d)", path, int((out["status"] >= 0).sum()))


def _load_checkpoint(path, fingerprint):
    payload = load_checkpoint(path, fingerprint)
    if payload is None:
        return None
    out = payload["out"]
    if "live" in payload:
        out["live"] = payload["live"]
    log.info("resuming from checkpoint %s at member %d", path, out["next_member"])
    return out


def _to_cpu(value):
    if isinstance(value, dict):
        return {name: tensor.cpu() for name, tensor in value.items()}
    return None if value is None else value.cpu()


def _to_device(live, device):
    moved = []
    for value in live[:-1]:
        if isinstance(value, dict):
            moved.append({name: tensor.to(device) for name, tensor in value.items()})
        else:
            moved.append(None if value is None else value.to(device))
    return (*moved, live[-1])


class _Progress:
    """Log members finished and step rate at most every ``every_s`` seconds."""

    def __init__(self, n_members, every_s):
        self.n_members, self.every_s = n_members, every_s
        self.counts = np.zeros(3, dtype=np.int64)
        self.start = self.last = time.monotonic()
        self.member_steps = 0

    def finished(self, statuses):
        self.counts += np.bincount(statuses, minlength=3)[:3]

    def report(self, step, n_active):
        self.member_steps += n_active
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        log.info(
            "step %d: %d running, %d converged, %d budget, %d diverged of %d; %.3g member-steps/s",
            step, n_active, *self.counts, self.n_members, self.member_steps / (now - self.start),
        )
