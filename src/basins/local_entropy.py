"""Stage ``enumerate_local_entropy``: the local entropy of every solution of a tiny binary perceptron.

For a perceptron with N binary weights w in {-1, +1}^N storing P = alpha N random patterns, all
2^N weight vectors are enumerated (N around 21), the solutions found, and for each solution the
number of solutions at every Hamming distance d counted exactly. Its log over N is the local
entropy at distance d (Baldassi et al. 2015: rare dense regions of solutions coexist with
isolated typical ones); the upper bound is log C(N, d) / N, every neighbour a solution.

The counts come from a convolution on the hypercube: n_a(d) = sum_b f(b) [|a xor b| = d], with f
the solution indicator, is diagonal in the Walsh-Hadamard basis, where the distance-d shell
transforms to the Krawtchouk polynomial K_d(|s|). So all solutions' counts at one distance cost
one transform of length 2^N, not a pass over all pairs of solutions.
"""

from __future__ import annotations

import logging
from math import comb

import numpy as np
import xarray as xr

from basins.io import variable_attrs

log = logging.getLogger(__name__)

MAX_WEIGHTS = 26  # 2^26 float64 = 512 MB per transform


def weight_vectors(codes: np.ndarray, n_weights: int) -> np.ndarray:
    """The +-1 weight vectors ``(code, weight)`` whose bits are ``codes`` (bit i: weight i)."""
    bits = (np.asarray(codes, dtype=np.int64)[:, None] >> np.arange(n_weights)) & 1
    return (2 * bits - 1).astype(np.int8)


def random_patterns(n_weights: int, n_patterns: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """+-1 patterns ``(pattern, weight)`` and +-1 labels, from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.choice([-1, 1], size=(n_patterns, n_weights)).astype(np.int8), rng.choice([-1, 1], size=n_patterns)


def solution_codes(patterns: np.ndarray, labels: np.ndarray, *, block: int = 2**16) -> np.ndarray:
    """Codes of every w in {-1, +1}^N with labels * (patterns @ w) > 0 for all patterns.

    N must be odd, so that no pattern sits exactly on the decision boundary.
    """
    n_weights = patterns.shape[1]
    if n_weights % 2 == 0 or not 1 <= n_weights <= MAX_WEIGHTS:
        raise ValueError(f"n_weights={n_weights}: give an odd N of at most {MAX_WEIGHTS} (2^N vectors are enumerated)")
    signed = (patterns * labels[:, None]).T.astype(np.int32)  # (weight, pattern)
    found = []
    for start in range(0, 2**n_weights, block):
        codes = np.arange(start, min(start + block, 2**n_weights))
        stable = (weight_vectors(codes, n_weights).astype(np.int32) @ signed > 0).all(axis=1)
        found.append(codes[stable])
    return np.concatenate(found)


def walsh_hadamard(values: np.ndarray) -> np.ndarray:
    """Unnormalized Walsh-Hadamard transform of a length-2^N vector (its own inverse up to 2^N)."""
    n = values.size.bit_length() - 1
    out = values.astype(np.float64).copy()
    for bit in range(n):
        paired = out.reshape(-1, 2, 2**bit)
        low, high = paired[:, 0, :].copy(), paired[:, 1, :]
        paired[:, 0, :] += high
        paired[:, 1, :] = low - high
    return out


def krawtchouk(n_weights: int, distance: int, weight: np.ndarray) -> np.ndarray:
    """K_d(x) = sum_j (-1)^j C(x, j) C(N - x, d - j): the transform of the distance-d shell.

    It depends on the weight x = 0..N alone: tabulated in exact integers, then looked up.
    """
    table = [sum((-1) ** j * comb(x, j) * comb(n_weights - x, distance - j) for j in range(distance + 1))
             for x in range(n_weights + 1)]
    return np.asarray(table, dtype=np.float64)[np.asarray(weight, dtype=np.int64)]


def neighbour_counts(codes: np.ndarray, n_weights: int) -> np.ndarray:
    """``(solution, distance)``: how many solutions lie at each Hamming distance 0..N of each solution."""
    indicator = np.zeros(2**n_weights)
    indicator[codes] = 1.0
    spectrum = walsh_hadamard(indicator)
    hamming_weight = np.bitwise_count(np.arange(2**n_weights, dtype=np.uint64)).astype(np.int64)
    counts = np.empty((len(codes), n_weights + 1))
    for distance in range(n_weights + 1):
        shell = krawtchouk(n_weights, distance, hamming_weight)
        counts[:, distance] = walsh_hadamard(spectrum * shell)[codes] / 2**n_weights
    return np.rint(counts).astype(np.int64)  # exact integers, up to float64 round-off


def enumerate_local_entropy(
    *, n_weights: int, alphas: list[float], n_samples: int, radius: int, seed: int
) -> xr.Dataset:
    """Exact local entropies of binary-perceptron solutions, over loads alpha and pattern samples.

    For every (alpha, sample): the solutions of P = round(alpha N) random patterns and, for each
    solution a, n_a(d) at d = 0..N. Reported: the densest solution (most solutions within
    Hamming distance ``radius``), the typical one (median count over solutions at each d) and
    the mean count, against the bound C(N, d).
    """
    if radius < 0 or radius > n_weights:
        raise ValueError(f"radius={radius} must be between 0 and n_weights={n_weights}")
    shape = (len(alphas), n_samples, n_weights + 1)
    densest, median, mean = (np.full(shape, np.nan) for _ in range(3))
    n_solutions = np.zeros(shape[:2], dtype=np.int64)
    n_patterns = np.zeros(len(alphas), dtype=np.int64)
    for a, alpha in enumerate(alphas):
        n_patterns[a] = max(1, round(alpha * n_weights))
        for sample in range(n_samples):
            patterns, labels = random_patterns(n_weights, int(n_patterns[a]), seed=seed + 1000 * a + sample)
            codes = solution_codes(patterns, labels)
            n_solutions[a, sample] = len(codes)
            log.info("alpha %.3g (P = %d), sample %d: %d solutions", alpha, n_patterns[a], sample, len(codes))
            if len(codes) == 0:
                continue
            counts = neighbour_counts(codes, n_weights)
            densest[a, sample] = counts[np.argmax(counts[:, : radius + 1].sum(1))]
            median[a, sample] = np.median(counts, axis=0)
            mean[a, sample] = counts.mean(axis=0)
    per_curve = lambda values, *attrs: (("alpha", "sample", "distance"), values, variable_attrs(*attrs))  # noqa: E731
    return xr.Dataset(
        {
            "densest_count": per_curve(densest, f"solutions at distance d of the solution densest within d <= {radius}"),
            "median_count": per_curve(median, "median over solutions of the solutions at distance d"),
            "mean_count": per_curve(mean, "mean over solutions of the solutions at distance d"),
            "bound_count": ("distance", [comb(n_weights, d) for d in range(n_weights + 1)],
                            variable_attrs("all vectors at distance d: C(N, d)")),
            "n_solutions": (("alpha", "sample"), n_solutions, variable_attrs("solutions of the pattern sample")),
            "n_patterns": ("alpha", n_patterns, variable_attrs("patterns P = round(alpha N)")),
        },
        coords={
            "alpha": ("alpha", np.asarray(alphas, dtype=np.float64), variable_attrs("load P / N")),
            "sample": ("sample", np.arange(n_samples), variable_attrs("pattern sample")),
            "distance": ("distance", np.arange(n_weights + 1), variable_attrs("Hamming distance")),
        },
        attrs={"n_weights": n_weights, "radius": radius, "seed": seed,
               "local_entropy": "log(count) / n_weights; the bound is log C(N, d) / N"},
    )
