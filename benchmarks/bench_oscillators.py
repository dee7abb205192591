"""Throughput of ring relaxation: how many Kuramoto initial conditions per second the engine runs.

Relaxes E members of a ring of n oscillators (k = 1) with the adaptive gradient flow for a
fixed number of integrator steps (grad_tol = 0, so every member spends the whole budget) and
reports member-steps/s and initial conditions per second at the step count a typical member
needs to converge (measured in the same run with the study's grad_tol).

    python benchmarks/bench_oscillators.py                              # CPU
    python benchmarks/bench_oscillators.py --device cuda --members 4096 65536 262144
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from basins.oscillators import KuramotoRing, relax_ring, uniform_phases
from recording import write_table

RESULTS = Path(__file__).parent / "results"


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_relaxation(ring, n_members, steps, device, memory_budget_mb):
    ids = np.arange(n_members)
    start = uniform_phases(ring.n_oscillators, ids, seed=0)
    _sync(device)
    began = time.perf_counter()
    relax_ring(ring, start, ids, dynamics="gradient_flow", lr=0.1, max_steps=steps, grad_tol=0.0, rtol=1e-6,
               atol=1e-8, device=device, memory_budget_mb=memory_budget_mb, progress_every_s=1e9)
    _sync(device)
    return time.perf_counter() - began


def steps_to_converge(ring, device):
    """Median integrator steps to |grad V| <= 1e-4 (the default study's criterion), 256 members."""
    ids = np.arange(256)
    result = relax_ring(ring, uniform_phases(ring.n_oscillators, ids, seed=0), ids, dynamics="gradient_flow",
                        lr=0.1, max_steps=50000, grad_tol=1e-4, rtol=1e-6, atol=1e-8, device=device,
                        progress_every_s=1e9)
    return float(np.median(result["steps"].values))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oscillators", type=int, default=83)
    parser.add_argument("--members", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--steps", type=int, default=200, help="integrator steps per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-budget-mb", type=float, default=4096)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    ring = KuramotoRing(args.oscillators, 1)
    time_relaxation(ring, 16, 5, args.device, args.memory_budget_mb)  # warm-up
    typical_steps = steps_to_converge(ring, args.device)
    rows = []
    for n_members in args.members:
        seconds = time_relaxation(ring, n_members, args.steps, args.device, args.memory_budget_mb)
        rate = n_members * args.steps / seconds
        rows.append({
            "members": n_members, "steps": args.steps, "seconds": round(seconds, 4),
            "member_steps_per_s": round(rate, 1),
            "initial_conditions_per_s": round(rate / typical_steps, 1),
        })
        print(json.dumps(rows[-1]), flush=True)
    device = torch.device(args.device)
    machine = {
        "cpu_threads": torch.get_num_threads(), "device": args.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "dtype": "float64", "n_oscillators": args.oscillators, "coupling_range": 1,
        "median_steps_to_converge": typical_steps, "memory_budget_mb": args.memory_budget_mb,
    }
    output = args.output or RESULTS / f"oscillators_{device.type}_n{args.oscillators}.json"
    write_table(output, rows, machine)


if __name__ == "__main__":
    main()
