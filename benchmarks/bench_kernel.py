"""One objective evaluation: the engine's hand-derived torch pass against a member-by-member C kernel.

Issue #25's next step is a fused kernel; this measures its first piece before it enters the
engine: ``benchmarks/kernels/mlp1.c`` (loss and gradient of a one-hidden-layer, one-output
network for every member, vectorized along the samples, its own vectorizable exp) against
:class:`basins.landscapes.fused_mlp.FusedMLPObjective`, the engine's default objective, on the
same parameters. The kernel is compiled here with the system's C compiler (``cc -O3
-march=native -fopenmp``) and called through ctypes on float64 tensors; it is not used by the
engine. Every row checks the two agree (largest relative difference of losses and of gradients).

    python benchmarks/bench_kernel.py                      # the study's shapes, h = 4 and 16
    python benchmarks/bench_kernel.py --widths 4 --members 256 --loss mse --activation relu

Rounds are interleaved (``--repeats``) so that the machine's load hits both alike; compare the
two within one run.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from basins.landscapes.architecture import Architecture
from basins.landscapes.fused_mlp import FusedMLPObjective
from recording import write_table

HERE = Path(__file__).parent
LOSS_CODES = {"mse": 0, "hinge": 1, "quadratic_hinge": 2, "cross_entropy": 3}
ACTIVATION_CODES = {"tanh": 0, "relu": 1, "linear": 2}


def compile_kernel(source: Path = HERE / "kernels" / "mlp1.c") -> ctypes.CDLL:
    """Compile ``source`` to a shared library in a temporary folder and load it."""
    library = Path(tempfile.mkdtemp()) / "mlp1.so"
    command = ["cc", "-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC",
               "-o", str(library), str(source)]
    subprocess.run(command, check=True)
    kernel = ctypes.CDLL(str(library))
    pointer, integer, real, flag = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    kernel.mlp1_loss_and_gradient.argtypes = [integer, pointer, pointer, pointer, integer, integer, integer,
                                              pointer, pointer, flag, flag, flag, real, real, real, flag, flag,
                                              pointer]
    kernel.mlp1_loss_and_gradient.restype = None
    return kernel


class KernelObjective:
    """``theta (member, param) -> (loss, grad)`` by the C kernel, for float64 on the CPU."""

    def __init__(self, kernel, arch: Architecture, x, y, *, loss, l2, margin=1.0, beta=1.0, threads=1):
        if arch.depth != 1 or arch.n_outputs != 1 or arch.activation not in ACTIVATION_CODES:
            raise ValueError(f"{arch}: the kernel takes one hidden layer of tanh, relu or linear units and one output")
        self.kernel, self.arch, self.threads = kernel, arch, threads
        self.xt, self.y = x.T.contiguous(), y.contiguous()
        self.settings = (LOSS_CODES[loss], ACTIVATION_CODES[arch.activation], int(arch.bias), margin, beta, l2)
        self.scratch = torch.empty(threads * (arch.width + 2) * x.shape[0], dtype=torch.float64)

    def __call__(self, theta):
        theta = theta.contiguous()
        losses, grads = torch.empty(theta.shape[0], dtype=theta.dtype), torch.empty_like(theta)
        n_samples, n_features = self.xt.shape[1], self.xt.shape[0]
        self.kernel.mlp1_loss_and_gradient(
            theta.shape[0], theta.data_ptr(), losses.data_ptr(), grads.data_ptr(), n_features, self.arch.width,
            n_samples, self.xt.data_ptr(), self.y.data_ptr(), *self.settings, 1, self.threads,
            self.scratch.data_ptr())
        return losses, grads


def seconds_per_call(function, argument, calls):
    function(argument)
    start = time.perf_counter()
    for _ in range(calls):
        function(argument)
    return (time.perf_counter() - start) / calls


def largest_relative_difference(a, b):
    return float(((a - b).abs().max() / b.abs().max()).item())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--widths", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--members", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--loss", default="cross_entropy", choices=sorted(LOSS_CODES))
    parser.add_argument("--activation", default="tanh", choices=sorted(ACTIVATION_CODES))
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--calls", type=int, default=200, help="evaluations per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is reported")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(HERE / "results" / "kernel_cpu_float64.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kernel = compile_kernel()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, args.features, generator=generator, dtype=torch.float64)
    y = torch.sign(torch.randn(args.samples, generator=generator, dtype=torch.float64))
    rows = []
    for width in args.widths:
        arch = Architecture(args.features, 1, 1, width, args.activation)
        engine = FusedMLPObjective(arch, x, y, loss=args.loss, l2=args.l2)
        compiled = KernelObjective(kernel, arch, x, y, loss=args.loss, l2=args.l2, threads=args.threads)
        for members in args.members:
            theta = torch.randn(members, arch.n_params, generator=generator, dtype=torch.float64)
            (engine_loss, engine_grad), (kernel_loss, kernel_grad) = engine(theta), compiled(theta)
            rounds = {"engine": [], "kernel": []}
            for _ in range(args.repeats):
                rounds["engine"].append(seconds_per_call(engine, theta, args.calls))
                rounds["kernel"].append(seconds_per_call(compiled, theta, args.calls))
            row = {"width": width, "members": members, "n_params": arch.n_params,
                   "loss_rel_diff": largest_relative_difference(kernel_loss, engine_loss),
                   "grad_rel_diff": largest_relative_difference(kernel_grad, engine_grad)}
            for name, seconds in rounds.items():
                row[f"{name}_ns_per_member_eval"] = min(seconds) / members * 1e9
                row[f"{name}_ns_per_member_eval_median"] = statistics.median(seconds) / members * 1e9
            row["engine_over_kernel"] = row["engine_ns_per_member_eval"] / row["kernel_ns_per_member_eval"]
            rows.append(row)
            print(f"h={width:3d} E={members:5d}: engine {row['engine_ns_per_member_eval']:7.0f} ns, kernel "
                  f"{row['kernel_ns_per_member_eval']:7.0f} ns a member-evaluation ({row['engine_over_kernel']:.2f}x); "
                  f"agreement {row['loss_rel_diff']:.1e} / {row['grad_rel_diff']:.1e}")
    write_table(args.output, rows, {"threads": args.threads, "dtype": "float64", "loss": args.loss,
                                    "activation": args.activation, "features": args.features,
                                    "samples": args.samples, "loadavg_before": os.getloadavg()})


if __name__ == "__main__":
    main()
