"""Deduplication at scale: 10^5 endpoints, and the fast path against all-pairs brute force.

Endpoints are planted: copies of ``--minima`` random minima of a d=10, h=8 tanh network, each
copy under a random hidden-unit permutation and sign flips, plus noise of size ``--noise``.

    python benchmarks/bench_minima.py                 # the recorded table
    python benchmarks/bench_minima.py --endpoints 1000 100000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import pdist, squareform

from basins.labels import CONVERGED
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.minima import canonicalize, deduplicate_minima, function_fingerprints, probe_inputs_for
from recording import write_table

RESULTS = Path(__file__).parent / "results"


def planted_endpoints(arch, n_minima, n_endpoints, noise, seed=0):
    rng = np.random.default_rng(seed)
    bases = initial_parameters(arch, np.arange(n_minima), seed=seed, init="gaussian", init_scale=2.0)
    which = rng.integers(0, n_minima, size=n_endpoints)
    theta = bases[which] + noise * rng.standard_normal((n_endpoints, arch.n_params))
    (fan_in, width), (w_in, b_in) = arch.layer_shapes[0], arch.layer_slices[0]
    w_out = arch.layer_slices[1][0]
    incoming = theta[:, w_in].reshape(n_endpoints, width, fan_in)
    bias, outgoing = theta[:, b_in], theta[:, w_out].reshape(n_endpoints, 1, width)
    sign = rng.choice([-1.0, 1.0], size=(n_endpoints, width))
    order = np.argsort(rng.random((n_endpoints, width)), axis=1)
    incoming = np.take_along_axis(incoming * sign[..., None], order[..., None], axis=1)
    bias = np.take_along_axis(bias * sign, order, axis=1)
    outgoing = np.take_along_axis(outgoing * sign[:, None, :], order[:, None, :], axis=2)
    theta[:, w_in], theta[:, b_in] = incoming.reshape(n_endpoints, -1), bias
    theta[:, w_out] = outgoing.reshape(n_endpoints, -1)
    loss = np.linspace(0.01, 0.5, n_minima)[which] + 1e-9 * rng.standard_normal(n_endpoints)
    return theta, loss, which


def as_training(theta, loss):
    n, p = theta.shape
    zeros = np.zeros(n)
    return xr.Dataset(
        {"final_theta": (("member", "param"), theta), "loss": ("member", loss),
         "train_error": ("member", zeros), "test_error": ("member", zeros),
         "grad_norm": ("member", zeros), "status": ("member", np.full(n, CONVERGED))},
        coords={"member": np.arange(n), "param": np.arange(p)},
    )


def brute_force(theta, loss, arch, probes, loss_tol, function_tol, dist_tol):
    """All pairs: dense distance matrices, then connected components."""
    canonical = canonicalize(theta, arch)
    fingerprints = function_fingerprints(canonical, arch, probes)
    same = squareform(pdist(fingerprints)) <= function_tol
    same &= squareform(pdist(canonical)) <= dist_tol
    same &= np.abs(loss[:, None] - loss[None, :]) <= loss_tol
    return connected_components(same, directed=False)[1]


def same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", type=int, nargs="+", default=[1000, 4000, 10000, 100000])
    parser.add_argument("--minima", type=int, default=200)
    parser.add_argument("--noise", type=float, default=1e-5)
    parser.add_argument("--max-brute-force", type=int, default=4000)
    parser.add_argument("--output", type=Path, default=RESULTS / "minima_cpu.json")
    args = parser.parse_args()

    arch = Architecture(n_inputs=10, n_outputs=1, depth=1, width=8, activation="tanh")
    probes = probe_inputs_for(np.random.default_rng(1).standard_normal((100, 10)), 100)
    tolerances = dict(loss_tol=1e-6, function_tol=1e-3, dist_tol=1e-3)
    rows = []
    for n in args.endpoints:
        theta, loss, which = planted_endpoints(arch, args.minima, n, args.noise)
        start = time.perf_counter()
        minima = deduplicate_minima(as_training(theta, loss), arch, probes, **tolerances)
        fast_seconds = time.perf_counter() - start
        labels = minima["minimum_of_member"].values
        row = {"endpoints": n, "planted_minima": len(np.unique(which)), "found_minima": minima.sizes["minimum"],
               "fast_seconds": round(fast_seconds, 3), "recovers_planted": same_partition(labels, which)}
        if n <= args.max_brute_force:
            start = time.perf_counter()
            reference = brute_force(theta, loss, arch, probes, **tolerances)
            row["brute_force_seconds"] = round(time.perf_counter() - start, 3)
            row["agrees_with_brute_force"] = same_partition(labels, reference)
        rows.append(row)
        print(json.dumps(row), flush=True)
    machine = {"network": {"d": 10, "h": 8, "n_params": arch.n_params}, "probe_inputs": len(probes),
               "tolerances": tolerances, "noise": args.noise}
    write_table(args.output, rows, machine)


if __name__ == "__main__":
    main()
