"""Stage measure_tentacles against landscapes whose answer is known (basins.planted).

The stage function runs with its default settings (those of the config schema) on the
planted ball and ring (equal basin fractions; one convex, one a thin annulus reaching around
it) and on the double well (two half-spaces), through the membership known by construction
(``tests/test_planted.py`` shows the engine's gradient flow agrees with it). Every new
statistic must rank the ring as tentacled with intervals that exclude equality, and score the
double well compact. The Kuramoto ring's known answer is in ``tests/test_ring_tentacles.py``.
"""

import functools

import numpy as np
import pytest
import yaml

from basins.basin_geometry import shell_distance
from basins.labels import LEFT, RETURNED
from basins.landscapes.planted import ball_and_ring, double_well
from basins.rays import probe_rays
from basins.tentacles import far_return_probability, measure_tentacles, select_members
from shape_checks import assert_no_reentry, interval

N_STARTS = 400  # about 80 members each in the ball and the ring (fractions 0.2)


def known_outcomes(landscape, points, targets):
    return np.where(landscape.basin_of(points) == targets, RETURNED, LEFT).astype(np.int8)


@functools.cache
def tentacles_of(n_params, landscape="ball_and_ring", seed=0):
    """The stage as the workflow runs it: rays from the minima (64 rays, log-spaced radii out to
    2.5 times the shell distance, 2 bisections), then measure_tentacles with its defaults."""
    planted = ball_and_ring(n_params) if landscape == "ball_and_ring" else double_well(n_params)
    names = ("ball", "ring") if landscape == "ball_and_ring" else ("right", "left")
    starts = planted.sample_starts(N_STARTS, seed=seed)
    label = planted.basin_of(starts)
    distance = np.linalg.norm(starts - planted.minima[label], axis=1)
    rows = np.array([planted.index(name) for name in names])
    outcomes = functools.partial(known_outcomes, planted)
    shell = np.median(distance)
    rays = probe_rays(planted.minima[rows], lambda points, k: outcomes(points, rows[k]),
                      radii=np.geomspace(0.02 * shell, 2.5 * shell, 16), n_directions=64, n_bisection=2, seed=seed,
                      minimum_ids=rows)
    fraction = np.bincount(label, minlength=len(planted.minima)) / N_STARTS
    return planted, measure_tentacles(rays, fraction, distance, label, starts, planted.minima[label], outcomes,
                                      seed=seed)


def difference_excludes_zero(dataset, name, tentacled, compact, confidence=0.95):
    """Whether the interval of (tentacled - compact), from the two percentile intervals as normal
    standard errors, excludes 0 on the tentacled side."""
    z = 1.959963984540054
    t, t_low, t_high = interval(dataset, name, tentacled)
    c, c_low, c_high = interval(dataset, name, compact)
    se = np.hypot((t_high - t_low) / (2 * z), (c_high - c_low) / (2 * z)) if np.isfinite(c_high) else np.inf
    return (t - c) - z * se > 0 if name != "median_thickness_ratio" else (c - t) - z * se > 0


#: The digits network's initialization shell in the default study (median start distance of its
#: members, 4.6): the config's ray radii are absolute, so they are scaled by shell / this.
NETWORK_SHELL = 4.6


def default_study_settings():
    """The ray and tentacle settings the default study probes networks with (config/config.yaml)."""
    from workflow_runner import ROOT

    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    experiment = config["experiments"]["digits_parity_tanh"]
    return experiment["rays"], {key: value for key, value in experiment["tentacles"].items() if key != "min_members"}


def tentacles_at_default_study_settings(seed):
    """measure_tentacles on the planted ball and ring in d = 12, with the ray and tentacle
    settings the default study probes networks with; the landscape and the stage's result."""
    rays_config, tentacle_config = default_study_settings()
    planted = ball_and_ring(12)
    starts = planted.sample_starts(N_STARTS, seed=seed)
    label = planted.basin_of(starts)
    distance = np.linalg.norm(starts - planted.minima[label], axis=1)
    rows = np.array([planted.index("ball"), planted.index("ring")])
    outcomes = functools.partial(known_outcomes, planted)
    scale = np.median(distance) / NETWORK_SHELL
    radii = np.geomspace(rays_config["smallest_radius"] * scale, rays_config["largest_radius"] * scale,
                         rays_config["n_radii"])
    rays = probe_rays(planted.minima[rows], lambda points, k: outcomes(points, rows[k]), radii=radii,
                      n_directions=rays_config["n_directions"], n_bisection=rays_config["n_bisection"], seed=seed,
                      minimum_ids=rows)
    fraction = np.bincount(label, minlength=len(planted.minima)) / N_STARTS
    return planted, measure_tentacles(rays, fraction, distance, label, starts, planted.minima[label], outcomes,
                                      seed=seed, **tentacle_config)


@pytest.mark.parametrize("seed", range(1, 9))
def test_at_the_default_studys_settings_star_shapedness_reach_and_far_reentry_tell_them_apart(seed):
    """The default study probes networks with more rays than the stage defaults and shorter
    segments (128 rays on 10 radii, 32 star members of 8 points, 32 x 16 thickness rays of 8
    radii). There, in d = 12, the ring's leaving fraction lies above the ball's interval, the
    ring's reach interval excludes the ball's exact 0, and only the ring is re-entered far out,
    seed after seed (reach: 64 of seeds 1-64 with 128 rays; 64 rays, the setting until session
    24, resolved 6 of 8)."""
    planted, tentacles = tentacles_at_default_study_settings(seed)
    ball, ring = planted.index("ball"), planted.index("ring")
    assert interval(tentacles, "leaving_fraction", ring)[1] > interval(tentacles, "leaving_fraction", ball)[2]
    rays_config, _ = default_study_settings()
    assert_no_reentry(tentacles, ball, n_rays=rays_config["n_directions"])
    assert interval(tentacles, "reach", ring)[1] > 0
    assert float(tentacles["far_reentry_probability"].sel(minimum=ball)) == 0
    assert interval(tentacles, "far_reentry_probability", ring)[1] > 0


def test_at_the_default_studys_settings_thickness_tells_them_apart_in_most_draws():
    """Thickness at the default study's 32 members x 16 rays: the ring is thinner than 0.3 of its
    distance and thinner than the ball, intervals apart, in at least 14 of seeds 1-16. Its power
    there is about 0.95 (61 of seeds 1-64; an independent referee), so 14 of 16 fails about 4 %
    of the time by chance; at 16 x 16, the setting until session 24 (power about 0.72, 46 of 64),
    seeds 1-16 resolve 12 and the test fails."""
    resolved = 0
    for seed in range(1, 17):
        planted, tentacles = tentacles_at_default_study_settings(seed)
        ball, ring = planted.index("ball"), planted.index("ring")
        resolved += bool(interval(tentacles, "median_thickness_ratio", ring)[0] < 0.3
                         and difference_excludes_zero(tentacles, "median_thickness_ratio", ring, ball))
    assert resolved >= 14


@pytest.mark.parametrize("n_params", [2, 12])
def test_every_statistic_ranks_the_ring_as_tentacled(n_params):
    landscape, tentacles = tentacles_of(n_params)
    ball, ring = landscape.index("ball"), landscape.index("ring")
    assert (tentacles["reason"].values == "measured").all()
    # star-shapedness: no segment leaves the convex ball; chords leave the annulus
    assert interval(tentacles, "leaving_fraction", ball)[0] == 0
    assert interval(tentacles, "leaving_fraction", ring)[1] > interval(tentacles, "leaving_fraction", ball)[2]
    # reach: exactly 0 for the ball (no ray re-enters; its interval reaches up to what 0 of 64
    # rays allows); the ring's interval excludes 0
    assert_no_reentry(tentacles, ball)
    assert interval(tentacles, "reach", ring)[1] > 0.03
    # local thickness: the ring is thinner than it is far from its minimum, and thinner than the ball
    assert interval(tentacles, "median_thickness_ratio", ring)[0] < 0.3
    assert difference_excludes_zero(tentacles, "median_thickness_ratio", ring, ball)
    # far out (beyond the shell distance) only the ring is met after the ray had left it: the
    # ball's 0 has an interval reaching up to what 0 of its rays allows, the ring's excludes 0
    ball_reentry, ball_low, ball_high = interval(tentacles, "far_reentry_probability", ball)
    assert ball_reentry == 0 and ball_low == 0 and ball_high > 0
    # 0 of n rays: the standard error is the binomial one at the Agresti-Coull centre (z^2/2) / (n + z^2)
    n, z2 = int(tentacles["n_far_rays"].sel(minimum=ball)), 1.96**2
    centre = z2 / 2 / (n + z2)
    assert float(tentacles["far_reentry_probability_se"].sel(minimum=ball)) == pytest.approx(
        np.sqrt(centre * (1 - centre) / n), rel=1e-12)
    assert interval(tentacles, "far_reentry_probability", ring)[1] > 0


def test_in_two_dimensions_only_the_ring_is_met_beyond_the_shell():
    """p(d) far out against the basin fraction: the bounded disc is never met beyond its radius;
    the ring is re-entered (at 0.08 +- 0.02, below its fraction 0.2: most far points of a 2-D
    ray lie outside the ring). In d = 12 the 'ball' is a disc times R^10, unbounded, and is
    met far out too (docs/basin_shape.md): there the re-entered part decides."""
    landscape, tentacles = tentacles_of(2)
    ball, ring = landscape.index("ball"), landscape.index("ring")
    far, se = (tentacles[name].sel(minimum=[ball, ring]).values
               for name in ("far_return_probability", "far_return_probability_se"))
    assert far[0] == 0 and far[1] - 1.96 * se[1] > 0
    assert far[1] < float(tentacles["basin_fraction"].sel(minimum=ring))


@pytest.mark.parametrize("n_params", [2, 12])
def test_the_double_well_scores_as_compact(n_params):
    _, tentacles = tentacles_of(n_params, "double_well")
    for row in range(2):
        assert interval(tentacles, "leaving_fraction", row)[0] == 0
        assert interval(tentacles, "leaving_fraction", row)[2] < 0.15
        assert_no_reentry(tentacles, row)
        assert float(tentacles["far_reentry_probability"].sel(minimum=row)) == 0
        assert interval(tentacles, "median_thickness_ratio", row)[1] > 1  # thicker than it is far


def test_the_old_index_does_not_tell_them_apart_in_high_dimension():
    """Reported beside the new statistics: in d = 12 it gives the convex ball about 0.95, as
    high as the ring (1.0), where every new statistic separates them (above)."""
    landscape, tentacles = tentacles_of(12)
    old = tentacles["old_tentacle_fraction"].sel(minimum=[landscape.index("ball"), landscape.index("ring")]).values
    assert (old > 0.9).all()


def _small_ball_and_ring(n_bisection):
    """60 starts of the planted 2-D ball and ring, and rays from both minima: a sample too small
    for some per-minimum statistics."""
    landscape = ball_and_ring(2)
    starts = landscape.sample_starts(60, seed=3)
    label = landscape.basin_of(starts)
    distance = np.linalg.norm(starts - landscape.minima[label], axis=1)
    outcomes = functools.partial(known_outcomes, landscape)
    rows = np.array([0, 1])
    rays = probe_rays(landscape.minima[rows], lambda points, k: outcomes(points, rows[k]),
                      radii=np.geomspace(0.05, 4, 8), n_directions=8, n_bisection=n_bisection, seed=0,
                      minimum_ids=rows)
    return landscape, starts, label, distance, outcomes, rows, rays


def test_below_min_members_the_statistics_are_nan_with_a_reason():
    landscape, starts, label, distance, outcomes, rows, rays = _small_ball_and_ring(n_bisection=0)
    counts = np.bincount(label, minlength=4)[rows]
    min_members = int(counts.max())  # one minimum qualifies, the other not
    tentacles = measure_tentacles(rays, np.bincount(label, minlength=4) / 60, distance, label, starts,
                                  landscape.minima[label], outcomes, min_members=min_members, n_star_members=8,
                                  n_thickness_members=4, n_thickness_directions=4, n_bootstrap=50)
    few = counts < min_members
    assert few.any() and (~few).any()
    for name in ("reach", "reach_low", "leaving_fraction", "leaving_fraction_high", "median_thickness_ratio",
                 "far_return_probability", "far_return_probability_se"):
        assert np.isnan(tentacles[name].values[few]).all(), name
        assert np.isfinite(tentacles[name].values[~few]).all(), name
    assert f"fewer than min_members={min_members}" in str(tentacles["reason"].values[few][0])
    # members are sampled only from qualifying minima
    assert set(tentacles["minimum_of_member"].values) == set(rows[~few])
    assert int(tentacles["thickness_probed"].sum()) == 4


def test_far_return_probability_counts_each_ray_once_and_censors_undecided():
    outcome = np.array([[[1, 0, 1, 1], [1, 1, 2, 2], [1, 0, 0, 0]]])  # one minimum, three rays
    p, se, reentry, reentry_se, n = far_return_probability(outcome, np.arange(1.0, 5.0), 2.5)
    # far radii 3 and 4: ray 0 returns at both (re-entered), ray 1 undecided (left out), ray 2 left
    assert n[0] == 2 and p[0] == 0.5 and reentry[0] == 0.5
    assert se[0] == pytest.approx(np.std([1, 0], ddof=1) / np.sqrt(2))


def test_select_members_draws_without_replacement_within_each_minimum():
    labels = np.array([0, 1, 0, 0, 2, 1, 0, -1])
    chosen = select_members(labels, np.array([0, 1]), 3, seed=0)
    assert len(set(chosen)) == len(chosen) == 5
    assert (labels[chosen[:3]] == 0).all() and (labels[chosen[3:]] == 1).all()


def test_the_output_keeps_the_file_contract(tmp_path):
    """Dims from the vocabulary, every variable with long_name and units; written and read back."""
    from basins.io import add_provenance, read_dataset, write_dataset

    _, tentacles = tentacles_of(2)
    path = tmp_path / "tentacles.nc"
    write_dataset(add_provenance(tentacles, title="t", stage="measure_tentacles", stage_config={}), path)
    back = read_dataset(path)
    np.testing.assert_array_equal(back["reach"].values, tentacles["reach"].values)
    assert back.attrs["n_star_members"] == 32 and back.attrs["min_members"] == 10


def test_the_old_index_is_gated_by_min_members_too():
    landscape, starts, label, distance, outcomes, rows, rays = _small_ball_and_ring(n_bisection=1)
    tentacles = measure_tentacles(rays, np.bincount(label, minlength=4) / 60, distance, label, starts,
                                  landscape.minima[label], outcomes, min_members=1000, n_star_members=4,
                                  n_thickness_members=2, n_thickness_directions=4, n_bootstrap=100)
    assert np.isnan(tentacles["old_tentacle_fraction"].values).all()
    assert tentacles.sizes["member"] == 0


def test_rays_set_in_units_of_another_shell_are_refused():
    """A grid in shell units read beyond the shell of other members (a rays file of another run)
    would place the far statistics elsewhere than the grid was set for: refused."""
    landscape, starts, label, distance, outcomes, rows, rays = _small_ball_and_ring(n_bisection=1)
    shell = shell_distance(distance, label)
    measure = functools.partial(measure_tentacles, basin_fraction=np.bincount(label, minlength=4) / 60,
                                start_distance=distance, minimum_of_member=label, starts=starts,
                                minimum_images=landscape.minima[label], outcomes=outcomes, min_members=1000,
                                n_star_members=4, n_thickness_members=2, n_thickness_directions=4, n_bootstrap=20)
    tentacles = measure(rays.assign_attrs(radii_in_shells=1, shell_distance=shell))
    assert tentacles.attrs["ray_radii_in_shells"] == 1
    np.testing.assert_allclose(tentacles.attrs["ray_grid"], np.geomspace(0.05, 4, 8) / shell, rtol=1e-9)
    with pytest.raises(ValueError, match="rays and basins of different runs"):
        measure(rays.assign_attrs(radii_in_shells=1, shell_distance=shell * 1.01))
