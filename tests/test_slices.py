import numpy as np
import pytest

from basins.slices import boundary_fraction, plane_basis, slice_basins


def double_well_assign(starts):
    """Minimum 0 at x_0 = -1, minimum 1 at x_0 = +1; the plane x_0 = 0 is the boundary."""
    return np.where(starts[:, 0] > 0, 1, 0)


def test_the_plane_through_two_minima_splits_at_the_boundary():
    left, right = np.array([-1.0, 0.0, 0.0]), np.array([1.0, 0.0, 0.0])
    slices = slice_basins(left[None], [right], double_well_assign, extent=1.0, n_grid=9, seed=0)
    labels = slices["label"].values[0]
    scale = float(slices["scale"][0])
    u = slices["grid_u"].values * scale
    # Along axis 0 (towards the second minimum) the label flips where x_0 crosses 0, i.e. u = 1.
    np.testing.assert_array_equal(labels[:, 0], np.where(u > 1.0, 1, 0))
    assert float(slices["partner_u"][0]) == pytest.approx(2.0)
    assert 0 < float(slices["boundary_fraction"][0]) < 1


def test_boundary_fraction_of_a_half_plane_and_of_a_checkerboard():
    halves = np.repeat([[0] * 5 + [1] * 5], 10, axis=0)
    assert boundary_fraction(halves) == pytest.approx(0.2)
    checkerboard = np.indices((6, 6)).sum(axis=0) % 2
    assert boundary_fraction(checkerboard) == 1.0
    assert boundary_fraction(np.zeros((4, 4))) == 0.0


def test_plane_basis_is_orthonormal_and_points_at_the_partner():
    origin, toward = np.zeros(5), np.array([0.0, 3.0, 0.0, 0.0, 4.0])
    basis = plane_basis(origin, toward, seed=2)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(basis[0], toward / 5.0, atol=1e-12)


def test_bad_grids_are_rejected():
    with pytest.raises(ValueError, match="n_grid=1"):
        slice_basins(np.zeros((1, 2)), [None], double_well_assign, extent=1.0, n_grid=1, seed=0)
