"""Where a GPU step of the engine goes: kernels launched per step, GPU busy time per step, wall
time per step, for the two dynamics the paper configuration runs on a GPU.

  training: the answer's digits draw at width 40 (N = 401), gradient flow (Dormand-Prince, six
            evaluations an attempted step), ``--members`` members;
  gd:       bench_training.py's network (d = 20, P = 1000, MSE, float32) at ``--gd-width`` units and
            ``--gd-members`` members, full-batch GD, with the kernels that took the GPU's time
            (``--top-kernels``): where a memory-bound step at large E spends it;
  jamming:  a d = h ReLU network of config/paper.yaml (depth 2, width 31, N ~ 2000), full-batch
            Adam on P = 4000 random patterns, 16 members, as one job of the paper's sweep.

The training case runs twice: as the engine runs it on a GPU (steps in captured windows,
:mod:`basins.engine.windows`) and one step at a time (``"stepwise": true``). Each runs a fixed number of steps (no member converges: grad_tol 0) once untimed (warm-up), once
timed and once under ``torch.profiler``. A step whose GPU busy time is far below its wall time
is bound by the launches and the host, not by the GPU: the case for CUDA graphs or fused kernels.

    python benchmarks/profile_gpu_step.py --device cuda
    python benchmarks/profile_gpu_step.py --device cuda --cases gd --gd-width 16 --gd-members 16384 --steps 50
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import time
from unittest import mock

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from basins.data import prepare_dataset, train_test_arrays
from basins.engine import descent
from basins.jamming import sweep_jamming
from basins.landscapes.architecture import Architecture, architecture_for, initial_parameters
from basins.training import train_ensemble


def training_run(device, members, steps):
    dataset = prepare_dataset(kind="digits", task="parity", n_train=60, n_test=1737, n_features=8, seed=1)
    arch = architecture_for(dataset, depth=1, width=40, activation="tanh", bias=True)
    starts = initial_parameters(arch, np.arange(members), seed=1, init="gaussian", init_scale=1.0)

    def run():
        train_ensemble(
            arch, *train_test_arrays(dataset), starts, np.arange(members), seed=1, loss="cross_entropy", l2=1e-2,
            dynamics="gradient_flow", lr=0.1, rtol=1e-4, atol=1e-7, max_steps=steps, grad_tol=0.0, device=device,
            memory_budget_mb=32768,
        )

    return run, arch.n_params


def gd_run(device, members, steps, width):
    arch = Architecture(20, 1, 1, width, "tanh")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 20, generator=generator, dtype=torch.float32).numpy()
    y = torch.sign(torch.randn(1000, generator=generator, dtype=torch.float32)).numpy()
    starts = initial_parameters(arch, np.arange(members), seed=0, init="gaussian")

    def run():
        train_ensemble(arch, x, y, x[:2], y[:2], starts, np.arange(members), loss="mse", dynamics="gd", lr=0.01,
                       max_steps=steps, grad_tol=0.0, device=device, dtype="float32", memory_budget_mb=32768,
                       progress_every_s=1e9, max_dense_params=0)

    return run, arch.n_params


def jamming_run(device, members, steps):
    arch = Architecture(31, 1, 2, 31, "relu")
    pool = train_test_arrays(prepare_dataset(kind="random_patterns", n_train=4000, n_test=2, seed=0, n_features=31,
                                             normalize=True))
    starts = initial_parameters(arch, np.arange(members), seed=0, init="orthogonal")

    def run():
        sweep_jamming(arch, *pool, starts, np.full(members, 4000), lr=1e-3, max_steps=steps, grad_tol=0.0,
                      device=device, memory_budget_mb=32768, progress_every_s=1e9)

    return run, arch.n_params


def measure(run, steps, device, top_kernels=0):
    run()  # warm-up: allocations, cuBLAS handles, the C kernel's build
    torch.cuda.synchronize(device)
    began = time.perf_counter()
    run()
    torch.cuda.synchronize(device)
    wall = time.perf_counter() - began
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
        torch.cuda.synchronize(device)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy_us = sum(e.device_time for e in kernels)
    by_name = {}
    for event in kernels:  # names cut to 90 characters, kernels sharing the cut name summed
        by_name[event.name[:90]] = by_name.get(event.name[:90], 0.0) + event.device_time
    top = sorted(by_name.items(), key=lambda item: -item[1])[:top_kernels]
    return {
        "wall_ms_per_step": round(1e3 * wall / steps, 3), "kernels_per_step": round(len(kernels) / steps, 1),
        "gpu_busy_ms_per_step": round(busy_us / 1e3 / steps, 3),
        "gpu_busy_fraction": round(busy_us / 1e6 / wall, 3),
        **({"top_kernels_ms_per_step": {name: round(us / 1e3 / steps, 4) for name, us in top}} if top else {}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--training-members", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cases", nargs="+", default=["training", "jamming"], choices=["training", "gd", "jamming"])
    parser.add_argument("--gd-width", type=int, default=16)
    parser.add_argument("--gd-members", type=int, nargs="+", default=[16384])
    parser.add_argument("--top-kernels", type=int, default=12, help="kernels listed for the gd case")
    args = parser.parse_args()
    device = torch.device(args.device)
    cases = []
    if "training" in args.cases:
        cases += [("training", training_run, m, stepwise) for m in args.training_members for stepwise in (False, True)]
    if "gd" in args.cases:
        cases += [("gd", functools.partial(gd_run, width=args.gd_width), m, False) for m in args.gd_members]
    if "jamming" in args.cases:
        cases += [("jamming", jamming_run, 16, True)]
    for name, build, members, stepwise in cases:
        run, n_params = build(args.device, members, args.steps)
        with mock.patch.object(descent, "_windowed", lambda *args: False) if stepwise else contextlib.nullcontext():
            measured = measure(run, args.steps, device, args.top_kernels if name == "gd" else 0)
        row = {"case": name, "members": members, "n_params": n_params, "steps": args.steps, "stepwise": stepwise,
               **measured}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
