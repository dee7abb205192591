"""Throughput of the training engine against the two usual ways of training an ensemble.

Trains E members of a d=20, h=16 (by default) one-hidden-layer tanh MLP on P=1000 points with
full-batch gradient descent, by
  (a) a naive loop of ``torch.nn`` modules, each with its own ``torch.optim.SGD``;
  (b) the ``torch.func`` recipe: ``stack_module_state`` + ``functional_call`` + ``vmap(grad)``;
  (c) ``basins.training.train_ensemble``, and (d) the same with ``compile=True``;
and reports member-steps/s, GFLOP/s and the fraction of this machine's measured matmul peak.

    python benchmarks/bench_training.py                       # the table of the README
    python benchmarks/bench_training.py --width 128 --members 256 1024
    python benchmarks/bench_training.py --device cuda --dtype float32
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from basins.landscapes.networks import Architecture, initial_parameters
from basins.training import train_ensemble

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


def time_naive_loop(arch, theta, x, y, steps, lr, device):
    modules = make_modules(arch, theta, x.dtype, device)
    optimizers = [torch.optim.SGD(m.parameters(), lr=lr) for m in modules]
    _sync(device)
    start = time.perf_counter()
    for model, optimizer in zip(modules, optimizers):
        for _ in range(steps):
            optimizer.zero_grad()
            loss = 0.5 * ((model(x)[:, 0] - y) ** 2).mean()
            loss.backward()
            optimizer.step()
    _sync(device)
    return time.perf_counter() - start


def time_vmap_recipe(arch, theta, x, y, steps, lr, device):
    modules = make_modules(arch, theta, x.dtype, device)
    params, buffers = stack_module_state(modules)
    # stack_module_state returns leaves that require grad; updating them outside no_grad would
    # chain every step into one autograd graph (memory grows with the step count).
    params = {name: value.detach() for name, value in params.items()}
    base = modules[0]

    def member_loss(p, b):
        return 0.5 * ((functional_call(base, (p, b), (x,))[:, 0] - y) ** 2).mean()

    member_grad = vmap(grad(member_loss))
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        grads = member_grad(params, buffers)
        params = {name: value - lr * grads[name] for name, value in params.items()}
    _sync(device)
    return time.perf_counter() - start


def time_engine(arch, theta, x, y, steps, lr, device, memory_budget_mb=4096, compile=False):
    data = (x.cpu().numpy(), y.cpu().numpy(), x[:2].cpu().numpy(), y[:2].cpu().numpy())
    dtype = "float64" if x.dtype == torch.float64 else "float32"
    _sync(device)
    start = time.perf_counter()
    train_ensemble(
        arch, *data, theta, np.arange(len(theta)), loss="mse", dynamics="gd", lr=lr,
        max_steps=steps, grad_tol=0.0, device=str(device), dtype=dtype, memory_budget_mb=memory_budget_mb,
        progress_every_s=1e9, compile=compile,
    )
    _sync(device)
    return time.perf_counter() - start


def time_compiled_engine(arch, theta, x, y, steps, lr, device, memory_budget_mb=4096):
    return time_engine(arch, theta, x, y, steps, lr, device, memory_budget_mb, compile=True)


METHODS = {
    "naive_loop": time_naive_loop,
    "vmap_recipe": time_vmap_recipe,
    "engine": time_engine,
    "engine_compiled": time_compiled_engine,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 16, 256, 1024, 4096])
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--member-steps", type=int, default=20000, help="work per measurement")
    parser.add_argument("--max-naive-members", type=int, default=1024, help="the loop is slow: cap it")
    parser.add_argument(
        "--naive-member-steps", type=int, default=20000, help="work per naive-loop measurement (it is slow)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="cap on steps per measurement")
    parser.add_argument("--memory-budget-mb", type=float, default=4096, help="the engine's chunking budget")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    arch = Architecture(n_inputs=args.features, n_outputs=1, depth=1, width=args.width, activation="tanh")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, args.features, generator=generator, dtype=dtype).to(device)
    y = torch.sign(torch.randn(args.samples, generator=generator, dtype=dtype)).to(device)
    peak = matmul_peak(device, dtype)
    flops = flops_per_member_step(arch, args.samples)
    rows = []
    for n_members in args.members:
        theta = initial_parameters(arch, np.arange(n_members), seed=0, init="torch_default")
        # At least 20 steps, so one-off set-up (first and final evaluations) is amortized.
        for method in args.methods:
            timer = METHODS[method]
            if method == "naive_loop" and n_members > args.max_naive_members:
                continue
            work = min(args.member_steps, args.naive_member_steps) if method == "naive_loop" else args.member_steps
            steps = max(20, work // n_members)
            steps = min(steps, args.max_steps or steps)
            options = {"memory_budget_mb": args.memory_budget_mb} if method.startswith("engine") else {}
            timer(arch, theta[: min(n_members, 4)], x, y, 2, 0.01, device, **options)  # warm-up
            try:
                seconds = timer(arch, theta, x, y, steps, 0.01, device, **options)
            except torch.OutOfMemoryError:
                rows.append({"method": method, "members": n_members, "steps": steps, "error": "out of memory"})
                print(json.dumps(rows[-1]), flush=True)
                torch.cuda.empty_cache()
                continue
            rate = n_members * steps / seconds
            rows.append(
                {
                    "method": method, "members": n_members, "steps": steps, "seconds": round(seconds, 4),
                    "member_steps_per_s": round(rate, 1), "gflops": round(rate * flops / 1e9, 2),
                    "fraction_of_matmul_peak": round(rate * flops / 1e9 / peak, 4),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    machine = {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(), "device": str(device),
        "memory_budget_mb": args.memory_budget_mb,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": args.dtype, "torch": torch.__version__, "matmul_peak_gflops": round(peak, 2),
        "network": {"d": args.features, "h": args.width, "P": args.samples, "n_weights": arch.n_weights},
    }
    output = args.output or RESULTS / f"training_{device.type}_{args.dtype}_h{args.width}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
