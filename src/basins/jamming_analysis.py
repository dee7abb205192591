"""Stage ``analyze_jamming``: the phase diagram, transition and gap distributions of a sweep.

Reads the ``sweep_jamming`` runs of one jamming experiment (every network and seed) and puts
them on one grid ``(network, train_size, seed)``. Per network and seed the transition P* is
the threshold on P that best separates SAT runs (below) from UNSAT runs (above); r* = P* / N
is compared across depths (Geiger et al. 2019: r* depends little on depth at comparable N).
Next to the transition the distributions of Delta = margin - y f follow power laws at small
|Delta| (the gaps of satisfied points, the overlaps of unsatisfied ones), whose exponents are
fitted on log bins.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import xarray as xr

from basins.io import variable_attrs
from basins.labels import SAT, UNSAT

SIDES = ("sat", "unsat")
CONSTRAINTS = ("satisfied", "unsatisfied")


def transition_size(n_train: np.ndarray, phase: np.ndarray) -> float:
    """P* between the SAT and UNSAT runs of one network and seed (nan if one phase is missing).

    Among thresholds between consecutive decided sizes, the one that misclassifies the fewest
    runs (UNSAT below it, SAT above it); ties give the geometric middle of the tied range.
    Undecided runs (phase -1) are ignored.
    """
    found = _best_thresholds(n_train, phase)
    if found is None:
        return np.nan
    sizes, best = found
    thresholds = np.sqrt(sizes[:-1] * sizes[1:])
    return float(np.sqrt(thresholds[best[0]] * thresholds[best[-1]]))


def transition_bracket(n_train: np.ndarray, phase: np.ndarray) -> tuple[float, float]:
    """The decided sizes that enclose the best thresholds of :func:`transition_size`: the grid
    only places P* between them (nan, nan if one phase is missing)."""
    found = _best_thresholds(n_train, phase)
    if found is None:
        return np.nan, np.nan
    sizes, best = found
    return float(sizes[best[0]]), float(sizes[best[-1] + 1])


def _best_thresholds(n_train, phase):
    """Sorted decided sizes and the indices of the thresholds between consecutive ones that
    misclassify the fewest runs; None without both phases."""
    decided = phase >= 0
    sizes, phases = np.asarray(n_train, dtype=float)[decided], np.asarray(phase)[decided]
    if not (phases == SAT).any() or not (phases == UNSAT).any():
        return None
    order = np.argsort(sizes)
    sizes, phases = sizes[order], phases[order]
    thresholds = np.sqrt(sizes[:-1] * sizes[1:])
    errors = np.array([((phases == UNSAT) & (sizes < t)).sum() + ((phases == SAT) & (sizes > t)).sum() for t in thresholds])
    return sizes, np.flatnonzero(errors == errors.min())


class PowerLawFit(NamedTuple):
    """p(v) = prefactor * v**exponent, fitted on ``n_bins`` log bins below ``upper``."""

    exponent: float
    stderr: float
    prefactor: float
    upper: float
    n_bins: int


def fit_small_argument_exponent(
    values: np.ndarray, edges: np.ndarray, *, fit_quantile: float, min_count: int
) -> PowerLawFit:
    """Exponent ``a`` of a density p(v) ~ v^a at small ``v`` > 0, with its standard error.

    Least squares of log density on log bin centre over the log bins below the
    ``fit_quantile`` quantile of ``values`` that hold at least ``min_count`` values (a smaller
    quantile probes smaller arguments at fewer counts), each bin weighted by the square root of
    its count (the Poisson error of a log count). All nan where fewer than four bins
    qualify (the standard error needs residuals).
    """
    values = values[values > 0]
    failed = PowerLawFit(np.nan, np.nan, np.nan, np.nan, 0)
    if values.size < 3 * min_count:
        return failed
    counts, _ = np.histogram(values, edges)
    centres = np.sqrt(edges[:-1] * edges[1:])
    density = counts / (values.size * np.diff(edges))
    upper = np.quantile(values, fit_quantile)
    use = (edges[1:] <= upper) & (counts >= min_count)
    if use.sum() < 4:
        return failed._replace(n_bins=int(use.sum()))
    (slope, intercept), cov = np.polyfit(
        np.log(centres[use]), np.log(density[use]), 1, w=np.sqrt(counts[use]), cov=True
    )
    return PowerLawFit(float(slope), float(np.sqrt(cov[0, 0])), float(np.exp(intercept)), float(upper), int(use.sum()))


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
        ``status``, ``phase``, ``test_error`` and ``train_error``, with coordinate ``ratio``
        (P / N); ``(network, seed)``: ``transition_size`` P* and ``transition_ratio`` r*,
        with the bracket ``transition_ratio_lower`` / ``_upper`` that the P grid allows;
        ``(depth,)``: mean and standard deviation of r* over networks and seeds;
        ``(network, side, constraint, bin)``: densities of |Delta| for satisfied (Delta < 0)
        and unsatisfied points at the runs next to the transition on its SAT and UNSAT
        sides, pooled over seeds; ``(network, side, constraint)``: fitted exponents.
    """
    if not runs:
        raise ValueError("analyze_jamming needs at least one sweep_jamming run")
    if n_bins < 3 or not 0 < fit_quantile <= 1 or min_count < 1:
        raise ValueError(f"n_bins={n_bins} >= 3, 0 < fit_quantile={fit_quantile} <= 1, min_count={min_count} >= 1")
    networks = list(dict.fromkeys((int(r.attrs["depth"]), int(r.attrs["width"])) for r in runs))
    seeds = sorted({int(r.attrs["seed"]) for r in runs})
    sizes = np.unique(np.concatenate([r["n_train"].values for r in runs]))
    # (network, seed) index of every run
    placement = [
        (networks.index((int(r.attrs["depth"]), int(r.attrs["width"]))), seeds.index(int(r.attrs["seed"])))
        for r in runs
    ]
    n_weights = np.zeros(len(networks), dtype=np.int64)
    grid = {name: np.full((len(networks), len(sizes), len(seeds)), np.nan) for name in _GRID_VARIABLES}
    for run, (i, k) in zip(runs, placement):
        n_weights[i] = int(run.attrs["n_weights"])
        j = np.searchsorted(sizes, run["n_train"].values)
        for name in _GRID_VARIABLES:
            grid[name][i, j, k] = run[name].values
    phase = np.nan_to_num(grid["phase"], nan=-1).astype(np.int8)
    transition = np.array(
        [[transition_size(sizes, phase[i, :, k]) for k in range(len(seeds))] for i in range(len(networks))]
    )
    bracket = np.array(
        [[transition_bracket(sizes, phase[i, :, k]) for k in range(len(seeds))] for i in range(len(networks))]
    ).reshape(len(networks), len(seeds), 2)
    ratio_star = transition / n_weights[:, None]
    depths = np.array(sorted({d for d, _ in networks}))
    network_depth = np.array([d for d, _ in networks])
    per_depth = [ratio_star[network_depth == d].ravel() for d in depths]
    per_depth = [values[np.isfinite(values)] for values in per_depth]

    delta_tol = float(runs[0].attrs["delta_tol"])
    next_to_transition = _side_deltas(runs, placement, transition)
    gaps = {
        (i, side, constraint): values
        for i, per_side in enumerate(next_to_transition)
        for side, delta in enumerate(per_side)
        for constraint, values in enumerate((-delta[delta < 0], delta[delta > delta_tol]))
    }
    edges = _log_edges(gaps, n_bins)
    density = np.full((len(networks), 2, 2, n_bins), np.nan)
    fits = np.full((len(networks), 2, 2, len(PowerLawFit._fields)), np.nan)
    n_points = np.zeros((len(networks), 2, 2), dtype=np.int64)
    for (i, side, constraint), values in gaps.items():
        n_points[i, side, constraint] = values.size
        if values.size:
            density[i, side, constraint] = np.histogram(values, edges)[0] / (values.size * np.diff(edges))
        fits[i, side, constraint] = fit_small_argument_exponent(
            values, edges, fit_quantile=fit_quantile, min_count=min_count
        )
    fit = dict(zip(PowerLawFit._fields, np.moveaxis(fits, -1, 0)))
    n_at_margin = np.array(
        [[((delta >= 0) & (delta <= delta_tol)).sum() for delta in per_side] for per_side in next_to_transition]
    )

    cube = ("network", "train_size", "seed")
    side_constraint = ("network", "side", "constraint")
    result = xr.Dataset(
        {
            **{name: (cube, values, _GRID_VARIABLES[name]) for name, values in grid.items() if name != "phase"},
            "phase": (cube, phase, variable_attrs("fitting phase", flag_values="-1 0 1", flag_meanings="undecided sat unsat")),
            "transition_size": (("network", "seed"), transition, variable_attrs("transition P* (nan: one phase missing)")),
            "transition_ratio": (("network", "seed"), ratio_star, variable_attrs("r* = P* / N")),
            "transition_ratio_lower": (
                ("network", "seed"),
                bracket[..., 0] / n_weights[:, None],
                variable_attrs("largest decided P / N below the best thresholds: r* lies above it"),
            ),
            "transition_ratio_upper": (
                ("network", "seed"),
                bracket[..., 1] / n_weights[:, None],
                variable_attrs("smallest decided P / N above the best thresholds: r* lies below it"),
            ),
            "transition_ratio_mean": ("depth", [_mean(v) for v in per_depth], variable_attrs("mean r* over networks and seeds")),
            "transition_ratio_std": ("depth", [_std(v) for v in per_depth], variable_attrs("standard deviation of r* over networks and seeds")),
            "n_transitions": ("depth", [v.size for v in per_depth], variable_attrs("finite r* estimates")),
            "n_undecided": ("network", (phase == -1).sum((1, 2)), variable_attrs("undecided runs (budget spent near zero, or diverged)")),
            "delta_density": (
                (*side_constraint, "bin"),
                density,
                variable_attrs("density of |Delta| next to the transition, pooled over seeds"),
            ),
            "delta_exponent": (side_constraint, fit["exponent"], variable_attrs("fitted small-|Delta| exponent of the density")),
            "delta_exponent_stderr": (side_constraint, fit["stderr"], variable_attrs("standard error of delta_exponent")),
            "delta_fit_prefactor": (side_constraint, fit["prefactor"], variable_attrs("prefactor of the fitted power law")),
            "delta_fit_upper": (side_constraint, fit["upper"], variable_attrs("largest |Delta| of the fit range")),
            "delta_fit_bins": (side_constraint, fit["n_bins"].astype(np.int64), variable_attrs("log bins in the fit")),
            "n_delta_points": (side_constraint, n_points, variable_attrs("points in the distribution")),
            "n_at_margin": (
                ("network", "side"),
                n_at_margin,
                variable_attrs("points with 0 <= Delta <= delta_tol (at the margin) next to the transition"),
            ),
        },
        coords={
            "network": ("network", np.arange(len(networks)), variable_attrs("network index")),
            "network_depth": ("network", network_depth, variable_attrs("hidden layers (0: perceptron)")),
            "network_width": ("network", np.array([w for _, w in networks]), variable_attrs("hidden width")),
            "n_weights": ("network", n_weights, variable_attrs("weights N, biases excluded")),
            "train_size": ("train_size", sizes, variable_attrs("training-set size P")),
            "ratio": (("network", "train_size"), sizes[None, :] / n_weights[:, None], variable_attrs("P / N")),
            "seed": ("seed", np.array(seeds), variable_attrs("seed of data and initialization")),
            "depth": ("depth", depths, variable_attrs("hidden layers")),
            "side": ("side", list(SIDES), variable_attrs("side of the transition")),
            "constraint": ("constraint", list(CONSTRAINTS), variable_attrs("Delta < 0 (gaps) or Delta > delta_tol (overlaps)")),
            "bin": ("bin", np.sqrt(edges[:-1] * edges[1:]), variable_attrs("|Delta| at the log bin centre")),
            "bin_lower": ("bin", edges[:-1], variable_attrs("lower bin edge of |Delta|")),
            "bin_upper": ("bin", edges[1:], variable_attrs("upper bin edge of |Delta|")),
        },
    )
    return result.assign_attrs(
        loss_function=runs[0].attrs["loss_function"],
        margin=float(runs[0].attrs["margin"]),
        delta_tol=delta_tol,
        fit=json.dumps({"n_bins": n_bins, "fit_quantile": fit_quantile, "min_count": min_count}),
    )


_GRID_VARIABLES = {
    "n_unsatisfied": variable_attrs("unsatisfied training points N_Delta (-1: diverged)"),
    "loss": variable_attrs("final training loss"),
    "steps": variable_attrs("steps taken"),
    "status": variable_attrs("stop reason", flag_values="0 1 2", flag_meanings="converged budget diverged"),
    "phase": variable_attrs("fitting phase"),
    "test_error": variable_attrs("test error (0-1)"),
    "train_error": variable_attrs("training error (0-1)"),
}


def _next_to_transition(run, p_star):
    """Members of one run closest to P* on the SAT side (below) and UNSAT side (above)."""
    sizes, phase = run["n_train"].values, run["phase"].values
    sat = np.flatnonzero((phase == SAT) & (sizes < p_star))
    unsat = np.flatnonzero((phase == UNSAT) & (sizes > p_star))
    return (
        sat[np.argmax(sizes[sat])] if sat.size else None,
        unsat[np.argmin(sizes[unsat])] if unsat.size else None,
    )


def _side_deltas(runs, placement, transition):
    """Per network, the Delta values of its runs next to the transition, pooled per side."""
    per_side = [([], []) for _ in range(transition.shape[0])]
    for run, (i, k) in zip(runs, placement):
        if not np.isfinite(transition[i, k]):
            continue
        for side, member in enumerate(_next_to_transition(run, transition[i, k])):
            if member is not None:
                delta = run["delta"].values[member]
                per_side[i][side].append(delta[np.isfinite(delta)])
    return [[np.concatenate(d) if d else np.empty(0) for d in sides] for sides in per_side]


def _log_edges(pooled, n_bins):
    values = np.concatenate([v for v in pooled.values()] + [np.empty(0)])
    values = values[values > 0]
    if values.size == 0:
        return np.geomspace(1e-6, 1.0, n_bins + 1)
    low, high = values.min(), values.max()
    if high <= low:
        high = low * 10
    return np.geomspace(low, high * (1 + 1e-9), n_bins + 1)


def _mean(values):
    return float(values.mean()) if values.size else np.nan


def _std(values):
    return float(values.std(ddof=1)) if values.size > 1 else np.nan
