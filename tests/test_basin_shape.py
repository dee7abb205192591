"""Basin shape statistics against landscapes whose answer is known (basins.landscapes.planted).

The ball-and-ring landscape has a convex, ball-like basin and a thin ring-shaped basin of the
same volume; the double well two half-spaces. Every statistic must rank the ring as more
tentacled than the ball, with intervals that do not touch, in 2-D and in d = 12, and score
the double well as compact. Most tests run the dynamics through the membership known by
construction (``tests/test_planted.py`` shows the engine's gradient flow agrees with it);
one runs the engine itself.
"""

import functools

import numpy as np
import pytest
import torch

from basins.basin_geometry import tentacle_index
from basins.basin_shape import (
    kaplan_meier_medians,
    measure_local_thickness,
    measure_reach,
    measure_star_shapedness,
)
from basins.engine.descent import descend_until_decided
from basins.engine.dynamics import energy_and_gradient
from basins.labels import LEFT, RETURNED, UNDECIDED
from basins.landscapes.planted import ball_and_ring, double_well
from basins.rays import kaplan_meier_median, probe_rays
from basins.reruns import outcomes_of
from shape_checks import assert_no_reentry, interval

N_STARTS = 400  # about 80 members each in the ball and the ring (fractions 0.2)
N_THICKNESS_MEMBERS = 30  # members per basin probed for local thickness (16 rays each)


def known_outcomes(landscape, points, targets):
    """The outcome of the gradient flow from each point, by construction of the landscape."""
    return np.where(landscape.basin_of(points) == targets, RETURNED, LEFT).astype(np.int8)


def engine_outcomes(landscape, points, targets):
    """The outcome of the engine's gradient flow from each point."""
    out = descend_until_decided(
        lambda theta, batch: energy_and_gradient(landscape.energy, theta), points, np.arange(len(points)),
        budget_factors=(1, 4), dynamics="gradient_flow", lr=0.05, max_steps=500, grad_tol=1e-6,
        device=torch.device("cpu"), dtype=torch.float64, chunk=8192, run_id=(landscape.name,), progress_every_s=1e9,
    )
    return outcomes_of(landscape.minimum_reached(out.final_theta, dist_tol=1e-3), out.status, targets)


def measure_shape(landscape, names, outcomes, *, n_starts=N_STARTS, n_thickness=N_THICKNESS_MEMBERS, n_bisection=5,
                  seed=0):
    """The three statistics and the old tentacle index for the minima ``names``, as the study would run them
    (local thickness skipped, None, when ``n_thickness`` is 0)."""
    starts = landscape.sample_starts(n_starts, seed=seed)
    label = landscape.basin_of(starts)
    rows = np.array([landscape.index(name) for name in names])
    members = np.isin(label, rows)
    distance = np.linalg.norm(starts - landscape.minima[label], axis=1)
    images = landscape.minima[label]  # no symmetry: each member's minimum is its own image
    star = measure_star_shapedness(starts[members], images[members], label[members], outcomes, n_segment=12)
    probed = np.concatenate([np.flatnonzero(label == row)[:n_thickness] for row in rows])
    thickness = measure_local_thickness(
        starts[probed], images[probed], label[probed], outcomes,
        radii=np.median(distance[members]) * np.geomspace(0.02, 2.0, 12), n_directions=16, n_bisection=5, seed=seed,
    ) if n_thickness else None
    radii = np.linspace(0.025, 1.0, 40) * 1.1 * distance[members].max()  # out beyond the farthest member
    rays = probe_rays(landscape.minima[rows], lambda points, k: outcomes(points, rows[k]), radii=radii,
                      n_directions=64, n_bisection=n_bisection, seed=seed, minimum_ids=rows)
    reach = measure_reach(distance, label, rays["outcome"].values, radii, rows, seed=seed)
    old = tentacle_index(distance, label, rays["exit_radius"].values, rays["exit_observed"].values, rows)
    return star, thickness, reach, old


@functools.cache
def shape_of(n_params, landscape="ball_and_ring"):
    planted = ball_and_ring(n_params) if landscape == "ball_and_ring" else double_well(n_params)
    names = ("ball", "ring") if landscape == "ball_and_ring" else ("right", "left")
    return planted, measure_shape(planted, names, functools.partial(known_outcomes, planted))


@pytest.mark.parametrize("n_params", [2, 12])
def test_star_shapedness_ranks_the_ring_above_the_ball(n_params):
    """Ball: no segment leaves (convex). Ring: chords beyond ~61 degrees of arc leave the annulus
    (measured 0.66 [0.56, 0.76] in 2-D, 0.65 [0.55, 0.74] in d = 12; ball 0 [0, 0.045])."""
    landscape, (star, *_) = shape_of(n_params)
    ball, ring = landscape.index("ball"), landscape.index("ring")
    ball_value, _, ball_high = interval(star, "leaving_fraction", ball)
    ring_value, ring_low, _ = interval(star, "leaving_fraction", ring)
    assert ball_value == 0 and 0 < ball_high < 0.1
    assert 0.5 < ring_value < 0.85 and ring_low > ball_high
    assert float(star["mean_inside_fraction"].sel(minimum=ball)) == 1.0


@pytest.mark.parametrize("n_params", [2, 12])
def test_local_thickness_ranks_the_ring_as_thinner(n_params):
    """Ring: random rays from a start leave the 0.375-wide annulus long before the distance to
    the minimum (measured 0.13 [0.10, 0.16] in 2-D, 0.23 [0.18, 0.29] in d = 12); ball 0.54
    [0.27, 1.17] in 2-D, 0.48 [0.39, 0.60] in d = 12."""
    landscape, (_, thickness, *_) = shape_of(n_params)
    ball, ring = landscape.index("ball"), landscape.index("ring")
    _, ball_low, _ = interval(thickness, "median_thickness_ratio", ball)
    ring_value, _, ring_high = interval(thickness, "median_thickness_ratio", ring)
    assert ring_value < 0.3 and ring_high < ball_low


@pytest.mark.parametrize("n_params", [2, 12])
def test_reach_ranks_the_ring_above_the_ball(n_params):
    """No ray re-enters the convex ball: reach exactly 0, interval up to the Wilson bound of 0 of
    64 rays. Rays re-enter the ring on its far side: measured 0.36 [0.21, 0.54] in 2-D (20 of 64
    rays re-enter), 0.31 [0.10, 0.64] in d = 12 (10), each above the ball's upper bound."""
    landscape, (_, _, reach, _) = shape_of(n_params)
    ball, ring = landscape.index("ball"), landscape.index("ring")
    assert_no_reentry(reach, ball)
    ring_value, ring_low, ring_high = interval(reach, "reach", ring)
    assert ring_low > 0.05 and ring_low < ring_value < ring_high
    assert int(reach["n_rays_reentering"].sel(minimum=ring)) >= 5


@pytest.mark.parametrize("n_params", [2, 12])
def test_the_double_well_scores_as_compact(n_params):
    """Half-spaces: star-shaped (nothing leaves), no re-entry, thicker than the planted ball."""
    _, (star, thickness, reach, _) = shape_of(n_params, "double_well")
    _, ball_thickness, _ = interval(shape_of(n_params)[1][1], "median_thickness_ratio", 0)
    for row in range(2):
        value, _, high = interval(star, "leaving_fraction", row)
        assert value == 0 and high < 0.05
        assert_no_reentry(reach, row)
        assert float(thickness["median_thickness_ratio"].sel(minimum=row)) > ball_thickness


def test_the_old_index_calls_the_ball_tentacled_in_high_dimension():
    """The old index (fraction of members beyond the median ray exit radius) measures how far
    starts lie from the head, not the shape: in 2-D it gives the ball 0 and the ring 0.95, but
    in d = 12, where the start distance is dominated by the 10 coordinates that decide nothing,
    it gives the convex ball 0.95, as high as the ring (1.0); in d = 24 both exactly 1 +- 0."""
    landscape, (*_, old_2d) = shape_of(2)
    ball, ring = landscape.index("ball"), landscape.index("ring")
    assert float(old_2d["tentacle_fraction"].sel(minimum=ball)) == 0
    assert float(old_2d["tentacle_fraction"].sel(minimum=ring)) > 0.9
    _, (*_, old_12d) = shape_of(12)
    assert float(old_12d["tentacle_fraction"].sel(minimum=ball)) > 0.9
    assert float(old_12d["tentacle_fraction"].sel(minimum=ring)) > 0.9
    _, (*_, old_24d) = shape_of(24)
    fraction, se = old_24d["tentacle_fraction"].values, old_24d["tentacle_fraction_se"].values
    assert abs(fraction[ball] - fraction[ring]) <= 1.96 * np.hypot(se[ball], se[ring])  # equality not excluded


def test_with_the_engine_the_statistics_meet_their_known_answer():
    """The engine's gradient flow gives the same segment and ray outcomes as the construction,
    and the same verdicts: ball star-shaped without re-entry, ring leaving and re-entered."""
    landscape = ball_and_ring(2)
    engine = functools.partial(engine_outcomes, landscape)
    settings = {"n_starts": 150, "n_thickness": 0, "n_bisection": 0, "seed": 1}
    star, _, reach, _ = measure_shape(landscape, ("ball", "ring"), engine, **settings)
    known_star, _, known_reach, _ = measure_shape(landscape, ("ball", "ring"), functools.partial(
        known_outcomes, landscape), **settings)
    assert (star["outcome"].values == known_star["outcome"].values).mean() >= 0.99
    ball, ring = landscape.index("ball"), landscape.index("ring")
    assert float(star["leaving_fraction"].sel(minimum=ball)) == 0
    assert float(star["leaving_fraction_low"].sel(minimum=ring)) > float(star["leaving_fraction_high"].sel(minimum=ball))
    assert float(reach["reach"].sel(minimum=ball)) == 0
    assert float(reach["reach_low"].sel(minimum=ring)) > 0
    assert float(reach["reach"].sel(minimum=ring)) == pytest.approx(float(known_reach["reach"].sel(minimum=ring)),
                                                                    abs=0.05)


def test_undecided_points_are_censored_never_exits():
    """Runs from within 0.05 of a ridge circle come back undecided: no exit is placed there, the
    segments and rays through them are censored, and the ball still has no exit and no re-entry."""
    landscape = ball_and_ring(2)
    ridges = np.array([0.668, 1.177, 1.552])

    def near_ridges_undecided(points, targets):
        ended = known_outcomes(landscape, points, targets)
        r = np.hypot(points[:, 0], points[:, 1])
        return np.where(np.abs(r[:, None] - ridges).min(1) < 0.05, UNDECIDED, ended).astype(np.int8)

    star, _, reach, _ = measure_shape(landscape, ("ball", "ring"), near_ridges_undecided, n_starts=200, n_thickness=0)
    outcome, observed = star["outcome"].values, star["exit_observed"].values.astype(bool)
    assert (outcome == UNDECIDED).any()
    # an exit is observed only where a LEFT point comes before every undecided one
    def first(flags):
        return np.where(flags.any(1), flags.argmax(1), flags.shape[1])

    np.testing.assert_array_equal(observed, first(outcome == LEFT) < first(outcome == UNDECIDED))
    censored = ~observed & (outcome == UNDECIDED).any(1)
    assert censored.any()
    assert (star["exit_position"].values[censored] < 1).all()
    assert (star["inside_fraction_low"] <= star["inside_fraction"]).all()
    assert (star["inside_fraction"] <= star["inside_fraction_high"]).all()
    ball = landscape.index("ball")
    assert float(star["leaving_fraction"].sel(minimum=ball)) == 0
    assert float(reach["reach"].sel(minimum=ball)) == 0
    assert float(reach["ambiguous_fraction"].sel(minimum=landscape.index("ring"))) > 0


def test_kaplan_meier_medians_equal_the_scipy_estimate():
    """The vectorized medians used in the bootstrap against basins.rays.kaplan_meier_median
    (scipy.stats.ecdf), with ties between exits and censorings."""
    rng = np.random.default_rng(4)
    radius = rng.integers(1, 6, size=(300, 9)).astype(float)
    observed = rng.random((300, 9)) < 0.7
    fast = kaplan_meier_medians(radius, observed)
    reference = np.array([kaplan_meier_median(r, o).median for r, o in zip(radius, observed)])
    np.testing.assert_array_equal(fast, reference)
    assert np.isnan(fast).any() and np.isfinite(fast).any()


def test_below_min_members_the_summaries_are_nan_with_a_reason():
    landscape = ball_and_ring(2)
    starts = landscape.sample_starts(40, seed=5)
    label = landscape.basin_of(starts)
    star = measure_star_shapedness(starts, landscape.minima[label], label,
                                   functools.partial(known_outcomes, landscape), n_segment=4, min_members=12)
    few = star["n_members"].values < 12
    assert few.any()
    assert np.isnan(star["leaving_fraction"].values[few]).all()
    assert np.isnan(star["leaving_fraction_low"].values[few]).all()
    assert all("fewer than min_members=12" in reason for reason in star["reason"].values[few])
    distance = np.linalg.norm(starts - landscape.minima[label], axis=1)
    reach = measure_reach(distance, label, np.full((1, 8, 5), RETURNED), np.arange(1.0, 6.0), np.array([0]),
                          min_members=100)
    assert np.isnan(reach["reach"].values[0]) and "fewer than min_members=100" in str(reach["reason"].values[0])


def test_bad_input_is_refused():
    landscape = ball_and_ring(2)
    starts = landscape.sample_starts(5, seed=0)
    outcomes = functools.partial(known_outcomes, landscape)
    images = np.zeros_like(starts)
    with pytest.raises(ValueError, match="assigned members only"):
        measure_star_shapedness(starts, images, np.array([0, 1, -1, 0, 0]), outcomes)
    with pytest.raises(ValueError, match="minimum_images"):
        measure_star_shapedness(starts, landscape.minima, np.zeros(5, dtype=int), outcomes)
    with pytest.raises(TypeError, match="booleans"):
        measure_star_shapedness(starts, images, np.zeros(5, dtype=int), lambda p, t: np.ones(len(t), bool))
    with pytest.raises(ValueError, match="ray_outcome"):
        measure_reach(np.ones(5), np.zeros(5, dtype=int), np.zeros((2, 4, 3)), np.arange(1.0, 4.0), np.array([0]))
