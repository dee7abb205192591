"""The saddle check's curvature, dense against blocks plus low rank, across network widths.

For one-hidden-layer, one-output networks on P samples (d = 8 inputs, cross-entropy, L2 1e-2,
float64: the answer's digits shape), at random points (mostly saddles) and per member:

- dense: the hand-derived Hessian (``fused_mlp.hessians``), the Cholesky screen of H + c I and
  ``eigvalsh`` (what the saddle check does up to ``max_dense_params`` parameters);
- blocks: ``fused_mlp.block_low_rank_hessians``, the count below -c and the lowest eigenpair
  (``basins.engine.block_low_rank``: what it does above).

Prints and records ms a member for each, and checks that the two agree: the same count of
eigenvalues below -c, the lowest eigenvalue to 1e-3 relative (the blocks' bisection bracket).

    python benchmarks/bench_curvature.py --widths 16 40 160 400 --members 16 --dense-members 4
    python benchmarks/bench_curvature.py --device cuda --members 256 --dense-members 64
"""

from __future__ import annotations

import argparse
import time

import torch

from basins.landscapes.architecture import Architecture
from basins.landscapes.fused_mlp import block_low_rank_hessians, hessians
from recording import write_table

_CURVATURE_TOL = 1e-6
_OPTIONS = dict(loss="cross_entropy", margin=1.0, l2=1e-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 40, 160, 400])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--members", type=int, default=16, help="members timed with the blocks")
    parser.add_argument("--dense-members", type=int, default=4, help="members timed with dense Hessians")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/curvature_cpu.json")
    args = parser.parse_args()
    if args.dense_members > args.members:
        parser.error("--dense-members must not exceed --members (they are the first members)")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 8, generator=generator, dtype=torch.float64).to(device)
    y = torch.randn(args.samples, generator=generator, dtype=torch.float64).sign().to(device)
    rows = []
    for width in args.widths:
        arch = Architecture(n_inputs=8, n_outputs=1, depth=1, width=width, activation="tanh")
        theta = torch.randn(args.members, arch.n_params, generator=generator, dtype=torch.float64).to(device)
        dense_s, (dense_count, dense_lowest) = _best(lambda: _dense(theta[: args.dense_members], x, y, arch),
                                                     args.repeats, device)
        block_s, (block_count, block_lowest) = _best(lambda: _blocks(theta, x, y, arch), args.repeats, device)
        shared = slice(0, args.dense_members)
        row = {
            "width": width, "n_params": arch.n_params, "n_samples": args.samples,
            "dense_ms_per_member": 1e3 * dense_s / args.dense_members,
            "blocks_ms_per_member": 1e3 * block_s / args.members,
            "counts_equal": bool(torch.equal(dense_count, block_count[shared])),
            "lowest_max_relative_difference": float(
                ((block_lowest[shared] - dense_lowest).abs() / dense_lowest.abs()).max()
            ),
        }
        row["dense_over_blocks"] = row["dense_ms_per_member"] / row["blocks_ms_per_member"]
        rows.append(row)
        print(f"N = {arch.n_params:5d}: dense {row['dense_ms_per_member']:9.2f} ms a member, blocks "
              f"{row['blocks_ms_per_member']:7.2f} ({row['dense_over_blocks']:.1f}x); counts equal "
              f"{row['counts_equal']}, lowest eigenvalues within {row['lowest_max_relative_difference']:.1e}")
    write_table(args.output, rows, {"threads": args.threads, "device": str(device), "members": args.members,
                                    "dense_members": args.dense_members, "repeats": args.repeats})


def _dense(theta, x, y, arch):
    """The saddle check's dense path: Hessians, the Cholesky screen of H + c I, eigenvalues."""
    matrices = hessians(theta, x, y, arch, **_OPTIONS)
    screened = torch.linalg.cholesky_ex(matrices + _CURVATURE_TOL * torch.eye(arch.n_params, dtype=theta.dtype,
                                                                              device=theta.device))
    values = torch.linalg.eigvalsh(matrices)
    del screened
    return (values < -_CURVATURE_TOL).sum(1), values[:, 0]


def _blocks(theta, x, y, arch):
    """The saddle check above max_dense_params: the count below -c, then the lowest pair."""
    structured = block_low_rank_hessians(theta, x, y, arch, **_OPTIONS)
    count = structured.count_below(torch.full_like(theta[:, 0], -_CURVATURE_TOL))
    lowest, _ = structured.lowest_eigenpairs()
    return count, lowest


def _best(run, repeats, device):
    """The shortest of ``repeats`` timed calls of ``run`` and its result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best, result


if __name__ == "__main__":
    main()
