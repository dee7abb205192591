"""The engine's loop: run any dynamics from many starting points at once, until each is decided.

The parameters of all members are one ``(member, param)`` tensor, stepped together; a member
leaves the computation once it has converged, diverged or spent its budget
(:func:`descend`), and members that spent it are continued to larger budgets before being
called undecided (:func:`descend_until_decided`). Runs are chunked, checkpointed and resumed
bit for bit (:mod:`basins.engine.checkpoints`). Every stage that runs dynamics (training,
jamming, rings, elastic bands, re-runs) calls this loop; it knows nothing of networks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from basins.engine.checkpoints import load_checkpoint, run_fingerprint, save_checkpoint
from basins.engine.dynamics import FLAT_SEEKING, Objective, make_stepper
from basins.engine.windows import CompiledSteps, MaskedSteps, is_capture_safe
from basins.io import variable_attrs
from basins.labels import BUDGET, CONVERGED, DIVERGED, STATUS_MEANINGS

log = logging.getLogger(__name__)


def log_spaced_steps(max_steps: int, n_points: int = 40) -> np.ndarray:
    """Distinct integer steps 0, 1, ..., max_steps spaced evenly in log(1 + step)."""
    return np.unique(np.round(np.expm1(np.linspace(0, np.log1p(max_steps), n_points)))).astype(int)


# Over 80 lines only by its 30 keyword options and their docstring; the body is ~35 lines.
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
    dynamics_options: dict | None = None,
    n_samples: int | None = None,
    satisfied: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
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
    windowed: bool | None = None,
) -> Descent:
    """Run the dynamics on any landscape given by its ``objective``; the engine of every stage.

    ``objective(theta, batch) -> (loss (member,), grad (member, param))`` as
    :mod:`basins.engine.dynamics` wants; ``satisfied(theta, loss) -> bool (member,)`` is an extra
    stopping test (given the members' losses at ``theta`` too, which can rule members out
    cheaply; its method ``every_member``, where it has one, gives the same answer without
    choosing members on the host, so that a window can run it); ``max_move`` caps a FIRE step's
    length. Members are processed ``chunk`` at a time.
    Landscapes that differ between members (each member its own training set) give the
    objective and ``satisfied`` a method ``restricted_to(rows)`` returning the callable for the
    members at those rows of ``initial_theta``; the engine calls it whenever its set of
    running members changes. A landscape that moves in time gives ``annealed(step)``, the
    objective of the first ``anneal_steps`` steps (``objective`` is the final one): the point
    reached by a step is evaluated on the next step's landscape (as is minibatch SGD's gradient
    for that step), and no member converges by its gradient before the landscape has stopped
    moving. ``run_id`` names the landscape for the checkpoint and ``data_fingerprint`` hashes
    the data its objective reads (:func:`basins.engine.checkpoints.fingerprint_arrays`; empty for a
    landscape with no data beyond ``run_id``): a checkpoint is only resumed by the same run,
    on the same data, code and torch version (:mod:`basins.engine.checkpoints`). ``windowed``
    runs the steps between two recorded steps with the stopping test as a mask
    (:mod:`basins.engine.windows`): in the objective's own compiled loop where it has one for
    the dynamics (the C kernel's networks on the CPU, gd and Dormand-Prince gradient flow),
    else captured as a CUDA graph on a GPU; None (the default) does so wherever the objective
    has such a loop, and on CUDA wherever the dynamics, the objective and ``satisfied`` allow a
    capture. See
    :func:`train_ensemble` for the other options. Returns where each member ended, a
    :class:`Descent` (its ``loss`` is None until :func:`with_final_losses`).
    """
    stepper = make_stepper(
        dynamics, lr=lr, momentum=momentum, batch_size=batch_size, n_samples=n_samples, seed=seed, rtol=rtol,
        atol=atol, check_every=check_every, max_move=max_move, lr_decay_every=lr_decay_every,
        lr_decay_factor=lr_decay_factor, **(dynamics_options or {}),
    )
    if getattr(stepper, "needs_shared_landscape", False) and hasattr(objective, "restricted_to"):
        raise ValueError(f"dynamics={dynamics!r} needs one landscape shared by all members")
    history_steps = log_spaced_steps(max_steps)
    landscape = _Landscape(objective, satisfied, annealed, anneal_steps)
    stopping = _StoppingRule(grad_tol, max_steps, anneal_steps, divergence_threshold)
    windowed = _windowed(windowed, stepper, landscape, device, stopping)
    fingerprint = run_fingerprint(
        *run_id, initial_theta, member_ids, dynamics, lr, max_steps, grad_tol, momentum,
        batch_size, rtol, atol, seed, dtype, max_move, lr_decay_every, lr_decay_factor, anneal_steps,
        check_every, divergence_threshold, sorted((dynamics_options or {}).items()), windowed, data=data_fingerprint,
    )
    record = _load_checkpoint(checkpoint_path, fingerprint) or _empty_record(initial_theta, history_steps)
    # The chunk size is kept from a checkpoint so a resumed run splits members the same way.
    chunk = record.setdefault("chunk", chunk)
    checkpoints = _Checkpoints(checkpoint_path, fingerprint, checkpoint_every_s)
    progress = _Progress(len(member_ids), progress_every_s)
    with torch.no_grad(), _threads_for_windows(landscape, stepper, stopping, windowed):
        for start in range(record["next_member"], len(member_ids), chunk):
            rows = np.arange(start, min(start + chunk, len(member_ids)))
            members = _chunk_members(record.pop("live", None), landscape, stepper, initial_theta[rows], rows,
                                     member_ids[rows], device, dtype)
            _run_members(record, members, stepper, landscape, stopping, checkpoints, progress, windowed)
            record["next_member"] = rows[-1] + 1
            record["elapsed"] = 0.0
            checkpoints.save(record)
    checkpoints.remove()
    flow_time = stepper.lr.total(record["steps"]) if dynamics == "gd" else record["flow_time"]
    return Descent(
        **{name: record[name] for name in _RECORDED}, flow_time=flow_time, history_steps=history_steps, chunk=chunk
    )


@dataclasses.dataclass(frozen=True)
class Descent:
    """Where each member of a run of :func:`descend` ended; arrays are ``(member,)`` unless noted.

    ``final_theta (member, param)`` is the end point, ``status`` why the member stopped
    (:mod:`basins.labels`), ``steps`` the steps it took, ``grad_norm`` its gradient norm there,
    ``wall_time`` the seconds it ran, ``flow_time`` the gradient-flow time it reached (gd: steps
    x lr; nan where the dynamics is not a flow), ``loss_history (member, step)`` the loss at
    ``history_steps (step,)`` (nan after the member stopped, until :func:`with_final_losses`),
    ``chunk`` the number of members run at once and ``loss`` the loss at ``final_theta`` (None
    until :func:`with_final_losses`). Nothing changes a run: :func:`merge_continued`,
    :meth:`with_status` and :func:`with_final_losses` return a new one.
    """

    final_theta: np.ndarray
    status: np.ndarray
    steps: np.ndarray
    grad_norm: np.ndarray
    wall_time: np.ndarray
    flow_time: np.ndarray
    loss_history: np.ndarray
    history_steps: np.ndarray
    chunk: int
    loss: np.ndarray | None = None

    def with_status(self, rows: np.ndarray, status: int) -> Descent:
        """This run with the members at ``rows`` given ``status``."""
        return dataclasses.replace(self, status=with_rows(self.status, rows, status))


#: The arrays of a :class:`Descent` that :func:`descend` records member by member.
_RECORDED = ("final_theta", "status", "steps", "grad_norm", "wall_time", "loss_history")


@dataclasses.dataclass(frozen=True)
class _Landscape:
    """What the members of :func:`descend` see: the objective at each step (``annealed`` before
    ``anneal_steps``) and the extra stopping test ``satisfied``."""

    objective: Objective
    satisfied: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    annealed: Callable[[int], Objective] | None
    anneal_steps: int

    def at(self, step: int) -> Objective:
        return self.objective if self.annealed is None or step >= self.anneal_steps else self.annealed(step)

    def for_members(self, step: int, active: torch.Tensor) -> tuple:
        """The objective at ``step`` and ``satisfied``, for the members at rows ``active``."""
        return restricted(self.at(step), active), restricted(self.satisfied, active)


@dataclasses.dataclass
class _Members:
    """The running members of one chunk: their points, the stepper's state, loss and gradient
    at the points (None where not evaluated), their rows and the step they reached."""

    theta: torch.Tensor
    state: dict
    loss: torch.Tensor | None
    grad: torch.Tensor | None
    active: torch.Tensor
    step: int

    def keep(self, kept: torch.Tensor) -> None:
        self.theta, self.active = self.theta[kept], self.active[kept]
        self.state = {name: value[kept] for name, value in self.state.items()}
        self.loss = None if self.loss is None else self.loss[kept]
        self.grad = None if self.grad is None else self.grad[kept]

    def as_checkpoint(self) -> tuple:
        return self.theta, self.state, self.loss, self.grad, self.active, self.step


def _chunk_members(live, landscape, stepper, initial_theta, rows, member_ids, device, dtype):
    """The members at ``rows``: as a checkpoint left them (``live``), else at step 0 with their
    loss, gradient and the stepper's first state."""
    if live is not None:
        return _Members(*_to_device(live, device))
    theta = torch.as_tensor(np.asarray(initial_theta), dtype=dtype, device=device)
    active = torch.as_tensor(rows, device=device)
    loss, grad = restricted(landscape.at(0), active)(theta, None)
    state = stepper.init_state(theta, grad, torch.as_tensor(member_ids, device=device))
    return _Members(theta, state, loss, grad, active, 0)


def _run_members(record, members, stepper, landscape, stopping, checkpoints, progress, windowed):
    """Step the ``members`` of one chunk until each has stopped, recording them in ``record``;
    ``windowed``: many steps at a time where the landscape has stopped moving."""
    running_objective, running_satisfied = landscape.for_members(members.step, members.active)
    chunk_start = time.monotonic() - record["elapsed"]
    window = None
    while members.active.numel():
        # 1. Classify members from the full-batch loss and gradient at this point.
        status, grad_norm = stopping.classify(members, stepper, running_satisfied, landscape.satisfied is not None)
        # 2. Record the loss history and the members that stop here.
        if members.step in record["history_index"]:
            if members.loss is None:
                members.loss, members.grad = running_objective(members.theta, None)
            column = record["history_index"][members.step]
            record["loss_history"][to_numpy(members.active), column] = to_numpy(members.loss)
        finished = None if status is None else status >= 0
        if finished is not None and finished.any():
            rows_done = _record_stopped(record, members, finished, status, grad_norm, chunk_start)
            members.keep(~finished)
            running_objective, running_satisfied = landscape.for_members(members.step, members.active)
            progress.finished(record["status"][rows_done])
        if not members.active.numel():
            break
        # 3. The dynamics for the members still running: a window of steps, or one step.
        n_steps = _window_length(record, members.step, stopping) if windowed else 0
        n_running = members.active.numel()
        if n_steps and members.step >= landscape.anneal_steps:
            if window is None or not window.holds(members.theta):
                window = _open_window(members, stepper, running_objective, running_satisfied, stopping)
            window.run(n_steps)
            if _take_window(record, members, window, n_steps, chunk_start, progress):
                running_objective, running_satisfied = landscape.for_members(members.step, members.active)
            progress.report(members.step, n_running, n_steps)
        else:
            if members.step < landscape.anneal_steps:
                running_objective = restricted(landscape.at(members.step + 1), members.active)
            members.theta, members.state, members.loss, members.grad = stepper.step(
                members.theta, members.state, members.loss, members.grad, running_objective
            )
            members.step += 1
            progress.report(members.step, n_running)
        checkpoints.save_when_due(record, members, chunk_start)


def _open_window(members, stepper, objective, satisfied, stopping):
    """A window for the ``members``: the objective's compiled loop for this stepper where it
    has one (:class:`CompiledSteps`), else :class:`MaskedSteps` (captured where it can be)."""
    compiled = stopping.compiled_steps(stepper, objective, satisfied)
    if compiled is not None:
        return CompiledSteps(members.theta, members.state, members.loss, members.grad, members.step,
                             run_steps=compiled)
    return MaskedSteps(
        members.theta, members.state, members.loss, members.grad, members.step, stepper=stepper,
        objective=objective, stops=stopping.masked(stepper, satisfied),
        capture=is_capture_safe(stepper, objective, satisfied),
    )


#: Most steps in one window: the loop logs progress and writes checkpoints between windows.
MAX_WINDOW_STEPS = 1000


def _window_length(record, step, stopping):
    """Steps from ``step`` to the next step the loop must see: a recorded loss or the budget."""
    later = [recorded for recorded in record["history_index"] if recorded > step]
    return min([stopping.max_steps, step + MAX_WINDOW_STEPS, *later]) - step


def _take_window(record, members, window, n_steps, chunk_start, progress):
    """The ``members`` where the ``window`` left them, those that stopped in it recorded (at
    the window's end time) and dropped; True where some stopped, so the running set changed."""
    members.theta, members.state, members.loss, members.grad = window.theta, window.state, window.loss, window.grad
    members.step += n_steps
    stopped = ~window.running
    if not bool(stopped.any()):
        return False
    rows_done = _record_stopped(
        record, members, stopped, window.status, window.grad_norm, chunk_start, steps=window.stop_step
    )
    members.keep(~stopped)
    progress.finished(record["status"][rows_done])
    return True


@dataclasses.dataclass(frozen=True)
class _StoppingRule:
    """When a member of :func:`descend` stops: diverged, converged (gradient norm at most
    ``grad_tol`` once the landscape stopped moving, or ``satisfied``) or budget spent."""

    grad_tol: float
    max_steps: int
    anneal_steps: int
    divergence_threshold: float

    def classify(self, members, stepper, satisfied, tests_satisfied):
        """Status (-1: running) and gradient norm of every member, or ``(None, None)`` where
        no member stops here. Most steps stop no member: a test of a few kernels says so
        first, and the classification (some twenty kernels) runs only where one may stop."""
        theta, loss, grad, step = members.theta, members.loss, members.grad, members.step
        # No member converges by its gradient while the landscape still moves.
        tol = self.grad_tol if step >= self.anneal_steps else -math.inf
        over = getattr(stepper, "finished", _never)(members.state)
        if grad is None or tests_satisfied or step >= self.max_steps or not _none_stops(
            theta, loss, grad, tol, self.divergence_threshold, over
        ):
            met = None if not tests_satisfied or grad is None else satisfied(theta, loss)
            return _classify(
                theta, loss, grad, met, grad_tol=tol, divergence_threshold=self.divergence_threshold,
                over=(step >= self.max_steps) | over,
            )
        return None, None

    def masked(self, stepper, satisfied=None):
        """``stops(theta, loss, grad, state) -> (status, grad_norm)``: :meth:`classify` of every
        member as a window runs it (:mod:`basins.engine.windows`), with the landscape settled
        and the budget not yet reached, on the device alone (``satisfied`` by its
        ``every_member`` form)."""
        over = getattr(stepper, "finished", _never)

        def stops(theta, loss, grad, state):
            met = None if satisfied is None else satisfied.every_member(theta, loss)
            return _classify(theta, loss, grad, met, grad_tol=self.grad_tol,
                             divergence_threshold=self.divergence_threshold, over=over(state))

        return stops

    def compiled_steps(self, stepper, objective, satisfied=None):
        """The objective's compiled loop of ``stepper`` with this rule and the extra stopping
        test ``satisfied`` (None: none) as its stopping test (``objective.compiled_steps``,
        :class:`basins.engine.windows.CompiledSteps`), or None where it has none."""
        offer = getattr(objective, "compiled_steps", None)
        if offer is None:
            return None
        return offer(stepper, grad_tol=self.grad_tol, divergence_threshold=self.divergence_threshold,
                     satisfied=satisfied)


def _threads_for_windows(landscape, stepper, stopping, windowed):
    """Where the windows run in the objective's own compiled loop, its hold on the threads
    (``objective.threads_held()``: torch's small operations between windows on one thread, the
    loop's on the threads torch had), else nothing (torch's steps keep torch's threads)."""
    objective = landscape.objective
    hold = getattr(objective, "threads_held", None)
    if not windowed or hold is None or stopping.compiled_steps(stepper, objective, landscape.satisfied) is None:
        return contextlib.nullcontext()
    return hold()


def _windowed(windowed, stepper, landscape, device, stopping):
    """Whether :func:`descend` steps in windows: where asked, else wherever the objective has a
    compiled loop of the dynamics (the C kernel's networks on the CPU) and on CUDA wherever the
    dynamics, the objective and the extra stopping test (``satisfied``) allow a capture. A
    ``satisfied`` test without an ``every_member`` form (its members chosen on the host) steps
    one step at a time."""
    satisfied = landscape.satisfied
    possible = getattr(stepper, "capture_safe", False) and (satisfied is None or hasattr(satisfied, "every_member"))
    if windowed is None:
        compiled = stopping.compiled_steps(stepper, landscape.objective, satisfied) is not None
        return compiled or (possible and torch.device(device).type == "cuda"
                            and is_capture_safe(stepper, landscape.objective, satisfied))
    if windowed and not possible:
        raise ValueError("windowed=True needs dynamics that step on the device alone (gd, adam, fire, "
                         "gradient_flow by dormand_prince) and a satisfied test with an every_member form")
    return bool(windowed)


def _record_stopped(record, members, finished, status, grad_norm, chunk_start, steps=None):
    """Write the members that ``finished`` into ``record`` (at the members' step, or at their
    own ``steps (member,)``); their rows."""
    rows_done = to_numpy(members.active[finished])
    record["final_theta"][rows_done] = to_numpy(members.theta[finished])
    record["status"][rows_done] = to_numpy(status[finished])
    record["steps"][rows_done] = members.step if steps is None else to_numpy(steps[finished])
    record["grad_norm"][rows_done] = to_numpy(grad_norm[finished])
    record["wall_time"][rows_done] = time.monotonic() - chunk_start
    if "time" in members.state:
        record["flow_time"][rows_done] = to_numpy(members.state["time"][finished])
    return rows_done


class _Checkpoints:
    """Saves a run's progress to ``path`` (nowhere when None) at the end of every chunk, and
    within a chunk at most every ``every_s`` seconds."""

    def __init__(self, path, fingerprint, every_s):
        self.path, self.fingerprint, self.every_s = path, fingerprint, every_s
        self.last = time.monotonic()

    def save(self, record, members=None):
        if self.path is not None:
            _save_checkpoint(self.path, self.fingerprint, record, None if members is None else members.as_checkpoint())

    def save_when_due(self, record, members, chunk_start):
        if time.monotonic() - self.last > self.every_s:
            record["elapsed"] = time.monotonic() - chunk_start
            self.save(record, members)
            self.last = time.monotonic()

    def remove(self):
        if self.path is not None:
            Path(self.path).unlink(missing_ok=True)


def descend_until_decided(
    objective: Objective,
    initial_theta: np.ndarray,
    member_ids: np.ndarray,
    *,
    budget_factors: Sequence[float] = (1,),
    continued_by: dict | None = None,
    **engine,
) -> Descent:
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
    the continuations; ``loss_history`` is the first run's. ``continued_by`` replaces engine
    options in the continuations (e.g. a stiff integrator of the same flow). Members with
    landscapes of their own (an objective and ``satisfied`` with ``restricted_to``, as the
    jamming sweep's training sets) are continued each on its own.
    """
    factors = np.asarray(budget_factors, dtype=float)
    if len(factors) == 0 or factors[0] != 1 or (np.diff(factors) <= 0).any():
        raise ValueError(f"budget_factors={list(budget_factors)}: give increasing factors starting at 1")
    out = descend(objective, initial_theta, member_ids, **engine)
    max_steps = engine["max_steps"]
    for done, factor in zip(factors[:-1], factors[1:]):
        again = np.flatnonzero(out.status == BUDGET)
        if not len(again):
            break
        log.info("%d members spent %g x the step budget: continued to %g x", len(again), done, factor)
        rows = torch.as_tensor(again, device=engine["device"])  # members with landscapes of their own keep them
        options = dict(engine, **(continued_by or {}), satisfied=restricted(engine.get("satisfied"), rows))
        continued = descend(
            restricted(objective, rows), out.final_theta[again], member_ids[again],
            **_continuation(options, steps_done=int(round(done * max_steps)),
                            more_steps=int(round((factor - done) * max_steps))),
        )
        out = merge_continued(out, again, continued)
    return out


def merge_continued(out: Descent, rows: np.ndarray, continued: Descent) -> Descent:
    """The run ``out`` with its members at ``rows`` continued by the run ``continued``: its end
    point, status and gradient norm replace theirs; steps and times add up. The rest (the loss
    history among them) stays ``out``'s."""
    replaced = {name: with_rows(getattr(out, name), rows, getattr(continued, name))
                for name in ("final_theta", "status", "grad_norm")}
    summed = {name: with_rows(getattr(out, name), rows, getattr(out, name)[rows] + getattr(continued, name))
              for name in ("steps", "wall_time", "flow_time")}
    return dataclasses.replace(out, **replaced, **summed)


def with_rows(values: np.ndarray, rows: np.ndarray, new) -> np.ndarray:
    """A copy of ``values`` with ``new`` at ``rows``."""
    changed = values.copy()
    changed[rows] = new
    return changed


def _continuation(engine, *, steps_done, more_steps):
    """:func:`descend`'s options for a run continued after ``steps_done`` steps."""
    continued = dict(engine, max_steps=more_steps)
    if engine.get("checkpoint_path") is not None:
        # Its own checkpoint: the first run's is removed once that run completes.
        continued["checkpoint_path"] = f"{engine['checkpoint_path']}.after{steps_done}"
    every = continued.get("lr_decay_every", 0)
    if every:
        continued["lr"] = continued["lr"] * continued.get("lr_decay_factor", 1.0) ** (steps_done // every)
    if continued.get("dynamics") in FLAT_SEEKING:  # a scheduled dynamics resumes its schedule
        options = continued["dynamics_options"]
        continued["dynamics_options"] = dict(options, start_step=options.get("start_step", 0) + steps_done)
    annealed, anneal_steps = continued.get("annealed"), continued.get("anneal_steps", 0)
    if annealed is not None and anneal_steps > steps_done:
        continued["annealed"] = lambda step: annealed(step + steps_done)
        continued["anneal_steps"] = anneal_steps - steps_done
    else:
        # No landscape left to anneal; a scheduled dynamics may still hold convergence back.
        continued["annealed"], continued["anneal_steps"] = None, max(0, anneal_steps - steps_done)
    return continued


def _never(state):
    return False


def _classify(theta, loss, grad, satisfied, *, grad_tol, divergence_threshold, over):
    """Status of every member (-1: running) and its gradient norm (nan where not computed):
    diverged before converged (gradient norm at most ``grad_tol``, or ``satisfied``) before
    budget spent (``over``)."""
    status = torch.full((theta.shape[0],), -1, dtype=torch.long, device=theta.device)
    if grad is not None:
        grad_norm = grad.norm(dim=1)
        bad = ~torch.isfinite(loss) | ~torch.isfinite(grad_norm)
        bad |= theta.abs().amax(1) > divergence_threshold
        good = grad_norm <= grad_tol
        if satisfied is not None:
            good |= satisfied
        status = torch.where(good, CONVERGED, status)
    else:
        grad_norm = torch.full_like(theta[:, 0], float("nan"))
        bad = ~torch.isfinite(theta).all(1) | (theta.abs().amax(1) > divergence_threshold)
    status = torch.where(bad, DIVERGED, status)
    return torch.where((status < 0) & over, BUDGET, status), grad_norm


def _none_stops(theta, loss, grad, grad_tol, divergence_threshold, finished) -> bool:
    """True when no member stops here: every gradient norm above ``grad_tol``, loss and gradient
    finite, parameters within ``divergence_threshold`` and the stepper not ``finished``. Each
    condition is the classification's own expression or implies it (a finite sum of loss and
    gradient norm implies both finite), so a True answer never hides a member that stops."""
    grad_norm = grad.norm(dim=1)
    running = (grad_norm > grad_tol) & torch.isfinite(loss + grad_norm)
    running &= ~(theta.abs().amax(1) > divergence_threshold)
    if isinstance(finished, torch.Tensor):
        running &= ~finished
    elif finished:
        return False
    return bool(running.all())


def restricted(function, rows: torch.Tensor):
    """``function`` for the members at ``rows`` (see :func:`descend`); shared ones as they are."""
    if function is not None and hasattr(function, "restricted_to"):
        return function.restricted_to(rows)
    return function


def to_numpy(tensor):
    return tensor.detach().cpu().numpy()


def _empty_record(initial_theta, history_steps):
    """What :func:`descend` records and checkpoints before any member has run."""
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


def with_final_losses(out: Descent, objective: Objective, as_tensor) -> Descent:
    """The run ``out`` with its ``loss`` at every final point, and its history completed."""
    n_members = out.final_theta.shape[0]
    loss = np.full(n_members, np.nan)
    with torch.no_grad():
        for start in range(0, n_members, out.chunk):
            rows = np.arange(start, min(start + out.chunk, n_members))
            theta = as_tensor(out.final_theta[rows])
            chunk_objective = restricted(objective, torch.as_tensor(rows, device=theta.device))
            loss[rows] = to_numpy(chunk_objective(theta, None)[0])
    loss[out.status == DIVERGED] = np.nan
    # After a member stops, its loss stays where it stopped (nan once diverged).
    stopped_at = out.steps[:, None] < out.history_steps[None, :]
    return dataclasses.replace(out, loss=loss, loss_history=np.where(stopped_at, loss[:, None], out.loss_history))


def descent_dataset(out: Descent, member_ids: np.ndarray, initial_theta: np.ndarray, *, loss_name: str) -> xr.Dataset:
    """The variables every run of :func:`descend` writes, dims ``(member, param)`` and ``(member, step)``."""
    if out.loss is None:
        raise ValueError("the run has no final loss yet: pass it through with_final_losses first")
    member_param = ("member", "param")
    data_vars = {
        "initial_theta": (member_param, initial_theta, variable_attrs("initial parameters")),
        "final_theta": (member_param, out.final_theta, variable_attrs("final parameters")),
        "loss": ("member", out.loss, variable_attrs(f"final {loss_name}")),
        "grad_norm": ("member", out.grad_norm, variable_attrs("final gradient norm")),
        "steps": ("member", out.steps, variable_attrs("steps taken")),
        "flow_time": (
            "member",
            out.flow_time,
            variable_attrs("gradient-flow time reached (gd: steps x lr; nan: not a flow)"),
        ),
        "wall_time": ("member", out.wall_time, variable_attrs("wall time until stop", "s")),
        "status": (
            "member",
            out.status,
            variable_attrs("stop reason", flag_values="0 1 2 3", flag_meanings=STATUS_MEANINGS),
        ),
        "loss_history": (
            ("member", "step"),
            out.loss_history,
            variable_attrs(f"{loss_name}; after a member stops, its final value"),
        ),
    }
    coords = {
        "member": ("member", np.asarray(member_ids, dtype=np.int64), variable_attrs("member index")),
        "param": ("param", np.arange(initial_theta.shape[1]), variable_attrs("flat parameter index")),
        "step": ("step", out.history_steps, variable_attrs("optimizer step")),
    }
    return xr.Dataset(data_vars, coords=coords)


def _save_checkpoint(path, fingerprint, record, live):
    payload = {"out": record}  # the key basins.engine.checkpoints looks for
    if live is not None:
        theta, state, loss_now, grad, active, step = live
        payload["live"] = tuple(_to_cpu(value) for value in (theta, state, loss_now, grad, active)) + (step,)
    save_checkpoint(path, fingerprint, payload)
    log.info("checkpoint written: %s (members done: %d)", path, int((record["status"] >= 0).sum()))


def _load_checkpoint(path, fingerprint):
    payload = load_checkpoint(path, fingerprint)
    if payload is None:
        return None
    record = payload["out"]
    if "live" in payload:
        record["live"] = payload["live"]
    log.info("resuming from checkpoint %s at member %d", path, record["next_member"])
    return record


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

    def report(self, step, n_active, n_steps=1):
        self.member_steps += n_active * n_steps
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        self.last = now
        log.info(
            "step %d: %d running, %d converged, %d budget, %d diverged of %d; %.3g member-steps/s",
            step, n_active, *self.counts, self.n_members, self.member_steps / (now - self.start),
        )
