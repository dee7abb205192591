import numpy as np
import pytest
import xarray as xr
from scipy import special

from basins.basin_geometry import shell_distance, tentacle_index
from basins.labels import LEFT, RETURNED, UNDECIDED
from basins.landscapes.planted import ball_and_ring
from basins.tentacles import far_return_probability
from basins.rays import (
    good_and_bad, kaplan_meier_median, matched_pairs, probe_first_exits, probe_rays, random_directions, ray_radii,
    select_minima_to_probe,
)


def double_well_outcomes(starts, targets):
    """Gradient flow on V(x) = (x_0^2 - 1)^2 + |x_rest|^2: the sign of x_0 decides the basin.

    Minimum 0 sits at x_0 = -1, minimum 1 at x_0 = +1; the boundary is the plane x_0 = 0.
    """
    minimum_reached = np.where(starts[:, 0] > 0, 1, 0)
    return np.where(minimum_reached == targets, RETURNED, LEFT)


def outcomes_by_shape(centres, exit_radius_along, *, undecided_within=0.0):
    """``outcomes`` of a planted landscape: the basin of minimum k is the star-shaped set
    ``|x - c_k| < exit_radius_along(u, k)`` along unit directions u; runs from points within a
    relative ``undecided_within`` of the boundary spend their budget (UNDECIDED)."""

    def outcomes(starts, targets):
        offset = starts - centres[targets]
        distance = np.linalg.norm(offset, axis=1)
        boundary = exit_radius_along(offset / distance[:, None], targets)
        tolerance = undecided_within * np.where(np.isfinite(boundary), boundary, 0.0)
        undecided = np.abs(distance - boundary) <= tolerance
        return np.select([undecided, distance < boundary], [UNDECIDED, RETURNED], default=LEFT)

    return outcomes


def test_exit_radii_of_a_double_well_are_the_distance_to_its_boundary():
    centres = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    rays = probe_rays(centres, double_well_outcomes, radii=np.geomspace(0.1, 50, 12), n_directions=64,
                      n_bisection=30, seed=3)
    directions = random_directions(2, 64, 3, seed=3)
    # Along direction u from x_0 = -1 the boundary x_0 = 0 is met at r = 1 / u_0 (if u_0 > 0).
    towards = directions[0, :, 0] > 0
    expected = np.where(towards, 1 / np.where(towards, directions[0, :, 0], 1), np.inf)
    seen = expected < 50
    np.testing.assert_allclose(rays["exit_radius"].values[0][seen], expected[seen], rtol=1e-6)
    np.testing.assert_array_equal(rays["exit_observed"].values[0], seen)
    # Rays that never leave are right-censored at the largest radius, not dropped.
    np.testing.assert_array_equal(rays["exit_radius"].values[0][~seen], 50.0)
    assert float(rays["censored_fraction"][0]) == pytest.approx(np.mean(~seen))
    # Every ray returns at a distance below 1 (the boundary is at least 1 away).
    assert (rays["return_probability"].sel(radius=slice(0, 0.99)) == 1).all()
    assert float(rays["minimal_exit_radius"][0]) >= 1.0
    p = rays["return_probability"].values
    assert ((p >= 0) & (p <= 1)).all()


def test_a_ball_has_its_radius_as_median_exit_and_a_step_return_probability():
    centres = np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [3.0, 1.0, 0.0, -2.0, 1.0]])
    r0 = np.array([0.7, 2.3])
    radii = np.geomspace(0.1, 10, 10)
    rays = probe_rays(centres, outcomes_by_shape(centres, lambda u, k: r0[k]), radii=radii, n_directions=32,
                      n_bisection=20, seed=0)
    resolution = np.diff(radii).max() / 2**20
    np.testing.assert_allclose(rays["median_exit_radius"], r0, atol=resolution)
    assert (rays["exit_radius"].values >= r0[:, None]).all()  # the exit is the first radius seen to leave
    np.testing.assert_allclose(rays["minimal_exit_radius"], r0, atol=resolution)
    np.testing.assert_allclose(rays["maximal_exit_radius"], r0, atol=resolution)
    inside = radii[None, :] < r0[:, None]
    np.testing.assert_array_equal(rays["return_probability"].values, inside.astype(float))
    np.testing.assert_array_equal(rays["exit_survival"].values, inside.astype(float))
    np.testing.assert_array_equal(rays["return_probability_se"].values, 0.0)
    assert (rays["exit_observed"] == 1).all() and (rays["censored_fraction"] == 0).all()
    assert (rays["undecided_fraction"] == 0).all() and (rays["run_undecided_fraction"] == 0).all()
    assert not rays["median_exit_censored"].values.any()


def test_an_elongated_basin_has_the_median_exit_of_its_ellipsoid_over_isotropic_directions():
    axes = np.array([0.5, 0.5, 3.0])  # the ellipsoid sum (x_i / a_i)^2 < 1, met at r(u) = |u / a|^-1
    along = lambda u, k: 1 / np.linalg.norm(u / axes, axis=1)  # noqa: E731
    centre = np.array([[1.0, -1.0, 2.0]])
    n_directions = 400
    rays = probe_rays(centre, outcomes_by_shape(centre, along), radii=np.geomspace(0.1, 5, 12),
                      n_directions=n_directions, n_bisection=20, seed=7)
    np.testing.assert_allclose(rays["exit_radius"].values[0], along(random_directions(1, n_directions, 3, seed=7)[0], 0),
                               rtol=1e-5)
    # The reference: Monte Carlo over isotropic directions, independent of the rays probed.
    rng = np.random.default_rng(123)
    isotropic = rng.standard_normal((200_000, 3))
    reference = along(isotropic / np.linalg.norm(isotropic, axis=1, keepdims=True), 0)
    medians_of_n = np.median(rng.choice(reference, (400, n_directions)), axis=1)
    assert float(rays["median_exit_radius"][0]) == pytest.approx(np.median(reference), abs=4 * medians_of_n.std())
    assert rays["median_exit_radius_low"][0] <= rays["median_exit_radius"][0] <= rays["median_exit_radius_high"][0]


def test_runs_out_of_budget_near_the_boundary_censor_the_ray_instead_of_exiting():
    centres = np.zeros((2, 3))
    r0 = np.array([1.0, 1.2])
    radii = np.array([0.25, 0.5, 0.75, 0.995, 1.5, 2.0])  # 0.995 is within 1 % of minimum 0's boundary
    outcomes = outcomes_by_shape(centres, lambda u, k: r0[k], undecided_within=0.01)
    rays = probe_rays(centres, outcomes, radii=radii, n_directions=16, n_bisection=20, seed=0)
    assert (rays["exit_observed"] == 0).all()  # an undecided run is never an exit
    # Minimum 0: undecided on the grid before any leaving radius: censored at the last return.
    np.testing.assert_array_equal(rays["exit_radius"].values[0], 0.75)
    # Minimum 1: bracketed by the grid (0.995 returns, 1.5 leaves), censored once a bisection
    # midpoint comes within 1 % of 1.2: beyond the last radius seen to return, short of the boundary.
    exits = rays["exit_radius"].values[1]
    assert (exits >= 0.995).all() and (exits < 1.2 * 0.99).all() and (exits > 1.1).all()
    undecided = rays["undecided_fraction"].sel(radius=0.995).values
    np.testing.assert_array_equal(undecided, [1.0, 0.0])
    assert np.isnan(rays["return_probability"].sel(radius=0.995).values[0])
    assert np.isnan(rays["return_probability_se"].sel(radius=0.995).values[0])
    assert float(rays["return_probability_low"].sel(radius=0.995)[0]) == 0.0
    assert float(rays["return_probability_high"].sel(radius=0.995)[0]) == 1.0
    assert float(rays["run_undecided_fraction"][0]) == pytest.approx(1 / len(radii))  # no bisection ran
    assert 0 < float(rays["run_undecided_fraction"][1]) < 1
    # Every ray censored: the median is beyond what was seen, and no exit is claimed.
    assert rays["median_exit_censored"].values.all() and np.isnan(rays["median_exit_radius"]).all()
    assert np.isnan(rays["minimal_exit_radius"]).all()


def test_rays_that_never_exit_raise_the_median_instead_of_being_dropped():
    # In 3-d, u_0 of an isotropic direction is uniform on [-1, 1]. Minimum 0: rays with
    # u_0 > -0.1 (55 %) leave at 2 + u_0, the others never do; the median exit solves
    # P(exit <= r) = (r - 2 + 0.1) / 2 = 1/2: r = 2.9. Dropping the others gives 2.45.
    # Minimum 1: rays with u_0 > 0.5 (25 %) leave; the median lies beyond every radius.
    centres = np.zeros((2, 3))
    threshold = np.array([-0.1, 0.5])
    along = lambda u, k: np.where(u[:, 0] > threshold[k], 2 + u[:, 0], np.inf)  # noqa: E731
    rays = probe_rays(centres, outcomes_by_shape(centres, along), radii=np.linspace(0.5, 4, 8), n_directions=200,
                      n_bisection=16, seed=2)
    observed = rays["exit_observed"].values.astype(bool)
    assert observed[0].mean() == pytest.approx(0.55, abs=0.1)
    median = float(rays["median_exit_radius"][0])
    biased = np.median(rays["exit_radius"].values[0][observed[0]])
    assert median == pytest.approx(2.9, abs=0.25)
    assert biased == pytest.approx(2.45, abs=0.15) and median > biased + 0.2
    assert not rays["median_exit_censored"].values[0]
    assert bool(rays["median_exit_censored"].values[1]) and np.isnan(rays["median_exit_radius"].values[1])
    assert np.isnan(rays["median_exit_radius_high"].values[1])
    assert np.isfinite(rays["minimal_exit_radius"].values[1])
    np.testing.assert_array_equal(rays["exit_radius"].values[~observed], 4.0)  # censored at the largest radius


def test_kaplan_meier_median_matches_a_hand_computation():
    # Sorted: 1 exit, 2 exit, 2 censored, 3 exit, 4 censored, 5 exit.
    # S(1) = 5/6; S(2) = 5/6 * 4/5 = 2/3; S(3) = 2/3 * 2/3 = 4/9 <= 1/2: median 3; S(5) = 0.
    radius = np.array([2.0, 1.0, 3.0, 2.0, 5.0, 4.0])
    observed = np.array([True, True, True, False, True, False])
    # Greenwood: var S(t) = S(t)^2 sum over exits up to t of d / (n (n - d)).
    z = special.ndtri(0.975)
    s = np.array([5 / 6, 2 / 3, 4 / 9])
    greenwood = np.cumsum([1 / (6 * 5), 1 / (5 * 4), 1 / (3 * 2)])
    lower, upper = s - z * s * np.sqrt(greenwood), s + z * s * np.sqrt(greenwood)
    assert lower[0] > 0.5 >= lower[1]  # the lower band first reaches 1/2 at 2
    assert (upper > 0.5).all()  # the upper band only at 5, where S = 0
    result = kaplan_meier_median(radius, observed)
    assert (result.median, result.low, result.high, result.censored) == (3.0, 2.0, 5.0, False)
    assert kaplan_meier_median([1.0, 2.0, 3.0], [True, False, False]).censored


@pytest.mark.parametrize("radius, observed", [([1.0, np.nan], [True, False]), ([1.0, -1.0], [True, True]),
                                              ([1.0], [True, True]), ([], [])])
def test_kaplan_meier_median_rejects_bad_radii(radius, observed):
    with pytest.raises(ValueError, match="radius"):
        kaplan_meier_median(np.array(radius), np.array(observed, dtype=bool))


def test_probing_is_reproducible_from_its_seed():
    centres = np.array([[-1.0, 0.5]])
    first = probe_rays(centres, double_well_outcomes, radii=[0.5, 1, 2, 4], n_directions=8, n_bisection=3, seed=1)
    second = probe_rays(centres, double_well_outcomes, radii=[0.5, 1, 2, 4], n_directions=8, n_bisection=3, seed=1)
    np.testing.assert_array_equal(first["exit_radius"].values, second["exit_radius"].values)


def test_selection_takes_largest_best_and_worst():
    chosen = select_minima_to_probe(np.array([0.5, 0.3, 0.1, 0.05]), np.array([0.2, 0.1, 0.4, 0.3]), n_largest=1)
    np.testing.assert_array_equal(chosen, [0, 1, 2])


def test_best_and_worst_are_chosen_among_the_eligible_minima():
    """One-member basins at the extremes of test error are passed over for the best and worst
    minima whose shape can be measured."""
    fraction = np.array([0.5, 0.3, 0.1, 0.05, 0.001, 0.001])
    test_error = np.array([0.2, 0.15, 0.4, 0.3, 0.01, 0.9])
    eligible = np.array([True, True, True, True, False, False])
    chosen = select_minima_to_probe(fraction, test_error, n_largest=1, eligible=eligible)
    np.testing.assert_array_equal(chosen, [0, 1, 2])
    assert select_minima_to_probe(fraction, test_error, n_largest=1).tolist() == [0, 4, 5]
    none = select_minima_to_probe(fraction, test_error, n_largest=1, eligible=np.zeros(6, bool))
    np.testing.assert_array_equal(none, [0])


def _good_and_bad_by_every_pair(fraction, test_error, candidates, match_factor):
    """The good and bad pair by a plain loop over every pair: the known answer."""
    best, best_key = None, None
    for i in candidates:
        for j in candidates:
            matched = max(fraction[i], fraction[j]) <= match_factor * min(fraction[i], fraction[j])
            gap = round(abs(test_error[i] - test_error[j]), 12)  # counts over a test set: equal gaps tie
            if i < j and matched and gap > 0:
                key = (gap, fraction[i] + fraction[j])
                if best_key is None or key > best_key:
                    best, best_key = (i, j), key
    if best is None:
        return None
    return tuple(sorted(best, key=lambda k: test_error[k]))


@pytest.mark.parametrize("seed", range(20))
def test_good_and_bad_are_the_pair_matched_in_size_whose_test_errors_differ_most(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    fraction = rng.dirichlet(np.ones(n))
    test_error = np.round(rng.uniform(0.1, 0.3, n), 2)  # rounded: ties occur
    candidates = np.flatnonzero(rng.random(n) < 0.8)
    expected = _good_and_bad_by_every_pair(fraction, test_error, candidates, 2.0)
    pair = good_and_bad(fraction, test_error, candidates, match_factor=2.0)
    if expected is not None:
        assert pair is not None and pair.matched and (pair.good, pair.bad) == expected
    elif len(candidates) >= 2 and np.ptp(test_error[candidates]) > 0:
        assert not pair.matched
        assert test_error[pair.good] == test_error[candidates].min() and test_error[pair.bad] == test_error[candidates].max()
    else:
        assert pair is None


@pytest.mark.parametrize("seed", range(10))
def test_the_matched_pairs_of_many_remeasured_test_errors_are_each_rows_own(seed):
    """Known answer: the plain loop over every pair, row by row (test errors measured again on
    resampled test sets, computed together); -1 where a row has no matched pair."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 8))
    fraction = rng.dirichlet(np.ones(n))
    candidates = np.flatnonzero(rng.random(n) < 0.8)
    test_errors = np.round(rng.uniform(0.1, 0.14, (200, n)), 2)  # rounded: ties occur
    test_errors[0] = 0.12  # no two differ: no pair
    good, bad = matched_pairs(fraction, test_errors, candidates, match_factor=2.0)
    for row, errors in enumerate(test_errors):
        expected = _good_and_bad_by_every_pair(fraction, errors, candidates, 2.0)
        assert (good[row], bad[row]) == (expected or (-1, -1))
    assert good[0] == -1


def test_good_and_bad_probed_are_the_matched_pair_not_the_extremes():
    """The best and the worst basins differ 20-fold in size; the two matched ones are probed."""
    fraction = np.array([0.40, 0.02, 0.20, 0.14, 0.24])
    test_error = np.array([0.15, 0.05, 0.12, 0.20, 0.30])
    chosen = select_minima_to_probe(fraction, test_error, n_largest=1, match_factor=2.0)
    np.testing.assert_array_equal(chosen, [0, 2, 4])  # largest, good (0.12), bad (0.30)
    assert good_and_bad(fraction, test_error, np.arange(5), match_factor=2.0) == (2, 4, True)


def test_neighbours_in_size_of_the_matched_pair_are_probed_farthest_first():
    """Besides the pair (0.20, 0.24), the eligible minima within a factor 2 of it, farthest in
    log basin fraction from its middle first: 0.40, then 0.14; 0.02 is too small to tell the
    slope where the pair is."""
    fraction = np.array([0.40, 0.02, 0.20, 0.14, 0.24])
    test_error = np.array([0.15, 0.05, 0.12, 0.20, 0.30])
    probe = lambda n, **options: select_minima_to_probe(  # noqa: E731
        fraction, test_error, n_largest=0, match_factor=2.0, n_size_neighbours=n, **options).tolist()
    assert probe(0) == [2, 4]
    assert probe(1) == [0, 2, 4]
    assert probe(2) == probe(3) == [0, 2, 3, 4]
    assert probe(3, eligible=np.array([True, True, True, True, False])) == [0, 2, 3]  # pair (0.20, 0.14)
    # No matched pair (every basin a factor 3 from the next): no neighbours either.
    assert select_minima_to_probe(np.array([0.6, 0.2, 0.06]), np.array([0.1, 0.2, 0.3]), n_largest=0,
                                  match_factor=2.0, n_size_neighbours=2).tolist() == [0, 2]
    with pytest.raises(ValueError, match="n_size_neighbours"):
        select_minima_to_probe(fraction, test_error, n_largest=0, n_size_neighbours=-1)


@pytest.mark.parametrize("radii", [[1.0, 0.5], [0.0, 1.0], []])
def test_bad_radii_are_rejected(radii):
    with pytest.raises(ValueError, match="radii"):
        probe_rays(np.zeros((1, 2)), double_well_outcomes, radii=radii, n_directions=2, n_bisection=0, seed=0)


def test_outcomes_other_than_left_returned_undecided_are_rejected():
    with pytest.raises(ValueError, match="outcomes"):
        probe_rays(np.zeros((1, 2)), lambda s, t: np.full(len(t), 3), radii=[1.0], n_directions=2, n_bisection=0,
                   seed=0)
    with pytest.raises(TypeError, match="booleans"):
        probe_rays(np.zeros((1, 2)), lambda s, t: np.ones(len(t), bool), radii=[1.0], n_directions=2, n_bisection=0,
                   seed=0)


def test_a_compact_basin_has_no_tentacles_and_a_far_reaching_one_has():
    labels = np.r_[np.zeros(100, int), np.ones(100, int)]
    start_distance = np.r_[np.linspace(0.1, 0.9, 100), np.linspace(0.5, 5.0, 100)]
    exit_radius = np.array([np.full(16, 1.0), np.full(16, 1.0)])
    tentacles = tentacle_index(start_distance, labels, exit_radius, np.ones((2, 16), bool), np.array([0, 1]),
                                  n_bootstrap=50)
    assert float(tentacles["tentacle_fraction"][0]) == 0.0
    assert float(tentacles["tentacle_fraction"][1]) == np.mean(np.linspace(0.5, 5.0, 100) > 1.0)
    assert float(tentacles["distance_ratio"][1]) > 2 > float(tentacles["distance_ratio"][0])
    assert (tentacles["reason"] == "measured").all()


def test_tentacles_use_the_kaplan_meier_median_and_say_why_they_are_missing():
    # Minimum 0: exits at 1, 2, 3, 6, 7 and three rays censored at 4. S = 7/8, 6/8, 5/8 after
    # 1, 2, 3; 3 censored at 4 leave 2 at risk, S(6) = 5/16: median 6 (the observed exits
    # alone would give 3). Minimum 1: 6 of 8 rays censored, the median is beyond them.
    # Minimum 2 has one member, minimum 3 none.
    exit_radius = np.array([[1.0, 2, 3, 6, 7, 4, 4, 4], [1.0, 2, 5, 5, 5, 5, 5, 5], [1.0] * 8, [1.0] * 8])
    observed = np.array([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0], [1] * 8, [1] * 8], bool)
    starts = np.r_[np.arange(10) + 0.5, np.arange(10) + 0.5, 2.0]
    labels = np.r_[np.zeros(10, int), np.ones(10, int), 2]
    tentacles = tentacle_index(starts, labels, exit_radius, observed, np.arange(4), n_bootstrap=40)
    assert float(tentacles["median_exit_radius"][0]) == 6.0
    assert float(tentacles["tentacle_fraction"][0]) == pytest.approx(0.4)  # 6.5, 7.5, 8.5, 9.5 of 0.5 ... 9.5
    assert float(tentacles["distance_ratio"][0]) == pytest.approx(5.0 / 6.0)
    assert 0 < int(tentacles["n_bootstrap_used"][0]) <= 40 and np.isfinite(tentacles["distance_ratio_se"][0])
    assert list(tentacles["reason"].values) == [
        "measured", "median exit radius beyond the largest radius probed", "measured", "no members"]
    for name in ("tentacle_fraction", "tentacle_fraction_se", "distance_ratio", "distance_ratio_se"):
        assert np.isnan(tentacles[name].values[[1, 3]]).all()
    assert float(tentacles["tentacle_fraction"][2]) == 1.0  # the one member starts at 2 > 1
    assert np.isnan(tentacles["tentacle_fraction_se"][2]) and np.isnan(tentacles["distance_ratio_se"][2])
    np.testing.assert_array_equal(tentacles["n_members"], [10, 10, 1, 0])


def test_tentacles_reject_mismatched_rays():
    with pytest.raises(ValueError, match="exit_observed"):
        tentacle_index(np.ones(3), np.zeros(3, int), np.ones((1, 4)), np.ones((1, 3), bool), np.array([0]))


def test_the_ray_grid_is_log_spaced_to_the_largest_radius_then_even_to_the_farthest():
    radii = ray_radii(0.3, 11.0, 10, farthest=19.5, n_far_radii=3)
    np.testing.assert_allclose(radii[:10], np.geomspace(0.3, 11.0, 10))
    np.testing.assert_allclose(radii[10:], [11.0 + 8.5 / 3, 11.0 + 17 / 3, 19.5])
    np.testing.assert_array_equal(ray_radii(0.3, 11.0, 10), np.geomspace(0.3, 11.0, 10))  # no far radii
    with pytest.raises(ValueError, match="farthest_radius > largest_radius=11.0"):
        ray_radii(0.3, 11.0, 10, farthest=10.0, n_far_radii=2)
    with pytest.raises(ValueError, match="smallest=12"):
        ray_radii(12.0, 11.0, 10)
    # In units of a shell distance: the same grid, stretched.
    np.testing.assert_array_equal(ray_radii(0.3, 11.0, 10, farthest=19.5, n_far_radii=3, unit=4.0), 4.0 * radii)
    for unit in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="positive distance"):
            ray_radii(0.3, 11.0, 10, unit=unit)


def test_a_grid_in_shell_units_probes_a_stretched_landscape_as_the_original():
    """The shell moves out as the network grows. A landscape stretched by s (basins and starts
    alike) is probed by a grid in shell units at exactly the same points of its own shape, so
    p(d) beyond the shell rests on the same rays; a grid of fixed distances puts fewer of its
    radii beyond the stretched shell (here none: it reads no far level at all)."""
    d, rng = 6, np.random.default_rng(5)
    unit_starts = rng.standard_normal((400, d))
    # Minimum 0 at the origin: a ball of radius 0.8 with a cone (u_0 > 0.5) reaching 4 out.
    exit_along = lambda u, k: np.where(u[:, 0] > 0.5, 4.0, 0.8)  # noqa: E731

    def probe(stretch, *, in_shells):
        starts = stretch * unit_starts
        distance = np.linalg.norm(starts, axis=1)
        labels = np.where(distance < stretch * exit_along(starts / distance[:, None], 0), 0, 1)
        shell = shell_distance(distance, labels)
        # The same grid about the first scale's shell (2.36): 0.02-3.5 shells, or 0.05-8 apart.
        radii = ray_radii(0.02, 3.5, 10, unit=shell) if in_shells else ray_radii(0.05, 8.0, 10)
        outcomes = outcomes_by_shape(np.zeros((1, d)), lambda u, k: stretch * exit_along(u, k))
        rays = probe_rays(np.zeros((1, d)), outcomes, radii=radii, n_directions=256, n_bisection=0, seed=1)
        return rays, far_return_probability(rays["outcome"].values, radii, shell), shell

    # A power of two stretches every distance, the median and the grid without round-off.
    (near, far_near, shell_near), (stretched, far_stretched, shell_stretched) = (
        probe(s, in_shells=True) for s in (1.0, 8.0))
    assert shell_stretched == 8.0 * shell_near
    np.testing.assert_array_equal(stretched["outcome"].values, near["outcome"].values)
    for stretched_value, value in zip(far_stretched, far_near):
        np.testing.assert_array_equal(stretched_value, value)
    assert (ray_radii(0.02, 3.5, 10, unit=shell_near) >= shell_near).sum() == 3
    p_near, p_near_se, _, _, n_rays = far_near
    assert n_rays[0] == 256 and 0.01 < p_near[0] < 0.5 and p_near_se[0] > 0  # the cone, met beyond the shell
    # Fixed distances: the grid that reads the far level at the first scale ends inside the
    # stretched shell (0.05-8 against about 19), which then has no far level at all.
    assert (ray_radii(0.05, 8.0, 10) >= shell_near).sum() == 3
    _, far_fixed, _ = probe(8.0, in_shells=False)
    assert far_fixed[4][0] == 0 and np.isnan(far_fixed[0][0])


def test_first_exits_alone_are_those_of_the_whole_grid_at_fewer_runs():
    """probe_first_exits skips the grid past each ray's first non-return: exits, censoring and
    the survival summaries equal probe_rays', including rays censored by an undecided run."""
    landscape = ball_and_ring(6)

    def outcomes(points, targets):  # undecided in a shell, so that some rays are censored early
        radius = np.linalg.norm(points - landscape.minima[targets], axis=1)
        ended = np.where(landscape.basin_of(points) == targets, RETURNED, LEFT)
        return np.where((radius > 0.3) & (radius < 0.35), UNDECIDED, ended).astype(np.int8)

    centres = landscape.minima
    options = dict(radii=np.geomspace(0.05, 4.0, 12), n_directions=40, n_bisection=3, seed=7)
    whole, first = probe_rays(centres, outcomes, **options), probe_first_exits(centres, outcomes, **options)
    for name in first.data_vars:
        if name not in ("n_runs", "run_undecided_fraction"):
            xr.testing.assert_identical(first[name], whole[name])
    assert (first["exit_observed"] == 1).any()
    censored_early = (first["exit_observed"] == 0) & (first["exit_radius"] < options["radii"][-1])
    assert censored_early.any()  # an undecided run censored these before the last radius
    grid_runs = 40 * 12 + 40 * 3  # an upper bound: every ray to the last radius, every bisection
    assert (first["n_runs"] < grid_runs).all()
