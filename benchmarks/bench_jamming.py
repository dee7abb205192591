"""Throughput of the jamming sweep: member-steps per second of ``basins.jamming.sweep_jamming``.

One job of the sweep fits a d = h ReLU network (Geiger et al.'s networks) to the first P points
of a random-pattern pool for several P at once (the members). Here every member fits P points
(``--train-size``, drawn from a pool of that size) for at most ``--steps`` full-batch Adam
steps (grad_tol = 0: a member stops early only once it fits every point, so the rate counts
the steps members actually took). FLOPs count forward and backward work as
6 P N per member-step. Use it to size a sweep: a job's time is about (members x steps a member
needs) / rate.

    python benchmarks/bench_jamming.py                                         # CPU, small N
    python benchmarks/bench_jamming.py --device cuda --widths 44 26 20 --depths 1 3 5 --train-size 4000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from basins.data import prepare_dataset, train_test_arrays
from basins.jamming import sweep_jamming
from basins.landscapes.architecture import Architecture, initial_parameters
from recording import write_table

RESULTS = Path(__file__).parent / "results"


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_sweep(depth, width, train_size, n_members, steps, device, memory_budget_mb):
    """Seconds and member-steps of one sweep job of ``n_members`` members."""
    arch = Architecture(width, 1, depth, width, "relu")
    pool = train_test_arrays(
        prepare_dataset(kind="random_patterns", n_train=train_size, n_test=2, seed=0, n_features=width, normalize=True)
    )
    theta0 = initial_parameters(arch, np.arange(n_members), seed=0, init="orthogonal")
    sizes = np.full(n_members, train_size)
    _sync(device)
    began = time.perf_counter()
    result = sweep_jamming(
        arch, *pool, theta0, sizes, lr=1e-3, max_steps=steps, grad_tol=0.0, device=device,
        memory_budget_mb=memory_budget_mb, progress_every_s=1e9,
    )
    _sync(device)
    return time.perf_counter() - began, int(result["steps"].sum()), arch.n_weights


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--widths", type=int, nargs="+", default=[7, 5, 4], help="d = h of each depth")
    parser.add_argument("--train-size", type=int, default=128)
    parser.add_argument("--members", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--steps", type=int, default=500, help="Adam steps per member")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-budget-mb", type=float, default=4096)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if len(args.depths) != len(args.widths):
        raise ValueError(f"--depths {args.depths} and --widths {args.widths}: give one width per depth")

    time_sweep(1, 4, 16, 2, 5, args.device, args.memory_budget_mb)  # warm-up
    rows = []
    for depth, width in zip(args.depths, args.widths):
        for n_members in args.members:
            seconds, member_steps, n_weights = time_sweep(
                depth, width, args.train_size, n_members, args.steps, args.device, args.memory_budget_mb
            )
            rate = member_steps / seconds
            rows.append({
                "depth": depth, "width": width, "n_weights": n_weights, "train_size": args.train_size,
                "members": n_members, "member_steps": member_steps, "seconds": round(seconds, 4),
                "member_steps_per_s": round(rate, 1),
                "gflops": round(6 * args.train_size * n_weights * rate / 1e9, 3),
            })
            print(json.dumps(rows[-1]), flush=True)
    device = torch.device(args.device)
    machine = {
        "cpu_threads": torch.get_num_threads(), "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "dtype": "float64", "dynamics": "adam", "memory_budget_mb": args.memory_budget_mb,
    }
    output = args.output or RESULTS / f"jamming_{device.type}_P{args.train_size}.json"
    write_table(output, rows, machine)


if __name__ == "__main__":
    main()
