"""Steps in windows: the descent loop with its stopping test as a mask, captured on a GPU.

On a GPU a step of the engine is 90-300 small kernels, each launched from Python, and the
step-by-step loop reads a flag back every step to learn whether a member stops: the GPU sits
idle 68-90 % of a step (benchmarks/README.md, ``profile_gpu_step.py``). A window runs ``n``
steps of a chunk's running members without asking the host. The stopping test runs on the
device as a mask: a member that stops stays where it stopped (its point, the stepper's state,
loss and gradient frozen), and its status, step and gradient norm are kept in buffers that the
loop reads once, at the window's end. On CUDA the masked step is captured once as a CUDA graph
(all its kernels one launch) and replayed; elsewhere it runs eagerly, which is how the tests
compare the two loops on the CPU.

A member's arithmetic is the step-by-step loop's; only the batch differs (members that stopped
stay in it until the window ends), so statuses and steps are the same and points agree to the
round-off of kernels whose blocking depends on the batch size (tests/test_windows.py).

An objective may run a window itself, as a compiled loop (``objective.compiled_steps(stepper,
grad_tol=, divergence_threshold=)``, :class:`CompiledSteps`): the C kernel of the study's
networks steps gd, Adam and Dormand-Prince gradient flow so on the CPU, each member's
parameters held in cache through the window (:mod:`basins.landscapes.native_mlp`; the jamming
sweep's members each on their own prefix, with its satisfied test in the loop). gd there
reproduces the torch loop bit for bit; Adam to round-off (the bias corrections' powers are
libm's); the adaptive flow's step sizes pass on the last bits of
exp, log and sums rounded otherwise, so its members end on the same minima, a few steps apart
where the flow ends at its stability limit (so a member whose budget falls between the two
step counts can end undecided in one and converged in the other; tests/test_native_steps.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: Replays between two reads of whether any member still runs (a window whose members have
#: all stopped ends early; each read waits for the GPU).
REPLAYS_BETWEEN_CHECKS = 64
#: Shortest window worth a capture (the first step of a window runs eagerly as its warm-up).
MIN_CAPTURED_STEPS = 3


def is_capture_safe(stepper, objective, satisfied=None) -> bool:
    """True where a step of ``stepper`` on ``objective``, with the extra stopping test
    ``satisfied`` (None: none), runs on the device alone: no value read back to the host, no
    shape that depends on the data (each says so by ``capture_safe``)."""
    parts = (stepper, objective) if satisfied is None else (stepper, objective, satisfied)
    return all(getattr(part, "capture_safe", False) for part in parts)


class MaskedSteps:
    """The running members of a chunk as fixed buffers, stepped ``n`` at a time by :meth:`run`.

    ``stops(theta, loss, grad, state) -> (status (member,), grad_norm (member,))`` is the
    stopping rule (status -1: running); ``objective`` the members' landscape. After :meth:`run`,
    ``running`` says who still runs, and ``status``, ``stop_step`` and ``grad_norm`` hold the
    others' outcome; ``theta``, ``state``, ``loss`` and ``grad`` are where every member is (a
    stopped one where it stopped).
    """

    def __init__(self, theta, state, loss, grad, step: int, *, stepper, objective, stops: Callable, capture: bool):
        if loss is None or grad is None:
            raise ValueError("a window starts from members with their loss and gradient evaluated")
        self.theta, self.loss, self.grad = theta.clone(), loss.clone(), grad.clone()
        self.state = {name: value.clone() for name, value in state.items()}
        n_members = theta.shape[0]
        self.running = torch.ones(n_members, dtype=torch.bool, device=theta.device)
        self.status = torch.full((n_members,), -1, dtype=torch.long, device=theta.device)
        self.stop_step = torch.zeros(n_members, dtype=torch.long, device=theta.device)
        self.grad_norm = torch.full((n_members,), float("nan"), dtype=theta.dtype, device=theta.device)
        self.step = torch.tensor(step, dtype=torch.long, device=theta.device)
        self.stepper, self.objective, self.stops = stepper, objective, stops
        self.capture = capture and theta.device.type == "cuda"
        self.graph = None

    def holds(self, theta: torch.Tensor) -> bool:
        """True where ``theta`` is this window's own buffer (the members have not changed)."""
        return theta is self.theta

    def run(self, n_steps: int) -> None:
        """Step every running member ``n_steps`` times (fewer where all have stopped)."""
        done = 0
        if self.capture and self.graph is None and n_steps >= MIN_CAPTURED_STEPS:
            self._warm_up_and_capture()
            done = 1
        if self.graph is None:
            for _ in range(done, n_steps):
                self._masked_step()
            return
        for index in range(done, n_steps):
            if index % REPLAYS_BETWEEN_CHECKS == 0 and index > done and not bool(self.running.any()):
                return
            self.graph.replay()

    def _warm_up_and_capture(self):
        """One real step on a side stream (what a capture needs first: the libraries' lazy
        set-up), then the masked step recorded as a CUDA graph (recording runs nothing)."""
        side = torch.cuda.Stream(device=self.theta.device)
        side.wait_stream(torch.cuda.current_stream(self.theta.device))
        with torch.cuda.stream(side):
            self._masked_step()
        torch.cuda.current_stream(self.theta.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._masked_step()
        self.graph = graph

    def _masked_step(self):
        """The loop's stopping test, then one step of the members still running, in place."""
        status, grad_norm = self.stops(self.theta, self.loss, self.grad, self.state)
        stops = self.running & (status >= 0)
        self.status.copy_(torch.where(stops, status, self.status))
        self.stop_step.copy_(torch.where(stops, self.step, self.stop_step))
        self.grad_norm.copy_(torch.where(stops, grad_norm, self.grad_norm))
        self.running.logical_and_(~stops)
        # The stepper replaces its state's entries; its own dict keeps the buffers intact.
        theta, state, loss, grad = self.stepper.step(self.theta, dict(self.state), self.loss, self.grad, self.objective)
        _copy_where(self.running, theta, self.theta)
        _copy_where(self.running, loss, self.loss)
        _copy_where(self.running, grad, self.grad)
        for name, value in state.items():
            _copy_where(self.running, value, self.state[name])
        self.step.add_(1)


class CompiledSteps:
    """The window of :class:`MaskedSteps` run by a compiled loop the objective offers for this
    stepper (``objective.compiled_steps``; the C kernel of the study's networks on the CPU:
    :mod:`basins.landscapes.native_mlp`): the same steps, stopping test and outputs, with no
    torch kernel launched between two recorded steps. ``run_steps(theta, loss, grad, state,
    status, stop_step, grad_norm, first_step, n_steps)`` advances the buffers in place.
    """

    def __init__(self, theta, state, loss, grad, step: int, *, run_steps: Callable):
        if loss is None or grad is None:
            raise ValueError("a window starts from members with their loss and gradient evaluated")
        self.theta, self.loss, self.grad = theta.contiguous().clone(), loss.contiguous().clone(), grad.contiguous().clone()
        self.state = {name: value.contiguous().clone() for name, value in state.items()}
        n_members = theta.shape[0]
        self.status = torch.full((n_members,), -1, dtype=torch.long)
        self.stop_step = torch.zeros(n_members, dtype=torch.long)
        self.grad_norm = torch.full((n_members,), float("nan"), dtype=theta.dtype)
        self.step, self.run_steps = step, run_steps

    @property
    def running(self) -> torch.Tensor:
        return self.status < 0

    def holds(self, theta: torch.Tensor) -> bool:
        """True where ``theta`` is this window's own buffer (the members have not changed)."""
        return theta is self.theta

    def run(self, n_steps: int) -> None:
        """Step every running member ``n_steps`` times (fewer where all have stopped)."""
        self.run_steps(self.theta, self.loss, self.grad, self.state, self.status, self.stop_step, self.grad_norm,
                       self.step, n_steps)
        self.step += n_steps


def _copy_where(running, new, buffer):
    """``buffer`` takes ``new`` on the rows of the members still ``running``."""
    rows = running.view(-1, *([1] * (buffer.dim() - 1)))
    buffer.copy_(torch.where(rows, new, buffer))
