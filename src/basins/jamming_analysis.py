"""Stage ``analyze_jamming``: the phase diagram, transition and gap distributions of a sweep.

Reads the ``sweep_jamming`` runs of one jamming experiment (every network and seed) and puts
them on one grid ``(network, train_size, seed)``. Per network and seed the transition P* is
the threshold on P that best separates SAT runs (below) from UNSAT runs (above); r* = P* / N
is compared across depths (Geiger et al. 2019: r* depends little on depth at comparable N).
Next to the transition the distributions of Delta = margin - y f follow power laws at small
|Delta| (the gaps of satisfied points, the overlaps of unsatisfied ones), whose exponents are
fitted by maximum likelihood over a range placed on log bins.

Calibration: for a perceptron on random patterns (points in general position, random labels)
the probability that P points are separable is known exactly at every N (Cover 1965), and the
measured SAT fraction is set beside it with an exact binomial test per P.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import xarray as xr
from scipy import optimize, stats

from basins.io import variable_attrs
from basins.jamming_transition import classify_phase, transition_bracket, transition_size
from basins.labels import PHASE_MEANINGS, PHASE_VALUES, SAT, STUCK, UNDECIDED_PHASE, UNSAT

SIDES = ("sat", "unsat")
CONSTRAINTS = ("satisfied", "unsatisfied")


def cover_sat_probability(n_train: np.ndarray, n_free: int) -> np.ndarray:
    """Probability that ``n_train`` points in general position with random +-1 labels can be
    separated by a perceptron with ``n_free`` free parameters (Cover 1965).

    Cover's function counts the separable dichotomies, C(P, N) = 2 sum_{k<N} binom(P-1, k), so
    P(SAT) = 2^(1-P) sum_{k<N} binom(P-1, k): the probability that a Binomial(P - 1, 1/2)
    variable is below N. N counts every free parameter: d weights, plus one for the bias
    (an affine separation in d dimensions is a linear one in d + 1). It is 1 up to P = N,
    1/2 at P = 2N, and its width in P is of order sqrt(N).
    """
    n_train = np.asarray(n_train)
    if n_free < 1 or np.any(n_train < 1):
        raise ValueError(f"n_free={n_free} and n_train={n_train}: both must be at least 1")
    return stats.binom.cdf(n_free - 1, n_train - 1, 0.5)


def cover_free_parameters(
    largest_sat: np.ndarray, smallest_unsat: np.ndarray, *, confidence: float = 0.95
) -> tuple[float, float, float]:
    """The free-parameter count N that Cover's curve gives the runs of perceptrons on random
    patterns by maximum likelihood, and its likelihood-ratio interval: what the SAT/UNSAT
    phases fix N to, so their power to tell a wrong N shows as the interval's width.

    Each seed's training sets are nested (the first P points of one pool), so its runs say
    only that the first P at which its pool stops being separable lies above its largest SAT
    size a and at or below its smallest UNSAT size b; that has probability F_N(a) - F_N(b),
    with F_N Cover's P(SAT) (:func:`cover_sat_probability`; F(a) = 1 without a SAT run, a = 0,
    and F(b) = 0 without an UNSAT run, b = inf). The log-likelihood summed over seeds is
    profiled over every N from 1 to four times the largest size; the interval holds the N
    within chi2_1(confidence) / 2 of its maximum. Returns ``(N, low, high)``; ``N`` nan and
    ``high`` inf when no UNSAT run bounds N from above.
    """
    a, b = np.asarray(largest_sat, dtype=float), np.asarray(smallest_unsat, dtype=float)
    if a.shape != b.shape or not a.size or np.any(a >= b):
        raise ValueError("each seed needs its largest SAT size below its smallest UNSAT size")
    candidates = np.arange(1, int(4 * np.nanmax(np.r_[a, b[np.isfinite(b)]])) + 2)

    def sat_probability(sizes, n_free):
        known = (sizes >= 1) & np.isfinite(sizes)
        values = np.where(sizes < 1, 1.0, 0.0)
        values[known] = cover_sat_probability(sizes[known].astype(np.int64), n_free)
        return values

    with np.errstate(divide="ignore"):
        log_likelihood = np.array([np.log(sat_probability(a, n) - sat_probability(b, n)).sum() for n in candidates])
    inside = candidates[log_likelihood >= log_likelihood.max() - stats.chi2.ppf(confidence, 1) / 2]
    best = candidates[np.argmax(log_likelihood)]
    if best == candidates[-1] or not np.isfinite(b).any():  # the likelihood rises to a plateau in N
        return float("nan"), float(inside.min()), float("inf")
    return float(best), float(inside.min()), float(inside.max())


def binomial_agreement(n_sat: np.ndarray, n_decided: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, float]:
    """Two-sided exact binomial p-value of ``n_sat`` successes in ``n_decided`` trials at each
    ``probability``, and the Bonferroni family p-value (the smallest times the number of
    points tested, at most 1): reject the curve at false-alarm rate alpha when it is below
    alpha. Bonferroni holds for dependent points too (one seed's nested training sets make
    its outcomes at different P dependent). Points with no trial are nan and not counted.
    """
    n_sat, n_decided, probability = (np.asarray(a) for a in (n_sat, n_decided, probability))
    p_values = np.full(n_sat.shape, np.nan)
    for index in zip(*np.nonzero((n_decided > 0) & np.isfinite(probability))):
        p_values[index] = stats.binomtest(int(n_sat[index]), int(n_decided[index]), float(probability[index])).pvalue
    tested = np.isfinite(p_values)
    family = min(1.0, float(p_values[tested].min()) * tested.sum()) if tested.any() else np.nan
    return p_values, family


class PowerLawFit(NamedTuple):
    """p(v) = prefactor * v**exponent on ``lower`` <= v <= ``upper`` (the density over all
    values: the prefactor holds the share inside the range), by maximum likelihood; ``stderr``
    its standard error, ``n_bins`` the log bins of the range that hold ``min_count`` values,
    ``p_value`` the chi-square goodness of fit of the fitted law over the range's bins."""

    exponent: float
    stderr: float
    prefactor: float
    lower: float
    upper: float
    n_bins: int
    p_value: float


# The exponent is refitted from this many times the lower end of its own range (not of the floor:
# a fit whose lowest populated bin lies far above the floor would lose nothing): a range inside
# the power law gives the same exponent within errors, one bent by the resolution or the
# stopping rule does not; too few bins left for a refit is a range too short to be checked.
FLOOR_CHECK_FACTOR = 10.0


def fit_small_argument_exponent(
    values: np.ndarray, edges: np.ndarray, *, fit_quantile: float, min_count: int, floor: float = 0.0
) -> PowerLawFit:
    """Exponent ``a`` of a density p(v) ~ v^a at small ``v`` > 0, with its standard error.

    The range runs from the lower edge of the lowest log bin above ``floor`` (the smallest
    argument resolved: below it values are round-off or the stopping rule's) that holds at least
    ``min_count`` values, up to the ``fit_quantile`` quantile of ``values`` (a smaller quantile
    probes smaller arguments at fewer values); all nan where fewer than four such bins lie in it.
    The exponent is the maximum-likelihood one of the power law truncated to the range, from
    every value in it (Clauset, Shalizi and Newman 2009, with the upper cut), its standard error
    the inverse Fisher information; ``edges`` only place the range and the goodness of fit. The
    least squares on log bin densities this replaced were biased by -0.05 to -0.12 and their +-2
    standard errors covered the truth in 51-79 % of fits (session-35 referee: bins enter when
    they fluctuate up, and a log count is biased low). The check that the range is a power law:
    Pearson's chi-square of the counts in the range's bins (neighbours merged until each
    expects five) against the fitted law, on bins - 2 degrees of freedom; a small ``p_value``
    says the range is curved (two regimes, a cutoff, or the stopping rule's pile-up at small
    |Delta|), not a power law. Known answers in tests/test_jamming.py.
    """
    values = values[values > 0]
    failed = PowerLawFit(np.nan, np.nan, np.nan, floor, np.nan, 0, np.nan)
    if values.size < 3 * min_count:
        return failed
    counts, _ = np.histogram(values, edges)
    upper = float(np.quantile(values, fit_quantile))
    qualifies = (edges[:-1] >= floor * (1 - 1e-12)) & (edges[1:] <= upper) & (counts >= min_count)
    if not qualifies.any():
        return failed
    # The range starts one bin above the first that holds min_count values: that bin was chosen
    # for its count, and a bin that reached it by an upward fluctuation would steepen the fit
    # (-0.03 to -0.3 at 50-100 values in range; session-36 referee).
    first = int(np.flatnonzero(qualifies)[0]) + 1
    use = qualifies & (np.arange(len(counts)) >= first)
    if use.sum() < 4:
        return failed._replace(n_bins=int(use.sum()))
    lower = float(edges[first])
    inside = values[(values >= lower) & (values <= upper)]
    exponent, stderr = power_law_on_range(inside, lower, upper)
    width = np.log(upper / lower)
    normalization = lower ** (exponent + 1) * width * _expm1_over((exponent + 1) * width)  # the law's integral
    return PowerLawFit(
        exponent, stderr, float(inside.size / values.size / normalization), lower, upper,
        int(use.sum()), _power_law_p_value(inside, edges, lower, upper, exponent),
    )


def power_law_on_range(values: np.ndarray, lower: float, upper: float) -> tuple[float, float]:
    """Maximum-likelihood exponent of p(v) ~ v^a truncated to [``lower``, ``upper``], from the
    ``values`` in that range, and its standard error (inverse Fisher information); nan for
    fewer than two values there."""
    inside = values[(values >= lower) & (values <= upper)]
    if inside.size < 2:
        return np.nan, np.nan
    width = np.log(upper / lower)
    t = _truncated_exponential_rate(float(np.mean(np.log(inside / lower))) / width)
    return float(t / width - 1), float(1 / (width * np.sqrt(inside.size * _truncated_exponential_variance(t))))


def _truncated_exponential_rate(mean: float) -> float:
    """The rate t of the density ~ e^(t u) on 0 <= u <= 1 whose mean is ``mean`` (in (0, 1)):
    log v / log(upper / lower) of a power law v^(t / log(upper / lower) - 1) on the range."""
    mean = min(max(mean, 1e-6), 1 - 1e-6)  # the mean of t = -+1e7 is 1e-7 from the ends
    return float(optimize.brentq(lambda t: _truncated_exponential_mean(t) - mean, -1e7, 1e7, xtol=1e-12))


def _truncated_exponential_mean(t: float) -> float:
    if abs(t) < 1e-4:
        return 0.5 + t / 12
    with np.errstate(over="ignore"):
        return 1 / -np.expm1(-t) - 1 / t


def _truncated_exponential_variance(t: float) -> float:
    """Variance of u on [0, 1] with density ~ e^(t u): 1 / t^2 - 1 / (4 sinh^2(t / 2))."""
    if abs(t) < 1e-2:
        return 1 / 12 - t * t / 240
    with np.errstate(over="ignore"):
        return 1 / t**2 - 1 / (4 * np.sinh(t / 2) ** 2)


def _expm1_over(t: float) -> float:
    """(e^t - 1) / t, 1 at t = 0."""
    return 1.0 if t == 0 else float(np.expm1(t) / t)


def _power_law_p_value(inside, edges, lower, upper, exponent, min_expected=5.0) -> float:
    """Pearson's chi-square of the counts of ``inside`` in the bins of ``edges`` within
    [``lower``, ``upper``] against the truncated power law v^``exponent`` there; neighbouring
    bins merged until each expects ``min_expected``; nan below three merged bins."""
    cuts = np.concatenate([[lower], edges[(edges > lower) & (edges < upper)], [upper]])
    b = exponent + 1
    cdf = np.log(cuts / lower) / np.log(upper / lower) if abs(b) < 1e-12 else (
        np.expm1(b * np.log(cuts / lower)) / np.expm1(b * np.log(upper / lower)))
    expected = np.diff(cdf) * inside.size
    observed = np.histogram(inside, cuts)[0].astype(float)
    merged_expected, merged_observed = [], []
    pending_expected = pending_observed = 0.0
    for e, o in zip(expected, observed):
        pending_expected, pending_observed = pending_expected + e, pending_observed + o
        if pending_expected >= min_expected:
            merged_expected.append(pending_expected)
            merged_observed.append(pending_observed)
            pending_expected = pending_observed = 0.0
    if merged_expected:  # what is left joins the last bin
        merged_expected[-1] += pending_expected
        merged_observed[-1] += pending_observed
    if len(merged_expected) < 3:
        return np.nan
    merged_expected, merged_observed = np.array(merged_expected), np.array(merged_observed)
    chi2 = float(np.sum((merged_observed - merged_expected) ** 2 / merged_expected))
    return float(stats.chi2.sf(chi2, len(merged_expected) - 2))


def analyze_jamming(
    runs: list[xr.Dataset], *, n_bins: int = 30, fit_quantile: float = 0.3, min_count: int = 3
) -> xr.Dataset:
    """Combine a jamming experiment's runs; estimate the transition and the Delta exponents.

    Parameters
    ----------
    runs : list of xarray.Dataset
        ``sweep_jamming`` outputs with attributes ``depth``, ``width``, ``n_weights`` and
        ``seed``; one per network and seed.
    n_bins : int
        Log bins of |Delta| for the gap and overlap distributions.
    fit_quantile, min_count : float, int
        Range and bin occupancy of the small-argument fits (see
        :func:`fit_small_argument_exponent`).

    Returns
    -------
    xarray.Dataset
        Dims ``(network, train_size, seed)``: ``n_unsatisfied``, ``loss``, ``steps``,
        ``status``, ``phase``, ``test_error``, ``train_error``, ``kink_distance`` and
        ``n_active_kinks``, with
        coordinate ``ratio`` (P / N); ``(network, seed)``: ``transition_size`` P* and ``transition_ratio`` r*,
        from all the run's members (grid and fine scan), with the bracket
        ``transition_ratio_lower`` / ``_upper`` of decided sizes around it, its relative
        width ``transition_resolution`` and ``n_fine``, the fine scan's sizes;
        ``(network, seed, fine_member)``: the fine scan's members, ``fine_n_train``,
        ``fine_n_unsatisfied`` and ``fine_phase`` (nan past a run's last one);
        ``(depth,)``: mean and standard deviation of r* over networks and seeds, the mean's
        interval ``transition_ratio_low`` / ``_high`` (:func:`mean_transition_interval`) and
        ``n_transitions_missing``, the seeds without r*;
        ``(network, train_size)``: runs per phase, ``sat_count``, ``unsat_count``,
        ``stuck_count`` and ``undecided_count``;
        ``(network, train_size)``: ``sat_fraction`` (SAT / (SAT + UNSAT)) and, for
        perceptrons on random patterns, Cover's ``cover_probability`` with the binomial
        ``cover_p_value`` of the measured SAT count, and per network ``cover_family_p_value``
        (see :func:`binomial_agreement`); ``n_undecided`` and ``n_stuck`` per network;
        ``(network, side, constraint, bin)``: densities of the gaps |Delta| of satisfied
        points (Delta < 0) and of the overlaps Delta / sqrt(L) of unsatisfied ones (L the
        run's loss, as Geiger et al. scale them) at the runs next to the transition on its
        SAT and UNSAT sides, pooled over seeds; ``(network, side, constraint)``: fitted exponents.
    """
    if not runs:
        raise ValueError("analyze_jamming needs at least one sweep_jamming run")
    if n_bins < 3 or not 0 < fit_quantile <= 1 or min_count < 1:
        raise ValueError(f"n_bins={n_bins} >= 3, 0 < fit_quantile={fit_quantile} <= 1, min_count={min_count} >= 1")
    networks, seeds, placement = _place_runs(runs)
    cube = _phase_cube(runs, placement, len(networks), len(seeds))
    transitions = _transitions(runs, placement, len(networks), len(seeds))
    delta_tol = float(runs[0].attrs["delta_tol"])
    deltas = _delta_statistics(
        runs, placement, transitions["transition_size"], len(networks), delta_tol,
        n_bins=n_bins, fit_quantile=fit_quantile, min_count=min_count,
    )
    network_depth = np.array([d for d, _ in networks])
    ratio_star = transitions["transition_size"] / cube["n_weights"][:, None]
    depths = np.array(sorted(set(network_depth.tolist())))
    result = xr.Dataset(
        {
            **_phase_variables(cube, transitions["capacity"], on_perceptrons=network_depth == 0),
            **_transition_variables(transitions, ratio_star, cube["n_weights"], network_depth, depths),
            **_delta_variables(deltas),
        },
        coords={
            **_jamming_coordinates(networks, network_depth, seeds, depths, cube, deltas["edges"]),
            "fine_member": ("fine_member", np.arange(transitions["fine"]["n_train"].shape[-1]),
                            variable_attrs("a fine-scan member of a run, in the run's order")),
        },
    )
    return result.assign_attrs(
        loss_function=runs[0].attrs["loss_function"],
        margin=float(runs[0].attrs["margin"]),
        delta_tol=delta_tol,
        fit=json.dumps({"n_bins": n_bins, "fit_quantile": fit_quantile, "min_count": min_count}),
    )


def _place_runs(runs):
    """The distinct (depth, width) networks in order of appearance, the sorted seeds, and each run's
    (network, seed) index."""
    networks = list(dict.fromkeys((int(r.attrs["depth"]), int(r.attrs["width"])) for r in runs))
    seeds = sorted({int(r.attrs["seed"]) for r in runs})
    placement = [
        (networks.index((int(r.attrs["depth"]), int(r.attrs["width"]))), seeds.index(int(r.attrs["seed"])))
        for r in runs
    ]
    return networks, seeds, placement


def _jamming_coordinates(networks, network_depth, seeds, depths, cube, edges):
    return {
        "network": ("network", np.arange(len(networks)), variable_attrs("network index")),
        "network_depth": ("network", network_depth, variable_attrs("hidden layers (0: perceptron)")),
        "network_width": ("network", np.array([w for _, w in networks]), variable_attrs("hidden width")),
        "n_weights": ("network", cube["n_weights"], variable_attrs("weights N, biases excluded")),
        "train_size": ("train_size", cube["sizes"], variable_attrs("training-set size P")),
        "n_free": ("network", cube["n_free"], variable_attrs("free parameters (weights and biases)")),
        "ratio": (("network", "train_size"), cube["sizes"][None, :] / cube["n_weights"][:, None],
                  variable_attrs("P / N")),
        "seed": ("seed", np.array(seeds), variable_attrs("seed of data and initialization")),
        "depth": ("depth", depths, variable_attrs("hidden layers")),
        "side": ("side", list(SIDES), variable_attrs("side of the transition")),
        "constraint": ("constraint", list(CONSTRAINTS), variable_attrs(
            "gaps -Delta of satisfied points (Delta < 0), or overlaps Delta > delta_tol over sqrt(loss)")),
        "bin": ("bin", np.sqrt(edges[:-1] * edges[1:]), variable_attrs(
            "|Delta| (overlaps: Delta / sqrt(loss)) at the log bin centre")),
        "bin_lower": ("bin", edges[:-1], variable_attrs("lower bin edge of |Delta|")),
        "bin_upper": ("bin", edges[1:], variable_attrs("upper bin edge of |Delta|")),
    }


def _phase_cube(runs, placement, n_networks, n_seeds):
    """The grid members of every run on one ``(network, train_size, seed)`` cube (the fine
    scan's sizes differ between runs: they enter the transition and the counts, not the cube),
    with each network's weights, free parameters and whether it is fitted to random patterns."""
    sizes = np.unique(np.concatenate([_scan_members(r, fine=False)["n_train"].values for r in runs]))
    n_weights = np.zeros(n_networks, dtype=np.int64)
    n_free = np.zeros(n_networks, dtype=np.int64)
    on_random_patterns = np.zeros(n_networks, dtype=bool)
    grid = {name: np.full((n_networks, len(sizes), n_seeds), np.nan) for name in _GRID_VARIABLES}
    for run, (i, k) in zip(runs, placement):
        n_weights[i] = int(run.attrs["n_weights"])
        n_free[i] = int(run.attrs.get("n_params", run.attrs["n_weights"]))
        on_random_patterns[i] = run.attrs.get("dataset_kind") == "random_patterns"
        on_grid = _scan_members(run, fine=False)
        j = np.searchsorted(sizes, on_grid["n_train"].values)
        for name in _GRID_VARIABLES:  # runs of sweeps before the kink certificate were examined on none
            grid[name][i, j, k] = on_grid[name].values if name in on_grid or name != "n_active_kinks" else 0
    return dict(grid=grid, sizes=sizes, n_weights=n_weights, n_free=n_free, on_random_patterns=on_random_patterns)


def _transitions(runs, placement, n_networks, n_seeds):
    """Per network and seed, from all its members (grid and fine scan): P*, the bracket of
    decided sizes around it, the fine scan's size count; per network the runs in each phase."""
    transition = np.full((n_networks, n_seeds), np.nan)
    silenced_apart = np.full((n_networks, n_seeds), np.nan)
    silenced_apart_bounds = np.full((n_networks, n_seeds, 2), np.nan)
    resolution_met = np.full((n_networks, n_seeds), np.nan)
    n_silenced_unsat = np.zeros(n_networks, dtype=np.int64)
    bracket = np.full((n_networks, n_seeds, 2), np.nan)
    n_fine = np.zeros((n_networks, n_seeds), dtype=np.int64)
    phase_total = np.zeros((n_networks, len(PHASE_VALUES)), dtype=np.int64)
    capacity = np.full((n_networks, n_seeds, 2), [0.0, np.inf])  # largest SAT, smallest UNSAT size
    present = np.zeros((n_networks, n_seeds), dtype=bool)  # a network need not run every seed
    fine_members = [_scan_members(run, fine=True) for run in runs]
    n_fine_max = max([1] + [f.sizes["member"] for f in fine_members])  # one slot at least: no empty dimension
    fine = {name: np.full((n_networks, n_seeds, n_fine_max), np.nan) for name in _FINE_VARIABLES}
    for run, (i, k), members in zip(runs, placement, fine_members):
        present[i, k] = True
        n_fine[i, k] = members.sizes["member"]
        for name in _FINE_VARIABLES:
            if name in members:  # runs written before the fine scan have no scan variable
                fine[name][i, k, : n_fine[i, k]] = members[name].values
        n_train, run_phase = run["n_train"].values, run["phase"].values
        transition[i, k] = transition_size(n_train, run_phase)
        bracket[i, k] = transition_bracket(n_train, run_phase)
        alternative = _silenced_set_apart(run)
        silenced_apart[i, k] = transition_size(n_train, alternative)
        silenced_apart_bounds[i, k] = _bounds(
            transition_bracket(n_train, alternative), _capacity(n_train, alternative)
        )
        n_silenced_unsat[i] += int(((run_phase == UNSAT) & (alternative == STUCK)).sum())
        resolution_met[i, k] = run.attrs.get("fine_resolution_met", np.nan)
        capacity[i, k] = _capacity(n_train, run_phase)
        phase_total[i] += [(run_phase == value).sum() for value in PHASE_VALUES]
    return dict(transition_size=transition, bracket=bracket, n_fine=n_fine, phase_total=phase_total, capacity=capacity,
                present=present, fine=fine, silenced_apart=silenced_apart, n_silenced_unsat=n_silenced_unsat,
                resolution_met=resolution_met, silenced_apart_bounds=silenced_apart_bounds)


def _capacity(n_train, phase):
    """The largest SAT and the smallest UNSAT size (0 and inf where there is none)."""
    sizes = n_train.astype(float)
    return sizes[phase == SAT].max(initial=0), sizes[phase == UNSAT].min(initial=np.inf)


def _bounds(bracket, capacity):
    """The sizes P* lies between: its ``bracket`` (:func:`transition_bracket`), or, with no P*,
    the ``capacity``'s (:func:`_capacity`): above the largest SAT size, below the smallest UNSAT
    one. Elementwise over any leading dimensions."""
    bracket = np.asarray(bracket, dtype=float)
    return np.where(np.isfinite(bracket), bracket, capacity)


def _silenced_set_apart(run):
    """The run's phases with the UNSAT members that :func:`classify_phase` calls stuck once the
    silenced points are not counted (the rule sweeps applied before session 35); the sweep's own
    phases count every point (Geiger et al.), and its other decisions (a SAT witness) stand."""
    phase = run["phase"].values
    if "n_silenced_unsatisfied" not in run:
        return phase
    without_silenced = classify_phase(
        run["status"].values, run["n_unsatisfied"].values, n_weights=int(run.attrs["n_weights"]),
        stuck_fraction=float(run.attrs["stuck_fraction"]), n_silenced=run["n_silenced_unsatisfied"].values,
    )
    return np.where((phase == UNSAT) & (without_silenced == STUCK), STUCK, phase)


def _delta_statistics(runs, placement, transition, n_networks, delta_tol, *, n_bins, fit_quantile, min_count):
    """Densities and power-law fits of the gaps and overlaps at the runs next to the transition
    on its SAT and UNSAT sides, pooled over seeds, on shared log bins from the floor |Delta| =
    ``delta_tol`` up (smaller |Delta| are at the margin: their size is the stopping rule's and
    round-off's). Each fit is repeated from ``FLOOR_CHECK_FACTOR`` times the lower end of its range."""
    next_to_transition = _side_constraints(runs, placement, transition, delta_tol)
    by_seed = {
        (i, side, constraint): per_seed
        for i, per_side in enumerate(next_to_transition)
        for side, constraints in enumerate(per_side)
        for constraint, per_seed in enumerate(constraints[:2])
    }
    gaps = {key: _concatenate(per_seed) for key, per_seed in by_seed.items()}
    edges = _log_edges(gaps, n_bins, floor=delta_tol)
    floor = edges[0]
    density = np.full((n_networks, 2, 2, n_bins), np.nan)
    fits = np.full((n_networks, 2, 2, len(PowerLawFit._fields)), np.nan)
    raised = np.full((n_networks, 2, 2, len(PowerLawFit._fields)), np.nan)
    n_points = np.zeros((n_networks, 2, 2), dtype=np.int64)
    seed_stderr = np.full((n_networks, 2, 2), np.nan)
    seed_p = np.full((n_networks, 2, 2), np.nan)
    # Seeds in the range whose agreement cannot be tested (fewer than two with enough values).
    seeds_untested = np.zeros((n_networks, 2, 2), dtype=bool)
    for (i, side, constraint), values in gaps.items():
        n_points[i, side, constraint] = values.size
        if values.size:
            density[i, side, constraint] = np.histogram(values, edges)[0] / (values.size * np.diff(edges))
        options = dict(fit_quantile=fit_quantile, min_count=min_count)
        fit = fit_small_argument_exponent(values, edges, floor=floor, **options)
        fits[i, side, constraint] = fit
        if np.isfinite(fit.exponent):  # the seeds with values in the pooled fit's range
            in_range = [v[(v >= fit.lower) & (v <= fit.upper)] for v in by_seed[i, side, constraint]]
            in_range = [v for v in in_range if v.size]
            seed_stderr[i, side, constraint] = seed_jackknife_stderr(
                in_range, lambda pooled: power_law_on_range(pooled, fit.lower, fit.upper)[0]
            )
            seed_p[i, side, constraint] = seed_agreement_p_value(in_range, fit.lower, fit.upper)
            seeds_untested[i, side, constraint] = len(in_range) > 1 and np.isnan(seed_p[i, side, constraint])
        if fit.n_bins >= 4:
            raised[i, side, constraint] = fit_small_argument_exponent(
                values, edges, floor=fit.lower * FLOOR_CHECK_FACTOR, **options
            )
    return dict(
        edges=edges, density=density, n_points=n_points, seed_stderr=seed_stderr, seed_p_value=seed_p,
        seeds_untested=seeds_untested,
        fit=dict(zip(PowerLawFit._fields, np.moveaxis(fits, -1, 0))),
        raised_floor_fit=dict(zip(PowerLawFit._fields, np.moveaxis(raised, -1, 0))),
        n_at_margin=np.array([[constraints[2] for constraints in per_side] for per_side in next_to_transition]),
    )


def seed_jackknife_stderr(per_seed: list[np.ndarray], estimate) -> float:
    """Jackknife standard error over seeds of ``estimate(pooled values)``: the estimate
    refitted with each seed's values left out, ``sqrt((n - 1) / n sum (e_k - mean e)^2)`` over
    the ``n`` seeds. It holds the seeds' scatter, which a fit of the pooled values (its
    standard error from the counts alone) does not: seeds whose runs differ (their transitions,
    their minima) widen it. The analysis refits on the pooled fit's own range (a range chosen
    anew for each leave-one-out fit hid a fivefold scatter on real runs: session-36 referee)
    and passes only seeds with values in it. nan below two seeds or where a leave-one-out
    estimate is nan. With three seeds it rests on two degrees of freedom: a rough scale
    (+-2 of it covered 78-86 % in the referee's simulations; +-2 max(it, the pooled standard
    error) 94-97 %). Known answers (tests/test_jamming.py): seeds drawn from one power law give
    about the fit's own standard error; seeds with exponents apart give their scatter."""
    if len(per_seed) < 2:
        return np.nan
    estimates = np.array([
        estimate(_concatenate([values for j, values in enumerate(per_seed) if j != k])) for k in range(len(per_seed))
    ])
    if not np.isfinite(estimates).all():
        return np.nan
    n = len(per_seed)
    return float(np.sqrt((n - 1) / n * np.sum((estimates - estimates.mean()) ** 2)))


def _phase_variables(cube, capacity, *, on_perceptrons):
    """The cube's variables, the runs per phase and size, the SAT fraction and Cover's curve."""
    axes = ("network", "train_size", "seed")
    phase = np.nan_to_num(cube["grid"]["phase"], nan=UNDECIDED_PHASE).astype(np.int8)
    phase_count = {name: (phase == value).sum(2) for name, value in zip(PHASE_MEANINGS.split(), PHASE_VALUES)}
    n_sat, n_unsat = phase_count["sat"], phase_count["unsat"]
    with np.errstate(invalid="ignore", divide="ignore"):
        sat_fraction = n_sat / (n_sat + n_unsat)
    cover = _cover_columns(
        cube["sizes"], n_sat, n_sat + n_unsat, capacity, n_free=cube["n_free"],
        calibrated=cube["on_random_patterns"] & on_perceptrons,
    )
    return {
        **{name: (axes, values, _GRID_VARIABLES[name]) for name, values in cube["grid"].items() if name != "phase"},
        "phase": (axes, phase, variable_attrs(
            "fitting phase", flag_values=" ".join(map(str, PHASE_VALUES)), flag_meanings=PHASE_MEANINGS)),
        **{
            f"{name}_count": (("network", "train_size"), count, variable_attrs(f"{name} runs (over seeds)"))
            for name, count in phase_count.items()
        },
        "sat_fraction": (("network", "train_size"), sat_fraction, variable_attrs(
            "SAT runs / (SAT + UNSAT runs): stuck and undecided runs left out")),
        "cover_probability": (("network", "train_size"), cover["probability"], variable_attrs(
            "P(SAT) of a perceptron on random patterns (Cover 1965), N = its free parameters; "
            "nan for other networks or data")),
        "cover_p_value": (("network", "train_size"), cover["p_value"], variable_attrs(
            "two-sided exact binomial p-value of the SAT count against cover_probability")),
        "cover_family_p_value": ("network", cover["family_p_value"], variable_attrs(
            "Bonferroni p-value of the SAT fraction against Cover's curve over all P "
            "(reject below the false-alarm rate)")),
        **{f"cover_fitted_free_parameters{suffix}": ("network", cover["fitted"][:, k], variable_attrs(
            f"{what} of the free parameters that Cover's curve gives the seeds' SAT/UNSAT brackets "
            "(maximum likelihood, nested training sets; cover_free_parameters)"))
           for k, (suffix, what) in enumerate((("", "estimate"), ("_low", "95 % interval, lower end"),
                                               ("_high", "95 % interval, upper end")))},
    }


def _transition_variables(transitions, ratio_star, n_weights, network_depth, depths):
    """P* and r* per network and seed with their brackets, r* per depth, the phase totals."""
    bracket, phase_total = transitions["bracket"], transitions["phase_total"]
    lower, upper = bracket[..., 0] / n_weights[:, None], bracket[..., 1] / n_weights[:, None]
    # A seed without r* is still bounded: above its largest SAT size, below its smallest UNSAT one.
    bounds = _bounds(bracket, transitions["capacity"]) / n_weights[:, None, None]
    everywhere = [ratio_star[network_depth == d].ravel() for d in depths]
    decided = [np.isfinite(values) for values in everywhere]
    per_depth = [values[keep] for values, keep in zip(everywhere, decided)]
    ran = [transitions["present"][network_depth == d].ravel() for d in depths]
    interval = _depth_intervals(ratio_star, bounds, network_depth, depths, transitions["present"])
    silenced_ratio = transitions["silenced_apart"] / n_weights[:, None]
    silenced_interval = _depth_intervals(
        silenced_ratio, transitions["silenced_apart_bounds"] / n_weights[:, None, None], network_depth, depths,
        transitions["present"],
    )
    by_seed = ("network", "seed")
    return {
        "transition_size": (by_seed, transitions["transition_size"], variable_attrs("transition P* (nan: one phase missing)")),
        "transition_ratio": (by_seed, ratio_star, variable_attrs("r* = P* / N")),
        "transition_ratio_lower": (by_seed, lower, variable_attrs(
            "largest decided P / N below the best thresholds: r* lies above it")),
        "transition_ratio_upper": (by_seed, upper, variable_attrs(
            "smallest decided P / N above the best thresholds: r* lies below it")),
        "transition_ratio_mean": ("depth", [_mean(v) for v in per_depth], variable_attrs("mean r* over networks and seeds")),
        "transition_ratio_std": ("depth", [_std(v) for v in per_depth], variable_attrs(
            "standard deviation of r* over networks and seeds (their scatter only: see transition_ratio_low)")),
        "transition_ratio_low": ("depth", interval[:, 0], variable_attrs(
            "95 % interval of the mean r* over seeds, every seed's bracket and the seeds' scatter in it, seeds "
            "without r* by their SAT/UNSAT bounds (mean_transition_interval; nan below two estimates)")),
        "transition_ratio_high": ("depth", interval[:, 1], variable_attrs(
            "upper end of that interval (inf: a seed without r* has no UNSAT size above its SAT ones)")),
        "n_transitions": ("depth", [v.size for v in per_depth], variable_attrs("finite r* estimates")),
        "n_transitions_missing": ("depth", [int((~keep & run).sum()) for keep, run in zip(decided, ran)], variable_attrs(
            "networks and seeds with no r* (a phase not reached, or undecided runs where it would be): "
            "not in transition_ratio_mean; in its interval by their bounds")),
        "transition_resolution": (by_seed, bracket[..., 1] / bracket[..., 0] - 1, variable_attrs(
            "relative width of the bracket of P*: upper / lower - 1 (after the fine scan, if any)")),
        "largest_sat_size": (by_seed, transitions["capacity"][..., 0], variable_attrs(
            "largest SAT training-set size of the run, grid and fine scan (0: none)")),
        "smallest_unsat_size": (by_seed, transitions["capacity"][..., 1], variable_attrs(
            "smallest UNSAT training-set size of the run, grid and fine scan (inf: none); for a perceptron on "
            "nested random patterns its capacity lies above largest_sat_size and at most here")),
        "n_fine": (by_seed, transitions["n_fine"], variable_attrs("sizes of the fine scan, all passes")),
        "fine_resolution_met": (by_seed, transitions["resolution_met"], variable_attrs(
            "1 where the fine scan's passes bracketed P* to fine_resolution (or to one point), 0 where they "
            "stopped short (passes spent, or no size left), nan: the run records neither")),
        "transition_ratio_silenced_apart": (by_seed, transitions["silenced_apart"] / n_weights[:, None], variable_attrs(
            "r* with UNSAT runs that leave fewer than stuck_fraction N unsatisfied points the network sees (the rest "
            "silenced: a hidden layer off on them) set apart as stuck: the dependence of r* on counting "
            "dead-ReLU points")),
        "transition_ratio_silenced_apart_mean": ("depth", [
            _mean(values[np.isfinite(values)])
            for values in (silenced_ratio[network_depth == d].ravel() for d in depths)
        ], variable_attrs("mean of transition_ratio_silenced_apart over networks and seeds")),
        "transition_ratio_silenced_apart_low": ("depth", silenced_interval[:, 0], variable_attrs(
            "95 % interval of the mean of transition_ratio_silenced_apart over seeds, as transition_ratio_low")),
        "transition_ratio_silenced_apart_high": ("depth", silenced_interval[:, 1], variable_attrs(
            "upper end of that interval")),
        "n_unsat_silenced": ("network", transitions["n_silenced_unsat"], variable_attrs(
            "UNSAT runs, grid and fine scan, that transition_ratio_silenced_apart sets apart")),
        **{
            f"fine_{name}": ((*by_seed, "fine_member"), transitions["fine"][name], variable_attrs(description))
            for name, description in (
                ("n_train", "training-set size P of the fine scan's members (nan: no such member)"),
                ("n_unsatisfied", "N_Delta of the fine scan's members (nan: no such member)"),
                ("phase", f"phase of the fine scan's members ({PHASE_MEANINGS}: {PHASE_VALUES}; nan: no such member)"),
                ("scan", "pass of the fine scan each member was fitted in (1, 2, ...; nan: no such member)"),
            )
        },
        "n_undecided": ("network", phase_total[:, PHASE_VALUES.index(UNDECIDED_PHASE)], variable_attrs(
            "undecided runs, grid and fine scan (step budget spent, or diverged)")),
        "n_stuck": ("network", phase_total[:, PHASE_VALUES.index(STUCK)], variable_attrs(
            "stuck runs, grid and fine scan: converged with 0 < N_Delta < stuck_fraction N")),
    }


def _depth_intervals(ratio, bounds, network_depth, depths, present):
    """:func:`mean_transition_interval` per depth, over the networks and seeds that ran."""
    return np.array([
        mean_transition_interval(ratio[network_depth == d].ravel()[run], bounds[network_depth == d, :, 0].ravel()[run],
                                 bounds[network_depth == d, :, 1].ravel()[run])
        for d, run in ((d, present[network_depth == d].ravel()) for d in depths)
    ])


def mean_transition_interval(
    ratio: np.ndarray, lower: np.ndarray, upper: np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """An interval for the mean transition over seeds from each seed's estimate ``ratio`` (nan:
    the seed has none) and the bounds ``lower`` < r* < ``upper`` its decided sizes leave (the
    grid's and fine scan's resolution, no random error: it does not shrink with seeds; for a seed
    without an estimate its largest SAT and smallest UNSAT size, ``upper`` inf where none).

    Whatever each seed's r* is within its bounds, their mean lies between ``mean(lower)`` and
    ``mean(upper)`` (inf where a seed is bounded only from below: censored seeds are not left
    out, which would bias the mean and lose coverage); the seeds' scatter adds Student's
    ``t s / sqrt(n)`` to either end, ``s`` from the ``n`` estimates with the brackets' own spread
    added, ``s^2 = var(ratio) + mean(width^2) / 12`` (seeds whose transitions fall in one bracket
    show no scatter at all, however far apart they lie in it). (nan, nan) for fewer than two
    estimates; the lower end is cut at 0. Known answers (tests/test_jamming.py): seeds drawn
    around a known mean and read off a log grid of sizes 15 % apart cover it in at least the
    nominal share of simulated sweeps at every grid offset, where the estimates' t-interval
    alone does not; a censored seed makes the interval unbounded above. The session-32 referee
    found the interval without the brackets' spread covering Cover's perceptron transition in
    92 % of sweeps at the study's grid."""
    ratio, lower, upper = (np.asarray(a, dtype=float) for a in (ratio, lower, upper))
    decided = np.isfinite(ratio)
    if decided.sum() < 2:
        return np.nan, np.nan
    width = upper[decided] - lower[decided]
    spread = np.sqrt(ratio[decided].var(ddof=1) + np.mean(width**2) / 12)
    half = stats.t.ppf(0.5 + confidence / 2, decided.sum() - 1) * spread / np.sqrt(decided.sum())
    return max(float(lower.mean() - half), 0.0), float(upper.mean() + half)  # no r* is negative


def seed_agreement_p_value(per_seed: list[np.ndarray], lower: float, upper: float, min_values: int = 10) -> float:
    """Whether the seeds' values share one power law on [``lower``, ``upper``]: each seed's
    exponent fitted there (:func:`power_law_on_range`, seeds with at least ``min_values`` values),
    Cochran's Q = sum (a_k - weighted mean)^2 / stderr_k^2 against chi^2 on seeds - 1 degrees of
    freedom; nan below two such seeds. A pooled fit of seeds whose exponents differ is a
    mixture, which the goodness of fit passes in 81-90 % of draws at the sweep's sizes
    (session-36 referee). Known answer (tests/test_jamming.py): seeds of one law give uniform
    p-values, seeds 0.3 apart are told apart."""
    fits = [power_law_on_range(v, lower, upper) for v in per_seed if v.size >= min_values]
    if len(fits) < 2:
        return np.nan
    exponents, errors = np.array(fits).T
    weights = 1 / errors**2
    mean = np.sum(weights * exponents) / weights.sum()
    return float(stats.chi2.sf(np.sum(weights * (exponents - mean) ** 2), len(fits) - 1))


def _delta_variables(deltas):
    """The Delta densities next to the transition and their power-law fits."""
    axes, fit, raised = ("network", "side", "constraint"), deltas["fit"], deltas["raised_floor_fit"]
    return {
        "delta_density": ((*axes, "bin"), deltas["density"], variable_attrs(
            "density of |Delta| next to the transition, pooled over seeds")),
        "delta_exponent": (axes, fit["exponent"], variable_attrs("fitted small-|Delta| exponent of the density")),
        "delta_exponent_stderr": (axes, fit["stderr"], variable_attrs(
            "standard error of delta_exponent from the pooled counts (the seeds' scatter not in it)")),
        "delta_exponent_seed_stderr": (axes, deltas["seed_stderr"], variable_attrs(
            "jackknife standard error of delta_exponent over seeds on the fit's range (seed_jackknife_stderr: "
            "each seed left out in turn; the seeds' scatter, a rough scale with three seeds; nan below two)")),
        "delta_seed_p_value": (axes, deltas["seed_p_value"], variable_attrs(
            "agreement of the seeds' exponents on the fit's range (seed_agreement_p_value, Cochran's Q; small: "
            "the pooled density mixes seeds with different exponents; nan below two seeds with 10 values)")),
        "delta_fit_prefactor": (axes, fit["prefactor"], variable_attrs("prefactor of the fitted power law")),
        "delta_fit_lower": (axes, fit["lower"], variable_attrs(
            "smallest |Delta| of the fit range: the lower edge of its lowest bin (at least delta_tol, "
            "below which Delta is at the margin)")),
        "delta_fit_upper": (axes, fit["upper"], variable_attrs("largest |Delta| of the fit range")),
        "delta_fit_bins": (axes, fit["n_bins"].astype(np.int64), variable_attrs(
            "log bins of the fit range holding min_count values (the range is fitted from every value in it)")),
        "delta_fit_p_value": (axes, fit["p_value"], variable_attrs(
            "chi-square goodness of fit of the power law over its range (small: not a power law there)")),
        "delta_exponent_raised_floor": (axes, raised["exponent"], variable_attrs(
            f"delta_exponent refitted from {FLOOR_CHECK_FACTOR:g} times the lower end of its range: the "
            "plateau check (a range inside the power law gives the exponent within errors; nan: fewer than "
            "4 bins left, a range too short to be checked)")),
        "delta_exponent_raised_floor_stderr": (axes, raised["stderr"], variable_attrs(
            "standard error of delta_exponent_raised_floor")),
        "delta_fit_passed": (axes, power_law_verdict(fit, raised, deltas["seed_p_value"], deltas["seeds_untested"]),
                             variable_attrs(
            "1: the fit range is a power law by every check (goodness of fit p >= 0.05, the raised-floor "
            "refit's exponent within 2 standard errors of the nested difference, the seeds not told apart: "
            "delta_seed_p_value >= 0.05, or one seed alone in the range); 0: one check fails (the goodness of "
            "fit or the seeds alone where the range is too short for the refit); nan: not checkable (no fit, a "
            "fit no check rejects on too few bins for the refit, or seeds in the range too few to compare)")),
        "n_delta_points": (axes, deltas["n_points"], variable_attrs(
            "points with |Delta| > delta_tol in the distribution")),
        "n_at_margin": (("network", "side"), deltas["n_at_margin"], variable_attrs(
            "points with |Delta| <= delta_tol (at the margin) next to the transition")),
    }


def power_law_verdict(
    fit: dict, raised: dict, seed_p_value=np.nan, seeds_untested=False, *, alpha: float = 0.05, z: float = 2.0
) -> np.ndarray:
    """Whether each fitted range is a power law (1), is not (0), or cannot be told (nan): the
    chi-square goodness of fit must not reject it at ``alpha``, and the refit from a raised floor
    (:data:`FLOOR_CHECK_FACTOR`) must give the same exponent within ``z`` standard errors of
    their difference. The refit's values are a subset of the fit's, so for maximum-likelihood
    estimates the difference has variance stderr_refit^2 - stderr^2 (Hausman 1978), not their
    sum (which let a bent range pass far more often: a session-35 referee's point). Where the
    seeds' exponents on the range are told apart (``seed_p_value`` < ``alpha``,
    :func:`seed_agreement_p_value`) the pooled density is a mixture and fails too; where
    several seeds share the range but too few have the values to compare them
    (``seeds_untested``), it cannot pass (one seed's law could carry the fit). A fit the
    goodness of fit rejects fails whatever its range; one it does not reject but too short for
    the refit (fewer than 4 bins) is not checkable. Known answers (tests/test_jamming.py): a
    power law passes in ~90 % of draws (two tests at 5 %), a broken one (v^-0.2 below 1e-3,
    v^-0.7 above, ~300 values in range) in ~35 %; the referee found other bends passing in
    60-64 %: a pass means no bend resolved at this sample size."""
    exponent, stderr, p_value = (np.asarray(fit[name], dtype=float) for name in ("exponent", "stderr", "p_value"))
    refit, refit_stderr = (np.asarray(raised[name], dtype=float) for name in ("exponent", "stderr"))
    fitted = np.isfinite(exponent) & np.isfinite(p_value)
    refitted = fitted & np.isfinite(refit)
    agree = np.abs(exponent - refit) <= z * np.sqrt(np.abs(refit_stderr**2 - stderr**2))
    seeds_differ = fitted & (np.asarray(seed_p_value, dtype=float) < alpha)  # nan compares False
    fails = (fitted & (p_value < alpha)) | (refitted & ~agree) | seeds_differ
    passes = refitted & (p_value >= alpha) & agree & ~seeds_differ & ~np.asarray(seeds_untested, dtype=bool)
    return np.where(fails, 0.0, np.where(passes, 1.0, np.nan))


def _cover_columns(sizes, n_sat, n_decided, capacity, *, n_free, calibrated):
    """Cover's curve, the binomial p-values, the family p-value and the fitted free parameters
    (from each seed's ``capacity`` bracket) of the networks that have one (``calibrated``:
    perceptrons on random patterns); nan elsewhere."""
    probability = np.full(n_sat.shape, np.nan)
    p_value = np.full(n_sat.shape, np.nan)
    family_p_value = np.full(len(n_free), np.nan)
    fitted = np.full((len(n_free), 3), np.nan)
    for i in np.flatnonzero(calibrated):
        probability[i] = cover_sat_probability(sizes, int(n_free[i]))
        p_value[i], family_p_value[i] = binomial_agreement(n_sat[i], n_decided[i], probability[i])
        seeds = (capacity[i, :, 0] > 0) | np.isfinite(capacity[i, :, 1])  # a seed with a decided run
        if seeds.any():
            fitted[i] = cover_free_parameters(capacity[i, seeds, 0], capacity[i, seeds, 1])
    return {"probability": probability, "p_value": p_value, "family_p_value": family_p_value, "fitted": fitted}


#: What the analysis keeps of each fine-scan member (its sizes differ between runs: not on the grid).
_FINE_VARIABLES = ("n_train", "n_unsatisfied", "phase", "scan")

_GRID_VARIABLES = {
    "n_unsatisfied": variable_attrs("unsatisfied training points N_Delta (-1: diverged)"),
    "loss": variable_attrs("final training loss"),
    "steps": variable_attrs("steps taken"),
    "status": variable_attrs("stop reason", flag_values="0 1 2", flag_meanings="converged budget diverged"),
    "phase": variable_attrs("fitting phase"),
    "test_error": variable_attrs("test error (0-1)"),
    "train_error": variable_attrs("training error (0-1)"),
    "kink_distance": variable_attrs(
        "smallest |pre-activation| of a hidden unit on the training points (near 0: the run ends on a ReLU kink)"),
    "n_active_kinks": variable_attrs(
        "ReLU kinks an undecided run was examined on (basins.landscapes.relu_kinks; with status converged: a "
        "minimum certified there; 0: not examined or on no kink)"),
}


def _scan_members(run, *, fine: bool):
    """The members of a sweep on the shared P grid, or (``fine``) those of its fine scan; runs
    written before the fine scan have the grid's only."""
    on_fine_scan = run["scan"].values != 0 if "scan" in run else np.zeros(run.sizes["member"], bool)
    return run.isel(member=on_fine_scan == fine)


def _next_to_transition(run, p_star):
    """Members of one run closest to P* on the SAT side (below) and UNSAT side (above). A SAT
    run's gaps say where its dynamics stopped, so the SAT side skips runs the quasi-Newton
    finish decided (its line search stops wherever the margins are met, not as the last point
    crosses one) and runs shown SAT by a rescaled output layer (their gaps are the scaling's);
    an UNSAT run's overlaps are those of its minimum, however reached."""
    sizes, phase = run["n_train"].values, run["phase"].values
    elsewhere = np.zeros(sizes.size, bool)  # decided where the dynamics did not stop
    if "finish_iterations" in run:
        elsewhere |= run["finish_iterations"].values > 0
    if "output_scale" in run:
        elsewhere |= run["output_scale"].values != 1
    sat = np.flatnonzero((phase == SAT) & (sizes < p_star) & ~elsewhere)
    unsat = np.flatnonzero((phase == UNSAT) & (sizes > p_star))
    return (
        sat[np.argmax(sizes[sat])] if sat.size else None,
        unsat[np.argmin(sizes[unsat])] if unsat.size else None,
    )


def _side_constraints(runs, placement, transition, delta_tol):
    """Per network and side of the transition, from its runs next to it (a list of arrays, one
    a seed, for each kind): the gaps -Delta > ``delta_tol`` of satisfied points, the overlaps Delta > ``delta_tol`` of
    unsatisfied ones in units of sqrt(L), L = sum_mu relu(Delta_mu)^2 / 2P the run's loss
    (Geiger et al. 2019 and their code nn_jamming: the overlaps shrink with the loss as the
    transition is approached, the scaled ones do not), and the number of points at the margin,
    |Delta| <= ``delta_tol`` (a SAT run stops as its last point crosses ``delta_tol``, and a
    converged Delta is known to about 1e-8: below the tolerance a gap's size is not measured)."""
    pooled = [[([], [], 0), ([], [], 0)] for _ in range(transition.shape[0])]
    for run, (i, k) in zip(runs, placement):  # one run per network and seed
        if not np.isfinite(transition[i, k]):
            continue
        for side, member in enumerate(_next_to_transition(run, transition[i, k])):
            if member is None:
                continue
            delta = run["delta"].values[member]
            delta = delta[np.isfinite(delta)]
            gaps, overlaps, at_margin = pooled[i][side]
            overlap = delta[delta > delta_tol]
            loss = 0.5 * np.sum(np.clip(delta, 0, None) ** 2) / delta.size
            gaps.append(-delta[delta < -delta_tol])
            overlaps.append(overlap / np.sqrt(loss) if overlap.size else overlap)
            pooled[i][side] = (gaps, overlaps, at_margin + int((np.abs(delta) <= delta_tol).sum()))
    return pooled


def _concatenate(arrays):
    return np.concatenate(arrays) if arrays else np.empty(0)


def _log_edges(pooled, n_bins, *, floor):
    """Log bins from ``floor`` (if positive, else the smallest value) to the largest value:
    a fixed floor keeps the bins, and so the fits, from following the round-off of the
    smallest |Delta| between runs."""
    values = np.concatenate([v for v in pooled.values()] + [np.empty(0)])
    values = values[values > 0]
    if values.size == 0:
        return np.geomspace(floor if floor > 0 else 1e-6, 1.0, n_bins + 1)
    low = floor if floor > 0 else values.min()
    high = max(values.max(), low * 10)
    return np.geomspace(low, high * (1 + 1e-9), n_bins + 1)


def _mean(values):
    return float(values.mean()) if values.size else np.nan


def _std(values):
    return float(values.std(ddof=1)) if values.size > 1 else np.nan
