import numpy as np
import pytest
import torch

from basins.engine.dynamics import energy_and_gradient
from basins.engine.paths import (
    band_forces,
    band_maxima,
    count_band_maxima,
    interpolate_bands,
    nudged_elastic_band,
    refine_transition_states,
)


def relaxed_bands(muller_brown, starts, ends):
    mb = muller_brown
    return nudged_elastic_band(
        mb, mb.minima[starts], mb.minima[ends], n_images=12, spring=100.0, lr=1e-3, max_steps=20_000, force_tol=1e-3
    )


def test_climbing_image_bands_find_the_muller_brown_saddles(muller_brown):
    mb = muller_brown
    band = relaxed_bands(mb, [0, 2], [2, 1])
    assert (band["status"] == 0).all()
    assert (count_band_maxima(band["energies"]) == 1).all()
    highest = band["bands"][np.arange(2), band["energies"][:, 1:-1].argmax(1) + 1]
    np.testing.assert_allclose(highest, mb.saddles, atol=2e-3)  # the climbing image sits on it
    saddle = refine_transition_states(mb, highest, grad_tol=1e-9)
    assert saddle["converged"].all()
    np.testing.assert_array_equal(saddle["index"], [1, 1])
    np.testing.assert_allclose(saddle["theta"], mb.saddles, atol=1e-7)
    np.testing.assert_allclose(saddle["energy"], mb.saddle_energy, atol=1e-6)
    # Barriers from both sides: 106.03 and 40.10 for the first saddle, 35.92 and 8.52 for the second.
    np.testing.assert_allclose(saddle["energy"][0] - mb.minimum_energy[[0, 2]], [106.0347, 40.1030], atol=1e-3)
    np.testing.assert_allclose(saddle["energy"][1] - mb.minimum_energy[[1, 2]], [35.9178, 8.5189], atol=1e-3)


def test_band_through_an_intermediate_minimum_shows_two_maxima_and_climbs_the_higher(muller_brown):
    band = relaxed_bands(muller_brown, [0], [1])
    assert count_band_maxima(band["energies"])[0] == 2
    assert band["energies"][0].max() == pytest.approx(muller_brown.saddle_energy[0], abs=1e-2)


def test_eigenvector_following_converges_to_the_saddle_from_afar():
    def double_well(points):  # x^2 - y^2 + y^4 / 4: minima at y = +-sqrt(2), the saddle at 0
        x, y = points[:, 0], points[:, 1]
        return x**2 - y**2 + 0.25 * y**4

    start = np.array([[0.7, -0.4], [-0.3, 0.9]])
    saddle = refine_transition_states(double_well, start, grad_tol=1e-10, trust_radius=0.2)
    assert saddle["converged"].all()
    np.testing.assert_allclose(saddle["theta"], 0.0, atol=1e-9)
    np.testing.assert_array_equal(saddle["index"], [1, 1])
    np.testing.assert_allclose(np.abs(saddle["mode"]), [[0, 1], [0, 1]], atol=1e-9)
    np.testing.assert_allclose(saddle["lowest_eigenvalue"], [-2, -2], atol=1e-9)


def test_band_forces_leave_the_end_images_fixed_and_invert_the_climber_along_the_path():
    def tilted(points):  # a ridge at x = 0.15 between the two ends
        return 1 - points[:, 0] ** 2 + 3 * points[:, 1] ** 2 + 0.3 * points[:, 0]

    bands = torch.as_tensor(interpolate_bands(np.array([[-1.0, 0.3]]), np.array([[1.0, -0.2]]), 5))
    force, energies = band_forces(tilted, bands, spring=2.0)
    assert torch.equal(force[:, [0, -1]], torch.zeros(1, 2, 2, dtype=torch.float64))
    values, grad = energy_and_gradient(tilted, bands[0])
    torch.testing.assert_close(energies[0], values)
    climber = int(energies[0, 1:-1].argmax()) + 1
    # Straight, evenly spaced band: the tangent is the chord, the springs balance.
    tangent = (bands[0, -1] - bands[0, 0]) / (bands[0, -1] - bands[0, 0]).norm()
    expected = -grad[climber] + 2 * (grad[climber] @ tangent) * tangent
    torch.testing.assert_close(force[0, climber], expected)
    for image in set(range(1, 6)) - {climber}:
        perpendicular = -grad[image] + (grad[image] @ tangent) * tangent
        torch.testing.assert_close(force[0, image], perpendicular)


def double_well(points):
    """(x^2 - 1)^2 + y^2: minima at (+-1, 0), a saddle at the origin, 1 above them."""
    return (points[:, 0] ** 2 - 1) ** 2 + points[:, 1] ** 2


def test_bands_fire_leaves_at_the_budget_are_relaxed_again_by_gradient_steps():
    ends = dict(start=np.array([[-1.0, 0.0], [-1.0, 0.0]]), end=np.array([[1.0, 0.0], [0.9, 0.3]]))
    options = dict(n_images=8, spring=1.0, lr=0.05, max_steps=800, force_tol=1e-4)
    # FIRE converges here: the fallback changes nothing.
    fire, both = (nudged_elastic_band(double_well, **ends, dynamics=d, **options) for d in ("fire", "fire_then_gd"))
    assert (fire["status"] == 0).all() and not both["fell_back"].any()
    np.testing.assert_array_equal(both["bands"], fire["bands"])
    # FIRE held to steps of 1e-9 leaves both bands at the budget; gradient steps then relax them
    # from their straight lines, to the bands gradient steps alone give, over the saddle.
    held = dict(options, max_move=1e-9)
    stuck, gd, rescued = (
        nudged_elastic_band(double_well, **ends, dynamics=d, **held) for d in ("fire", "gd", "fire_then_gd")
    )
    assert (stuck["status"] == 1).all() and (gd["status"] == 0).all()
    assert rescued["fell_back"].all() and (rescued["status"] == 0).all()
    np.testing.assert_array_equal(rescued["bands"], gd["bands"])
    np.testing.assert_array_equal(rescued["steps"], stuck["steps"] + gd["steps"])
    np.testing.assert_allclose(rescued["energies"].max(1), 1.0, atol=1e-4)


def test_bad_band_options_are_refused(muller_brown):
    with pytest.raises(ValueError, match="dynamics"):
        nudged_elastic_band(muller_brown, muller_brown.minima[:1], muller_brown.minima[1:2], dynamics="adam")
    with pytest.raises(ValueError, match="spring"):
        nudged_elastic_band(muller_brown, muller_brown.minima[:1], muller_brown.minima[1:2], spring=0.0)
    with pytest.raises(ValueError, match="n_images"):
        interpolate_bands(muller_brown.minima[:1], muller_brown.minima[1:2], 0)


def test_no_image_climbs_on_a_band_without_a_barrier():
    def slope(points):  # rises monotonically from the first end to the second
        return points[:, 0] + 0.5 * points[:, 1] ** 2

    bands = torch.as_tensor(interpolate_bands(np.array([[0.0, 0.0]]), np.array([[1.0, 0.0]]), 4))
    climbing, _ = band_forces(slope, bands, spring=1.0, climbing=True)
    plain, _ = band_forces(slope, bands, spring=1.0, climbing=False)
    torch.testing.assert_close(climbing, plain)


def test_band_maxima_are_the_interior_peaks_of_each_profile():
    energies = np.array([
        [0.0, 1.0, 0.5, 2.0, 1.0],  # two peaks: an intermediate minimum between them
        [0.0, 0.5, 1.0, 1.5, 2.0],  # rises to the end: no barrier
        [1.0, 2.0, 2.0, 1.0, 0.0],  # a flat top counts once, at its first image
    ])
    np.testing.assert_array_equal(band_maxima(energies), [
        [False, True, False, True, False],
        [False, False, False, False, False],
        [False, True, False, False, False],
    ])
    np.testing.assert_array_equal(count_band_maxima(energies), [2, 0, 1])
