"""Throughput of the training engine against the usual ways of training an ensemble, and JAX.

Trains E members of a one-hidden-layer tanh MLP (d=20, h=16, P=1000, MSE by default; the
study's own shape with ``--features 8 --width 4 --samples 60 --loss cross_entropy --l2 0.01
--dtype float64``) with full-batch gradient descent, by
  (a) a naive loop of ``torch.nn`` modules, each with its own ``torch.optim.SGD``;
  (b) the ``torch.func`` recipe: ``stack_module_state`` + ``functional_call`` + ``vmap(grad)``;
  (c) ``basins.training.train_ensemble``, and (d) the same with ``compile=True``; ``engine_autograd``
      is (c) with the objective it had before the hand-derived pass (autograd of ``member_losses``),
      ``engine_stepwise`` (c) stepping one step at a time (on a GPU the engine runs its steps in
      captured windows, :mod:`basins.engine.windows`);
  (e) a JAX peer written as an expert would: ``jax.vmap(jax.grad(loss))`` over members, the
      whole descent in one jitted ``lax.fori_loop``; ``jax_2dev`` splits the members over two
      XLA host devices (one per core), ``jax_manual`` is the same loop with a hand-written
      batched backward in the (member, unit, sample) layout;
and reports member-steps/s, GFLOP/s and the fraction of this machine's measured matmul peak.
Every method's final losses are compared with the engine's (``loss_rel_diff``).

    python benchmarks/bench_training.py                       # the table of the README
    python benchmarks/bench_training.py --width 128 --members 256 1024
    python benchmarks/bench_training.py --device cuda --methods vmap_recipe engine engine_stepwise jax jax_manual

JAX (``pip install -e .[bench]``; on a GPU, a CUDA build of jaxlib) is needed only for the
``jax*`` methods; on CUDA the peer runs on the same GPU as the torch methods.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from basins.landscapes.architecture import Architecture, initial_parameters
from basins import training
from basins.engine import descent
from basins.engine.dynamics import energy_and_gradient
from basins.landscapes.objective import member_losses
from basins.training import train_ensemble
from recording import write_table

RESULTS = Path(__file__).parent / "results"


def flops_per_member_step(arch: Architecture, n_samples: int) -> float:
    """Forward multiply-adds x 2, backward twice the forward (weights and inputs)."""
    return 3 * 2 * n_samples * arch.n_weights


def matmul_peak(device, dtype, size=2048, repeats=5) -> float:
    """Best GFLOP/s of one large square matmul on this device and dtype."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = max(best, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def sample_loss(output, y, loss):
    """The binary losses the benchmark trains: 1/2 (f - y)^2 or softplus(-y f)."""
    return 0.5 * (output - y) ** 2 if loss == "mse" else F.softplus(-y * output)


def make_modules(arch, theta, dtype, device):
    modules = []
    for row in theta:
        model = torch.nn.Sequential(
            torch.nn.Linear(arch.n_inputs, arch.width), torch.nn.Tanh(), torch.nn.Linear(arch.width, 1)
        ).to(device=device, dtype=dtype)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.as_tensor(row, dtype=dtype, device=device), model.parameters())
        modules.append(model)
    return modules


def time_naive_loop(arch, theta, x, y, steps, lr, device, *, loss, l2, **_):
    modules = make_modules(arch, theta, x.dtype, device)
    optimizers = [torch.optim.SGD(m.parameters(), lr=lr) for m in modules]

    def objective(model):
        value = sample_loss(model(x)[:, 0], y, loss).mean()
        return value + 0.5 * l2 * sum((p * p).sum() for p in model.parameters())

    _sync(device)
    start = time.perf_counter()
    for model, optimizer in zip(modules, optimizers):
        for _ in range(steps):
            optimizer.zero_grad()
            objective(model).backward()
            optimizer.step()
    _sync(device)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        return seconds, np.array([float(objective(model)) for model in modules])


def time_vmap_recipe(arch, theta, x, y, steps, lr, device, *, loss, l2, **_):
    modules = make_modules(arch, theta, x.dtype, device)
    params, buffers = stack_module_state(modules)
    # stack_module_state returns leaves that require grad; updating them outside no_grad would
    # chain every step into one autograd graph (memory grows with the step count).
    params = {name: value.detach() for name, value in params.items()}
    base = modules[0]

    def member_loss(p, b):
        value = sample_loss(functional_call(base, (p, b), (x,))[:, 0], y, loss).mean()
        return value + 0.5 * l2 * sum((v * v).sum() for v in p.values())

    member_grad = vmap(grad(member_loss))
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        grads = member_grad(params, buffers)
        params = {name: value - lr * grads[name] for name, value in params.items()}
    _sync(device)
    seconds = time.perf_counter() - start
    return seconds, vmap(member_loss)(params, buffers).cpu().numpy()


def time_engine(arch, theta, x, y, steps, lr, device, *, loss, l2, memory_budget_mb=4096, compile=False, dynamics="gd"):
    data = (x.cpu().numpy(), y.cpu().numpy(), x[:2].cpu().numpy(), y[:2].cpu().numpy())
    dtype = "float64" if x.dtype == torch.float64 else "float32"
    _sync(device)
    start = time.perf_counter()
    result = train_ensemble(
        arch, *data, theta, np.arange(len(theta)), loss=loss, l2=l2, dynamics=dynamics, lr=lr,
        max_steps=steps, grad_tol=0.0, device=str(device), dtype=dtype, memory_budget_mb=memory_budget_mb,
        progress_every_s=1e9, compile=compile,
    )
    _sync(device)
    return time.perf_counter() - start, result["loss"].values


def time_engine_stepwise(arch, theta, x, y, steps, lr, device, **options):
    """The engine stepping one step at a time, as before its windows (a GPU's default now): the
    windows' speed-up, in one run. On the CPU the engine steps so anyway."""
    with mock.patch.object(descent, "_windowed", lambda *args: False):
        return time_engine(arch, theta, x, y, steps, lr, device, **options)


def time_compiled_engine(arch, theta, x, y, steps, lr, device, **options):
    return time_engine(arch, theta, x, y, steps, lr, device, compile=True, **options)


def autograd_objective(arch, x, y, *, loss, margin, l2, beta=1.0, compile=False):
    """The engine's objective before the hand-derived pass: autograd of ``member_losses``."""

    def objective(theta, batch):
        inputs, labels = (x, y) if batch is None else (x[batch], y[batch])
        return energy_and_gradient(
            lambda t: member_losses(t, inputs, labels, arch, loss=loss, margin=margin, l2=l2, beta=beta), theta
        )

    return objective


def time_engine_autograd(arch, theta, x, y, steps, lr, device, **options):
    """The engine with the autograd objective: the speed-up of the hand-derived pass, in one run."""
    with mock.patch.object(training, "make_objective", autograd_objective):
        return time_engine(arch, theta, x, y, steps, lr, device, **options)


# --- The JAX peer -------------------------------------------------------------------------------
_JAX_CACHE = {}


def _jax(platform="cpu"):
    """Import JAX once for ``platform`` ("cpu": one XLA host device per core; "gpu": JAX's CUDA
    backend, allocating as it goes so torch keeps its memory), float64 enabled, and float32
    matrix products in full float32 as torch's (no TF32)."""
    if "jax" not in _JAX_CACHE:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={os.cpu_count()}"
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        os.environ.setdefault("JAX_PLATFORMS", platform if platform == "cpu" else "cuda")
        import jax

        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_default_matmul_precision", "highest")
        _JAX_CACHE["jax"] = jax
    return _JAX_CACHE["jax"]


def _jax_descent(loss, l2, lr, manual):
    """``run(params, x, y, steps) -> (params, final losses)``: the whole descent, jitted."""
    jax = _jax()
    jnp = jax.numpy

    def per_sample(output, y):
        return 0.5 * (output - y) ** 2 if loss == "mse" else jax.nn.softplus(-y * output)

    def member_loss(params, x, y):
        w1, b1, w2, b2 = params  # (h, d), (h,), (h,), ()
        output = jnp.tanh(x @ w1.T + b1) @ w2 + b2
        return per_sample(output, y).mean() + 0.5 * l2 * sum((p * p).sum() for p in params)

    member_grad = jax.vmap(jax.grad(member_loss), in_axes=(0, None, None))

    def manual_grad(params, x, y):
        # All members at once in the (member, unit, sample) layout: reductions run along samples.
        w1, b1, w2, b2 = params
        hidden = jnp.tanh(jnp.einsum("ehd,pd->ehp", w1, x) + b1[:, :, None])
        output = jnp.einsum("eh,ehp->ep", w2, hidden) + b2[:, None]
        if loss == "mse":
            delta = (output - y) / y.shape[0]
        else:
            delta = -y * jax.nn.sigmoid(-y * output) / y.shape[0]
        back = w2[:, :, None] * delta[:, None, :] * (1 - hidden * hidden)
        grads = (
            jnp.einsum("ehp,pd->ehd", back, x), back.sum(-1), jnp.einsum("ep,ehp->eh", delta, hidden), delta.sum(-1)
        )
        return tuple(g + l2 * p for g, p in zip(grads, params))

    gradient = manual_grad if manual else member_grad

    @jax.jit
    def run(params, x, y, steps):
        def step(_, params):
            return tuple(p - lr * g for p, g in zip(params, gradient(params, x, y)))

        params = jax.lax.fori_loop(0, steps, step, params)
        return params, jax.vmap(member_loss, in_axes=(0, None, None))(params, x, y)

    return run


def time_jax(arch, theta, x, y, steps, lr, device, *, loss, l2, n_devices=1, manual=False, **_):
    jax = _jax()
    dtype = np.float64 if x.dtype == torch.float64 else np.float32
    h, d = arch.width, arch.n_inputs
    (w1, b1), (w2, b2) = arch.layer_slices
    params = tuple(
        np.ascontiguousarray(theta[:, part].astype(dtype)).reshape(shape)
        for part, shape in ((w1, (-1, h, d)), (b1, (-1, h)), (w2, (-1, h)), (b2, (-1,)))
    )
    x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
    n_devices = min(n_devices, len(jax.devices()), len(theta))
    if n_devices > 1 and len(theta) % n_devices == 0:
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:n_devices]), ("member",))
        split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("member"))
        shared = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        params = tuple(jax.device_put(p, split) for p in params)
        x_np, y_np = jax.device_put(x_np, shared), jax.device_put(y_np, shared)
    else:
        params = tuple(jax.device_put(p) for p in params)
        x_np, y_np = jax.device_put(x_np), jax.device_put(y_np)
    key = (loss, l2, lr, manual)
    run = _JAX_CACHE.setdefault(key, _jax_descent(loss, l2, lr, manual))
    jax.block_until_ready(run(params, x_np, y_np, 1))  # compiled for these shapes, not timed
    start = time.perf_counter()
    _, losses = jax.block_until_ready(run(params, x_np, y_np, steps))
    return time.perf_counter() - start, np.asarray(losses)


METHODS = {
    "naive_loop": time_naive_loop,
    "vmap_recipe": time_vmap_recipe,
    "engine": time_engine,
    "engine_compiled": time_compiled_engine,
    "engine_autograd": time_engine_autograd,
    "engine_stepwise": time_engine_stepwise,
    "jax": time_jax,
    "jax_2dev": lambda *args, **options: time_jax(*args, n_devices=2, **options),
    "jax_manual": lambda *args, **options: time_jax(*args, manual=True, **options),
    "jax_manual_2dev": lambda *args, **options: time_jax(*args, n_devices=2, manual=True, **options),
}


def relative_difference(a, b):
    """Largest |a - b| / |b| over members."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 16, 256, 1024, 4096])
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--loss", default="mse", choices=["mse", "cross_entropy"])
    parser.add_argument("--l2", type=float, default=0.0, help="l2 / 2 |theta|^2 added to the loss")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--member-steps", type=int, default=20000, help="work per measurement")
    parser.add_argument("--max-naive-members", type=int, default=1024, help="the loop is slow: cap it")
    parser.add_argument(
        "--naive-member-steps", type=int, default=20000, help="work per naive-loop measurement (it is slow)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="cap on steps per measurement")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over the methods, interleaved")
    parser.add_argument("--memory-budget-mb", type=float, default=4096, help="the engine's chunking budget")
    parser.add_argument("--methods", nargs="+", default=list(METHODS)[:4], choices=list(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument(
        "--dynamics", default="gd", help="the engine's dynamics (the other methods run gd only); gradient_flow: "
        "a step is one attempted integrator step, six evaluations"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.dynamics != "gd" and not all(method.startswith("engine") for method in args.methods):
        parser.error(f"--dynamics {args.dynamics} is run by the engine methods only")
    if any(method.startswith("jax") for method in args.methods):
        if device.type not in ("cpu", "cuda"):
            parser.error(f"the JAX peer runs on the CPU or CUDA, not {device.type}")
        if device.type == "cuda" and any(method.endswith("_2dev") for method in args.methods):
            parser.error("the *_2dev methods split members over the CPU's cores; on CUDA run jax and jax_manual")
        _jax("cpu" if device.type == "cpu" else "gpu")
    load_before = os.getloadavg()
    arch = Architecture(n_inputs=args.features, n_outputs=1, depth=1, width=args.width, activation="tanh")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, args.features, generator=generator, dtype=dtype).to(device)
    y = torch.sign(torch.randn(args.samples, generator=generator, dtype=dtype)).to(device)
    peak = matmul_peak(device, dtype)
    flops = flops_per_member_step(arch, args.samples)
    problem = {"loss": args.loss, "l2": args.l2}
    engine_options = {"dynamics": args.dynamics} if args.dynamics != "gd" else {}
    rows = []
    for n_members in args.members:
        theta = initial_parameters(arch, np.arange(n_members), seed=0, init="torch_default")
        methods = [m for m in args.methods if not (m == "naive_loop" and n_members > args.max_naive_members)]
        # At least 20 steps, so one-off set-up (first and final evaluations) is amortized.
        plan = {}
        for method in methods:
            work = min(args.member_steps, args.naive_member_steps) if method == "naive_loop" else args.member_steps
            steps = max(20, work // n_members)
            plan[method] = min(steps, args.max_steps or steps)
            options = dict(problem, memory_budget_mb=args.memory_budget_mb, **engine_options)
            METHODS[method](arch, theta[: min(n_members, 4)], x, y, 2, args.lr, device, **options)  # warm-up
        # Methods interleaved within each round, so a change in the machine's load hits them all.
        seconds, losses = {m: [] for m in methods}, {}
        for _ in range(args.repeats):
            for method in methods:
                options = dict(problem, memory_budget_mb=args.memory_budget_mb, **engine_options)
                try:
                    elapsed, losses[method] = METHODS[method](
                        arch, theta, x, y, plan[method], args.lr, device, **options
                    )
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    continue
                seconds[method].append(elapsed)
        for method in methods:
            if not seconds[method]:
                rows.append({"method": method, "members": n_members, "steps": plan[method], "error": "out of memory"})
                print(json.dumps(rows[-1]), flush=True)
                continue
            rate = n_members * plan[method] / min(seconds[method])
            row = {
                "method": method, "members": n_members, "steps": plan[method],
                "seconds": [round(s, 4) for s in seconds[method]],
                "member_steps_per_s": round(rate, 1),
                "member_steps_per_s_median": round(n_members * plan[method] / statistics.median(seconds[method]), 1),
                "gflops": round(rate * flops / 1e9, 2), "fraction_of_matmul_peak": round(rate * flops / 1e9 / peak, 4),
            }
            # Agreement with the engine: same starting points, same number of steps.
            if "engine" in losses and method != "engine" and plan[method] == plan["engine"]:
                row["loss_rel_diff_vs_engine"] = relative_difference(losses[method], losses["engine"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    machine = {
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(), "device": str(device),
        "memory_budget_mb": args.memory_budget_mb,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype, "torch": torch.__version__, "matmul_peak_gflops": round(peak, 2),
        "jax": _JAX_CACHE["jax"].__version__ if "jax" in _JAX_CACHE else None,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "network": {"d": args.features, "h": args.width, "P": args.samples, "n_weights": arch.n_weights, **problem},
        "lr": args.lr, "repeats": args.repeats, "dynamics": args.dynamics,
    }
    name = f"training_{device.type}_{args.dtype}_h{args.width}"
    if args.loss != "mse" or args.dynamics != "gd":
        name += f"_d{args.features}_P{args.samples}_{args.loss}_{args.dynamics}"
    output = args.output or RESULTS / f"{name}.json"
    write_table(output, rows, machine)


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
