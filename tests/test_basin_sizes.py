"""Stages estimate_basin_sizes and estimate_ring_basin_sizes: one image's basin times the orbit size
is the counted fraction; a twisted state's basin on the torus is its counted fraction."""

import dataclasses
import math

import numpy as np
import pytest
import xarray as xr

from basins.basin_sizes import (
    BasinWalk, estimate_basin_sizes, estimate_ring_basin_sizes, select_minima_to_measure,
    starts_in_anchor_image, summary_lines,
)
from basins.basin_volume import PLATEAU_DRIFTING, PLATEAU_READINGS
from basins.labels import BUDGET, CONVERGED, LEFT, RETURNED
from basins.landscapes.architecture import Architecture, initial_parameters, initial_scales
from basins.landscapes.symmetry import _signed_permutations, group_order, image

ARCH = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2, activation="tanh")
WALK = BasinWalk(largest_coupling=100.0, n_couplings=17, n_chains=4, n_steps=600, n_burn=300, n_reference=64)


def _orbit(theta):
    orders, signs = _signed_permutations(ARCH.width)
    return image(np.broadcast_to(theta, (len(orders), len(theta))), ARCH, [orders], [signs])


def _nearest_image_dynamics(minimum):
    """Equivariant 'dynamics' whose one minimum attracts everything: each start ends on the image
    of ``minimum`` nearest to it. The images' basins are Voronoi cells that the group maps onto
    each other, so each holds 1 / orbit of the Gaussian initial measure, and the catalogue's
    basin (all images) everything."""
    images = _orbit(minimum)

    def run(theta):
        nearest = np.argmin(((theta[:, None, :] - images[None]) ** 2).sum(axis=-1), axis=1)
        return images[nearest], np.zeros(len(theta), dtype=np.int64), np.full(len(theta), CONVERGED)

    return run


def test_one_image_holds_one_orbit_th_of_a_basin_that_holds_everything():
    minimum = np.random.default_rng(0).standard_normal(ARCH.n_params)
    run = _nearest_image_dynamics(minimum)
    starts = initial_parameters(ARCH, np.arange(40), seed=1, init="gaussian")
    final, labels, _ = run(starts)

    result = estimate_basin_sizes(
        run, ARCH, initial_scales(ARCH, init="gaussian"), labels, starts, final, np.array([0]), np.array([False]),
        image_tol=1e-6, seed=2, walk=WALK,
    )

    assert int(result["orbit_size"][0]) == group_order(ARCH) == 8
    assert int(result["basin_samples"][0]) == len(starts) - 1  # every member moved into the anchor's image, bar the anchor
    assert float(result["log_count_fraction"][0]) == 0.0
    # ln mu(one image) = -ln 8 = -2.08; the fraction ln 1 = 0 lies in the interval.
    assert float(result["log_measure"][0]) == pytest.approx(-np.log(8), abs=0.5)
    assert float(result["log_basin_fraction_low"][0]) <= 0.0 <= float(result["log_basin_fraction_high"][0])
    assert abs(float(result["count_disagreement"][0])) < 3


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_every_member_of_a_minimum_is_a_draw_inside_the_anchor_image_s_basin(activation):
    # The Voronoi dynamics: a start's image basin is the cell of the image it is nearest to. Each
    # member's start, moved by the symmetry that carries its endpoint onto the anchor's, must lie
    # in the anchor's cell, where before only the members already there (about 1 / orbit) did.
    arch = dataclasses.replace(ARCH, width=3, activation=activation)
    minimum = np.random.default_rng(4).standard_normal(arch.n_params)
    orders, signs = _signed_permutations(arch.width)
    if activation == "relu":
        orders, signs = orders[::2 ** arch.width], np.ones((math.factorial(arch.width), arch.width))
    images = image(np.broadcast_to(minimum, (len(orders), len(minimum))), arch, [orders], [signs])
    starts = initial_parameters(arch, np.arange(60), seed=1, init="gaussian")
    nearest = lambda points: np.argmin(((points[:, None] - images[None]) ** 2).sum(-1), axis=1)  # noqa: E731
    ends = images[nearest(starts)]

    moved = starts_in_anchor_image(arch, starts, ends, ends[0], image_tol=1e-6)

    assert len(moved) == len(starts) > 4 * (nearest(starts) == nearest(starts[:1])[0]).sum()
    assert (nearest(moved) == nearest(starts[:1])[0]).all()
    np.testing.assert_allclose(np.sort(np.linalg.norm(moved, axis=1)), np.sort(np.linalg.norm(starts, axis=1)))


def test_runs_out_of_budget_are_undecided_and_other_images_are_left():
    minimum = np.random.default_rng(0).standard_normal(ARCH.n_params)
    converged = _nearest_image_dynamics(minimum)

    def run(theta):  # every third run spends its budget
        final, labels, status = converged(theta)
        status[::3] = BUDGET
        return final, labels, status

    starts = initial_parameters(ARCH, np.arange(40), seed=1, init="gaussian")
    final, labels, _ = converged(starts)
    result = estimate_basin_sizes(
        run, ARCH, initial_scales(ARCH, init="gaussian"), labels, starts, final, np.array([0]), np.array([False]),
        image_tol=1e-6, seed=2, walk=dataclasses.replace(WALK, n_steps=40, n_burn=20),
    )
    assert 0.2 < float(result["undecided_fraction"][0]) < 0.45


def test_starts_the_scales_do_not_describe_are_refused():
    minimum = np.random.default_rng(0).standard_normal(ARCH.n_params)
    run = _nearest_image_dynamics(minimum)
    starts = initial_parameters(ARCH, np.arange(10), seed=1, init="torch_default")  # non-zero biases
    final, labels, _ = run(starts)
    with pytest.raises(ValueError, match="scales do not describe"):
        estimate_basin_sizes(run, ARCH, initial_scales(ARCH, init="gaussian"), labels, starts, final, np.array([0]),
                             np.array([False]), image_tol=1e-6, seed=2, walk=WALK)


def test_the_small_minima_are_fitting_ones_below_min_members_drawn_not_picked():
    n_members = np.array([50, 30, 3, 2, 1, 1, 1])
    train_error = np.array([0.0, 0.1, 0.0, 0.2, 0.0, 0.0, 0.0])
    chosen, small = select_minima_to_measure(
        n_members, train_error, n_largest=2, n_small=2, min_members=5, fit_threshold=0.0, seed=3
    )
    assert chosen[:2].tolist() == [0, 1] and not small[:2].any()
    assert set(chosen[2:]) <= {2, 4, 5, 6} and small[2:].all() and len(chosen) == 4
    again, _ = select_minima_to_measure(
        n_members, train_error, n_largest=2, n_small=2, min_members=5, fit_threshold=0.0, seed=3
    )
    assert np.array_equal(chosen, again)


def test_an_estimate_above_the_whole_space_is_dropped_with_its_reason_and_the_others_kept():
    import xarray as xr

    from basins.basin_sizes import _check_invariants

    names = ("log_measure", "log_measure_low", "log_measure_high", "log_basin_fraction", "log_basin_fraction_low",
             "log_basin_fraction_high", "count_disagreement")
    result = xr.Dataset({name: ("minimum", np.array([-1.0, 0.5])) for name in names})
    result["reason"] = ("minimum", np.array(["", ""], dtype=object))

    checked = _check_invariants(result)

    assert "did not equilibrate" in checked["reason"].values[1] and checked["reason"].values[0] == ""
    assert all(np.isnan(checked[name].values[1]) and checked[name].values[0] == -1.0 for name in names)


def _torus_box_outcomes(half_width):
    """Ring-shaped 'dynamics' with a known basin: a point returns to twisted state 0 when its first
    two phases lie within ``half_width`` of 0, and leaves otherwise; its measure under the uniform
    phases is (half_width / pi)^2."""

    def outcomes(points, targets):
        inside = (np.abs(points[:, :2]) < half_width).all(axis=1)
        return np.where(inside & (targets == 0), RETURNED, LEFT).astype(np.int8)

    return outcomes


def test_a_ring_state_s_basin_is_measured_on_the_torus_against_its_count():
    outcomes = _torus_box_outcomes(np.pi / 3)
    truth = 2 * np.log(1 / 3)  # -2.20
    estimates, covered = [], 0
    for seed in range(8):  # eight catalogues and walks: (estimate - truth) spreads by ~0.35
        starts = np.random.default_rng(seed).uniform(-np.pi, np.pi, (4000, 6))
        labels = np.where(outcomes(starts, np.zeros(len(starts), dtype=np.int64)) == RETURNED, 0, 1)
        result = estimate_ring_basin_sizes(outcomes, labels, starts, np.array([0]), seed=seed, walk=WALK)
        assert int(result["orbit_size"][0]) == 1 and not result["is_small"].values.any()
        assert int(result["basin_samples"][0]) >= WALK.max_basin_samples - 1  # among members' starts (the anchor's may be one)
        assert float(result["log_count_fraction"][0]) == pytest.approx(truth, abs=0.2)  # 4 standard errors
        estimates.append(float(result["log_basin_fraction"][0]))
        covered += float(result["log_basin_fraction_low"][0]) <= truth <= float(result["log_basin_fraction_high"][0])
        assert abs(float(result["count_disagreement"][0])) < 3
    assert np.mean(estimates) == pytest.approx(truth, abs=0.3)  # 2.4 standard errors of the mean
    assert covered >= 6
    estimated, plateau, by_basin, exchange = summary_lines(result)  # the stage's log lines
    assert "counted: [" in estimated and estimated.endswith("check: {} of 1".format(int(result["draws_check_failed"][0])))
    assert plateau.startswith(f"the walks' plateau score ({result['plateau_method'].item()})")
    assert plateau.endswith(PLATEAU_READINGS[int(result["plateau_check_failed"])])
    # One basin: held to the stage's own level.
    assert float(result["plateau_basin_level"]) == pytest.approx(1.96, abs=0.01)
    drifting = bool((result["plateau_basin_failed"] == PLATEAU_DRIFTING).any())
    assert by_basin.startswith("basins whose own score passes the per-basin level 1.96: ")
    assert by_basin.endswith("raise n_steps" if drifting else ": none")
    least = np.nanargmin(result["swap_acceptance"].values[0])
    assert exchange.startswith("exchange between springs: least share of offers taken {:.3f}, k = {:.3g} to".format(
        result["swap_acceptance"].values[0, least], result["coupling"].values[least]))
    # Files written before the per-basin level and the predicted exchange still read.
    assert len(summary_lines(result.drop_vars(["plateau_basin_failed", "plateau_basin_level",
                                               "predicted_swap_acceptance"]))) == 2


def test_the_walk_spaces_its_springs_as_asked_and_refuses_an_unknown_spacing():
    from basins.basin_volume import UniformTorus, coupling_schedule, equal_length_schedule

    torus, centres = UniformTorus(6), np.zeros((2, 6))
    assert np.array_equal(WALK.couplings(torus, centres), coupling_schedule(100.0, 17))
    even = dataclasses.replace(WALK, spacing="thermodynamic_length")
    assert np.array_equal(even.couplings(torus, centres), equal_length_schedule(torus, centres, 100.0, 17))
    outcomes = _torus_box_outcomes(np.pi / 3)
    starts = np.random.default_rng(0).uniform(-np.pi, np.pi, (400, 6))
    labels = np.where(outcomes(starts, np.zeros(len(starts), dtype=np.int64)) == RETURNED, 0, 1)
    result = estimate_ring_basin_sizes(outcomes, labels, starts, np.array([0]), seed=0,
                                       walk=dataclasses.replace(even, n_steps=40, n_burn=20, half_length_walk=False))
    assert np.array_equal(result["coupling"].values, even.couplings(torus, centres))
    with pytest.raises(ValueError, match="spacing='geometric': give one of log1p, thermodynamic_length"):
        dataclasses.replace(WALK, spacing="geometric")


def test_a_ring_state_no_member_reached_is_refused():
    outcomes = _torus_box_outcomes(np.pi / 3)
    starts = np.random.default_rng(1).uniform(-np.pi, np.pi, (50, 6))
    with pytest.raises(ValueError, match="no member reached catalogue minima \\[1\\]"):
        estimate_ring_basin_sizes(outcomes, np.zeros(50, dtype=np.int64), starts, np.array([0, 1]), seed=2, walk=WALK)


def test_the_log_names_a_drifting_state_by_its_winding_number_and_score():
    """The n = 40 ring's stage (session 49): pooled +0.79 within the level, q = 4 alone beyond 2.39."""
    stage = xr.Dataset(
        {"log_basin_fraction": ("minimum", [-0.91, -2.89, -6.82]), "log_count_fraction": ("minimum", [-1.05, -2.6, -7.62]),
         "draws_check_failed": ("minimum", [0, 0, 0]), "winding_number": ("minimum", [0, 2, 4]),
         "half_walk_score": ("minimum", [-0.36, -1.25, 2.97]), "half_drift_score": ("minimum", [0.1, 0.2, 0.3]),
         "plateau_basin_failed": ("minimum", [0, 0, 1]), "plateau_basin_level": ((), 2.39),
         "plateau_method": ((), "half-length walk"), "plateau_score": ((), 0.79), "plateau_basins": ((), 3),
         "plateau_check_failed": ((), 0)},
        coords={"minimum": [0, 3, 8]},
    )
    pooled, by_basin = summary_lines(stage)[1:]
    assert pooled.endswith("no drift beyond the level")
    assert by_basin == ("basins whose own score passes the per-basin level 2.39: q = 4 (+2.97): their estimates move "
                        "with the walks' length, raise n_steps")
    networks = summary_lines(stage.drop_vars("winding_number").assign(plateau_method=((), "halves")))[2]
    assert networks.startswith("basins whose own score passes the per-basin level 2.39: minimum 8 (+0.30)")
