import numpy as np
import pytest

from basins.basin_geometry import measure_tentacles
from basins.rays import probe_rays, select_minima_to_probe


def double_well_returns(starts, targets):
    """Gradient flow on V(x) = (x_0^2 - 1)^2 + |x_rest|^2: the sign of x_0 decides the basin.

    Minimum 0 sits at x_0 = -1, minimum 1 at x_0 = +1; the boundary is the plane x_0 = 0.
    """
    minimum_reached = np.where(starts[:, 0] > 0, 1, 0)
    return minimum_reached == targets


def test_exit_radii_of_a_double_well_are_the_distance_to_its_boundary():
    centres = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    rays = probe_rays(centres, double_well_returns, radii=np.geomspace(0.1, 50, 12), n_directions=64,
                      n_bisection=30, seed=3)
    directions = np.random.default_rng(3).standard_normal((2, 64, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    # Along direction u from x_0 = -1 the boundary x_0 = 0 is met at r = 1 / u_0 (if u_0 > 0).
    towards = directions[0, :, 0] > 0
    expected = np.where(towards, 1 / np.where(towards, directions[0, :, 0], 1), np.nan)
    finite = np.isfinite(expected) & (expected < 50)
    np.testing.assert_allclose(rays["exit_radius"].values[0][finite], expected[finite], rtol=1e-6)
    assert np.isnan(rays["exit_radius"].values[0][~towards]).all()
    # Every ray returns at a distance below 1 (the boundary is at least 1 away).
    assert (rays["return_probability"].sel(radius=slice(0, 0.99)) == 1).all()
    assert float(rays["minimal_exit_radius"][0]) >= 1.0
    p = rays["return_probability"].values
    assert ((p >= 0) & (p <= 1)).all()


def test_probing_is_reproducible_from_its_seed():
    centres = np.array([[-1.0, 0.5]])
    first = probe_rays(centres, double_well_returns, radii=[0.5, 1, 2, 4], n_directions=8, n_bisection=3, seed=1)
    second = probe_rays(centres, double_well_returns, radii=[0.5, 1, 2, 4], n_directions=8, n_bisection=3, seed=1)
    np.testing.assert_array_equal(first["exit_radius"].values, second["exit_radius"].values)


def test_selection_takes_largest_best_and_worst():
    chosen = select_minima_to_probe(np.array([0.5, 0.3, 0.1, 0.05]), np.array([0.2, 0.1, 0.4, 0.3]), n_largest=1)
    np.testing.assert_array_equal(chosen, [0, 1, 2])


@pytest.mark.parametrize("radii", [[1.0, 0.5], [0.0, 1.0], []])
def test_bad_radii_are_rejected(radii):
    with pytest.raises(ValueError, match="radii"):
        probe_rays(np.zeros((1, 2)), double_well_returns, radii=radii, n_directions=2, n_bisection=0, seed=0)


def test_a_compact_basin_has_no_tentacles_and_a_far_reaching_one_has():
    labels = np.r_[np.zeros(100, int), np.ones(100, int)]
    start_distance = np.r_[np.linspace(0.1, 0.9, 100), np.linspace(0.5, 5.0, 100)]
    exit_radius = np.array([np.full(16, 1.0), np.full(16, 1.0)])
    tentacles = measure_tentacles(start_distance, labels, exit_radius, np.array([0, 1]), n_bootstrap=50)
    assert float(tentacles["tentacle_fraction"][0]) == 0.0
    assert float(tentacles["tentacle_fraction"][1]) == np.mean(np.linspace(0.5, 5.0, 100) > 1.0)
    assert float(tentacles["distance_ratio"][1]) > 2 > float(tentacles["distance_ratio"][0])
