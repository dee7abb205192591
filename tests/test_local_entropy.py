import itertools
from math import comb

import numpy as np
import pytest

from basins.local_entropy import (
    enumerate_local_entropy,
    krawtchouk,
    neighbour_counts,
    random_patterns,
    solution_codes,
    walsh_hadamard,
)


@pytest.mark.parametrize("n_weights, n_patterns", [(5, 2), (9, 3), (11, 5)])
def test_enumeration_matches_brute_force(n_weights, n_patterns):
    patterns, labels = random_patterns(n_weights, n_patterns, seed=n_weights)
    solutions = [
        w for w in itertools.product([-1, 1], repeat=n_weights) if (labels * (patterns @ np.array(w)) > 0).all()
    ]
    codes = solution_codes(patterns, labels)
    # Bit i of a code is weight i, so itertools' order (weight 0 slowest) needs its bits reversed.
    unsorted = [sum(((w_i + 1) // 2) << i for i, w_i in enumerate(w)) for w in solutions]
    np.testing.assert_array_equal(codes, sorted(unsorted))
    distances = np.array([[sum(a != b for a, b in zip(u, v)) for v in solutions] for u in solutions])
    brute = np.stack([(distances == d).sum(1) for d in range(n_weights + 1)], axis=1)
    order = np.argsort(unsorted)
    np.testing.assert_array_equal(neighbour_counts(codes, n_weights), brute[order])


def test_walsh_hadamard_is_its_own_inverse_up_to_scale():
    values = np.random.default_rng(0).normal(size=64)
    np.testing.assert_allclose(walsh_hadamard(walsh_hadamard(values)) / 64, values, atol=1e-12)
    matrix = np.array([[(-1) ** bin(i & j).count("1") for j in range(8)] for i in range(8)])
    np.testing.assert_allclose(walsh_hadamard(np.eye(8)[3]), matrix[3])


def test_krawtchouk_is_the_transform_of_a_distance_shell():
    n = 6
    for distance in range(n + 1):
        shell = np.array([float(bin(x).count("1") == distance) for x in range(2**n)])
        weights = np.array([bin(s).count("1") for s in range(2**n)])
        np.testing.assert_allclose(walsh_hadamard(shell), krawtchouk(n, distance, weights), atol=1e-9)


def test_counts_respect_the_bound_and_the_densest_is_densest():
    result = enumerate_local_entropy(n_weights=11, alphas=[0.3, 0.6], n_samples=2, radius=2, seed=3)
    bound = result["bound_count"].values
    np.testing.assert_array_equal(bound, [comb(11, d) for d in range(12)])
    for name in ("densest_count", "median_count", "mean_count"):
        assert (result[name].values <= bound + 1e-9).all()
        np.testing.assert_array_equal(result[name].sel(distance=0).values, 1.0)  # itself
    within = result["densest_count"].sel(distance=slice(0, 2)).sum("distance")
    assert (within >= result["mean_count"].sel(distance=slice(0, 2)).sum("distance") - 1e-9).all()
    # More patterns, fewer solutions (same samples are not nested, so compare the means).
    n = result["n_solutions"].values
    assert n[0].mean() > n[1].mean()


def test_even_or_huge_perceptrons_are_refused():
    with pytest.raises(ValueError, match="odd"):
        solution_codes(*random_patterns(10, 2, seed=0))
