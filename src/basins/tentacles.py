"""Stage ``measure_tentacles``: does a minimum's basin have a compact head, or thin tentacles?

Per probed minimum (the minima :func:`basins.rays.probe_rays` sent rays from) the stage puts
side by side the statistics of :mod:`basins.basin_shape`, each validated on landscapes whose
answer is known (``docs/basin_shape.md``, ``tests/test_tentacles.py``):

- the **return probability far out**: p(d) of the rays beyond the initialization-shell
  distance, next to the basin fraction (a basin re-entered far away at about its volume
  fraction reaches out; a bounded one is not met there), and the part of it met only after
  the ray had left the basin (re-entry);
- **reach** (head vs reach, :func:`basins.basin_shape.measure_reach`): the share of the basin,
  at its members' distances, that rays reach only after leaving it, with a joint bootstrap
  interval over rays and members;
- **star-shapedness** of a sample of members (:func:`basins.basin_shape.measure_star_shapedness`):
  whether the segment from the minimum to the member's start stays in the basin;
- **local thickness** at a sample of members' starts (:func:`basins.basin_shape.measure_local_thickness`)
  against their distance to the minimum;
- the old tentacle index (:func:`basins.basin_geometry.tentacle_index`), as the comparison
  that was shown not to work (``old_`` variables).

Per-minimum statistics are given only for minima with at least ``min_members`` members;
below it they are nan and ``reason`` says why (never a zero-width interval for lack of data).
Every run of the dynamics ends returned, left or undecided; undecided runs are censored,
never counted as exits.
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr

from basins.basin_geometry import shell_distance, tentacle_index
from basins.basin_shape import measure_local_thickness, measure_reach, measure_star_shapedness
from basins.io import variable_attrs
from basins.labels import LEFT, RETURNED, UNDECIDED
from basins.rays import Outcomes
from basins.stats import binomial_standard_error, wilson_interval


def select_members(minimum_of_member: np.ndarray, minima: np.ndarray, n_per_minimum: int, *, seed) -> np.ndarray:
    """Up to ``n_per_minimum`` members of each of ``minima``, drawn without replacement, in the
    order drawn (so the first k of a minimum's draw are a random sample of k too)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(minimum_of_member == minimum))[:n_per_minimum] for minimum in minima]
    return np.concatenate(chosen).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def far_return_probability(ray_outcome: np.ndarray, radii: np.ndarray, far_radius: float):
    """Return probability of the rays at radii >= ``far_radius``, with its standard error.

    Points of one ray are not independent, so each ray counts once: its share of decided far
    points that return, averaged over the rays with any. The standard error is their spread
    over sqrt(rays), but never below the binomial one at the Agresti-Coull centre
    ``(x + z^2/2) / (n + z^2)`` (a share in [0, 1] with mean p varies by at most p (1 - p)):
    when no ray (or every ray) returns, the spread is 0, though 0 of 64 rays allows a few
    percent. Returns ``(p, p_se, reentry, reentry_se, n_rays)`` per minimum, ``reentry``
    counting only returns after the ray had left the basin at a smaller radius.
    """
    far = np.asarray(radii) >= far_radius
    outcome = np.asarray(ray_outcome)
    left_before = (np.cumsum(outcome == LEFT, axis=-1) - (outcome == LEFT)) > 0
    decided = (outcome != UNDECIDED)[..., far]
    n_decided = decided.sum(-1)
    usable = n_decided > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_ray = np.where(usable, (outcome == RETURNED)[..., far].sum(-1) / n_decided, np.nan)
        per_ray_reentry = np.where(usable, ((outcome == RETURNED) & left_before)[..., far].sum(-1) / n_decided, np.nan)
    n_rays = usable.sum(-1)
    results = []
    for values in (per_ray, per_ray_reentry):
        mean = np.array([np.mean(v[np.isfinite(v)]) if np.isfinite(v).any() else np.nan for v in values])
        spread = np.array([np.std(v[np.isfinite(v)], ddof=1) / np.sqrt(n) if n > 1 else np.nan
                           for v, n in zip(values, n_rays)])
        results += [mean, np.fmax(spread, binomial_standard_error(mean, n_rays))]
    return (*results, n_rays)


# Over 80 lines only by its signature and numpydoc docstring (90 lines); the body is 58.
def measure_tentacles(  # long by its docstring: 17 options, each a cost or resolution trade-off
    rays: xr.Dataset,
    basin_fraction: np.ndarray,
    start_distance: np.ndarray,
    minimum_of_member: np.ndarray,
    starts: np.ndarray,
    minimum_images: np.ndarray,
    outcomes: Outcomes,
    *,
    min_members: int = 10,
    n_star_members: int = 32,
    n_segment: int = 12,
    n_thickness_members: int = 24,
    n_thickness_directions: int = 16,
    thickness_smallest: float = 0.02,
    thickness_largest: float = 2.0,
    n_thickness_radii: int = 10,
    n_thickness_bisection: int = 2,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Shape statistics of every probed minimum: compact head, or thin tentacles?

    Parameters
    ----------
    rays : xarray.Dataset
        :func:`basins.rays.probe_rays`' output: ``outcome (minimum, direction, radius)``,
        ``exit_radius`` and ``exit_observed (minimum, direction)`` on coordinates ``minimum``
        (catalog indices) and ``radius``.
    basin_fraction : ndarray, shape (minimum,)
        Basin fraction of every catalogued minimum (indexed by catalog index).
    start_distance, minimum_of_member : ndarray, shape (member,)
        :func:`basins.basin_geometry.analyze_basins`' distance from each member's start to
        (the nearest symmetric image of) its minimum, and the minimum's catalog index
        (negative: none; such members are skipped).
    starts, minimum_images : ndarray, shape (member, param)
        Each member's start and its minimum's image nearest to it, in the frame the dynamics
        runs in (rings: the start unwrapped about the nearest point of its twisted-state
        circle); rows of unassigned members are not read.
    outcomes : callable
        :data:`basins.rays.Outcomes`: runs the dynamics from every point at once and says
        whether the run aimed at catalog minimum ``targets[k]`` returned, left or is undecided.
    min_members : int
        Members a minimum needs for its statistics; below: nan and ``reason``.
    n_star_members, n_segment : int
        Members drawn per minimum for star-shapedness, and points per segment (the exit is
        located to 1 / (n_segment + 1) of the segment). Cost: ``n_star_members * n_segment``
        runs per minimum.
    n_thickness_members, n_thickness_directions, n_thickness_radii, n_thickness_bisection : int
        Local thickness at the first ``n_thickness_members`` of those members: rays from the
        start, on ``n_thickness_radii`` log-spaced radii from ``thickness_smallest`` to
        ``thickness_largest`` times the shell distance (below), refined by bisection. Cost:
        ``n_thickness_members * n_thickness_directions * (n_thickness_radii +
        n_thickness_bisection)`` runs per minimum.
    thickness_smallest, thickness_largest : float
        The thickness rays' radii, as fractions of the shell distance.
    n_bootstrap, confidence : int, float
        Resamples and level of the bootstrap intervals (reach: rays and members jointly;
        thickness: members and their rays).
    seed : int
        Seed of the member samples, the thickness rays and the bootstraps.

    Returns
    -------
    xarray.Dataset
        Along ``minimum`` (the probed minima): ``basin_fraction``, ``n_members``, ``reason``;
        ``far_return_probability`` with ``_se`` (p(d) at d >= ``far_radius``, the median
        start distance of all members: the initialization shell) and
        ``far_reentry_probability`` with ``_se`` (its part met after the ray had left);
        ``reach`` with ``reach_low`` / ``_high`` and the other outputs of
        :func:`~basins.basin_shape.measure_reach`; ``leaving_fraction`` with its Wilson
        interval and ``mean_inside_fraction`` (star-shapedness); ``median_thickness_ratio``
        with its interval; the old index ``old_tentacle_fraction``, ``old_distance_ratio``
        (with standard errors) and ``median_exit_radius``. Along ``member`` (the sampled
        members; coordinate: row of the inputs): their minimum, ``distance_to_minimum``,
        ``segment_outcome (member, distance)`` (distance: fraction of the segment),
        ``inside_fraction``, ``exit_position``,
        ``exit_observed``; for the first ``n_thickness_members`` per minimum ``thickness``,
        ``thickness_ratio``, ``thickness_censored`` and the rays' ``thickness_exit_radius
        (member, direction)`` (nan for members not probed for thickness).

    Notes
    -----
    Known answers (``tests/test_tentacles.py``, ``docs/basin_shape.md``): on the planted ball
    and ring (equal basin fractions, one convex, one a thin annulus) every statistic ranks
    the ring as tentacled with intervals that exclude equality, in 2-D and in d = 12, while
    the old index does not in d = 12; the double well's half-spaces score compact; the
    twisted state q = 0 of Kuramoto rings of n = 40 and 83 oscillators scores tentacled.
    """
    probed = np.asarray(rays["minimum"].values, dtype=np.int64)
    radii = np.asarray(rays["radius"].values, dtype=np.float64)
    labels = np.asarray(minimum_of_member)
    start_distance = np.asarray(start_distance, dtype=np.float64)
    assigned = labels >= 0
    counts, eligible, reason = _gate_minima(labels, probed, len(basin_fraction), min_members)
    # An empty catalogue (every member diverged or undecided) probes nothing: no shell distance.
    shell = shell_distance(start_distance, labels)
    recorded_shell = float(rays.attrs.get("shell_distance", np.nan))
    if int(rays.attrs.get("radii_in_shells", 0)) and recorded_shell != shell and not (
            np.isnan(recorded_shell) and np.isnan(shell)):  # no member assigned: nothing probed
        raise ValueError(f"the rays' grid was set in units of a shell of {rays.attrs['shell_distance']}, these members' "
                         f"shell is {shell}: rays and basins of different runs (re-make probe_rays)")

    far = far_return_probability(rays["outcome"].values, radii, shell)
    if radii[-1] < shell:
        reason[eligible] = (f"the rays end at {radii[-1]:.4g}, inside the shell distance {shell:.4g}: "
                            "raise rays.largest_radius")
    reach = measure_reach(start_distance, np.where(assigned, labels, -1), rays["outcome"].values, radii, probed,
                          min_members=min_members, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)

    # Star-shapedness and thickness on samples of the eligible minima's members.
    sample = select_members(labels, probed[eligible], n_star_members, seed=[seed, 1])
    star = measure_star_shapedness(starts[sample], minimum_images[sample], labels[sample],
                                   outcomes if len(sample) else _no_runs,
                                   n_segment=n_segment, min_members=1, confidence=confidence)
    first = _first_of_each(labels[sample], probed[eligible], n_thickness_members)
    thickness_radii = shell * np.geomspace(thickness_smallest, thickness_largest, n_thickness_radii)
    thickness = measure_local_thickness(
        starts[sample[first]], minimum_images[sample[first]], labels[sample[first]], outcomes, radii=thickness_radii,
        n_directions=n_thickness_directions, n_bisection=n_thickness_bisection,
        seed=int(np.random.SeedSequence([seed, 2]).generate_state(1)[0]), min_members=1, n_bootstrap=n_bootstrap,
        confidence=confidence,
    ) if len(first) else None
    old = tentacle_index(start_distance, labels, rays["exit_radius"].values, rays["exit_observed"].values.astype(bool),
                         probed, seed=seed)

    per_minimum = {**_far_variables(eligible, *far), **_shape_variables(probed, reach, star, thickness),
                   **_old_index_variables(old, eligible)}
    reason = _combined_reason(reason, reach["reason"].values, star, thickness, probed)
    member_vars = _member_variables(sample, first, star, thickness, start_distance, n_thickness_directions)
    dataset = xr.Dataset(
        {
            "basin_fraction": ("minimum", np.asarray(basin_fraction, dtype=np.float64)[probed],
                               variable_attrs("fraction of initial conditions reaching the minimum")),
            "n_members": ("minimum", counts, variable_attrs("members of the minimum")),
            **per_minimum,
            "reason": ("minimum", reason.astype(str), variable_attrs("why statistics are nan, if they are")),
            "far_radius": ((), shell, variable_attrs("median start distance of all assigned members (the "
                                                     "initialization shell); far_ statistics use rays beyond it",
                                                     units="parameter units")),
            **member_vars,
        },
        coords=_tentacle_coordinates(probed, sample, star, n_thickness_directions, thickness_radii),
    )
    return dataset.assign_attrs(
        min_members=min_members, n_star_members=n_star_members, n_segment=n_segment,
        n_thickness_members=n_thickness_members, n_thickness_directions=n_thickness_directions,
        thickness_smallest=thickness_smallest, thickness_largest=thickness_largest,
        n_thickness_radii=n_thickness_radii, n_thickness_bisection=n_thickness_bisection,
        n_bootstrap=n_bootstrap, confidence=confidence, seed=seed,
        n_ray_directions=int(rays.sizes["direction"]), ray_radii=radii, **ray_grid_as_set(radii, rays.attrs),
    )


def ray_grid_as_set(radii: np.ndarray, rays_attrs: dict) -> dict:
    """The rays' grid as its config set it: ``ray_radii_in_shells`` (1: in units of the seed's
    initialization shell, ``rays.radii_in_shells``; 0: distances) and ``ray_grid``, the radii in
    that unit to 10 significant digits (so seeds of one setting agree though their shells, and
    with them their radii in parameter space, differ)."""
    in_shells = int(rays_attrs.get("radii_in_shells", 0))
    shell = float(rays_attrs.get("shell_distance", np.nan))
    # Without a shell (no member assigned) nothing was probed and the radii were run as set.
    grid = np.asarray(radii, dtype=np.float64) / (shell if in_shells and np.isfinite(shell) else 1.0)
    return {"ray_radii_in_shells": in_shells, "ray_grid": np.array([float(f"{value:.10g}") for value in grid])}


def _gate_minima(labels, probed, n_minima, min_members):
    """Members of each probed minimum, whether that is enough for statistics, and the reason if not."""
    assigned = labels >= 0
    if not assigned.any() and len(probed):
        raise ValueError("minima are probed but no member is assigned to one: the inputs disagree")
    counts = np.bincount(labels[assigned], minlength=n_minima)[probed]
    eligible = counts >= min_members
    reason = np.array(["measured" if ok else f"{n} members, fewer than min_members={min_members}"
                       for ok, n in zip(eligible, counts)], dtype=object)
    return counts, eligible, reason


def _first_of_each(labels, minima, n_per_minimum):
    """Positions of the first ``n_per_minimum`` entries of ``labels`` equal to each of ``minima``."""
    if not len(minima):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.flatnonzero(labels == m)[:n_per_minimum] for m in minima]).astype(np.int64)


def _no_runs(points, targets):
    return np.zeros(len(targets), dtype=np.int8)


def _gated(eligible, values, long_name, **extra):
    return "minimum", np.where(eligible, values, np.nan), variable_attrs(long_name, **extra)


def _far_variables(eligible, far, far_se, reentry, reentry_se, n_far_rays):
    gate = functools.partial(_gated, eligible)
    se_note = "spread over rays, never below the binomial standard error at the Agresti-Coull centre"
    variables = {
        "far_return_probability": gate(far, "fraction of decided ray points beyond far_radius that return (each "
                                       "ray weighted once)", note="nan: see reason"),
        "far_return_probability_se": gate(far_se, "standard error of far_return_probability", note=se_note),
        "far_reentry_probability": gate(reentry, "part of far_return_probability met after the ray had left the "
                                        "basin at a smaller radius"),
        "far_reentry_probability_se": gate(reentry_se, "standard error of far_reentry_probability", note=se_note),
        "n_far_rays": ("minimum", n_far_rays, variable_attrs("rays with a decided point beyond far_radius")),
    }
    # Wilson intervals of the rays' count: not of zero width where no ray (or every ray) returns.
    for name, mean in (("far_return_probability", far), ("far_reentry_probability", reentry)):
        low, high = _wilson_of_rays(mean, n_far_rays)
        variables[f"{name}_low"] = gate(low, f"lower end of the 95 % Wilson interval of {name} (rays as trials)")
        variables[f"{name}_high"] = gate(high, f"upper end of the 95 % Wilson interval of {name}")
    return variables


def _wilson_of_rays(mean, n_rays):
    """Wilson 95 % bounds of ``mean`` read as a proportion of ``n_rays`` trials; nan where there is none."""
    low, high = np.full(len(mean), np.nan), np.full(len(mean), np.nan)
    rows = np.isfinite(mean) & (n_rays > 0)
    low[rows], high[rows] = wilson_interval(mean[rows] * n_rays[rows], n_rays[rows])
    return low, high


def _shape_variables(probed, reach, star, thickness):
    """Reach, star-shapedness and thickness summaries, on every probed minimum."""
    variables = {}
    for name in ("reach", "reach_low", "reach_high", "return_probability_at_members", "head_probability_at_members",
                 "n_members_beyond_radii", "n_rays_reentering", "ambiguous_fraction"):
        variables[name] = reach[name].variable
    for name in ("leaving_fraction", "leaving_fraction_low", "leaving_fraction_high", "censored_member_fraction",
                 "mean_inside_fraction"):
        variables[name] = _on_probed(star[name], probed)
    for name in ("median_thickness_ratio", "median_thickness_ratio_low", "median_thickness_ratio_high"):
        variables[name] = (_on_probed(thickness[name], probed) if thickness is not None
                           else ("minimum", np.full(len(probed), np.nan), variable_attrs(name)))
    return variables


def _old_index_variables(old, eligible):
    """The old tentacle index's statistics, renamed ``old_`` and gated like every statistic."""
    variables = {}
    for name in ("tentacle_fraction", "tentacle_fraction_se", "distance_ratio", "distance_ratio_se"):
        variable = old[name].variable.copy()
        variable.values = np.where(eligible, variable.values, np.nan)
        old_name = variable.attrs["long_name"]
        variable.attrs["long_name"] = f"old index (shown not to work, docs/basin_shape.md): {old_name}"
        variables[f"old_{name}"] = variable
    variables["median_exit_radius"] = old["median_exit_radius"].variable
    return variables


def _tentacle_coordinates(probed, sample, star, n_thickness_directions, thickness_radii):
    return {
        "minimum": ("minimum", probed, variable_attrs("probed minimum (catalog index)")),
        "member": ("member", sample, variable_attrs("sampled member (row of the inputs)")),
        "distance": ("distance", star["distance"].values, variable_attrs(
            "position along the segment from the minimum to the start, as a fraction of its length")),
        "direction": ("direction", np.arange(n_thickness_directions), variable_attrs("thickness ray index")),
        "radius": ("radius", thickness_radii, variable_attrs(
            "radii of the thickness rays from a member's start", units="parameter units")),
    }


def _on_probed(variable, probed):
    """A per-minimum variable of a sample's dataset, on all probed minima (nan where none was sampled)."""
    return variable.reindex(minimum=probed).variable


def _combined_reason(reason, reach_reason, star, thickness, probed):
    """The gating reason, or, for a measured minimum, why any of its statistics is nan."""
    combined = reason.copy()
    for row, minimum in enumerate(probed):
        if reason[row] != "measured":
            continue
        parts = [f"reach: {reach_reason[row]}"] if reach_reason[row] != "measured" else []
        for name, dataset in (("star-shapedness", star), ("thickness", thickness)):
            if dataset is not None and minimum in dataset["minimum"].values:
                why = str(dataset["reason"].sel(minimum=minimum).values)
                if why != "measured":
                    parts.append(f"{name}: {why}")
        combined[row] = "; ".join(parts) or "measured"
    return combined


def _member_variables(sample, first, star, thickness, start_distance, n_directions):
    n = len(sample)

    def spread(values, fill=np.nan, width=None):  # thickness values onto all sampled members
        shape = (n,) if width is None else (n, width)
        out = np.full(shape, fill, dtype=np.float64)
        out[first] = values
        return out

    member_var = functools.partial(_member_var, "member")
    variables = {
        "minimum_of_member": member_var(star["minimum_of_member"].values, "minimum the member reached (catalog index)"),
        "distance_to_minimum": member_var(start_distance[sample], "distance from the start to its minimum"),
        "segment_outcome": (("member", "distance"), star["outcome"].values, star["outcome"].attrs),
        "inside_fraction": star["inside_fraction"].variable,
        "inside_fraction_low": star["inside_fraction_low"].variable,
        "inside_fraction_high": star["inside_fraction_high"].variable,
        "exit_position": star["exit_position"].variable,
        "exit_observed": star["exit_observed"].variable,
    }
    probed_flag = np.zeros(n, dtype=np.int8)
    probed_flag[first] = 1
    variables["thickness_probed"] = member_var(probed_flag, "whether local thickness was measured at this start",
                                               flag_values="0 1", flag_meanings="not_probed probed")
    if thickness is None:
        values = {name: np.full(n, np.nan) for name in ("thickness", "thickness_ratio", "thickness_censored")}
        exits, observed = np.full((n, n_directions), np.nan), np.full((n, n_directions), np.nan)
    else:
        values = {name: spread(thickness[name].values.astype(np.float64))
                  for name in ("thickness", "thickness_ratio", "thickness_censored")}
        exits = spread(thickness["exit_radius"].values, width=n_directions)
        observed = spread(thickness["exit_observed"].values, width=n_directions)
    variables["thickness"] = member_var(values["thickness"], "Kaplan-Meier median exit radius of random rays from "
                                        "the start", note="nan: not probed, or beyond the largest thickness radius")
    variables["thickness_ratio"] = member_var(values["thickness_ratio"], "thickness / distance_to_minimum",
                                              note="inf: beyond the largest radius; nan: not probed")
    variables["thickness_censored"] = member_var(values["thickness_censored"], "1 where the median exit lies beyond "
                                                 "the largest thickness radius", note="nan: not probed")
    variables["thickness_exit_radius"] = (("member", "direction"), exits, variable_attrs(
        "exit radius of a ray from the start if thickness_exit_observed, else where it is right-censored"))
    variables["thickness_exit_observed"] = (("member", "direction"), observed, variable_attrs(
        "1 where the thickness ray's exit was observed, 0 where right-censored", note="nan: not probed"))
    return variables


def _member_var(dims, values, long_name, **extra):
    return dims, values, variable_attrs(long_name, **extra)

