"""Stage ``analyze_basins``: how large each basin is and how far it reaches.

Basin size is the fraction of initial conditions, drawn from the training initialization, that
the dynamics carries to a minimum (the Monte Carlo basin stability of Menck et al. 2013). Its
reach is measured by how far members travelled from their starting point to the minimum.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from basins.io import variable_attrs
from basins.labels import AT_SADDLE, LABEL_MEANINGS, UNDECIDED_LABEL
from basins.rays import kaplan_meier_median
from basins.stats import spearman_with_error, wilson_interval


def analyze_basins(
    minimum_of_member: np.ndarray,
    initial_theta: np.ndarray,
    final_theta: np.ndarray,
    minimum_train_error: np.ndarray | None = None,
    minimum_test_error: np.ndarray | None = None,
    *,
    n_minima: int | None = None,
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    end_offset: np.ndarray | None = None,
    confidence_z: float = 1.96,
) -> xr.Dataset:
    """Basin fractions with uncertainties, and member travel distances.

    Parameters
    ----------
    minimum_of_member : ndarray, shape (member,)
        Minimum reached by each member; negative where none: -1 diverged, -2 stopped at a
        saddle, -3 undecided (:mod:`basins.labels`).
    initial_theta, final_theta : ndarray, shape (member, param)
        Starting and end points of every member.
    minimum_train_error, minimum_test_error : ndarray, shape (minimum,), optional
        Errors of each catalogued minimum ("good" minima have low test error); landscapes
        without data (oscillator rings) have none, and give ``n_minima`` instead.
    distance : callable, optional
        ``distance(starts, ends) -> (member,)``, the symmetry-aware distance from each start to
        the minimum its end point lies on (networks: :func:`basins.landscapes.symmetry.nearest_image_distance`;
        rings: :func:`basins.oscillators.torus_distance`); without it ``start_distance`` equals
        ``travel_distance``. A nearest image is never farther than the image reached: a
        ``start_distance`` above ``travel_distance + end_offset`` (beyond round-off) is refused.
    end_offset : ndarray, shape (member,), optional
        Where ``distance`` measures to an exact attractor rather than to the end point's images
        (rings: the twisted-state circle), each end point's distance from that attractor; the
        triangle inequality then bounds ``start_distance`` by ``travel_distance + end_offset``.
    confidence_z : float
        Normal quantile of the Wilson intervals (1.96 for 95 %).

    Returns
    -------
    xarray.Dataset
        ``basin_fraction(minimum)`` with ``basin_fraction_se`` = sqrt(p (1 - p) / N) and the
        Wilson interval, whose upper end counts in every member that did not settle (label -2
        or -3: it may belong to any basin); ``unassigned_fraction``; ``travel_distance(member)``, the Euclidean
        distance from each member's start to its end point (the image of the minimum it
        reached); ``start_distance(member)``, to the nearest symmetric image of that minimum;
        per minimum the median and 90th percentile of ``start_distance``; the rank
        correlation of basin fraction with test error.
    """
    n_members = len(minimum_of_member)
    if n_members == 0:
        raise ValueError("no members: the ensemble is empty")
    has_errors = minimum_test_error is not None
    if has_errors:
        n_minima = len(minimum_test_error)
    elif n_minima is None:
        raise ValueError("give the minima's test errors or their number n_minima")
    assigned = minimum_of_member >= 0
    counts = np.bincount(minimum_of_member[assigned], minlength=n_minima)
    fraction = counts / n_members
    low, high = _fraction_interval(minimum_of_member, counts, n_members, confidence_z)
    travel, start_distance = _member_distances(initial_theta, final_theta, assigned, distance, end_offset)
    median, p90 = _start_distance_quantiles(minimum_of_member, start_distance, counts, n_minima)
    basins = xr.Dataset(
        {
            **_fraction_variables(fraction, low, high, n_members),
            "start_distance_median": _per_minimum(median, "median start-to-minimum distance"),
            "start_distance_p90": _per_minimum(p90, "90th percentile start-to-minimum distance"),
            **_member_variables(travel, start_distance, minimum_of_member),
            "unassigned_fraction": _unassigned_fraction(assigned, n_members),
        },
        coords={
            "minimum": ("minimum", np.arange(n_minima), variable_attrs("minimum index, by basin size")),
            "member": ("member", np.arange(n_members), variable_attrs("member index")),
        },
        attrs={"n_members_total": n_members, "confidence_z": confidence_z},
    )
    if has_errors:
        _add_errors(basins, fraction, minimum_train_error, minimum_test_error)
    return basins


def shell_distance(start_distance: np.ndarray, minimum_of_member: np.ndarray) -> float:
    """The initialization shell: the median distance from a member's start to (the nearest
    image of) its minimum, over every member assigned to one (nan where none is). Where the
    initial conditions are a high-dimensional Gaussian, the starts lie on a thin shell this far
    from the minima; ``measure_tentacles`` reads p(d) "far out" beyond it, and a ray grid may be
    set in its units (``rays.radii_in_shells``), so one grid means the same at every size."""
    start_distance, minimum_of_member = np.asarray(start_distance, dtype=np.float64), np.asarray(minimum_of_member)
    if start_distance.shape != minimum_of_member.shape:
        raise ValueError(f"start_distance {start_distance.shape} and minimum_of_member {minimum_of_member.shape} "
                         "must be one value per member")
    assigned = minimum_of_member >= 0
    return float(np.median(start_distance[assigned])) if assigned.any() else float("nan")


def _per_minimum(values, *attrs):
    return "minimum", values, variable_attrs(*attrs)


def _fraction_interval(minimum_of_member, counts, n_members, confidence_z):
    """Wilson interval of each basin fraction; its upper end counts every unsettled member in."""
    # Members whose run did not settle (budget spent, stuck at a saddle) may belong to any
    # basin: the upper bound counts them in, so no budget decides a basin's size.
    unsettled = int(np.isin(minimum_of_member, (UNDECIDED_LABEL, AT_SADDLE)).sum())
    low = wilson_interval(counts, n_members, confidence_z)[0]
    high = wilson_interval(counts + unsettled, n_members, confidence_z)[1]
    return low, high


def _start_distance_quantiles(minimum_of_member, start_distance, counts, n_minima):
    """Median and 90th percentile of the start distances of each minimum's members (nan: none)."""
    median, p90 = np.full(n_minima, np.nan), np.full(n_minima, np.nan)
    for minimum in np.flatnonzero(counts):
        distances = start_distance[minimum_of_member == minimum]
        median[minimum], p90[minimum] = np.median(distances), np.quantile(distances, 0.9)
    return median, p90


def _fraction_variables(fraction, low, high, n_members):
    return {
        "basin_fraction": _per_minimum(fraction, "fraction of initial conditions reaching it"),
        "basin_fraction_se": _per_minimum(
            np.sqrt(fraction * (1 - fraction) / n_members), "standard error of basin_fraction"
        ),
        "basin_fraction_low": _per_minimum(low, "Wilson interval lower bound"),
        "basin_fraction_high": _per_minimum(
            high, "Wilson interval upper bound, counting every unsettled member (budget, saddle) in"
        ),
    }


def _member_variables(travel, start_distance, minimum_of_member):
    return {
        "travel_distance": ("member", travel, variable_attrs("distance from start to end point (nan: unassigned)")),
        "start_distance": (
            "member",
            start_distance,
            variable_attrs("distance from start to the nearest symmetric image of its minimum"),
        ),
        "minimum_of_member": (
            "member", minimum_of_member, variable_attrs("minimum reached, or why none", flag_meanings=LABEL_MEANINGS)
        ),
    }


def _unassigned_fraction(assigned, n_members):
    unassigned = 1 - assigned.mean()
    return (
        (),
        unassigned,
        variable_attrs(
            "fraction of members with no minimum",
            standard_error=float(np.sqrt(unassigned * (1 - unassigned) / n_members)),
        ),
    )


def _add_errors(basins, fraction, minimum_train_error, minimum_test_error):
    """The minima's errors and the rank correlation of basin fraction with test error (in place)."""
    test_error = np.asarray(minimum_test_error, dtype=float)
    rho, rho_se = spearman_with_error(fraction, test_error)
    basins["train_error"] = _per_minimum(minimum_train_error, "training error of the minimum")
    basins["test_error"] = _per_minimum(test_error, "test error of the minimum")
    basins["rank_correlation_fraction_test_error"] = (
        (),
        rho,
        variable_attrs("Spearman correlation of basin fraction and test error", standard_error=rho_se),
    )


def _member_distances(initial_theta, final_theta, assigned, distance, end_offset):
    """Each member's travel distance (start to end point) and start distance (to the nearest
    image of its minimum), nan where no minimum was reached. A start distance above the travel
    distance (plus ``end_offset``, beyond round-off) means the distance function missed the
    nearest image: refused, never written."""
    travel = np.linalg.norm(final_theta - initial_theta, axis=1)
    travel[~assigned] = np.nan
    start_distance = travel.copy() if distance is None else distance(initial_theta, final_theta)
    start_distance[~assigned] = np.nan
    slack = 0.0 if end_offset is None else np.asarray(end_offset, dtype=float)
    farther = np.flatnonzero(start_distance > (travel + slack) * (1 + 1e-10) + 1e-12)
    if len(farther):
        raise ValueError(
            f"start_distance exceeds travel_distance for {len(farther)} members (first: member "
            f"{farther[0]}, {start_distance[farther[0]]:.6g} > {travel[farther[0]]:.6g}): the distance "
            "function does not return the nearest image; refusing to write it"
        )
    return travel, start_distance

# Over 80 lines only by its signature and numpydoc docstring (47 lines); the body is 44.
def tentacle_index(  # long by its docstring: why the index fails, kept for comparison
    start_distance: np.ndarray,
    minimum_of_member: np.ndarray,
    exit_radius: np.ndarray,
    exit_observed: np.ndarray,
    probed_minima: np.ndarray,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> xr.Dataset:
    """The old tentacle index, kept as a comparison shown not to work (``docs/basin_shape.md``).

    Do a minimum's members start beyond where rays leave? On a high-dimensional
    initialization shell every start lies far beyond any head, so the fraction is near 1 for
    a convex basin as well (the planted ball in d = 12: 0.95; d = 24: 1.0, like the ring).
    The stage ``measure_tentacles`` (:func:`basins.tentacles.measure_tentacles`) reports it
    beside the statistics that replace it (:mod:`basins.basin_shape`).

    Parameters
    ----------
    start_distance, minimum_of_member : ndarray, shape (member,)
        From :func:`analyze_basins`: each member's distance from its start to the minimum it
        reached (``start_distance``, symmetry-aware), and which minimum that was.
    exit_radius, exit_observed : ndarray, shape (minimum, direction)
        From :func:`basins.rays.probe_rays`: each ray's exit radius where ``exit_observed``,
        else the radius it is right-censored at (its exit lies beyond).
    probed_minima : ndarray, shape (minimum,)
        Catalog indices of the rows of ``exit_radius``.
    n_bootstrap, seed : int
        Bootstrap resamples for the uncertainty of the distance ratio: members and rays (each
        with its censoring) are resampled together, and the typical exit of each resample is
        its Kaplan-Meier median; resamples where that median is censored are skipped.

    Returns
    -------
    xarray.Dataset
        Per probed minimum: ``median_exit_radius``, the Kaplan-Meier median exit radius
        (:func:`basins.rays.kaplan_meier_median`; censored rays stay in the risk set, so rays
        that never left do not bias it low); ``tentacle_fraction``, the fraction of its
        basin's members that start beyond it (near 0 for a compact basin, high for one that
        reaches out along thin tentacles; Zhang and Strogatz 2021), with its binomial standard
        error; ``distance_ratio``, median member start distance over median exit radius, with
        a bootstrap standard error and ``n_bootstrap_used``; ``n_members``; and ``reason``,
        why the fraction and ratio are nan where they are: no members, or a median exit
        beyond the largest radius probed. Standard errors are nan for fewer than 2 members
        (one member gives a fraction of 0 or 1 with no spread to estimate).
    """
    exit_radius, exit_observed = np.asarray(exit_radius, dtype=np.float64), np.asarray(exit_observed)
    if exit_radius.shape != exit_observed.shape or exit_radius.shape[:1] != np.shape(probed_minima):
        raise ValueError(f"exit_radius {exit_radius.shape}, exit_observed {exit_observed.shape} and probed_minima "
                         f"{np.shape(probed_minima)}: give (minimum, direction) twice and (minimum,)")
    rng = np.random.default_rng(seed)
    n = len(probed_minima)
    median_exit, fraction, fraction_se, ratio, ratio_se = (np.full(n, np.nan) for _ in range(5))
    members, used = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    reason = np.full(n, "measured", dtype=object)
    for row, minimum in enumerate(probed_minima):
        starts = start_distance[minimum_of_member == minimum]
        radius, observed = exit_radius[row], exit_observed[row].astype(bool)
        typical = kaplan_meier_median(radius, observed)
        median_exit[row], members[row] = typical.median, len(starts)
        if len(starts) == 0 or typical.censored:
            reason[row] = "no members" if len(starts) == 0 else "median exit radius beyond the largest radius probed"
            continue
        fraction[row] = np.mean(starts > typical.median)
        ratio[row] = np.median(starts) / typical.median
        if len(starts) < 2:
            continue
        fraction_se[row] = np.sqrt(fraction[row] * (1 - fraction[row]) / len(starts))
        ratio_se[row], used[row] = _distance_ratio_se(starts, radius, observed, n_bootstrap, rng)
    per_minimum = lambda values, *attrs, **extra: ("minimum", values, variable_attrs(*attrs, **extra))  # noqa: E731
    return xr.Dataset(
        {
            "median_exit_radius": per_minimum(
                median_exit, "Kaplan-Meier median exit radius", note="nan: beyond the largest radius probed"),
            "tentacle_fraction": per_minimum(fraction, "members starting beyond the median exit radius",
                                             note="nan: see reason"),
            "tentacle_fraction_se": per_minimum(fraction_se, "binomial standard error of tentacle_fraction",
                                                note="nan: fewer than 2 members, or see reason"),
            "distance_ratio": per_minimum(ratio, "median member start distance / median exit radius",
                                          note="nan: see reason"),
            "distance_ratio_se": per_minimum(ratio_se, "bootstrap standard error of distance_ratio",
                                             note="nan: fewer than 2 members or 2 usable resamples, or see reason"),
            "n_bootstrap_used": per_minimum(
                used, "bootstrap resamples whose median exit radius is defined (used for distance_ratio_se)"),
            "n_members": per_minimum(members, "members in the basin"),
            "reason": per_minimum(reason.astype(str), "why tentacle_fraction and distance_ratio are nan, if they are"),
        },
        coords={"minimum": ("minimum", np.asarray(probed_minima), variable_attrs("probed minimum (catalog index)"))},
        attrs={"n_bootstrap": n_bootstrap},
    )


def _distance_ratio_se(starts, radius, observed, n_bootstrap, rng):
    """Bootstrap standard error of the distance ratio (members and rays resampled), and resamples used."""
    # A hand-written loop, not scipy.stats.bootstrap: resamples whose median is censored are skipped.
    resampled = []
    for _ in range(n_bootstrap):
        rays = rng.integers(0, len(radius), len(radius))
        exit_median = kaplan_meier_median(radius[rays], observed[rays]).median
        member_median = np.median(rng.choice(starts, len(starts)))
        if np.isfinite(exit_median):
            resampled.append(member_median / exit_median)
    return (np.std(resampled, ddof=1) if len(resampled) > 1 else np.nan), len(resampled)
