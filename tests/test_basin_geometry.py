from functools import partial

import numpy as np
import pytest

from basins.basin_geometry import analyze_basins, shell_distance
from basins.landscapes.symmetry import nearest_image_distance
from basins.stats import binomial_standard_error, spearman_with_error, wilson_interval


def test_fractions_and_unassigned_sum_to_one(hand_built_minima):
    labels = hand_built_minima["minimum_of_member"].values
    start = np.zeros((5, 2))
    end = np.array([[3.0, 4.0], [0, 1], [1, 0], [np.nan, np.nan], [0, 2]])
    basins = analyze_basins(labels, start, end, np.zeros(2), hand_built_minima["test_error"].values)
    np.testing.assert_allclose(basins["basin_fraction"].values, [0.6, 0.2])
    assert float(basins["basin_fraction"].sum() + basins["unassigned_fraction"]) == pytest.approx(1.0)
    np.testing.assert_allclose(basins["basin_fraction_se"].values, np.sqrt([0.6 * 0.4 / 5, 0.2 * 0.8 / 5]))
    np.testing.assert_allclose(basins["travel_distance"].values[[0, 1, 4]], [5.0, 1.0, 2.0])
    assert np.isnan(basins["travel_distance"].values[3])
    assert float(basins["start_distance_median"][0]) == 2.0
    # Without a network there is no symmetry to search: both distances agree.
    np.testing.assert_array_equal(basins["start_distance"].values, basins["travel_distance"].values)


def test_wilson_interval_brackets_the_estimate_and_stays_in_the_unit_interval():
    counts = np.array([0, 1, 50, 99, 100])
    low, high = wilson_interval(counts, 100)
    p = counts / 100
    assert (low <= p).all() and (p <= high).all() and (low >= 0).all() and (high <= 1).all()
    # Known value: 50 of 100 at z = 1.96 gives (0.4038, 0.5962).
    assert low[2] == pytest.approx(0.4038, abs=1e-4) and high[2] == pytest.approx(0.5962, abs=1e-4)
    # One trial count per proportion: each the interval of its own count.
    trials = np.array([100, 10, 3000])
    per_count = wilson_interval(np.array([50, 5, 1500]), trials)
    for index, n in enumerate(trials):
        single = wilson_interval(np.array([50, 5, 1500])[index], int(n))
        assert per_count[0][index] == single[0] and per_count[1][index] == single[1]
    with pytest.raises(ValueError, match="at least one trial"):
        wilson_interval(np.array([1, 0]), np.array([3, 0]))


def test_the_binomial_standard_error_is_never_zero_and_tends_to_the_plain_one():
    n = np.array([64, 64, 10_000, 1])
    se = binomial_standard_error(np.array([0.0, 1.0, 0.3, 0.5]), n)
    centre = 1.96**2 / 2 / (64 + 1.96**2)  # 0 of 64 at the Wilson centre
    assert se[0] == pytest.approx(np.sqrt(centre * (1 - centre) / 64), rel=1e-12) and se[1] == pytest.approx(se[0])
    assert se[2] == pytest.approx(np.sqrt(0.3 * 0.7 / 10_000), rel=1e-3)
    assert np.isnan(se[3])  # one trial: no standard error


def test_rank_correlation_of_a_monotone_relation_is_one():
    rho, se = spearman_with_error(np.arange(10.0), np.arange(10.0) ** 2)
    assert rho == pytest.approx(1.0) and se == pytest.approx(1.03 / np.sqrt(7))
    assert np.isnan(spearman_with_error(np.ones(3), np.arange(3.0))[0])


def test_an_empty_ensemble_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        analyze_basins(np.zeros(0, dtype=int), np.zeros((0, 1)), np.zeros((0, 1)), np.zeros(0), np.zeros(0))


def test_double_well_basin_fractions_match_the_known_answer_within_sampling_error():
    # Gradient flow on V(x) = (x^2 - 1)^2 carries x > 0 to +1 and x < 0 to -1. Starts uniform
    # on [-1, 3]: the basin of +1 holds exactly 3/4 of them.
    rng = np.random.default_rng(11)
    start = rng.uniform(-1, 3, size=(4000, 1))
    labels = np.where(start[:, 0] > 0, 0, 1)  # minimum 0 is +1, the larger basin
    end = np.where(labels == 0, 1.0, -1.0)[:, None]
    basins = analyze_basins(labels, start, end, np.zeros(2), np.zeros(2))
    se = float(basins["basin_fraction_se"][0])
    assert abs(float(basins["basin_fraction"][0]) - 0.75) < 3 * se
    low, high = float(basins["basin_fraction_low"][0]), float(basins["basin_fraction_high"][0])
    assert low < 0.75 < high
    # Members of the +1 basin travel |x - 1| <= 2; of the -1 basin |x + 1| <= 1.
    assert float(basins["start_distance_p90"][0]) <= 2.0 and float(basins["start_distance_p90"][1]) <= 1.0


def test_start_distance_is_to_the_nearest_symmetric_image():
    from basins.landscapes.architecture import Architecture, initial_parameters

    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=3, activation="tanh")
    start = initial_parameters(arch, [0], seed=1, init="gaussian")
    # The end point is the start with two hidden units swapped and one sign-flipped: an image
    # of the start itself, so the symmetry-aware distance is zero though the plain one is not.
    end = start.copy()
    w_in, b_in = arch.layer_slices[0]
    w_out = arch.layer_slices[1][0]
    order, sign = [1, 0, 2], np.array([1.0, -1.0, 1.0])
    end[0, w_in] = (start[0, w_in].reshape(3, 2)[order] * sign[:, None]).ravel()
    end[0, b_in] = start[0, b_in][order] * sign
    end[0, w_out] = start[0, w_out][order] * sign
    distance = partial(nearest_image_distance, arch=arch)
    basins = analyze_basins(np.array([0]), start, end, np.zeros(1), np.zeros(1), distance=distance)
    assert float(basins["travel_distance"][0]) > 0.1
    assert float(basins["start_distance"][0]) == pytest.approx(0.0, abs=1e-12)


def test_a_distance_beyond_the_image_reached_is_refused():
    """The nearest image is never farther than the image reached (the old unit matching on
    incoming weights alone broke this for most members)."""
    start, end = np.zeros((3, 2)), np.ones((3, 2))
    with pytest.raises(ValueError, match="start_distance exceeds travel_distance"):
        analyze_basins(np.zeros(3, dtype=int), start, end, np.zeros(1), np.zeros(1),
                       distance=lambda s, e: np.linalg.norm(e - s, axis=1) * 1.1)


def test_unsettled_members_widen_every_basin_fraction_interval_upward():
    """Two of ten members spent their budget: each basin could hold them, so its upper bound
    counts them in; the lower bound and the fraction do not."""
    labels = np.array([0] * 5 + [1] * 3 + [-3, -3])
    start = np.zeros((10, 2))
    settled = analyze_basins(np.r_[labels[:8], [0, 1]], start, start + 1, np.zeros(2), np.zeros(2))
    basins = analyze_basins(labels, start, start + 1, np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(basins["basin_fraction"].values, [0.5, 0.3])
    high = wilson_interval(np.array([7, 5]), 10)[1]
    np.testing.assert_allclose(basins["basin_fraction_high"].values, high)
    assert (basins["basin_fraction_low"].values <= settled["basin_fraction_low"].values).all()


def test_the_shell_distance_is_the_median_start_distance_of_the_assigned_members():
    # Gaussian starts in d = 400 lie within a few percent of sqrt(d) = 20 from the origin's minimum.
    starts = np.random.default_rng(0).standard_normal((501, 400))
    labels = np.zeros(501, dtype=np.int64)
    assert shell_distance(np.linalg.norm(starts, axis=1), labels) == pytest.approx(20.0, rel=0.02)
    # Unassigned members (diverged -1, saddle -2, undecided -3) do not count; none assigned: nan.
    distance, labels = np.array([1.0, 2.0, 3.0, 100.0, 200.0]), np.array([0, 1, 0, -1, -3])
    assert shell_distance(distance, labels) == 2.0
    assert np.isnan(shell_distance(distance, np.full(5, -1)))
    with pytest.raises(ValueError, match="one value per member"):
        shell_distance(distance, labels[:4])
