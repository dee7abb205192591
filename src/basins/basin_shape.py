"""Basin shape: a compact head, or a head with thin tentacles that reach far?

Three statistics, each first validated on landscapes whose answer is known
(:mod:`basins.landscapes.planted`: a ball-like basin and a thin ring-shaped one of equal volume, in 2-D
and in d = 12; a double well), see ``docs/basin_shape.md``:

- **star-shapedness** (:func:`measure_star_shapedness`): is the segment from a member's start
  to its minimum inside the basin? A compact (star-shaped) basin keeps every segment; a
  tentacle is reached from outside its head.
- **local thickness** (:func:`measure_local_thickness`): how far, in random directions, one
  can move from a member's start before leaving the basin, against the start's distance to
  the minimum. A thin tentacle is much thinner than it is long.
- **reach beyond the head** (:func:`measure_reach`): of the basin met by random rays from the
  minimum at the distances where its members start, the share met only after the ray has
  left the basin once (re-entered). Rays through a star-shaped basin never re-enter.

Every run of the dynamics has three outcomes (:mod:`basins.labels`); an undecided run is
censored, never counted as an exit. Per-minimum summaries are nan, with a ``reason``, below
``min_members`` members: a one-member basin has no spread to estimate, and no summary is
reported with a zero-width interval for lack of data.
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr
from scipy import stats

from basins.io import variable_attrs
from basins.labels import LEFT, OUTCOME_MEANINGS, OUTCOME_VALUES, RETURNED, UNDECIDED
from basins.rays import Outcomes, probe_first_exits, run_outcomes
from basins.stats import wilson_interval


# Over 80 lines only by its signature and numpydoc docstring (59 lines); the body is 46.
def measure_star_shapedness(  # long by its docstring: the resolution caveat and known answers
    starts: np.ndarray,
    minimum_images: np.ndarray,
    minimum_of_member: np.ndarray,
    outcomes: Outcomes,
    *,
    n_segment: int = 12,
    min_members: int = 10,
    confidence: float = 0.95,
) -> xr.Dataset:
    """Whether each member's segment from its minimum to its start stays in the basin.

    Parameters
    ----------
    starts : ndarray, shape (member, param)
        The members' starting points (in the frame the dynamics runs in).
    minimum_images : ndarray, shape (member, param)
        Each member's minimum, as the symmetric image nearest to its start
        (:func:`basins.landscapes.symmetry.nearest_images` for networks; ``minima[minimum_of_member]``
        where the landscape has no symmetry).
    minimum_of_member : ndarray of int, shape (member,)
        Catalog index of each member's minimum, the target handed to ``outcomes`` (>= 0:
        pass assigned members only).
    outcomes : callable
        :data:`basins.rays.Outcomes`: runs the dynamics from every point at once and says
        whether it returned to minimum ``targets[k]``, left, or is undecided.
    n_segment : int
        Points per segment, at fractions k / (n_segment + 1) of the way from the minimum to
        the start (the start itself, a member by definition, is not re-run). The exit is
        located to within 1 / (n_segment + 1) of the segment; an excursion shorter than that
        can be missed, so a segment seen inside is star-shaped at this resolution only.
    min_members : int
        Members a minimum needs for its summary; below it the summary is nan with a reason.
    confidence : float
        Level of the Wilson interval of ``leaving_fraction``.

    Returns
    -------
    xarray.Dataset
        Per member: ``outcome (member, distance)`` at the segment points (coordinate
        ``distance``: fraction of the way to the start); ``inside_fraction``, the fraction of
        decided points that return, with ``inside_fraction_low`` / ``_high`` (undecided points
        counted as left / returned); ``exit_position``, the first point seen to leave if
        ``exit_observed``, else the position the segment is right-censored at (1: every point
        returns; before the first undecided point otherwise: an undecided point is never an
        exit). Per minimum: ``n_members``; ``leaving_fraction``, the fraction of members whose
        segment is seen to leave, among those whose segment is decided (seen to leave, or
        returning at every point), with its Wilson interval ``_low`` / ``_high``;
        ``censored_member_fraction``; ``mean_inside_fraction``; ``reason``.

    Notes
    -----
    Known answers (``tests/test_basin_shape.py``, 12 points per segment): on the planted
    ball (convex) and on the double well's half-spaces no segment leaves
    (``leaving_fraction`` 0, Wilson upper bound 0.045 with 80 members); on the planted ring,
    whose chords leave the annulus beyond about 61 degrees of arc, 0.66 [0.56, 0.76] in 2-D
    and 0.65 [0.55, 0.74] in d = 12. Membership of a segment point depends only on the
    coordinates that decide it, so the contrast does not fade with d (0.72 at d = 48).
    """
    starts, origin, target = _members(starts, minimum_images, minimum_of_member)
    if n_segment < 1:
        raise ValueError(f"n_segment={n_segment}: give at least one point per segment")
    position = np.arange(1, n_segment + 1) / (n_segment + 1)
    outcome = _segment_outcomes(outcomes, starts, origin, target, position)
    returned, undecided = (outcome == RETURNED), (outcome == UNDECIDED)
    inside, observed, exit_position, segment_decided = _segment_exits(outcome, position)
    per_minimum = _by_minimum(target, min_members)
    leaving, low, high, censored, mean_inside = _leaving_fractions(
        per_minimum, target, segment_decided, observed, inside, confidence)
    return xr.Dataset(
        {
            "outcome": (("member", "distance"), outcome.astype(np.int8), variable_attrs(
                "how the run from this point of the segment ended", flag_values=" ".join(map(str, OUTCOME_VALUES)),
                flag_meanings=OUTCOME_MEANINGS)),
            "minimum_of_member": _member_var(target, "minimum the member reached (catalog index)"),
            "inside_fraction": _member_var(inside, "fraction of the decided segment points that return",
                                           note="nan: none decided"),
            "inside_fraction_low": _member_var(returned.sum(1) / n_segment,
                                               "inside_fraction counting undecided points as left"),
            "inside_fraction_high": _member_var((returned | undecided).sum(1) / n_segment,
                                                "inside_fraction counting undecided points as returned"),
            "exit_position": _member_var(
                exit_position, "first segment point seen to leave if exit_observed, else where the segment is "
                "right-censored (1: every point returns)", note="fraction of the way from the minimum to the start"),
            "exit_observed": _member_var(observed.astype(np.int8), "whether the segment was seen to leave the basin",
                                         flag_values="0 1", flag_meanings="right_censored observed"),
            "n_members": _minimum_var(per_minimum.n_members, "members of the minimum"),
            "leaving_fraction": _minimum_var(
                leaving, "fraction of members whose segment is seen to leave the basin, among decided segments",
                note="0: star-shaped at the resolution of the segment points; nan: see reason"),
            "leaving_fraction_low": _minimum_var(low, f"lower end of the {confidence:.0%} Wilson interval"),
            "leaving_fraction_high": _minimum_var(high, f"upper end of the {confidence:.0%} Wilson interval"),
            "censored_member_fraction": _minimum_var(
                censored, "fraction of members whose segment is undecided before any exit"),
            "mean_inside_fraction": _minimum_var(mean_inside, "mean over members of inside_fraction"),
            "reason": _reason_var(per_minimum),
        },
        coords={
            "member": _member_coordinate(len(starts)),
            "distance": ("distance", position, variable_attrs(
                "position along the segment from the minimum to the start, as a fraction of its length")),
            "minimum": _minimum_coordinate(per_minimum),
        },
        attrs={"n_segment": n_segment, "min_members": min_members, "confidence": confidence},
    )


def _segment_outcomes(outcomes, starts, origin, target, position):
    """Outcome (member, point) of runs from the points at ``position`` along each minimum-to-start segment."""
    points = origin[:, None, :] + position[None, :, None] * (starts - origin)[:, None, :]
    n_members, n_params = starts.shape
    outcome = run_outcomes(outcomes, points.reshape(-1, n_params), np.repeat(target, len(position)))
    return outcome.reshape(n_members, len(position))


def _segment_exits(outcome, position):
    """Per segment: inside fraction, exit seen, exit (or censoring) position, and whether it is decided."""
    n_segment = len(position)
    returned, left, undecided = (outcome == RETURNED), (outcome == LEFT), (outcome == UNDECIDED)
    decided = n_segment - undecided.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = returned.sum(1) / decided
    first_left = _first(left)
    first_undecided = _first(undecided)
    observed = first_left < first_undecided
    censored_at = np.where(first_undecided < n_segment, np.r_[0.0, position][first_undecided], 1.0)
    exit_position = np.where(observed, position[np.minimum(first_left, n_segment - 1)], censored_at)
    return inside, observed, exit_position, observed | (first_undecided == n_segment)


def _leaving_fractions(per_minimum, target, segment_decided, observed, inside, confidence):
    """Per minimum: leaving fraction with its Wilson interval, censored fraction, mean inside fraction."""
    leaving, low, high, censored, mean_inside = _nans(len(per_minimum.ids), 5)
    for row in np.flatnonzero(per_minimum.measured):
        mine = target == per_minimum.ids[row]
        n_decided = int(segment_decided[mine].sum())
        censored[row] = 1 - n_decided / mine.sum()
        mean_inside[row] = np.nanmean(inside[mine]) if np.isfinite(inside[mine]).any() else np.nan
        if n_decided == 0:
            per_minimum.reason[row] = "no member's segment is decided (raise the budget)"
            continue
        n_left = int(observed[mine].sum())
        leaving[row] = n_left / n_decided
        low[row], high[row] = (float(b) for b in wilson_interval(n_left, n_decided, _z(confidence)))
    return leaving, low, high, censored, mean_inside


# Over 80 lines only by its signature and numpydoc docstring (57 lines); the body is 46.
def measure_local_thickness(  # long by its docstring: the bootstrap design and known answers
    starts: np.ndarray,
    minimum_images: np.ndarray,
    minimum_of_member: np.ndarray,
    outcomes: Outcomes,
    *,
    radii: np.ndarray,
    n_directions: int = 16,
    n_bisection: int = 4,
    seed: int = 0,
    min_members: int = 10,
    n_bootstrap: int = 400,
    confidence: float = 0.95,
) -> xr.Dataset:
    """How far the basin extends around each member's start, against the start's distance.

    From every start, ``n_directions`` random rays are probed up to their first exit
    (:func:`basins.rays.probe_first_exits` with the start as centre and the member's own
    minimum as target); the member's
    thickness is the Kaplan-Meier median of their censored exit radii, and its
    ``thickness_ratio`` that thickness over the start's distance to the minimum.

    Parameters
    ----------
    starts, minimum_images, minimum_of_member, outcomes
        As in :func:`measure_star_shapedness`; pass a sample of members (each costs at most
        ``n_directions * (len(radii) + n_bisection)`` runs: a ray stops at its first exit).
    radii : ndarray, shape (radius,)
        Increasing distances along each ray from the start. Their largest value bounds what
        can be said: a member whose median exit lies beyond it has ``thickness_ratio`` inf
        (``thickness_censored``).
    n_directions, n_bisection, seed
        As in :func:`basins.rays.probe_first_exits`.
    min_members : int
        Members a minimum needs for its summary; below it the summary is nan with a reason.
    n_bootstrap, confidence
        Resamples and level of the percentile interval of ``median_thickness_ratio``: members
        are resampled and, within each, its rays (with their censoring), so the interval
        holds the noise of the per-member medians too.

    Returns
    -------
    xarray.Dataset
        Per member: ``distance_to_minimum``; ``thickness`` (Kaplan-Meier median exit radius
        from the start) with ``thickness_censored``; ``thickness_ratio``; ``exit_radius`` and
        ``exit_observed (member, direction)``. Per minimum: ``n_members``,
        ``median_thickness_ratio`` with its interval ``_low`` / ``_high`` (inf: more than half
        of the members' thicknesses lie beyond the largest radius), ``reason``.

    Notes
    -----
    Known answers (``tests/test_basin_shape.py``, 30 members, 16 rays each): the planted
    ring (thin annulus) has median thickness ratio 0.13 [0.10, 0.16] in 2-D and 0.23
    [0.18, 0.29] in d = 12; the planted ball 0.54 [0.27, 1.17] and 0.48 [0.39, 0.60]. The
    double well's half-spaces are thicker still (inf: rays pointing away from the ridge
    never exit). Isotropic rays mostly move along directions that decide nothing, so the
    contrast fades with d: at d = 48 ball 0.36 [0.29, 0.50] against ring 0.25 [0.20, 0.29].
    """
    starts, origin, target = _members(starts, minimum_images, minimum_of_member)
    rays = probe_first_exits(
        starts, lambda points, rows: outcomes(points, target[rows]),
        radii=radii, n_directions=n_directions, n_bisection=n_bisection, seed=seed,
    )
    exit_radius = rays["exit_radius"].values
    exit_observed = rays["exit_observed"].values.astype(bool)
    distance = np.linalg.norm(starts - origin, axis=1)
    thickness = rays["median_exit_radius"].values
    censored = rays["median_exit_censored"].values.astype(bool)
    ratio = np.where(censored, np.inf, thickness / distance)
    per_minimum = _by_minimum(target, min_members)
    median, low, high = _median_thickness_ratios(
        per_minimum, target, ratio, exit_radius, exit_observed, distance,
        n_directions=n_directions, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    per_ray = functools.partial(_variable, ("member", "direction"))
    return xr.Dataset(
        {
            "minimum_of_member": _member_var(target, "minimum the member reached (catalog index)"),
            "distance_to_minimum": _member_var(distance, "Euclidean distance from the start to its minimum"),
            "thickness": _member_var(thickness, "Kaplan-Meier median exit radius of random rays from the start",
                                     note="nan: beyond the largest radius (thickness_censored)"),
            "thickness_censored": _member_var(censored.astype(np.int8), "whether the median exit lies beyond the "
                                              "largest radius probed", flag_values="0 1",
                                              flag_meanings="observed beyond_largest_radius"),
            "thickness_ratio": _member_var(ratio, "thickness / distance_to_minimum", note="inf: thickness_censored"),
            "exit_radius": per_ray(exit_radius, "exit radius of the ray from the start if exit_observed, else the "
                                   "radius it is right-censored at"),
            "exit_observed": per_ray(exit_observed.astype(np.int8), "whether the ray's exit was observed",
                                     flag_values="0 1", flag_meanings="right_censored observed"),
            "n_members": _minimum_var(per_minimum.n_members, "members probed"),
            "median_thickness_ratio": _minimum_var(median, "median over members of thickness_ratio",
                                                   note="small: thin tentacles; nan: see reason"),
            "median_thickness_ratio_low": _minimum_var(low, f"lower end of its {confidence:.0%} bootstrap interval "
                                                       "(members and their rays resampled)"),
            "median_thickness_ratio_high": _minimum_var(high, f"upper end of its {confidence:.0%} bootstrap interval"),
            "reason": _reason_var(per_minimum),
        },
        coords={
            "member": _member_coordinate(len(starts)),
            "direction": ("direction", np.arange(n_directions), variable_attrs("ray index")),
            "minimum": _minimum_coordinate(per_minimum),
        },
        attrs={"n_directions": n_directions, "n_bisection": n_bisection, "seed": seed,
               "n_bootstrap": n_bootstrap, "confidence": confidence, "min_members": min_members},
    )


def _median_thickness_ratios(per_minimum, target, ratio, exit_radius, exit_observed, distance, *,
                             n_directions, n_bootstrap, confidence, seed):
    """Per minimum: median thickness ratio and its bootstrap interval (members, then their rays, resampled)."""
    median, low, high = _nans(len(per_minimum.ids), 3)
    rng = np.random.default_rng(seed)
    # A hand-written bootstrap, not scipy.stats.bootstrap: rays are resampled within each
    # resampled member (a nested design that scipy's independent-samples resampling lacks).
    for row in np.flatnonzero(per_minimum.measured):
        mine = np.flatnonzero(target == per_minimum.ids[row])
        median[row] = np.median(ratio[mine])
        members = rng.choice(mine, size=(n_bootstrap, len(mine)))
        rays_drawn = rng.integers(0, n_directions, size=(n_bootstrap, len(mine), n_directions))
        radius = np.take_along_axis(exit_radius[members], rays_drawn, axis=2)
        seen = np.take_along_axis(exit_observed[members], rays_drawn, axis=2)
        thickness_drawn = np.nan_to_num(kaplan_meier_medians(radius, seen), nan=np.inf)  # nan: censored
        resampled = thickness_drawn / distance[members]
        # inverted_cdf: an order statistic, no interpolation between inf (censored) and a number
        low[row], high[row] = np.quantile(np.median(resampled, axis=1), [(1 - confidence) / 2, (1 + confidence) / 2],
                                          method="inverted_cdf")
    return median, low, high


# Over 80 lines only by its signature and numpydoc docstring (72 lines); the body is 46.
def measure_reach(  # long by its docstring: the estimator, its grid limits and known answers
    member_distance: np.ndarray,
    minimum_of_member: np.ndarray,
    ray_outcome: np.ndarray,
    radii: np.ndarray,
    probed_minima: np.ndarray,
    *,
    min_members: int = 10,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Head vs reach: the share of a basin, at its members' distances, reached only by re-entry.

    Along a random ray from the minimum, a point at distance d that returns is either still
    in the head (the ray has returned at every grid radius up to d: the Kaplan-Meier survival
    S(d) of the exit radius, on the grid) or re-entered (the ray left the basin before d).
    With p(d) the return probability,

        reach = 1 - sum_i S(d_i) / sum_i p(d_i)

    over the basin's members i at distances d_i: the share of the basin, where its members
    start, that rays reach only after leaving it. A star-shaped basin has S = p at every d
    (no ray re-enters): reach is 0 exactly. A basin of thin tentacles around a small head has
    S(d_i) near 0 where p(d_i) is not: reach near 1. Unlike the fraction of members beyond
    the median exit radius, it does not grow with the start distance itself, which on a
    high-dimensional initialization shell is large for every basin.

    Parameters
    ----------
    member_distance, minimum_of_member : ndarray, shape (member,)
        Each member's start distance to its minimum and the catalog index of that minimum
        (:func:`basins.basin_geometry.analyze_basins`' ``start_distance`` and
        ``minimum_of_member``; -1 and nan for unassigned members, which are skipped).
    ray_outcome : ndarray, shape (minimum, direction, radius)
        :func:`basins.rays.probe_rays`' ``outcome`` for the probed minima. Its radii must
        reach the members' distances: members farther than the largest radius by more than
        the last grid step are not used (``n_members_beyond_radii``).
    radii : ndarray, shape (radius,)
        The ray grid.
    probed_minima : ndarray, shape (minimum,)
        Catalog indices of the rows of ``ray_outcome``.
    min_members : int
        Members (within the grid) a minimum needs; below it reach is nan with a reason.
    n_bootstrap, confidence, seed
        Percentile interval from a joint bootstrap (:func:`scipy.stats.bootstrap`) over the
        minimum's rays and its members, widened where needed to the Wilson interval of the
        re-entered share p - S over p (:func:`_reach_with_interval`).

    Returns
    -------
    xarray.Dataset
        Per probed minimum: ``reach`` with ``reach_low`` / ``reach_high``;
        ``return_probability_at_members`` (mean p(d_i)), ``head_probability_at_members``
        (mean S(d_i)); ``n_members``, ``n_members_beyond_radii``, ``n_rays_reentering``
        (rays that return after having left, at any radius), ``ambiguous_fraction`` (returned
        grid points whose connection to the head is unknown, an undecided point coming
        first; left out); ``reason``.

    Notes
    -----
    p(d_i) and S(d_i) are read at each member's own distance, interpolated linearly in log
    radius between the grid radii around it (:func:`grid_positions`).

    Known answers (``tests/test_basin_shape.py``, 64 rays to 1.1 times the farthest
    member, 40 radii): exactly 0 on the planted ball and on the double well (convex basins:
    no ray re-enters), its interval [0, the Wilson bound of 0 of 64 rays over p]; 0.36
    [0.21, 0.54] on the planted ring in 2-D and 0.31 [0.10, 0.64] in d = 12 (only rays whose
    in-plane part crosses the gap re-enter; 0.37 [0.10, 0.73] at d = 48). The old tentacle
    index (:func:`basins.basin_geometry.tentacle_index`) gives the ball 0.95 and the ring 1.0
    in d = 12, both 1.0 in d = 24.
    """
    ray_outcome, radii, probed_minima = _ray_grid(ray_outcome, radii, probed_minima)
    member_distance, minimum_of_member = np.asarray(member_distance), np.asarray(minimum_of_member)
    returned, head, known = _ray_states(ray_outcome)
    step = radii[-1] - radii[-2] if len(radii) > 1 else radii[-1]
    n = len(probed_minima)
    reach, low, high, p_mean, s_mean, ambiguous = _nans(n, 6)
    n_members, n_beyond = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    reentering = ((ray_outcome == RETURNED) & (np.cumsum(ray_outcome == LEFT, axis=2) > 0)).any(axis=2).sum(1)
    reason = np.full(n, "measured", dtype=object)
    for row, minimum in enumerate(probed_minima):
        distance = member_distance[minimum_of_member == minimum]
        within = distance <= radii[-1] + step
        n_members[row], n_beyond[row] = len(distance), int((~within).sum())
        returned_points = (ray_outcome[row] == RETURNED).sum()
        ambiguous[row] = 1 - returned[row].sum() / returned_points if returned_points else np.nan
        if within.sum() < min_members:
            reason[row] = (f"{within.sum()} members within the ray radii, fewer than min_members={min_members}"
                           + (f" ({n_beyond[row]} beyond the largest radius)" if n_beyond[row] else ""))
            continue
        positions = grid_positions(distance[within], radii)
        statistic = _reach_statistic(returned[row], head[row], known[row], len(radii))
        reach[row], low[row], high[row], p_mean[row], s_mean[row], reason[row] = _reach_with_interval(
            statistic, ray_outcome.shape[1], positions, n_bootstrap=n_bootstrap, confidence=confidence,
            seed=[seed, row])
    return xr.Dataset(
        {
            "reach": _minimum_var(reach, "share of the basin at its members' distances that rays from the minimum "
                                  "reach only after leaving it", note="0: star-shaped; near 1: thin tentacles; "
                                  "nan: see reason"),
            "reach_low": _minimum_var(low, f"lower end of the {confidence:.0%} joint bootstrap interval "
                                      "(rays and members)"),
            "reach_high": _minimum_var(high, f"upper end of the {confidence:.0%} joint bootstrap interval"),
            "return_probability_at_members": _minimum_var(p_mean, "mean over members of the return probability "
                                                          "p(d) at their distance"),
            "head_probability_at_members": _minimum_var(s_mean, "mean over members of the probability that a ray "
                                                        "has not left the basin before their distance"),
            "n_members": _minimum_var(n_members, "members of the minimum"),
            "n_members_beyond_radii": _minimum_var(n_beyond, "members farther than the ray grid reaches (not used)"),
            "n_rays_reentering": _minimum_var(reentering, "rays that return at some radius after having left"),
            "ambiguous_fraction": _minimum_var(ambiguous, "fraction of returned ray points whose connection to the "
                                               "head is unknown (an undecided point first); left out"),
            "reason": _minimum_var(reason.astype(str), "why reach or its interval is nan, if they are"),
        },
        coords={"minimum": ("minimum", probed_minima, variable_attrs("probed minimum (catalog index)"))},
        attrs={"n_bootstrap": n_bootstrap, "confidence": confidence, "min_members": min_members, "seed": seed},
    )


def _ray_grid(ray_outcome, radii, probed_minima):
    ray_outcome = np.asarray(ray_outcome)
    radii = np.asarray(radii, dtype=np.float64)
    probed_minima = np.asarray(probed_minima)
    if ray_outcome.ndim != 3 or ray_outcome.shape[0] != len(probed_minima) or ray_outcome.shape[2] != len(radii):
        raise ValueError(f"ray_outcome {ray_outcome.shape}, radii {radii.shape}, probed_minima "
                         f"{probed_minima.shape}: give (minimum, direction, radius), (radius,) and (minimum,)")
    return ray_outcome, radii, probed_minima


def grid_positions(distance: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Fractional positions of ``distance`` on the grid ``radii``, linear in log radius.

    Position ``k + w`` lies between ``radii[k]`` and ``radii[k + 1]``, a fraction ``w`` of the
    way in log radius; distances outside the grid take the nearest end. A quantity known on
    the grid is read at a distance by weighting its values at ``k`` and ``k + 1`` by ``1 - w``
    and ``w`` (:func:`_grid_weights`), so a member between two radii is not moved onto either.
    """
    radii = np.asarray(radii, dtype=np.float64)
    return np.interp(np.log(np.asarray(distance, dtype=np.float64)), np.log(radii), np.arange(len(radii)))


def _grid_weights(positions, n_radii):
    """Weight of every grid radius in reading a grid quantity at ``positions`` ``(..., member)``,
    summed over members: ``(..., radius)``."""
    lower = np.minimum(np.floor(positions).astype(np.int64), n_radii - 1)
    upper_share = positions - lower
    weights = np.zeros(positions.shape[:-1] + (n_radii,))
    index = np.indices(positions.shape)[:-1]
    np.add.at(weights, (*index, lower), 1.0 - upper_share)
    np.add.at(weights, (*index, np.minimum(lower + 1, n_radii - 1)), upper_share)
    return weights


def _reach_with_interval(statistic, n_rays, positions, *, n_bootstrap, confidence, seed):
    """One minimum's reach, its interval, mean p and S at the members, and why any is nan.

    The interval is the percentile bootstrap's, widened where needed to the Wilson interval of
    the re-entered share p - S as a proportion of ``n_rays``, divided by p: when no ray (or
    every ray) re-enters, every resample agrees and the bootstrap interval has zero width,
    though 0 of 64 rays allows a re-entered share of up to about 6 %.
    """
    rays = np.arange(n_rays)
    value, p_mean, s_mean = statistic(rays, positions, parts=True)
    if not np.isfinite(value):
        why = "no ray returns at the members' distances (more rays, or a finer grid)"
        return np.nan, np.nan, np.nan, p_mean, s_mean, why
    interval = stats.bootstrap(
        (rays, positions), statistic, n_resamples=n_bootstrap, confidence_level=confidence,
        method="percentile", vectorized=True, axis=-1, rng=np.random.default_rng(seed),
    ).confidence_interval
    if not np.isfinite([interval.low, interval.high]).all():
        reason = "some bootstrap resamples have no ray returning at the members' distances: no interval"
        return value, interval.low, interval.high, p_mean, s_mean, reason
    share = wilson_interval((p_mean - s_mean) * n_rays, n_rays, _z(confidence))
    share_low, share_high = (float(bound) for bound in share)
    low = max(0.0, min(interval.low, share_low / p_mean))
    high = min(1.0, max(interval.high, share_high / p_mean))
    return value, low, high, p_mean, s_mean, "measured"


def kaplan_meier_medians(radius: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Kaplan-Meier medians of many right-censored samples at once, along the last axis.

    The same estimate as :func:`basins.rays.kaplan_meier_median` (the smallest radius where
    S(r) <= 0.5; nan where S stays above 0.5), vectorized over the leading axes for the
    bootstrap, where scipy's :func:`scipy.stats.ecdf` would take one sample per call. Exits
    tied with censorings come first, as in Kaplan and Meier (1958).
    """
    radius, observed = np.asarray(radius, dtype=np.float64), np.asarray(observed, dtype=bool)
    order = np.lexsort((~observed, radius), axis=-1)
    radius, observed = np.take_along_axis(radius, order, -1), np.take_along_axis(observed, order, -1)
    at_risk = radius.shape[-1] - np.arange(radius.shape[-1])
    survival = np.cumprod(np.where(observed, 1 - 1 / at_risk, 1.0), axis=-1)
    below = survival <= 0.5 + 1e-12
    first = below.argmax(axis=-1)
    return np.where(below.any(axis=-1), np.take_along_axis(radius, first[..., None], -1)[..., 0], np.nan)


def _variable(dims, values, long_name, **extra):
    return dims, values, variable_attrs(long_name, **extra)


_member_var = functools.partial(_variable, "member")
_minimum_var = functools.partial(_variable, "minimum")


def _nans(n, count):
    return (np.full(n, np.nan) for _ in range(count))


def _member_coordinate(n_members):
    return "member", np.arange(n_members), variable_attrs("member index (row of starts)")


def _minimum_coordinate(per_minimum):
    return "minimum", per_minimum.ids, variable_attrs("minimum with members (catalog index)")


def _reason_var(per_minimum):
    return _minimum_var(per_minimum.reason.astype(str), "why the summaries are nan, if they are")


class _PerMinimum:
    """The minima with members, their counts, and why a summary is nan (``measured`` where it is not)."""

    def __init__(self, ids, n_members, reason):
        self.ids, self.n_members, self.reason = ids, n_members, reason
        self.measured = reason == "measured"


def _by_minimum(target, min_members):
    ids, counts = np.unique(target, return_counts=True)
    reason = np.array(["measured" if n >= min_members else f"{n} members, fewer than min_members={min_members}"
                       for n in counts], dtype=object)
    return _PerMinimum(ids, counts, reason)


def _members(starts, minimum_images, minimum_of_member):
    starts, images = np.asarray(starts, dtype=np.float64), np.asarray(minimum_images, dtype=np.float64)
    target = np.asarray(minimum_of_member)
    if starts.ndim != 2 or images.shape != starts.shape or target.shape != starts.shape[:1]:
        raise ValueError(f"starts {starts.shape}, minimum_images {images.shape}, minimum_of_member {target.shape}: "
                         "give (member, param) twice and (member,)")
    if not np.issubdtype(target.dtype, np.integer) or (target < 0).any():
        raise ValueError("minimum_of_member must hold catalog indices >= 0: pass assigned members only")
    return starts, images, target.astype(np.int64)


def _first(flags):
    """Index of the first True along the last axis; its length where there is none."""
    return np.where(flags.any(-1), flags.argmax(-1), flags.shape[-1])


def _z(confidence):
    return float(stats.norm.ppf((1 + confidence) / 2))


def _ray_states(outcome):
    """Per ray point: returned, returned while still in the head, and known (see measure_reach)."""
    left_before = np.cumsum(outcome == LEFT, axis=-1) - (outcome == LEFT) > 0
    undecided_before = np.cumsum(outcome == UNDECIDED, axis=-1) - (outcome == UNDECIDED) > 0
    returned = outcome == RETURNED
    # A returned point after an undecided one and no exit: in the head or re-entered? Unknown.
    known = (outcome == LEFT) | (returned & (left_before | ~undecided_before))
    return returned & known, returned & ~left_before & ~undecided_before, known


def _reach_statistic(returned, head, known, n_radii):
    """``statistic(rays, positions)``: reach from ray indices and the members' fractional grid
    positions (:func:`grid_positions`), batched on axis -1."""
    returned, head, known = (a.astype(np.float64) for a in (returned, head, known))

    def statistic(rays, positions, axis=-1, parts=False):
        rays, positions = np.asarray(rays), np.asarray(positions)
        with np.errstate(invalid="ignore", divide="ignore"):
            n_known = known[rays].sum(-2)  # (batch, radius)
            p = returned[rays].sum(-2) / n_known
            s = head[rays].sum(-2) / n_known
        members = _grid_weights(positions, n_radii)  # members per grid radius, interpolated, per resample
        usable = n_known > 0
        weight = np.where(usable, members, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            p_at = (weight * np.where(usable, p, 0)).sum(-1)
            s_at = (weight * np.where(usable, s, 0)).sum(-1)
            value = np.where(p_at > 0, 1 - s_at / p_at, np.nan)
            if parts:
                total = weight.sum(-1)
                return float(value), float(p_at / total), float(s_at / total)
        return value

    return statistic
