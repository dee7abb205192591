"""Stage ``slice_basins``: basins seen on 2-D planes through parameter space.

A plane through a minimum (two random orthonormal directions) and a plane through two minima
(the first direction points from one to the other) are covered by a grid of starting points;
each is labelled by the catalogued minimum the dynamics carries it to, as in the basin
pictures of Wiley, Strogatz and Girvan (2006). A cell is on a boundary when a neighbouring
cell (4-neighbourhood) has another label; the boundary fraction grows with how intertwined,
or riddled, the basins are at that resolution.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import xarray as xr

from basins.io import variable_attrs
from basins.labels import AT_SADDLE, LABEL_MEANINGS, UNDECIDED_LABEL

#: ``assign(starts (point, param)) -> labels (point,)``: run the dynamics from every start and
#: give the catalog index of the minimum reached, or a negative label (:mod:`basins.labels`).
Assign = Callable[[np.ndarray], np.ndarray]

PLANE_KINDS = ("random", "through_two_minima")


def plane_basis(origin: np.ndarray, toward: np.ndarray | None, *, seed: int) -> np.ndarray:
    """Orthonormal directions ``(2, param)``; the first points at ``toward`` when given."""
    rng = np.random.default_rng(seed)
    candidates = rng.standard_normal((2, origin.size))
    if toward is not None:
        candidates[0] = toward - origin
    basis, _ = np.linalg.qr(candidates.T)
    basis = basis.T
    if toward is not None and basis[0] @ (toward - origin) < 0:
        basis[0] = -basis[0]
    return basis


def boundary_fraction(labels: np.ndarray) -> float:
    """Fraction of grid cells with a 4-neighbour of another label."""
    boundary = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    boundary[1:, :] |= vertical
    boundary[:-1, :] |= vertical
    boundary[:, 1:] |= horizontal
    boundary[:, :-1] |= horizontal
    return float(boundary.mean())


def slice_basins(
    origins: np.ndarray,
    towards: list[np.ndarray | None],
    assign: Assign,
    *,
    extent: float,
    n_grid: int,
    seed: int,
) -> xr.Dataset:
    """Label a grid of starting points on each plane by the minimum they reach.

    Parameters
    ----------
    origins : ndarray, shape (plane, param)
        The minimum each plane passes through (its centre).
    towards : list of ndarray or None, one per plane
        A second minimum the plane also passes through (in the same symmetry frame as the
        origin), or None for a plane of two random directions.
    assign : callable
        Runs the dynamics from all starts at once and labels each by the minimum reached.
    extent : float
        Half-width of the square grid, in parameter units; a plane through two minima is
        widened so that the second minimum lies inside it.
    n_grid : int
        Grid points per side (``n_grid**2`` runs per plane).
    seed : int
        Seed of the random directions.

    Returns
    -------
    xarray.Dataset
        ``label(plane, grid_u, grid_v)``, ``boundary_fraction(plane)``, the plane's
        ``basis(plane, axis, param)``, and ``partner_u(plane)``, the coordinate of the second
        minimum along the first axis (nan for random planes).
    """
    if n_grid < 2 or extent <= 0:
        raise ValueError(f"n_grid={n_grid} must be >= 2 and extent={extent} > 0")
    n_planes, n_params = origins.shape
    coordinates = np.linspace(-1.0, 1.0, n_grid)
    bases, scales, partners = _plane_frames(origins, towards, extent=extent, seed=seed)
    grid_u, grid_v = np.meshgrid(coordinates, coordinates, indexing="ij")
    offsets = np.stack([grid_u, grid_v], axis=-1)[None] * scales[:, None, None, None]
    starts = origins[:, None, None, :] + np.einsum("pijk,pkn->pijn", offsets, bases)
    labels = np.empty((0, n_grid, n_grid), dtype=np.int64)  # no plane (an empty catalogue): no runs
    if n_planes:
        labels = assign(starts.reshape(-1, n_params)).reshape(n_planes, n_grid, n_grid)
    return xr.Dataset(
        {
            **_label_variables(labels),
            "basis": (("plane", "axis", "param"), bases, variable_attrs("orthonormal axes of the plane")),
            "scale": ("plane", scales, variable_attrs("half-width of the grid", "1")),
            "partner_u": ("plane", partners, variable_attrs("second minimum's coordinate along axis 0")),
        },
        coords={
            "plane": ("plane", np.arange(n_planes), variable_attrs("plane index")),
            "grid_u": ("grid_u", coordinates, variable_attrs("coordinate along axis 0 / scale")),
            "grid_v": ("grid_v", coordinates, variable_attrs("coordinate along axis 1 / scale")),
            "axis": ("axis", np.arange(2), variable_attrs("plane axis")),
            "param": ("param", np.arange(n_params), variable_attrs("flat parameter index")),
        },
    )


def _plane_frames(origins, towards, *, extent, seed):
    """Per plane: its basis, the grid's half-width, and the second minimum's distance (nan: none)."""
    n_planes, n_params = origins.shape
    bases, scales, partners = np.empty((n_planes, 2, n_params)), np.empty(n_planes), np.empty(n_planes)
    for plane, (origin, toward) in enumerate(zip(origins, towards)):
        bases[plane] = plane_basis(origin, toward, seed=seed + plane)
        partners[plane] = np.nan if toward is None else float(np.linalg.norm(toward - origin))
        scales[plane] = extent if toward is None else max(extent, 1.25 * partners[plane])
    return bases, scales, partners


def _label_variables(labels):
    return {
        "label": (
            ("plane", "grid_u", "grid_v"),
            labels.astype(np.int64),
            variable_attrs("catalog index of the minimum reached, or why none", flag_meanings=LABEL_MEANINGS),
        ),
        "boundary_fraction": (
            "plane",
            np.array([boundary_fraction(plane_labels) for plane_labels in labels]),
            variable_attrs("fraction of cells with a differently labelled 4-neighbour"),
        ),
        "undecided_fraction": (
            "plane",
            (labels == UNDECIDED_LABEL).mean(axis=(1, 2)),
            variable_attrs("fraction of cells whose run spent every budget (label -3)"),
        ),
        "saddle_fraction": (
            "plane",
            (labels == AT_SADDLE).mean(axis=(1, 2)),
            variable_attrs("fraction of cells whose run stopped at a saddle (label -2)"),
        ),
    }
