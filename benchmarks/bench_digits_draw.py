"""One replicate of the answer's digits task at any width, timed and profiled: what one draw of a
larger network (N = 401 at width 40) would cost the study.

Trains ``--members`` networks of one hidden tanh layer on a data set the default study prepared
(``results/datasets/digits_parity_tanh/seed<k>.nc``), or on the same draw generated here
(``--draw k``: 60 training digits, PCA to 8, as the study's ``prepare_dataset`` makes it), with
the default study's training section (cross-entropy, L2 1e-2, gradient flow, grad_tol 1e-4), on
one thread (or ``--device cuda``), as the study's ``train_ensemble`` job would, and prints the
wall time, the statuses, the number of distinct minima (by loss) and the functions that took the
time.

    python benchmarks/bench_digits_draw.py results/datasets/digits_parity_tanh/seed1.nc --width 40
    python benchmarks/bench_digits_draw.py --draw 1 --width 40 --members 4096 --device cuda
    python benchmarks/bench_digits_draw.py --draw 1 --width 400 --members 32   # N = 4001: blocks plus low rank
    python benchmarks/bench_digits_draw.py --draw 12 --seed 12 --members 512 --max-dense-params 200 \
        --integrator chebyshev --against dp.nc    # endpoints against a run written by --output dp.nc
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import time

import numpy as np
import torch

from basins.data import prepare_dataset, train_test_arrays
from basins.engine.devices import keep_freed_memory
from basins.io import read_dataset
from basins.landscapes.architecture import architecture_for, initial_parameters
from basins.training import train_ensemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", help="a digits parity data set of the default study")
    parser.add_argument("--draw", type=int, help="instead, generate the study's digits parity draw of this seed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-budget-mb", type=float, default=1024)
    parser.add_argument("--width", type=int, default=40)
    parser.add_argument("--members", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=1, help="seed of the initial conditions")
    parser.add_argument("--max-dense-params", type=int, default=600,
                        help="dense Hessians up to this many parameters, blocks plus low rank above (the study's default)")
    parser.add_argument("--integrator", default="dormand_prince", help="how gradient flow is integrated")
    parser.add_argument("--rtol", type=float, default=1e-4, help="the flow's relative local error (the study's 1e-4)")
    parser.add_argument("--output", help="write the training result here (netCDF)")
    parser.add_argument("--against", help="a run of the same draw and seed (its --output) to compare endpoints with")
    parser.add_argument("--profile-output", help="write the profile's statistics here (pstats), for their callers")
    parser.add_argument("--top", type=int, default=25, help="functions listed by their own time")
    parser.add_argument("--fresh-memory", action="store_true",
                        help="leave the C allocator's defaults (before session 50: freed tensors' memory returned "
                             "to the system); without it the draw runs as the study's job does (keep_freed_memory)")
    args = parser.parse_args()
    if (args.dataset is None) == (args.draw is None):
        parser.error("give a data set file or --draw, not both")
    torch.set_num_threads(1)
    if not args.fresh_memory:
        keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dataset = read_dataset(args.dataset) if args.dataset else prepare_dataset(
        kind="digits", task="parity", n_train=60, n_test=1737, n_features=8, seed=args.draw
    )
    arch = architecture_for(dataset, depth=1, width=args.width, activation="tanh", bias=True)
    members = np.arange(args.members)
    starts = initial_parameters(arch, members, seed=args.seed, init="gaussian", init_scale=1.0)
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    result = train_ensemble(
        arch, *train_test_arrays(dataset), starts, members, seed=args.seed, budget_factors=[1, 4, 16],
        loss="cross_entropy", l2=1e-2, dynamics="gradient_flow", lr=0.1, rtol=args.rtol, atol=1e-7, max_steps=3000,
        grad_tol=1e-4, device=args.device, memory_budget_mb=args.memory_budget_mb, max_dense_params=args.max_dense_params,
        integrator=args.integrator,
    )
    profile.disable()
    wall = time.perf_counter() - started
    converged = result.status.values == 0
    distinct = len(np.unique(np.round(result.loss.values[converged], 7)))
    print(f"N = {arch.n_params}, {args.members} members: {wall:.1f} s; statuses (converged, budget, diverged, "
          f"saddle) {np.bincount(result.status.values, minlength=4).tolist()}; {distinct} distinct minima by loss")
    if args.output:
        result.to_netcdf(args.output)
    if args.against:
        print(endpoints_compared(read_dataset(args.against), result))
    if args.profile_output:
        profile.dump_stats(args.profile_output)
    pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)


def endpoints_compared(before, after) -> str:
    """How many members end with another status (converged, budget, diverged, saddle), and of
    those that converged in both runs how many end at the same point (within dist_tol 0.1, the
    study's) and at the same loss (to 1e-7: the same minimum or a symmetric image of it)."""
    both = (before.status.values == 0) & (after.status.values == 0)
    other_status = int((before.status.values != after.status.values).sum())
    distance = np.linalg.norm(before.final_theta.values - after.final_theta.values, axis=1)[both]
    same_loss = np.abs(before.loss.values - after.loss.values)[both] < 1e-7
    return (f"against {len(both)} members: {other_status} with another status; {both.sum()} converged in both, "
            f"{(distance < 0.1).sum()} at the same point, {same_loss.sum()} at the same loss; mean test error "
            f"{before.test_error.values[both].mean():.4f} -> {after.test_error.values[both].mean():.4f}")


if __name__ == "__main__":
    main()
