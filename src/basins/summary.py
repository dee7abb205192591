"""Stage ``summarize_study``: the study's answer, experiment by experiment, in one table.

For every experiment and seed: how basin size goes with test error (rank correlation); how the
basins of its best and worst minima are shaped (``measure_tentacles``: reach, star-shapedness,
local thickness, the return probability far out), with the difference good - bad and its
interval, and whether the two basins are of matched size; and whether flat minima (small
Hessian trace) are the ones with large basins and low test error. Across the study, a
regression of each shape statistic on the minima's test-error rank and log basin fraction
compares good and bad minima at matched basin fraction (:func:`compare_at_matched_size`).

Shape statistics enter only for minima with at least the stage's ``min_members`` members
(``n_members`` against the tentacles file's ``min_members``); where too few qualify the
entries are nan and ``shape_reason`` / ``reason`` say why.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import stats

from basins.io import variable_attrs
from basins.stats import spearman_with_error

#: Shape statistics compared between good and bad minima: name -> (how its uncertainty is stored,
#: the sign of "more tentacled"). ``interval``: ``_low`` / ``_high``; ``se``: ``_se``.
SHAPE_STATISTICS = {
    "reach": ("interval", +1),
    "leaving_fraction": ("interval", +1),
    "median_thickness_ratio": ("interval", -1),
    "far_return_probability": ("se", +1),
    "far_reentry_probability": ("se", +1),
}
#: The normal quantile of the shape statistics' 95 % intervals.
Z_95 = float(stats.norm.ppf(0.975))


def summarize_study(
    labels: list[str],
    basins: list[xr.Dataset],
    tentacles: list[xr.Dataset],
    flatness: list[xr.Dataset],
    *,
    match_factor: float = 2.0,
) -> xr.Dataset:
    """One row per experiment and seed; ``labels`` name the rows (e.g. ``"name/seed1"``).

    Parameters
    ----------
    labels, basins, tentacles, flatness
        Per experiment and seed: its name, and the outputs of ``analyze_basins``,
        ``measure_tentacles`` (:func:`basins.tentacles.measure_tentacles`) and
        ``measure_flatness``.
    match_factor : float
        Good and bad basins count as matched in size when their basin fractions differ by at
        most this factor (``matched``); the stratified difference ``<stat>_difference_matched``
        is given only for matched pairs.

    Returns
    -------
    xarray.Dataset
        Along ``experiment``: ``n_minima``, ``unassigned_fraction`` (of which
        ``saddle_fraction`` and ``undecided_fraction``), ``on_tolerance_plateau``, the Spearman
        correlation of basin fraction with test error; among the probed minima with at least
        ``min_members`` members, the one of lowest ("good") and highest ("bad") test error:
        their test error and basin fraction, every shape statistic of
        :data:`SHAPE_STATISTICS` with its 95 % interval, ``<stat>_difference`` (good - bad)
        with ``_low`` / ``_high`` (normal, from the two intervals as standard errors),
        ``basin_fraction_log_ratio`` (log good / bad), ``matched`` and
        ``<stat>_difference_matched``; the old index ``good_old_tentacle_fraction`` /
        ``bad_...`` for comparison; ``shape_reason``; the Spearman correlations of the Hessian
        trace with basin fraction and test error. Along ``statistic``: the pooled comparison
        at matched basin fraction (:func:`compare_at_matched_size`).
    """
    if not (len(labels) == len(basins) == len(tentacles) == len(flatness)):
        raise ValueError("labels, basins, tentacles and flatness must have one entry per experiment and seed")
    rows = [_summarize_one(b, t, match_factor) | _flatness_columns(b, f)
            for b, t, f in zip(basins, tentacles, flatness)]
    names = [name for name in (rows[0].keys() if rows else []) if name != "shape_reason"]
    columns = {name: np.array([row[name] for row in rows], dtype=float) for name in names}
    variables = {name: ("experiment", values, variable_attrs(_long_name(name))) for name, values in columns.items()}
    variables["shape_reason"] = ("experiment", np.array([row["shape_reason"] for row in rows], dtype=str),
                                 variable_attrs("why the good-vs-bad shape entries are nan, if they are"))
    pooled = compare_at_matched_size(*_qualifying_minima(basins, tentacles))
    return xr.Dataset(
        variables | {name: pooled[name].variable for name in pooled.data_vars},
        coords={"experiment": ("experiment", np.asarray(labels, dtype=object), variable_attrs("experiment and seed")),
                "statistic": pooled["statistic"]},
        attrs={"match_factor": match_factor},
    )


def compare_at_matched_size(statistic: dict, badness: np.ndarray, log_basin_fraction: np.ndarray,
                            *, min_rows: int = 6) -> xr.Dataset:
    """Good vs bad minima at matched basin fraction, pooled over experiments.

    For every shape statistic y, ordinary least squares y = a + b badness + c log(basin
    fraction) over the qualifying probed minima of all experiments, where ``badness`` is the
    minimum's test-error rank within its experiment scaled to [0, 1] (0: its best qualifying
    minimum, 1: its worst). ``matched_difference`` = -b is then the difference good - bad at
    equal basin fraction, with a heteroskedasticity-robust (HC3; MacKinnon and White 1985)
    standard error, written out here because statsmodels is not a dependency. Rows whose y is
    not finite (e.g. a thickness beyond the largest radius) are left out; below ``min_rows``
    rows the entries are nan and ``reason`` says why.
    """
    names = list(statistic)
    difference, se, n_used = (np.full(len(names), np.nan) for _ in range(3))
    reason = np.full(len(names), "measured", dtype=object)
    for row, name in enumerate(names):
        y = np.asarray(statistic[name], dtype=float)
        keep = np.isfinite(y) & np.isfinite(badness) & np.isfinite(log_basin_fraction)
        n_used[row] = keep.sum()
        design = np.column_stack([np.ones(keep.sum()), badness[keep], log_basin_fraction[keep]])
        if keep.sum() < min_rows or np.linalg.matrix_rank(design) < 3:
            reason[row] = (f"{int(keep.sum())} qualifying minima with a finite value (need {min_rows}, with both "
                           "good and bad ones and differing basin fractions)")
            continue
        inverse = np.linalg.inv(design.T @ design)
        coef = inverse @ design.T @ y[keep]
        residual = y[keep] - design @ coef
        leverage = np.einsum("ij,jk,ik->i", design, inverse, design)
        meat = design.T @ (design * (residual / (1 - leverage))[:, None] ** 2)
        covariance = inverse @ meat @ inverse
        difference[row], se[row] = -coef[1], np.sqrt(covariance[1, 1])
    per_statistic = lambda values, *attrs: ("statistic", values, variable_attrs(*attrs))  # noqa: E731
    return xr.Dataset(
        {
            "matched_difference": per_statistic(difference, "good - bad at equal basin fraction (regression on "
                                                "test-error rank and log basin fraction, pooled over experiments)"),
            "matched_difference_se": per_statistic(se, "HC3 standard error of matched_difference"),
            "matched_n_minima": per_statistic(n_used, "qualifying probed minima in the regression"),
            "matched_reason": per_statistic(reason.astype(str), "why matched_difference is nan, if it is"),
        },
        coords={"statistic": ("statistic", np.asarray(names, dtype=object), variable_attrs("shape statistic"))},
    )


def _qualifying_minima(basins, tentacles):
    """Per qualifying probed minimum of every experiment: its shape statistics, test-error
    badness within its experiment (0 best .. 1 worst) and log basin fraction."""
    values = {name: [] for name in SHAPE_STATISTICS}
    badness, log_fraction = [], []
    for basin, tentacle in zip(basins, tentacles):
        rows = _qualifying(tentacle)
        errors = basin["test_error"].sel(minimum=tentacle["minimum"].values[rows]).values
        if len(rows) < 2 or not np.isfinite(errors).all() or np.ptp(errors) == 0:
            continue
        badness.append(stats.rankdata(errors, method="average") - 1)
        badness[-1] = badness[-1] / badness[-1].max()
        log_fraction.append(np.log(tentacle["basin_fraction"].values[rows]))
        for name in SHAPE_STATISTICS:
            values[name].append(tentacle[name].values[rows] if name in tentacle else np.full(len(rows), np.nan))
    join = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
    return {name: join(parts) for name, parts in values.items()}, join(badness), join(log_fraction)


def _qualifying(tentacle):
    """Rows of the probed minima with at least min_members members."""
    return np.flatnonzero(tentacle["n_members"].values >= int(tentacle.attrs.get("min_members", 1)))


def _long_name(name):
    if name in _LONG_NAMES:
        return _LONG_NAMES[name]
    for kind in ("good", "bad"):
        if name.startswith(f"{kind}_"):
            return f"{name[len(kind) + 1:].replace('_', ' ')} of the {kind} minimum (lowest / highest test error " \
                   "among probed minima with >= min_members members)"
    return name.replace("_", " ") + " (good - bad)" if "difference" in name else name.replace("_", " ")


_LONG_NAMES = {
    "n_minima": "distinct minima found",
    "unassigned_fraction": "members that reached no minimum",
    "saddle_fraction": "members stopped at a saddle",
    "undecided_fraction": "members whose step budget ran out",
    "diverged_fraction": "members that diverged",
    "on_tolerance_plateau": "1 where the minima count is on a tolerance plateau (else a choice, not a measurement)",
    "rank_correlation": "Spearman correlation of basin fraction and test error",
    "rank_correlation_se": "standard error of rank_correlation",
    "basin_fraction_log_ratio": "log(basin fraction of the good minimum / that of the bad one)",
    "matched": "1 where the good and bad basin fractions differ by at most match_factor",
    "trace_vs_basin_fraction": "Spearman correlation of Hessian trace and basin fraction",
    "trace_vs_basin_fraction_se": "standard error of trace_vs_basin_fraction",
    "trace_vs_test_error": "Spearman correlation of Hessian trace and test error",
    "trace_vs_test_error_se": "standard error of trace_vs_test_error",
}


def _flatness_columns(basins, flatness):
    trace = flatness["trace"].values
    by_size = spearman_with_error(trace, basins["basin_fraction"].values)
    by_error = spearman_with_error(trace, basins["test_error"].values)
    return {
        "trace_vs_basin_fraction": by_size[0],
        "trace_vs_basin_fraction_se": by_size[1],
        "trace_vs_test_error": by_error[0],
        "trace_vs_test_error_se": by_error[1],
    }


def _summarize_one(basins, tentacles, match_factor):
    correlation = basins["rank_correlation_fraction_test_error"]
    row = {
        "n_minima": basins.sizes["minimum"],
        "unassigned_fraction": float(basins["unassigned_fraction"]),
        **{name: float(basins[name]) if name in basins else np.nan
           for name in ("saddle_fraction", "undecided_fraction", "diverged_fraction", "on_tolerance_plateau")},
        "rank_correlation": float(correlation),
        "rank_correlation_se": float(correlation.attrs.get("standard_error", np.nan)),
    }
    shape = {f"{kind}_{name}": np.nan for kind in ("good", "bad")
             for name in ("test_error", "basin_fraction", "old_tentacle_fraction",
                          *[f"{stat}{suffix}" for stat in SHAPE_STATISTICS for suffix in ("", "_low", "_high")])}
    shape.update({f"{stat}_difference{suffix}": np.nan for stat in SHAPE_STATISTICS
                  for suffix in ("", "_low", "_high", "_matched")})
    shape.update(basin_fraction_log_ratio=np.nan, matched=np.nan)
    rows = _qualifying(tentacles)
    test_error = basins["test_error"].sel(minimum=tentacles["minimum"].values[rows]).values
    if len(rows) < 2 or not np.isfinite(test_error).all() or np.ptp(test_error) == 0:
        minimum = int(tentacles.attrs.get("min_members", 1))
        reason = (f"{len(rows)} probed minima with >= min_members={minimum} members; need two of different test "
                  "error")
        return row | shape | {"shape_reason": reason}
    for kind, index in (("good", rows[np.argmin(test_error)]), ("bad", rows[np.argmax(test_error)])):
        shape[f"{kind}_test_error"] = float(basins["test_error"].sel(minimum=tentacles["minimum"].values[index]))
        shape[f"{kind}_basin_fraction"] = float(tentacles["basin_fraction"][index])
        shape[f"{kind}_old_tentacle_fraction"] = float(tentacles["old_tentacle_fraction"][index])
        for stat, (kind_of_error, _) in SHAPE_STATISTICS.items():
            value, low, high = shape_with_interval(tentacles, stat, kind_of_error, index)
            shape[f"{kind}_{stat}"], shape[f"{kind}_{stat}_low"], shape[f"{kind}_{stat}_high"] = value, low, high
    shape["basin_fraction_log_ratio"] = np.log(shape["good_basin_fraction"] / shape["bad_basin_fraction"])
    shape["matched"] = float(abs(shape["basin_fraction_log_ratio"]) <= np.log(match_factor))
    for stat in SHAPE_STATISTICS:
        good, bad = shape[f"good_{stat}"], shape[f"bad_{stat}"]
        se = np.hypot(*[(shape[f"{kind}_{stat}_high"] - shape[f"{kind}_{stat}_low"]) / (2 * Z_95)
                        for kind in ("good", "bad")])
        with np.errstate(invalid="ignore"):
            difference = good - bad
        shape[f"{stat}_difference"] = difference
        shape[f"{stat}_difference_low"], shape[f"{stat}_difference_high"] = difference - Z_95 * se, difference + Z_95 * se
        shape[f"{stat}_difference_matched"] = difference if shape["matched"] else np.nan
    return row | shape | {"shape_reason": "measured" if shape["matched"] else
                          f"good and bad basin fractions differ by more than a factor {match_factor}: "
                          "compare with matched_difference"}


def shape_with_interval(tentacles: xr.Dataset, stat: str, kind_of_error: str, index: int) -> tuple[float, float, float]:
    """A probed minimum's shape statistic with its 95 % interval (nan where not measured)."""
    if stat not in tentacles:
        return np.nan, np.nan, np.nan
    value = float(tentacles[stat][index])
    if kind_of_error == "se":
        se = float(tentacles[f"{stat}_se"][index])
        return value, value - Z_95 * se, value + Z_95 * se
    return value, float(tentacles[f"{stat}_low"][index]), float(tentacles[f"{stat}_high"][index])
