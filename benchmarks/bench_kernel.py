"""One objective evaluation: torch's hand-derived pass against the C kernel the engine now uses.

:class:`basins.landscapes.fused_mlp.FusedMLPObjective` evaluates the study's one-hidden-layer,
one-output networks (float64 or float32, CPU) with the C kernel of :mod:`basins.landscapes.native_mlp`
(``native_mlp.c``: each member's pass vectorized along the samples, its own vectorizable exp)
and everything else with torch's hand-derived pass (:func:`basins.landscapes.fused_mlp.
loss_and_gradient`). This measures the two on the same parameters, and every row checks they
agree (largest relative difference of losses and of gradients).

    python benchmarks/bench_kernel.py                      # the study's shapes, h = 4 and 16
    python benchmarks/bench_kernel.py --widths 4 --members 256 --loss mse --activation relu
    python benchmarks/bench_kernel.py --dtype float32 --features 20 --samples 1000 --widths 16 128 --loss mse --l2 0
    python benchmarks/bench_kernel.py --hessians --widths 4 16 40 --members 2 8 512 2000 --calls 5

``--hessians``: the dense Hessians (float64, one hidden layer) instead, the kernel's
(``NativeMLP.hessians``) against torch's hand-derived ones (:func:`basins.landscapes.fused_mlp.hessians`),
microseconds a member.

Rounds are interleaved (``--repeats``) so that the machine's load hits both alike; compare the
two within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from basins.landscapes import native_mlp
from basins.landscapes.architecture import Architecture
from basins.landscapes.fused_mlp import FusedMLPObjective, hessians, loss_and_gradient
from recording import write_table

HERE = Path(__file__).parent

def torch_pass(objective):
    """``theta -> (loss, grad)`` of ``objective`` by torch's hand-derived pass."""
    return lambda theta: loss_and_gradient(theta, objective.x, objective.arch, objective.shared,
                                           margin=objective.margin, l2=objective.l2,
                                           workspace=objective.workspace)


def seconds_per_call(function, argument, calls):
    function(argument)
    start = time.perf_counter()
    for _ in range(calls):
        function(argument)
    return (time.perf_counter() - start) / calls


def timed(methods, theta, args, unit, scale):
    """Interleaved rounds of each method on ``theta``: per method the best and the median time a
    member (seconds times ``scale``, columns ``<method>_<unit>``), and ``torch_over_kernel``."""
    rounds = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, method in methods.items():
            rounds[name].append(seconds_per_call(method, theta, args.calls))
    columns = {}
    for name, seconds in rounds.items():
        columns[f"{name}_{unit}"] = min(seconds) / len(theta) * scale
        columns[f"{name}_{unit}_median"] = statistics.median(seconds) / len(theta) * scale
    columns["torch_over_kernel"] = columns[f"torch_{unit}"] / columns[f"kernel_{unit}"]
    return columns


def largest_relative_difference(a, b):
    return float(((a - b).abs().max() / b.abs().max()).item())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--widths", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--members", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--loss", default="cross_entropy", choices=sorted(native_mlp.LOSS_CODES))
    parser.add_argument("--activation", default="tanh", choices=sorted(native_mlp.ACTIVATION_CODES))
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--calls", type=int, default=200, help="evaluations per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is reported")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                        help="float32: the kernel's float32 build against torch's float32 pass")
    parser.add_argument("--hessians", action="store_true", help="time the dense Hessians instead (float64)")
    parser.add_argument("--output", default=None, help="default: results/kernel_cpu_<dtype>.json")
    args = parser.parse_args()
    if args.hessians:
        return time_hessians(args)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    output = args.output or str(HERE / "results" / f"kernel_cpu_{args.dtype}.json")
    load_before = os.getloadavg()
    if native_mlp.library(dtype) is None:
        raise SystemExit("the C kernel did not build (see the log line above)")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, args.features, generator=generator, dtype=dtype)
    y = torch.sign(torch.randn(args.samples, generator=generator, dtype=dtype))
    rows = []
    for width in args.widths:
        arch = Architecture(args.features, 1, 1, width, args.activation)
        objective = FusedMLPObjective(arch, x, y, loss=args.loss, l2=args.l2)
        reference, compiled = torch_pass(objective), objective.native
        for members in args.members:
            theta = torch.randn(members, arch.n_params, generator=generator, dtype=dtype)
            (torch_loss, torch_grad), (kernel_loss, kernel_grad) = reference(theta), compiled(theta)
            row = {"width": width, "members": members, "n_params": arch.n_params,
                   "loss_rel_diff": largest_relative_difference(kernel_loss, torch_loss),
                   "grad_rel_diff": largest_relative_difference(kernel_grad, torch_grad),
                   **timed({"torch": reference, "kernel": compiled}, theta, args, "ns_per_member_eval", 1e9)}
            rows.append(row)
            print(f"h={width:3d} E={members:5d}: torch {row['torch_ns_per_member_eval']:7.0f} ns, kernel "
                  f"{row['kernel_ns_per_member_eval']:7.0f} ns a member-evaluation ({row['torch_over_kernel']:.2f}x); "
                  f"agreement {row['loss_rel_diff']:.1e} / {row['grad_rel_diff']:.1e}")
    write_table(output, rows, {"threads": args.threads, "dtype": args.dtype, "loss": args.loss,
                                    "activation": args.activation, "features": args.features,
                                    "samples": args.samples, "loadavg_before": load_before,
                                    "loadavg_after": os.getloadavg()})


def time_hessians(args):
    """The kernel's dense Hessians against torch's hand-derived ones, float64, one hidden layer."""
    torch.set_num_threads(args.threads)
    output = args.output or str(HERE / "results" / "hessians_cpu_float64.json")
    load_before = os.getloadavg()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, args.features, generator=generator, dtype=torch.float64)
    y = torch.sign(torch.randn(args.samples, generator=generator, dtype=torch.float64))
    rows = []
    for width in args.widths:
        arch = Architecture(args.features, 1, 1, width, args.activation)
        objective = FusedMLPObjective(arch, x, y, loss=args.loss, l2=args.l2)
        if objective.native is None or not objective.native.covers_hessians:
            raise SystemExit("the C kernel did not build or does not write these Hessians")
        methods = {"torch": lambda theta: hessians(theta, x, y, arch, loss=args.loss, l2=args.l2),
                   "kernel": objective.native.hessians}
        for members in args.members:
            theta = torch.randn(members, arch.n_params, generator=generator, dtype=torch.float64) / 2
            row = {"width": width, "members": members, "n_params": arch.n_params,
                   "rel_diff": largest_relative_difference(methods["kernel"](theta), methods["torch"](theta)),
                   **timed(methods, theta, args, "us_per_member", 1e6)}
            rows.append(row)
            print(f"N={arch.n_params:4d} E={members:5d}: torch {row['torch_us_per_member']:8.1f} us, kernel "
                  f"{row['kernel_us_per_member']:8.1f} us a member ({row['torch_over_kernel']:.2f}x); "
                  f"agreement {row['rel_diff']:.1e}")
    write_table(output, rows, {"threads": args.threads, "dtype": "float64", "loss": args.loss,
                                    "activation": args.activation, "features": args.features,
                                    "samples": args.samples, "loadavg_before": load_before,
                                    "loadavg_after": os.getloadavg()})


if __name__ == "__main__":
    main()
