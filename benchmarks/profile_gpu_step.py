"""Where a GPU step of the engine goes: kernels launched per step, GPU busy time per step, wall
time per step, for the two dynamics the paper configuration runs on a GPU.

  training: the answer's digits draw at width 40 (N = 401), gradient flow (Dormand-Prince, six
            evaluations an attempted step), ``--members`` members;
  jamming:  a d = h ReLU network of config/paper.yaml (depth 2, width 31, N ~ 2000), full-batch
            Adam on P = 4000 random patterns, 16 members, as one job of the paper's sweep.

Each runs a fixed number of steps (no member converges: grad_tol 0) once untimed (warm-up), once
timed and once under ``torch.profiler``. A step whose GPU busy time is far below its wall time
is bound by the launches and the host, not by the GPU: the case for CUDA graphs or fused kernels.

    python benchmarks/profile_gpu_step.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from basins.data import prepare_dataset, train_test_arrays
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


def jamming_run(device, members, steps):
    arch = Architecture(31, 1, 2, 31, "relu")
    pool = train_test_arrays(prepare_dataset(kind="random_patterns", n_train=4000, n_test=2, seed=0, n_features=31,
                                             normalize=True))
    starts = initial_parameters(arch, np.arange(members), seed=0, init="orthogonal")

    def run():
        sweep_jamming(arch, *pool, starts, np.full(members, 4000), lr=1e-3, max_steps=steps, grad_tol=0.0,
                      device=device, memory_budget_mb=32768, progress_every_s=1e9)

    return run, arch.n_params


def measure(run, steps, device):
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
    return {
        "wall_ms_per_step": round(1e3 * wall / steps, 3), "kernels_per_step": round(len(kernels) / steps, 1),
        "gpu_busy_ms_per_step": round(busy_us / 1e3 / steps, 3),
        "gpu_busy_fraction": round(busy_us / 1e6 / wall, 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--training-members", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    device = torch.device(args.device)
    cases = [("training", training_run, m) for m in args.training_members] + [("jamming", jamming_run, 16)]
    for name, build, members in cases:
        run, n_params = build(args.device, members, args.steps)
        row = {"case": name, "members": members, "n_params": n_params, "steps": args.steps,
               **measure(run, args.steps, device)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
