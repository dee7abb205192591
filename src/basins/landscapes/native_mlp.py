"""The study's networks' loss and gradient by a compiled C kernel.

:class:`basins.landscapes.fused_mlp.FusedMLPObjective` evaluates the networks it covers
(:func:`covers`: hidden layers of tanh, relu or linear units, one output, float64 or float32 on
the CPU, all samples) with ``native_mlp.c`` instead of torch's kernels: one member per SIMD lane
(eight doubles or sixteen floats with AVX-512, four doubles or eight floats without), through
the samples four at a time, with an exp the compiler vectorizes (timings against torch's
hand-derived pass: benchmarks/README.md, "One objective evaluation in C"), equal to it to
round-off (tests/test_native_mlp.py). The kernel also runs the engine's windows of gd, Adam and
Dormand-Prince gradient flow as loops in C (:meth:`NativeMLP.compiled_steps`,
:mod:`basins.engine.windows`): no torch kernel between two recorded steps, each group of
members' parameters in cache through the window, and the stages of a Runge-Kutta-Chebyshev
step (:meth:`NativeMLP.chebyshev_stages`: no torch kernel between two stages)
(tests/test_native_steps.py). float32 networks have a build of their own (:data:`FLOAT32_FLAGS`)
with the objective and gd's loop (:data:`BUILD_LOOPS`); their other dynamics step in torch around
its evaluations. The float64 build also holds the Kuramoto ring's energy and gradient and its
Dormand-Prince loop (:class:`NativeRing`, the same loop as the networks').

The kernel is compiled on first use with the system's C compiler (``$CC``, else ``cc``) into a
cache folder (``$BASINS_NATIVE_CACHE``, else ``$XDG_CACHE_HOME/basins`` or ``~/.cache/basins``),
one library per source, compiler, flags and CPU (``-march=native`` code runs only on the CPU
it was built for: nodes of a cluster that share a home folder build their own). Without a
working compiler, or with ``BASINS_NATIVE=0``, the torch pass is used, with one log line saying
so. Members are split between torch's threads (``torch.get_num_threads()``, or the threads
:func:`threads_held` holds; ctypes releases the GIL) by whole groups of lanes, so a member's
result does not depend on which others share the call. Where a float32 gd window has fewer
groups than threads (on two threads: one group, sixteen members with AVX-512), threads share a
group, each summing its own part of the samples (:func:`_split_teams`): float32 sums run in two
fixed parts whoever computes them, so the bits are one thread's. On a busy machine a team waits
for its slowest thread every evaluation, and where the members' own sample counts (the jamming
sweep's) end in the first half, the second thread has nothing to sum.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_suffix(".c")
#: Set to "0" to use torch's pass everywhere (the kernel's reference in tests and benchmarks).
SWITCH = "BASINS_NATIVE"
LOSS_CODES = {"mse": 0, "hinge": 1, "quadratic_hinge": 2, "cross_entropy": 3}
ACTIVATION_CODES = {"tanh": 0, "relu": 1, "linear": 2}
#: Tried in order: the first set the compiler accepts is used. -fno-math-errno lets the
#: compiler vectorize around the few libm calls left (the step loops' sqrt, exp, log);
#: -fno-trapping-math lets it schedule the kernel's comparisons and selects without guarding
#: floating-point exceptions (session 39, before the math took whole vectors: without it gcc
#: computed every exp with scalar instructions on AVX2). Neither changes a value: no
#: reassociation, no finite-math assumptions.
FLAG_SETS = (
    ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math"),
    ("-O3", "-fno-math-errno", "-fno-trapping-math"),
    ("-O2",),
)
#: Flags of the float32 build (the objective and gd's loop only): the kernel's numbers and its
#: constants floats (``native_mlp.c``, NATIVE_FLOAT32).
FLOAT32_FLAGS = ("-DNATIVE_FLOAT32", "-fsingle-precision-constant")
#: Fewer member-evaluations than this per thread are not worth a thread's hand-off (~50 us;
#: one evaluation of the study's networks takes ~1.5 us).
EVALUATIONS_PER_THREAD = 32
#: The threads the kernel splits members over inside :func:`threads_held` (None outside).
_held_threads: int | None = None


def covers(arch, x: torch.Tensor, loss: str, beta) -> bool:
    """Whether the kernel computes this network's objective: one or more hidden layers of tanh,
    relu or linear units (a perceptron, depth 0, runs torch's pass), one output, shared float64 or
    float32 inputs on the CPU, a fixed inverse temperature."""
    return (
        arch.depth >= 1
        and arch.n_outputs == 1
        and arch.activation in ACTIVATION_CODES
        and loss in LOSS_CODES
        and x.dim() == 2
        and x.dtype in BUILD_LOOPS
        and x.device.type == "cpu"
        and isinstance(beta, (int, float))
    )


class NativeMLP:
    """``theta (member, param) -> (loss (member,), grad (member, param))`` by the C kernel, on all
    samples of ``(x, y)`` (``x (sample, feature)``, ``y (sample,)`` +-1, float64 or float32, CPU,
    ``library`` the build of that dtype)."""

    def __init__(self, library, arch, x, y, *, loss, margin, l2, beta):
        self.library, self.arch, self.dtype = library, arch, x.dtype
        self.lanes, self.sample_parts = library.native_mlp_lanes(), library.native_mlp_sample_parts()
        self.n_features, self.width, self.n_samples = x.shape[1], arch.width, x.shape[0]
        # The kernel reads samples a block at a time: padded ones (inputs 0, label 1) weigh 0.
        block = library.native_mlp_sample_block()
        padded = -(-self.n_samples // block) * block
        self.x = torch.zeros(padded, self.n_features, dtype=self.dtype)
        self.x[: self.n_samples] = x
        self.y = torch.ones(padded, dtype=self.dtype)
        self.y[: self.n_samples] = y
        self.scratch_size = library.native_mlp_scratch_size(self.n_features, self.width, arch.depth, int(arch.bias))
        self.settings = (
            LOSS_CODES[loss], ACTIVATION_CODES[arch.activation], int(arch.bias),
            float(margin), float(beta), float(l2),
        )
        self.scratch = {}

    def __call__(self, theta: torch.Tensor, sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and gradient of every member; with ``sizes (member,)``, member ``i``'s mean over
        the first ``sizes[i]`` samples only (nested prefixes of the inputs, as the jamming sweep's
        members fit)."""
        if theta.dtype != self.dtype or theta.device.type != "cpu" or theta.shape[1] != self.arch.n_params:
            raise ValueError(f"theta {tuple(theta.shape)} {theta.dtype} on {theta.device}: the kernel "
                             f"takes {self.dtype} (member, {self.arch.n_params}) on the CPU")
        if sizes is not None:
            sizes = self._checked_sizes(sizes, theta.shape[0])
        theta = theta.contiguous()
        losses, grads = torch.empty(theta.shape[0], dtype=self.dtype), torch.empty_like(theta)
        _split(theta.shape[0],
               lambda first, stop, thread: self._block(theta, sizes, losses, grads, first, stop, thread),
               lanes=self.lanes)
        return losses, grads

    def _block(self, theta, sizes, losses, grads, first, stop, thread):
        scratch = self._scratch(thread)
        self.library.native_mlp_loss_and_gradient(
            stop - first, _row_pointer(theta, first), _row_pointer(losses, first), _row_pointer(grads, first),
            self.n_features, self.width, self.arch.depth, self.n_samples, self.x.data_ptr(), self.y.data_ptr(),
            None if sizes is None else _row_pointer(sizes, first), *self.settings, scratch.data_ptr(),
        )

    def _scratch(self, thread, size=None):
        size = size or self.scratch_size
        if thread not in self.scratch or self.scratch[thread].numel() < size:
            self.scratch[thread] = torch.empty(size, dtype=self.dtype)
        return self.scratch[thread]

    def chebyshev_stages(self, theta: torch.Tensor, slope: torch.Tensor, h: torch.Tensor, stages: torch.Tensor,
                         tables: tuple) -> torch.Tensor:
        """The last stage ``Y_s (member, param)`` of each member's damped Runge-Kutta-Chebyshev
        step from ``theta`` with ``slope = -grad`` (:meth:`basins.engine.dynamics.ChebyshevFlow._stages`),
        step ``h (member,)``, ``stages (member,)`` and ``tables`` (``first [s]``, then ``mu``,
        ``nu``, ``mu~``, ``a_(j-1)`` ``[s, j]``, float64), every stage in C. Members of a SIMD
        group run to the group's largest stage count: callers order them by it. The float64
        build's only."""
        if self.dtype != torch.float64:
            raise ValueError("the Chebyshev stages in C are float64's")
        first, *square = (torch.as_tensor(table, dtype=torch.float64).contiguous() for table in tables)
        if any(table.shape != (len(first), len(first)) for table in square) or int(stages.max()) >= len(first):
            raise ValueError(f"the tables must be (s,) and (s, s) for stage counts up to {len(first) - 1}")
        theta, slope = theta.contiguous(), slope.contiguous()
        h = h.to(torch.float64).contiguous()
        stages = stages.to(torch.int64).contiguous()
        _check_buffers([(theta, torch.float64), (slope, torch.float64), (h, torch.float64), (stages, torch.int64)],
                       self.arch.n_params)
        out = torch.empty_like(theta)
        size = self.library.native_mlp_chebyshev_scratch_size(
            self.n_features, self.width, self.arch.depth, int(self.arch.bias))
        network = (self.n_features, self.width, self.arch.depth, self.n_samples, self.x.data_ptr(), self.y.data_ptr(),
                   *self.settings)

        def block(first_member, stop, thread):
            rows = (_row_pointer(tensor, first_member) for tensor in (theta, slope, h, stages))
            self.library.native_mlp_chebyshev_stages(
                stop - first_member, *rows, *(t.data_ptr() for t in (first, *square)),
                len(first), _row_pointer(out, first_member), *network, self._scratch(thread, size).data_ptr(),
            )

        _split(theta.shape[0], block, evaluations_each=int(stages.max()) if stages.numel() else 1, lanes=self.lanes)
        return out

    def hessians(self, theta: torch.Tensor) -> torch.Tensor:
        """The dense Hessians ``(member, param, param)`` of every member's loss on all samples
        (:func:`basins.landscapes.fused_mlp.hessians`' sum, in C: equal to it to round-off). One
        hidden layer, the float64 build only (:attr:`covers_hessians`)."""
        if not self.covers_hessians:
            raise ValueError(f"the kernel writes Hessians of one hidden layer in float64, not {self.arch} in {self.dtype}")
        if theta.dtype != self.dtype or theta.device.type != "cpu" or theta.shape[1] != self.arch.n_params:
            raise ValueError(f"theta {tuple(theta.shape)} {theta.dtype} on {theta.device}: the kernel "
                             f"takes {self.dtype} (member, {self.arch.n_params}) on the CPU")
        theta = theta.contiguous()
        n_params = self.arch.n_params
        out = torch.empty((theta.shape[0], n_params, n_params), dtype=self.dtype)
        size = self.library.native_mlp_hessian_scratch_size(self.n_features, self.width, 1, int(self.arch.bias))
        network = (self.n_features, self.width, 1, self.n_samples, self.x.data_ptr(), self.y.data_ptr(), *self.settings)

        def block(first, stop, thread):
            self.library.native_mlp_hessians(stop - first, _row_pointer(theta, first), _row_pointer(out, first),
                                             *network, self._scratch(thread, size).data_ptr())

        _split(theta.shape[0], block, evaluations_each=n_params, lanes=self.lanes)
        return out

    @property
    def covers_hessians(self) -> bool:
        """Whether :meth:`hessians` covers this network: one hidden layer, float64."""
        return self.arch.depth == 1 and self.dtype == torch.float64

    def compiled_steps(self, form: tuple[str, dict] | None, *, grad_tol: float, divergence_threshold: float,
                       sizes: torch.Tensor | None = None, delta_tol: float | None = None):
        """The engine's window (:class:`basins.engine.windows.CompiledSteps`) of the stepper whose
        :meth:`compiled_form` is ``form``, as a loop in C: ``run(theta, loss, grad, state, status,
        stop_step, grad_norm, first_step, n_steps)`` steps the members in place, the loop's
        stopping test (gradient norm at most ``grad_tol``, divergence beyond
        ``divergence_threshold``) as a mask before every step. ``sizes (member,)``: each member's
        loss over its own first samples (:meth:`__call__`); ``delta_tol``: the jamming sweep's
        satisfied test too (every own sample's margin - y f at most it: converged). None where
        the kernel has no loop for it (gd with a constant step size, Adam and Dormand-Prince
        gradient flow have one in float64, gd in float32; the flow without the satisfied test)."""
        if (form is None or form[0] not in BUILD_LOOPS[self.dtype]
                or (form[0] == "dormand_prince" and delta_tol is not None)):
            return None
        name, options = form
        arguments, state_names, tensors = _STEP_LOOPS[name](options)
        function = getattr(self.library, f"native_mlp_{name}_steps")
        size = self.library.native_mlp_steps_scratch_size(
            self.n_features, self.width, self.arch.depth, int(self.arch.bias))
        network = (self.n_features, self.width, self.arch.depth, self.n_samples, self.x.data_ptr(), self.y.data_ptr(),
                   *self.settings)
        if sizes is not None:
            sizes = self._checked_sizes(sizes, len(sizes))
        satisfied = () if name == "dormand_prince" else (float("nan") if delta_tol is None else float(delta_tol),)
        # gd's loop takes its thread's place in a team sharing its members (_split_teams)
        parts = self.sample_parts if name == "gd" else 1
        slot_reals = 2 * parts * (self.arch.n_params + 2) * self.lanes

        def block(rows, first_step, n_steps, first, stop, thread, team):
            # the call with its arguments built here, in the caller's thread (a team's thread that
            # failed before entering C would leave its partners waiting for ever)
            pointers = [_row_pointer(row, first) for row in rows]
            own = None if sizes is None else _row_pointer(sizes, first)
            place = () if name != "gd" else (0, 1, None, None) if team is None else team
            call = (stop - first, *pointers, int(first_step), int(n_steps), *arguments, float(grad_tol),
                    float(divergence_threshold), own, *satisfied, *network, self._scratch(thread, size).data_ptr(),
                    *place)
            return lambda: function(*call)

        def run(theta, loss, grad, state, status, stop_step, grad_norm, first_step, n_steps):
            real, count = self.dtype, torch.int64
            buffers = [(theta, real), (loss, real), (grad, real),
                       *((state[key], count if key == "steps" else real) for key in state_names),
                       (status, count), (stop_step, count), (grad_norm, real)]
            _check_buffers(buffers, self.arch.n_params)
            if sizes is not None and len(sizes) != theta.shape[0]:
                raise ValueError(f"{len(sizes)} sample counts for {theta.shape[0]} members")
            rows = [tensor for tensor, _ in buffers]
            _split_teams(theta.shape[0],
                         lambda first, stop, thread, team: block(rows, first_step, n_steps, first, stop, thread, team),
                         evaluations_each=n_steps, lanes=self.lanes, parts=parts, slot_reals=slot_reals,
                         dtype=self.dtype)

        run.tableau = tensors  # the C loop reads them through their pointers
        return run

    def _checked_sizes(self, sizes, n_members: int) -> torch.Tensor:
        """Each member's sample count as contiguous int64, checked to lie in 1 .. n_samples."""
        sizes = torch.as_tensor(sizes, dtype=torch.int64).contiguous()
        if sizes.shape != (n_members,) or not bool(((sizes >= 1) & (sizes <= self.n_samples)).all()):
            raise ValueError(f"sizes must be one count in 1..{self.n_samples} per member")
        return sizes


class NativeRing:
    """A ring of ``n_oscillators`` Kuramoto oscillators coupled to ``coupling_range`` neighbours a
    side (:class:`basins.oscillators.KuramotoRing`) by the C kernel, float64 on the CPU:
    ``theta (member, oscillator) -> (energy (member,), grad (member, oscillator))``, one member a
    SIMD lane (a polynomial sine and cosine: torch's ring to round-off), and the engine's
    Dormand-Prince windows on it (:meth:`compiled_steps`): a ring's step is ~100 small torch
    operations on a (member, oscillator) array, so its relaxation is torch's dispatch there."""

    def __init__(self, library, n_oscillators: int, coupling_range: int):
        self.library, self.n_oscillators, self.coupling_range = library, n_oscillators, coupling_range
        self.scratch_size = library.native_ring_scratch_size(n_oscillators)
        self.scratch = {}

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._evaluate(theta, with_energy=True)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """The gradient alone, by the kernel's cheaper sine (the flow's inner stages' in C)."""
        return self._evaluate(theta, with_energy=False)[1]

    def _evaluate(self, theta, *, with_energy):
        if theta.dtype != torch.float64 or theta.device.type != "cpu" or theta.shape[1] != self.n_oscillators:
            raise ValueError(f"theta {tuple(theta.shape)} {theta.dtype} on {theta.device}: the kernel takes "
                             f"float64 (member, {self.n_oscillators}) on the CPU")
        theta = theta.contiguous()
        energies, grads = torch.empty(theta.shape[0], dtype=torch.float64), torch.empty_like(theta)

        def block(first, stop, thread):
            self.library.native_ring_energy_and_gradient(
                stop - first, _row_pointer(theta, first), _row_pointer(energies, first) if with_energy else None,
                _row_pointer(grads, first), self.n_oscillators, self.coupling_range, self._scratch(thread).data_ptr())

        _split(theta.shape[0], block, lanes=self.library.native_mlp_lanes())
        return energies, grads

    def _scratch(self, thread):
        if thread not in self.scratch:
            self.scratch[thread] = torch.empty(self.scratch_size, dtype=torch.float64)
        return self.scratch[thread]

    def compiled_steps(self, form: tuple[str, dict] | None, *, grad_tol: float, divergence_threshold: float):
        """The engine's window of Dormand-Prince gradient flow (``form``: the stepper's
        :meth:`compiled_form`) as a loop in C, as :meth:`NativeMLP.compiled_steps`; None for other
        dynamics."""
        if form is None or form[0] != "dormand_prince":
            return None
        arguments, state_names, tensors = _dormand_prince_loop(form[1])
        ring = (self.n_oscillators, self.coupling_range)

        def run(theta, loss, grad, state, status, stop_step, grad_norm, first_step, n_steps):
            count = torch.int64
            buffers = [(theta, torch.float64), (loss, torch.float64), (grad, torch.float64),
                       *((state[key], count if key == "steps" else torch.float64) for key in state_names),
                       (status, count), (stop_step, count), (grad_norm, torch.float64)]
            _check_buffers(buffers, self.n_oscillators)
            rows = [tensor for tensor, _ in buffers]

            def block(first, stop, thread):
                self.library.native_ring_dormand_prince_steps(
                    stop - first, *(_row_pointer(row, first) for row in rows), int(first_step), int(n_steps),
                    *arguments, float(grad_tol), float(divergence_threshold), *ring, self._scratch(thread).data_ptr())

            _split(theta.shape[0], block, evaluations_each=n_steps, lanes=self.library.native_mlp_lanes())

        run.tableau = tensors  # the C loop reads them through their pointers
        return run


def ring_kernel_for(n_oscillators: int, coupling_range: int, device: torch.device,
                    dtype: torch.dtype) -> NativeRing | None:
    """The kernel of this ring for members on ``device`` in ``dtype``, or None where it does not
    run there (float64 on the CPU only) or no library could be built (:func:`library`)."""
    if torch.device(device).type != "cpu" or dtype != torch.float64:
        return None
    compiled = library(torch.float64)
    return None if compiled is None else NativeRing(compiled, n_oscillators, coupling_range)


def _gd_loop(options):
    """gd's arguments after the window's (the step size), its state's buffers, tensors to keep."""
    return (float(options["lr"]),), ("steps",), ()


def _adam_loop(options):
    """Adam's: the step size, its decay (every, factor), betas and eps."""
    arguments = (float(options["lr"]), int(options["every"]), float(options["factor"]),
                 *(float(options[key]) for key in ("beta1", "beta2", "eps")))
    return arguments, ("exp_avg", "exp_avg_sq", "steps"), ()


def _dormand_prince_loop(options):
    """Dormand-Prince's: the tableau and error weights (kept alive with the runner), the error
    exponent, the tolerances and the time budget."""
    tableau = torch.zeros(len(options["tableau"]), len(options["tableau"]), dtype=torch.float64)
    for row, coefficients in enumerate(options["tableau"]):
        tableau[row, : len(coefficients)] = torch.tensor(coefficients, dtype=torch.float64)
    weights = torch.tensor(options["error_weights"], dtype=torch.float64)
    if tableau.shape != (6, 6) or weights.shape != (7,):
        raise ValueError("the kernel's loop integrates the seven-stage Dormand-Prince tableau only")
    arguments = (tableau.data_ptr(), weights.data_ptr(), *(float(options[key]) for key in (
        "error_exponent", "rtol", "atol", "max_time")))
    return arguments, ("step_size", "time", "step_cap", "steps"), (tableau, weights)


#: The step loops in C, by the name of the stepper's compiled form.
_STEP_LOOPS = {"gd": _gd_loop, "adam": _adam_loop, "dormand_prince": _dormand_prince_loop}
#: The step loops each build has (the float32 build: gd's only).
BUILD_LOOPS = {torch.float64: tuple(_STEP_LOOPS), torch.float32: ("gd",)}


def _row_pointer(tensor: torch.Tensor, row: int) -> int:
    """The address of row ``row`` of a contiguous tensor with one row per member."""
    return tensor.data_ptr() + row * tensor.stride(0) * tensor.element_size()


def _check_buffers(buffers, n_params):
    """The window's buffers, ``(tensor, dtype)`` pairs, as the C loop reads them: contiguous CPU
    tensors of that dtype with one row per member (the point and the gradient ``(member,
    n_params)``)."""
    n_members = buffers[0][0].shape[0]
    for tensor, dtype in buffers:
        if not (tensor.shape in ((n_members,), (n_members, n_params)) and tensor.is_contiguous()
                and tensor.device.type == "cpu" and tensor.dtype == dtype):
            raise ValueError(f"a buffer {tuple(tensor.shape)} {tensor.dtype} on {tensor.device}: the C loop "
                             f"takes contiguous {dtype} (member[, {n_params}]) rows on the CPU")


def kernel_for(arch, x, y, *, loss, margin, l2, beta) -> NativeMLP | None:
    """The kernel for this objective, or None where it does not cover it (:func:`covers`) or no
    library could be built (:func:`library`)."""
    if not covers(arch, x, loss, beta):
        return None
    compiled = library(x.dtype)
    return None if compiled is None else NativeMLP(compiled, arch, x, y, loss=loss, margin=margin, l2=l2, beta=beta)


@functools.cache
def library(dtype: torch.dtype = torch.float64) -> ctypes.CDLL | None:
    """The compiled kernel of ``dtype`` (float64, or float32: :data:`FLOAT32_FLAGS`), built on
    first use (cached across processes); None where ``BASINS_NATIVE=0`` or no flag set of
    :data:`FLAG_SETS` compiles."""
    if dtype not in BUILD_LOOPS:
        raise ValueError(f"the kernel has float64 and float32 builds, not {dtype}")
    if os.environ.get(SWITCH, "1") == "0":
        log.info("%s=0: network objectives by torch's pass", SWITCH)
        return None
    compiler = os.environ.get("CC", "cc")
    extra = FLOAT32_FLAGS if dtype == torch.float32 else ()
    errors = []
    for flags in FLAG_SETS:
        try:
            return _load(_built(compiler, (*flags, *extra)))
        except (OSError, subprocess.CalledProcessError) as error:
            errors.append(f"{' '.join(flags)}: {_first_line(error)}")
    log.warning("the C kernel of the network objective could not be built with %r (%s): torch's "
                "pass is used (slower, same results to round-off)", compiler, "; ".join(errors))
    return None


def _built(compiler: str, flags: tuple) -> Path:
    """The library for ``flags``, compiled into the cache unless it is there already."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), compiler, version, *flags, _cpu_identity()]).encode())
    target = _cache_folder() / f"native_mlp-{key.hexdigest()[:20]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built under a name of this process's own, then renamed: jobs starting together each build
    # and the last rename wins, never a half-written library.
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".so")
    os.close(handle)
    try:
        subprocess.run([compiler, *flags, "-shared", "-fPIC", "-o", partial, str(SOURCE)],
                       capture_output=True, text=True, check=True)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    log.info("compiled the network objective's C kernel: %s", target)
    return target


def _load(path: Path) -> ctypes.CDLL:
    compiled = ctypes.CDLL(str(path))
    pointer, integer, real, flag = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    compiled.native_mlp_loss_and_gradient.argtypes = [
        integer, pointer, pointer, pointer, integer, integer, integer, integer, pointer, pointer, pointer,
        flag, flag, flag, real, real, real, pointer,
    ]
    compiled.native_mlp_loss_and_gradient.restype = None
    for size in ("scratch", "steps_scratch", "chebyshev_scratch", "hessian_scratch"):
        if hasattr(compiled, f"native_mlp_{size}_size"):  # the float32 build has no Chebyshev stages or Hessians
            getattr(compiled, f"native_mlp_{size}_size").argtypes = [integer, integer, integer, flag]
            getattr(compiled, f"native_mlp_{size}_size").restype = integer
    network = [integer, integer, integer, integer, pointer, pointer, flag, flag, flag, real, real, real, pointer]
    stops = [real, real, pointer]  # grad_tol, divergence_threshold, sizes
    team = [integer, integer, pointer, pointer]  # index, size, barrier, slots
    compiled.native_mlp_gd_steps.argtypes = [
        integer, *[pointer] * 7, integer, integer, real, *stops, real, *network, *team,
    ]
    compiled.native_mlp_gd_steps.restype = None
    for count in (compiled.native_mlp_sample_block, compiled.native_mlp_lanes, compiled.native_mlp_sample_parts):
        count.argtypes, count.restype = [], integer
    if not hasattr(compiled, "native_mlp_adam_steps"):  # the float32 build: the objective and gd
        return compiled
    compiled.native_mlp_adam_steps.argtypes = [
        integer, *[pointer] * 9, integer, integer, real, integer, real, real, real, real, *stops, real, *network,
    ]
    compiled.native_mlp_adam_steps.restype = None
    compiled.native_mlp_dormand_prince_steps.argtypes = [
        integer, *[pointer] * 10, integer, integer, pointer, pointer, real, real, real, real, *stops, *network,
    ]
    compiled.native_mlp_dormand_prince_steps.restype = None
    compiled.native_mlp_chebyshev_stages.argtypes = [integer, *[pointer] * 9, integer, pointer, *network]
    compiled.native_mlp_chebyshev_stages.restype = None
    compiled.native_mlp_hessians.argtypes = [integer, pointer, pointer, *network]
    compiled.native_mlp_hessians.restype = None
    compiled.native_ring_scratch_size.argtypes, compiled.native_ring_scratch_size.restype = [integer], integer
    compiled.native_ring_energy_and_gradient.argtypes = [integer, pointer, pointer, pointer, integer, integer, pointer]
    compiled.native_ring_energy_and_gradient.restype = None
    compiled.native_ring_dormand_prince_steps.argtypes = [
        integer, *[pointer] * 10, integer, integer, pointer, pointer, real, real, real, real, real, real,
        integer, integer, pointer,
    ]
    compiled.native_ring_dormand_prince_steps.restype = None
    return compiled


def _cache_folder() -> Path:
    if "BASINS_NATIVE_CACHE" in os.environ:
        return Path(os.environ["BASINS_NATIVE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "basins"


def _cpu_identity() -> str:
    """The CPU's model and instruction-set flags (Linux), else what platform knows of it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return platform.machine() + platform.processor() + "".join(sorted(set(wanted)))


def _first_line(error) -> str:
    text = getattr(error, "stderr", None) or str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


@contextlib.contextmanager
def threads_held():
    """Inside: torch runs its own operations on one thread, and the kernel's calls split the
    members over the threads torch had.

    For loops that alternate the kernel's calls with a few small torch operations (the engine's
    stopping test between two windows of steps): a torch operation on n threads leaves its
    OpenMP workers spinning for milliseconds after it (libgomp's default wait policy), on the
    cores the kernel's threads then need. A 2-thread run of 1 024 members x 500 gd steps took
    a third longer so (benchmarks/README.md, session 45). Nested holds keep the outer one.
    """
    global _held_threads
    threads = torch.get_num_threads()
    if _held_threads is not None or threads == 1:
        yield
        return
    _held_threads = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _held_threads = None


def _split(n_members: int, work, evaluations_each: int = 1, lanes: int = 1) -> None:
    """``work(first, stop, thread)`` on contiguous blocks of the members, one per thread used:
    in this thread where there is one block, else on the pool. ``evaluations_each``: how many
    evaluations the work takes a member (a window's steps); ``lanes``: members the kernel
    computes together (blocks hold whole groups of them)."""
    _run_blocks(_blocks(n_members, _held_threads or torch.get_num_threads(), evaluations_each, lanes), work)


def _run_blocks(blocks: list[tuple[int, int]], work) -> None:
    """``work(first, stop, thread)`` on each block: in this thread where there is one, else on the pool."""
    if len(blocks) == 1:
        work(*blocks[0], 0)
    else:
        list(_pool(len(blocks)).map(lambda index: work(*blocks[index], index), range(len(blocks))))


def _split_teams(n_members: int, call_of, *, evaluations_each: int, lanes: int, parts: int, slot_reals: int,
                 dtype: torch.dtype) -> None:
    """``call_of(first, stop, thread, team)()`` on :func:`_split`'s blocks; where they leave
    threads idle (fewer groups of lanes than threads: with two threads, one group, sixteen float32
    members with AVX-512, eight with AVX2) and an evaluation's samples come in ``parts``, each
    block by a team of threads, one part each, every thread running the same window (``team``:
    ``(index, size, barrier, slots)``, the addresses of the counters and ``slot_reals`` reals the
    team shares; None: alone). ``call_of`` builds each call in this thread; the calls of every
    team are queued together, each on its own worker of the pool, since its threads wait for each
    other at every evaluation (two callers' tasks interleaved in the queue could each hold a
    worker waiting for a partner queued behind the other's)."""
    n_threads = _held_threads or torch.get_num_threads()
    blocks = _blocks(n_members, n_threads, evaluations_each, lanes)
    size = min(parts, n_threads // len(blocks)) if evaluations_each >= EVALUATIONS_PER_THREAD else 1
    if size <= 1:
        _run_blocks(blocks, lambda first, stop, thread: call_of(first, stop, thread, None)())
        return
    shared = [(torch.zeros(2, dtype=torch.int64), torch.empty(slot_reals, dtype=dtype)) for _ in blocks]
    calls = [call_of(first, stop, size * block + index,
                     (index, size, barrier.data_ptr(), slots.data_ptr()))
             for block, ((first, stop), (barrier, slots)) in enumerate(zip(blocks, shared)) for index in range(size)]
    pool = _pool(len(calls))
    with _TEAM_QUEUE:
        running = [pool.submit(call) for call in calls]
    wait(running)  # every thread out of the shared buffers before they are freed, also on an error
    for task in running:
        task.result()


#: Held while a team's calls are queued (:func:`_split_teams`).
_TEAM_QUEUE = threading.Lock()


def _blocks(n_members: int, n_threads: int, evaluations_each: int = 1, lanes: int = 1) -> list[tuple[int, int]]:
    """Contiguous (first, stop) blocks of whole groups of ``lanes`` members, one per thread used:
    as many threads as have ``EVALUATIONS_PER_THREAD`` member-evaluations each (a window of 16
    members and 15 steps is split, one evaluation of 16 members is not) and a group each (a
    thread given half a group of 8 computes all 8 lanes: no faster than one thread)."""
    n_groups = -(-n_members // lanes)
    n_blocks = max(1, min(n_threads, n_groups, n_members * evaluations_each // EVALUATIONS_PER_THREAD))
    edges = [min(n_members, lanes * (n_groups * index // n_blocks)) for index in range(n_blocks + 1)]
    return list(zip(edges[:-1], edges[1:]))


@functools.cache
def _pool(n_threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(n_threads, thread_name_prefix="native_mlp")
