"""Stage ``estimate_basin_sizes``: basin fractions beyond counting, checked against counts.

A catalogued minimum stands for all its symmetric images, and its basin fraction (members
reaching it over members) is the initial measure of the union of their basins. The
thermodynamic integration of :mod:`basins.basin_volume` measures the basin of one image: the
one a member of the minimum reached, anchored at that member's start. Where the initial
measure is invariant under the symmetry group (Gaussian weights, zero biases; the dynamics
equivariant), every image's basin has the same measure, so the fraction is the orbit size
(:func:`basins.landscapes.symmetry.orbit_size`) times it.

Two kinds of minima are measured: the ``n_largest`` basins, whose counts are precise (the
check of the estimate against counting, on every run), and up to ``n_small`` minima that fit
the training set but have fewer than ``min_members`` members, drawn at random: the ones
counts cannot rank.

Stage ``estimate_ring_basin_sizes`` (:func:`estimate_ring_basin_sizes`) runs the same estimate
on rings of Kuramoto oscillators, where counts of many initial conditions are precise down to
basins of a few per mille: the check of the walk on a real dynamics in 16-83 dimensions, with
basins that reach across the whole torus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import xarray as xr

from basins.basin_volume import (
    INDEPENDENT_SHARE, PLATEAU_DRIFTING, PLATEAU_READINGS, SPACINGS, GaussianMeasure, UniformTorus,
    coupling_schedule, equal_length_schedule, estimate_basin_measures, interval_quantile, plateau_basin_scores,
)
from basins.io import variable_attrs
from basins.labels import LEFT, RETURNED
from basins.landscapes.architecture import Architecture
from basins.landscapes.symmetry import ODD_ACTIVATIONS, image, nearest_image_elements, orbit_size
from basins.rays import Outcomes
from basins.reruns import outcomes_of
from basins.stats import wilson_interval


#: ``run(theta (point, param)) -> (final_theta, catalogue label, status)``: the experiment's
#: dynamics from each point, its endpoint assigned by the catalogue's identity rule.
Run = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class BasinWalk:
    """The thermodynamic integration's settings, for networks and rings alike (the config's
    ``basin_sizes`` walk options, schema ``$defs/basin_walk``): springs up to
    ``largest_coupling`` in ``n_couplings`` steps (:func:`basins.basin_volume.coupling_schedule`),
    ``n_chains`` chains of ``n_steps`` Metropolis steps, the first ``n_burn`` discarded,
    ``n_reference`` draws of the strongest spring's Gaussian for the reference basin, and the
    ``independent_share`` of proposals drawn afresh from each spring's target, whether the
    walks' length is checked by a second estimate from walks half as long (``half_length_walk``;
    with ladders and members' starts, from the other side of equilibrium)
    (:func:`basins.basin_volume.estimate_basin_measures`), and how many members' starts a basin's
    chains may start among (``max_basin_samples``; 0: every chain at the anchor, as for a minimum
    one member reached, which lets a counted basin stand in for such a one), whether
    neighbouring springs' chains exchange states (``replica_exchange``), and how the springs are
    spaced (``spacing``, :data:`basins.basin_volume.SPACINGS`: uniform in ln(1 + k), or at equal
    thermodynamic length of the free spring, :func:`basins.basin_volume.equal_length_schedule`)."""

    largest_coupling: float
    n_couplings: int
    n_chains: int
    n_steps: int
    n_burn: int
    n_reference: int
    independent_share: float = INDEPENDENT_SHARE
    half_length_walk: bool = True
    max_basin_samples: int = 256
    replica_exchange: bool = True
    spacing: str = "log1p"

    def __post_init__(self):
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing={self.spacing!r}: give one of {', '.join(SPACINGS)}")

    def couplings(self, measure, centres) -> np.ndarray:
        """The springs' strengths from 0 to ``largest_coupling`` (``spacing``)."""
        if self.spacing == "thermodynamic_length":
            return equal_length_schedule(measure, centres, self.largest_coupling, self.n_couplings)
        return coupling_schedule(self.largest_coupling, self.n_couplings)

    def measure(self, inside, measure, centres, samples, *, seed, basin_ids, confidence_z) -> xr.Dataset:
        """:func:`~basins.basin_volume.estimate_basin_measures` with these settings; its chains start
        among up to ``max_basin_samples`` of each basin's ``samples`` (whitened points, ``(sample,
        dim)`` per basin: draws of the initial measure inside it, the starts of members that
        reached it), drawn at random."""
        rng = np.random.default_rng([seed, 1])  # a stream of its own beside the walk's
        samples = [own[rng.permutation(len(own))[:self.max_basin_samples]] for own in samples]
        return estimate_basin_measures(
            inside, measure, centres, couplings=self.couplings(measure, centres),
            n_chains=self.n_chains, n_steps=self.n_steps, n_burn=self.n_burn, n_reference=self.n_reference,
            seed=seed, basin_ids=basin_ids, confidence_z=confidence_z, basin_samples=samples,
            independent_share=self.independent_share, half_length_walk=self.half_length_walk,
            replica_exchange=self.replica_exchange,
        )


def select_minima_to_measure(
    n_members: np.ndarray, train_error: np.ndarray, *, n_largest: int, n_small: int, min_members: int,
    fit_threshold: float, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n_largest`` basins and of up to ``n_small`` fitting minima with fewer
    than ``min_members`` members (drawn at random, not picked by any statistic), and whether each
    is one of the small ones."""
    n_members = np.asarray(n_members)
    largest = np.argsort(-n_members, kind="stable")[:n_largest]
    small = np.flatnonzero((n_members < min_members) & (np.asarray(train_error) <= fit_threshold))
    small = np.random.default_rng(seed).permutation(small)[:n_small]
    chosen = np.r_[largest, np.setdiff1d(small, largest)].astype(np.int64)
    return chosen, np.isin(chosen, small) & ~np.isin(chosen, largest)


def estimate_basin_sizes(
    run: Run,
    arch: Architecture,
    scales: np.ndarray,
    labels: np.ndarray,
    initial_theta: np.ndarray,
    final_theta: np.ndarray,
    minima: np.ndarray,
    small: np.ndarray,
    *,
    image_tol: float,
    walk: BasinWalk,
    seed: int,
    confidence_z: float = 1.96,
) -> xr.Dataset:
    """Each minimum's basin fraction by thermodynamic integration, beside its count.

    Parameters
    ----------
    run : callable
        :data:`Run`.
    arch : Architecture
    scales : ndarray, shape (param,)
        Standard deviation of each parameter at initialization (0: drawn as 0, e.g. biases),
        :func:`basins.landscapes.architecture.initial_scales`.
    labels, initial_theta, final_theta : ndarray, shapes (member,), (member, param) x 2
        The catalogue's members: minimum reached (negative: none), start and endpoint.
    minima, small : ndarray, shape (minimum,)
        Catalogue indices to measure, and which are small (:func:`select_minima_to_measure`).
    image_tol : float
        A re-run is in the anchor's image basin when it reaches the anchor's minimum (catalogue
        rule) within this Euclidean distance of the anchor member's endpoint, no other image.
    walk : BasinWalk
    seed : int
        Of the walk's proposals and reference draws.

    Returns
    -------
    xarray.Dataset
        :func:`~basins.basin_volume.estimate_basin_measures`' variables (``log_measure`` is one
        image's basin) and per ``minimum``: ``orbit_size``, ``log_basin_fraction`` with
        ``_low`` / ``_high`` (orbit size times the image's measure), ``n_members`` and the count
        fraction's ln with its Wilson interval ``log_count_fraction_low`` / ``_high``,
        ``is_small``, ``anchor_member``; ``count_disagreement``: the estimate minus the count in
        combined standard errors, for the largest minima (nan for the small ones).
    """
    support = scales > 0
    anchors = np.array([np.flatnonzero(labels == m)[0] for m in minima], dtype=np.int64)
    anchor_end = final_theta[anchors]
    if np.abs(initial_theta[:, ~support]).max(initial=0.0) > 0:
        raise ValueError("members' starts have non-zero parameters where the initial measure has none: "
                         "the scales do not describe these starts")

    def inside(z, basins):
        theta = np.zeros((len(z), arch.n_params))
        theta[:, support] = z * scales[support]
        reached, label, status = run(theta)
        outcome = outcomes_of(label, status, minima[basins])
        other_image = np.linalg.norm(reached - anchor_end[basins], axis=1) > image_tol
        return np.where((outcome == RETURNED) & other_image, LEFT, outcome).astype(np.int8)

    def whitened(theta):  # the walk's coordinates: the initial measure's standard normal
        return theta[:, support] / scales[support]

    samples = [whitened(starts_in_anchor_image(arch, initial_theta[labels == m], final_theta[labels == m], end,
                                               image_tol=image_tol))
               for m, end in zip(minima, anchor_end)]
    result = walk.measure(
        inside, GaussianMeasure(int(support.sum())), whitened(initial_theta[anchors]), samples,
        seed=seed, basin_ids=minima, confidence_z=confidence_z,
    )
    # Images within image_tol of the anchor's are one image to the re-runs, so to the orbit too.
    orbits = np.array([orbit_size(theta, arch, atol=image_tol) for theta in anchor_end])
    counts = np.array([(labels == m).sum() for m in minima])
    return _with_counts(result, orbits, counts, len(labels), small, anchors, confidence_z)


def starts_in_anchor_image(
    arch: Architecture, starts: np.ndarray, ends: np.ndarray, anchor_end: np.ndarray, *, image_tol: float
) -> np.ndarray:
    """Draws of the initial measure inside the basin of the anchor's image, from the members that
    reached any image of its minimum: each member's start ``(member, param)`` moved by the
    symmetry that carries its endpoint onto the image nearest ``anchor_end``, kept where that
    image lies within ``image_tol`` of it.

    Equivariant dynamics map the basin of one image onto the basin of another, and the Gaussian
    initial measure is invariant under permutations and sign flips of hidden units, so a moved
    start is a draw of the initial measure inside the anchor image's basin: the pool of the walk's
    chains holds the whole minimum's members, where the anchor's own image holds about 1 / orbit
    of them (N = 41, orbit 384: a pool of 0-1 starts for a basin of 521 members). ReLU units are
    only permuted (rescaling a unit changes the measure); networks of two or more hidden layers
    keep the members that reached the anchor's own image (no group element is found for them).
    """
    if arch.depth > 1:
        moved_starts, moved_ends = starts, ends
    else:
        orders, factors = nearest_image_elements(np.broadcast_to(anchor_end, ends.shape), ends, arch)
        if arch.activation not in ODD_ACTIVATIONS:
            factors = [np.ones_like(factor) for factor in factors]
        moved_starts, moved_ends = (image(points, arch, orders, factors) for points in (starts, ends))
    return moved_starts[np.linalg.norm(moved_ends - anchor_end, axis=1) <= image_tol]


def estimate_ring_basin_sizes(
    outcomes: Outcomes,
    labels: np.ndarray,
    initial_theta: np.ndarray,
    minima: np.ndarray,
    *,
    walk: BasinWalk,
    seed: int,
    confidence_z: float = 1.96,
) -> xr.Dataset:
    """Twisted states' basin fractions by thermodynamic integration on the torus, beside their counts.

    A catalogued twisted state is its whole circle of global phase shifts, and its basin every
    phase that relaxes to any point of that circle: the walk's re-runs return when they end on
    the circle (``outcomes``), so the orbit size is 1 and the walk measures the fraction itself,
    under the uniform measure of the phases the members were drawn from.

    Parameters
    ----------
    outcomes : callable
        :data:`basins.rays.Outcomes` of the ring, aimed at catalogue minima
        (:func:`basins.ring_reruns.ring_outcomes`).
    labels, initial_theta : ndarray, shapes (member,), (member, oscillator)
        The catalogue's members: twisted state reached (catalogue index; negative: none) and start.
    minima : ndarray, shape (minimum,)
        Catalogue indices to measure; each must have a member (its start anchors the walk).
    walk : BasinWalk
    seed : int
        Of the walk's proposals and reference draws.

    Returns
    -------
    xarray.Dataset
        As :func:`estimate_basin_sizes`, every minimum checked against its count
        (``count_disagreement``).
    """
    minima = np.asarray(minima, dtype=np.int64)
    unreached = [int(m) for m in minima if not (labels == m).any()]
    if unreached:
        raise ValueError(f"no member reached catalogue minima {unreached}: no start to anchor their walks")
    anchors = np.array([np.flatnonzero(labels == m)[0] for m in minima], dtype=np.int64)
    torus = UniformTorus(initial_theta.shape[1])
    whitened = torus.wrap(initial_theta)
    result = walk.measure(
        lambda z, basins: outcomes(z, minima[basins]), torus, whitened[anchors],
        [whitened[labels == m] for m in minima], seed=seed, basin_ids=minima, confidence_z=confidence_z,
    )
    counts = np.array([(labels == m).sum() for m in minima])
    return _with_counts(result, np.ones(len(minima), dtype=np.int64), counts, len(labels),
                        np.zeros(len(minima), dtype=bool), anchors, confidence_z)


def summary_lines(result: xr.Dataset) -> list[str]:
    """What a stage's log says of its basin sizes (:func:`estimate_basin_sizes`,
    :func:`estimate_ring_basin_sizes`): the estimates beside the counts, the fresh draws' flags,
    the walks' plateau check, pooled and basin by basin."""
    lines = [
        "ln basin fraction, estimated: {}; counted: {}; flagged by the fresh draws' check: {} of {}".format(
            result["log_basin_fraction"].values.round(2), result["log_count_fraction"].values.round(2),
            int(result["draws_check_failed"].sum()), result.sizes["minimum"]),
        "the walks' plateau score ({}) {:+.2f} over {} of {} basins (standard normal at equilibrium): {}".format(
            result["plateau_method"].item(), float(result["plateau_score"]), int(result["plateau_basins"]),
            result.sizes["minimum"], PLATEAU_READINGS[int(result["plateau_check_failed"])]),
    ]
    if "plateau_basin_failed" in result:  # written since the per-basin level
        drifting = result["plateau_basin_failed"].values == PLATEAU_DRIFTING
        names = ([f"q = {q}" for q in result["winding_number"].values] if "winding_number" in result
                 else [f"minimum {m}" for m in result["minimum"].values])
        scores = plateau_basin_scores(result).values
        beyond = ", ".join(f"{name} ({score:+.2f})" for name, score, out in zip(names, scores, drifting) if out)
        lines.append("basins whose own score passes the per-basin level {:.2f}: {}".format(
            float(result["plateau_basin_level"]),
            f"{beyond}: their estimates move with the walks' length, raise n_steps" if beyond else "none"))
    if "predicted_swap_acceptance" in result and np.isfinite(result["swap_acceptance"].values).any():
        lines.append(_exchange_line(result))
    return lines


def _exchange_line(result: xr.Dataset) -> str:
    """The ladder's narrowest passage: the gap whose exchanges were taken least, against what free
    springs would take there (:func:`basins.basin_volume.predicted_swap_acceptance`)."""
    taken = result["swap_acceptance"].values
    basin, gap = np.unravel_index(np.nanargmin(taken), taken.shape)
    couplings = result["coupling"].values
    return ("exchange between springs: least share of offers taken {:.3f}, k = {:.3g} to {:.3g} (free springs: {:.3f}); "
            "the weak springs receive the strong springs' states through it (spacing: thermodynamic_length "
            "evens the ladder)").format(taken[basin, gap], couplings[gap], couplings[gap + 1],
                                       result["predicted_swap_acceptance"].values[basin, gap])


def _with_counts(result, orbits, counts, n_total, small, anchors, z):
    log_orbit = np.log(orbits)
    low, high = wilson_interval(counts, n_total, z)
    count_se = np.sqrt((1 - counts / n_total) / np.maximum(counts, 1))  # delta method on ln(n / N)
    estimate = result["log_measure"].values + log_orbit
    # the walk's se widened as its interval is (Student's t at its dof), so that |disagreement| > z
    # says what the intervals say
    walk_se = result["log_measure_se"].values * interval_quantile(z, result["log_measure_dof"].values) / z
    with np.errstate(divide="ignore"):  # a minimum no member reached: ln 0
        log_count = np.log(counts / n_total)
    with np.errstate(divide="ignore", invalid="ignore"):  # counts of 0 and estimates without a reference
        disagreement = np.where(
            small, np.nan, (estimate - log_count)
            / np.sqrt(walk_se**2 + (result["quadrature_error"].values / z) ** 2 + count_se**2)
        )
    per_minimum = lambda values, name, **extra: (("minimum",), values, variable_attrs(name, **extra))  # noqa: E731
    result = result.assign(
        orbit_size=per_minimum(orbits, "distinct symmetric images of the minimum, as the re-runs tell them apart",
                               note="group order / elements moving the anchor by at most image_tol"),
        log_basin_fraction=per_minimum(estimate, "ln of the basin fraction: ln orbit_size + log_measure"),
        log_basin_fraction_low=per_minimum(result["log_measure_low"].values + log_orbit, "lower end of its interval"),
        log_basin_fraction_high=per_minimum(result["log_measure_high"].values + log_orbit, "upper end of its interval"),
        n_members=per_minimum(counts, "members of the ensemble that reached the minimum"),
        log_count_fraction=per_minimum(log_count, "ln of the counted basin fraction"),
        log_count_fraction_low=per_minimum(np.log(low), "ln of the lower end of its Wilson interval"),
        log_count_fraction_high=per_minimum(np.log(high), "ln of the upper end of its Wilson interval"),
        count_disagreement=per_minimum(
            disagreement, "log_basin_fraction - log_count_fraction in combined standard errors",
            note="the check against counting; nan for the small minima, whose counts cannot rank them"),
        is_small=per_minimum(small.astype(np.int8), "whether the minimum was measured as one counts cannot rank",
                             flag_values="0 1", flag_meanings="largest small"),
        anchor_member=per_minimum(anchors, "member whose start anchors the walk (its endpoint is the image measured)"),
    )
    return _check_invariants(result)


def _check_invariants(result):
    """No estimate where its interval says the basin holds more than the whole space (the walk
    did not equilibrate): nan, with the reason; the other minima keep theirs."""
    impossible = result["log_basin_fraction_low"].values > 0
    if not impossible.any():
        return result
    reason = result["reason"].values.copy()
    reason[impossible] = "the interval of the basin fraction lies above 1: the walk did not equilibrate " \
        "(raise n_steps and n_burn)"
    result = result.assign(reason=(("minimum",), reason, result["reason"].attrs))
    for name in ("log_measure", "log_measure_low", "log_measure_high", "log_basin_fraction",
                 "log_basin_fraction_low", "log_basin_fraction_high", "count_disagreement"):
        result[name] = result[name].where(~xr.DataArray(impossible, dims="minimum"))
    return result
