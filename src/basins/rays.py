"""Stage ``probe_rays``: how far a basin extends from its minimum, direction by direction.

From a minimum, random directions are drawn and starting points placed at a grid of distances
along each ray; the dynamics is run from each and the return probability p(d) is the fraction
of rays whose point at distance d comes back (Menck et al. 2013's basin stability as a
function of shock size). Along each ray the first exit radius is located on the grid and
refined by bisection; its minimum over directions is the minimal critical shock (Halekotte
and Feudel 2020).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import xarray as xr

from basins.io import variable_attrs

#: ``returns(starts (point, param), targets (point,)) -> bool (point,)``: run the dynamics from
#: each start and say whether it reached minimum ``targets[k]``.
Returns = Callable[[np.ndarray, np.ndarray], np.ndarray]


def select_minima_to_probe(basin_fraction: np.ndarray, test_error: np.ndarray, *, n_largest: int) -> np.ndarray:
    """Indices of the ``n_largest`` basins and of the best and worst minima by test error."""
    if len(basin_fraction) == 0:
        return np.zeros(0, dtype=np.int64)
    largest = np.argsort(-basin_fraction, kind="stable")[:n_largest]
    extremes = [np.nanargmin(test_error), np.nanargmax(test_error)] if np.isfinite(test_error).any() else []
    return np.unique(np.r_[largest, extremes].astype(np.int64))


def random_directions(n_minima: int, n_directions: int, n_params: int, *, seed: int) -> np.ndarray:
    """Isotropic unit vectors ``(minimum, direction, param)``."""
    directions = np.random.default_rng(seed).standard_normal((n_minima, n_directions, n_params))
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def probe_rays(
    centres: np.ndarray,
    returns: Returns,
    *,
    radii: np.ndarray,
    n_directions: int,
    n_bisection: int,
    seed: int,
    minimum_ids: np.ndarray | None = None,
) -> xr.Dataset:
    """Return probabilities and first exit radii along random rays from each minimum.

    Parameters
    ----------
    centres : ndarray, shape (minimum, param)
        The minima (in the frame the dynamics runs in).
    returns : callable
        ``returns(starts, targets)``: runs the dynamics from every start, all at once, and
        says which came back to minimum ``targets[k]``.
    radii : ndarray, shape (radius,)
        Increasing distances along each ray, in parameter units.
    n_directions : int
        Rays per minimum; the standard error of p(d) is sqrt(p (1 - p) / n_directions).
    n_bisection : int
        Bisection rounds refining each ray's first exit between the grid radii that bracket
        it; each halves the bracket and costs one run of the dynamics for all rays.
    seed : int
        Seed of the directions.
    minimum_ids : ndarray, optional
        Catalog indices of the centres, for the ``minimum`` coordinate.

    Returns
    -------
    xarray.Dataset
        ``returned(minimum, direction, radius)`` (1 came back, 0 did not),
        ``return_probability(minimum, radius)`` with ``return_probability_se``,
        ``exit_radius(minimum, direction)`` (nan where the ray never left within the grid:
        censored at the largest radius), and per minimum the ``minimal_exit_radius`` (the
        minimal critical shock), ``median_exit_radius`` and ``maximal_exit_radius``.
    """
    radii = np.asarray(radii, dtype=np.float64)
    if radii.ndim != 1 or len(radii) == 0 or (radii <= 0).any() or (np.diff(radii) <= 0).any():
        raise ValueError(f"radii={radii}: give positive, strictly increasing distances")
    if n_directions <= 0 or n_bisection < 0:
        raise ValueError(f"n_directions={n_directions} must be > 0 and n_bisection={n_bisection} >= 0")
    n_minima, n_params = centres.shape
    directions = random_directions(n_minima, n_directions, n_params, seed=seed)
    target = np.broadcast_to(np.arange(n_minima)[:, None, None], (n_minima, n_directions, len(radii)))
    starts = centres[:, None, None, :] + radii[None, None, :, None] * directions[:, :, None, :]
    returned = returns(starts.reshape(-1, n_params), target.reshape(-1)).reshape(target.shape)
    # Bracket each ray's first exit by the grid: [last radius before it, first radius leaving].
    left = ~returned
    has_exit = left.any(axis=2)
    first_exit = np.where(has_exit, left.argmax(axis=2), len(radii) - 1)
    high = radii[first_exit]
    low = np.where(first_exit > 0, radii[np.maximum(first_exit - 1, 0)], 0.0)
    rays = np.argwhere(has_exit)
    for _ in range(n_bisection):
        if not len(rays):
            break
        m, d = rays[:, 0], rays[:, 1]
        middle = 0.5 * (low[m, d] + high[m, d])
        came_back = returns(centres[m] + middle[:, None] * directions[m, d], m)
        low[m, d] = np.where(came_back, middle, low[m, d])
        high[m, d] = np.where(came_back, high[m, d], middle)
    exit_radius = np.where(has_exit, high, np.nan)
    ids = np.arange(n_minima) if minimum_ids is None else np.asarray(minimum_ids)
    return _as_dataset(returned, exit_radius, radii, n_directions, ids)


def _as_dataset(returned, exit_radius, radii, n_directions, minimum_ids):
    probability = returned.mean(axis=1)
    summaries = {
        "minimal_exit_radius": (np.nanmin, "smallest exit radius (minimal critical shock)"),
        "median_exit_radius": (np.nanmedian, "median exit radius"),
        "maximal_exit_radius": (np.nanmax, "largest exit radius"),
    }
    per_minimum = {
        name: (
            "minimum",
            np.array([reduce(row) if np.isfinite(row).any() else np.nan for row in exit_radius]),
            variable_attrs(long_name, "1", note="over rays that left within the grid"),
        )
        for name, (reduce, long_name) in summaries.items()
    }
    return xr.Dataset(
        {
            "returned": (
                ("minimum", "direction", "radius"),
                returned.astype(np.int8),
                variable_attrs("came back to the minimum", flag_values="0 1", flag_meanings="left returned"),
            ),
            "return_probability": (
                ("minimum", "radius"),
                probability,
                variable_attrs("fraction of rays whose point at this distance returns"),
            ),
            "return_probability_se": (
                ("minimum", "radius"),
                np.sqrt(probability * (1 - probability) / n_directions),
                variable_attrs("standard error of return_probability"),
            ),
            "exit_radius": (
                ("minimum", "direction"),
                exit_radius,
                variable_attrs("first distance along the ray that does not return (nan: never left)"),
            ),
            "censored_fraction": (
                "minimum",
                np.isnan(exit_radius).mean(axis=1),
                variable_attrs("fraction of rays that returned at every grid radius"),
            ),
            **per_minimum,
        },
        coords={
            "minimum": ("minimum", minimum_ids, variable_attrs("probed minimum (catalog index)")),
            "direction": ("direction", np.arange(n_directions), variable_attrs("ray index")),
            "radius": ("radius", radii, variable_attrs("distance from the minimum along the ray")),
        },
    )
