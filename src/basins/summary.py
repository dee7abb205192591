"""Stage ``summarize_study``: the study's answer, experiment by experiment, in one table.

For every experiment and seed: how basin size goes with test error (rank correlation); how the
basins of its good and bad minima are shaped (``measure_tentacles``: reach, star-shapedness,
local thickness, the return probability far out; good and bad by :func:`basins.rays.good_and_bad`,
the probed pair matched in basin fraction whose test errors differ most, else the best and the
worst), with the difference good - bad and its interval, and whether the two basins are of
matched size; and whether flat minima (small Hessian trace) are the ones with large basins and
low test error. Across the study, a
regression of each shape statistic on the minima's test-error rank and log basin fraction
compares good and bad minima at matched basin fraction (:func:`compare_at_matched_size`), with
the scatter of the minima and each one's own measurement error in its interval.

Shape statistics enter only for minima with at least the stage's ``min_members`` members
(``n_members`` against the tentacles file's ``min_members``); where too few qualify the
entries are nan and ``shape_reason`` / ``reason`` say why.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import stats

from basins.io import variable_attrs
from basins.rays import good_and_bad
from basins.stats import least_squares_coefficient, spearman_with_error

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
    values, errors, badness, log_fraction = _qualifying_minima(basins, tentacles)
    pooled = compare_at_matched_size(values, badness, log_fraction, standard_error=errors)
    return xr.Dataset(
        variables | {name: pooled[name].variable for name in pooled.data_vars},
        coords={"experiment": ("experiment", np.asarray(labels, dtype=object), variable_attrs("experiment and seed")),
                "statistic": pooled["statistic"]},
        attrs={"match_factor": match_factor},
    )


def compare_at_matched_size(statistic: dict, badness: np.ndarray, log_basin_fraction: np.ndarray, *,
                            standard_error: dict, confidence: float = 0.95, min_rows: int = 6) -> xr.Dataset:
    """Good vs bad minima at matched basin fraction, pooled over experiments.

    For every shape statistic y, ordinary least squares y = a + b badness + c log(basin
    fraction) over the qualifying probed minima of all experiments, where ``badness`` is the
    minimum's test-error rank within its experiment scaled to [0, 1] (0: its best qualifying
    minimum, 1: its worst). ``matched_difference`` = -b is then the difference good - bad at
    equal basin fraction.

    Its variance has two parts. The scatter of the minima about the fit: the
    heteroskedasticity-robust HC3 variance (MacKinnon and White 1985), written out here because
    statsmodels is not a dependency. Each minimum's own measurement error (bootstraps over rays
    and members, binomial errors of ``measure_tentacles``): b = sum_i w_i y_i with w the badness
    row of (X'X)^-1 X', so independent errors se_i add sum_i w_i^2 se_i^2. The residuals carry
    the measurement errors too, so the sum counts them twice on average and errs on the wide
    side (coverage near 1 where measurement error dominates); it is kept because with the few
    residual degrees of freedom of a study (6 minima: 3) the residuals alone can fall far
    short of the measured errors (issue #19: HC3 0.0075 against 0.054 from resampling every
    minimum's rays and members). The interval is Student-t with the residual degrees of
    freedom. In 400 simulated studies of that issue's six minima (``tests/test_summary.py``)
    the old normal interval on HC3 alone covered a planted difference 0.81 of the time with
    measurement error only, this one 1.0; with scatter between minima dominating, 0.91 and 0.975.

    Parameters
    ----------
    statistic : dict of str to array (minimum,)
        Each shape statistic's value at every qualifying probed minimum of the study.
    badness, log_basin_fraction : array (minimum,)
        The minima's test-error rank within their experiment in [0, 1] and log basin fraction.
    standard_error : dict of str to array (minimum,)
        For every key of ``statistic``, each minimum's standard error of it (0 where exact).
    confidence : float
        Level of ``matched_difference_low`` / ``_high``.
    min_rows : int
        Fewest usable minima. Minima whose value or standard error is not finite (a thickness
        beyond the largest radius, an interval open at the top) are left out: their error
        cannot be weighed; below ``min_rows`` the entries are nan and ``matched_reason`` says why.

    Returns
    -------
    xarray.Dataset
        Along ``statistic``: ``matched_difference``; its standard error ``matched_difference_se``
        and the two parts of it, ``_se_scatter`` (HC3) and ``_se_measurement``; the Student-t
        interval ``matched_difference_low`` / ``_high``; ``matched_dof`` (minima - 3),
        ``matched_n_minima`` and ``matched_reason``.

    References
    ----------
    MacKinnon, J. G. and White, H. (1985). Some heteroskedasticity-consistent covariance matrix
    estimators with improved finite sample properties. Journal of Econometrics 29, 305-325.
    """
    names = list(statistic)
    if missing := [name for name in names if name not in standard_error]:
        raise ValueError(f"standard_error has no entry for {missing}: give every statistic's per-minimum standard "
                         "errors (0 where a value is exact)")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} must lie strictly between 0 and 1, e.g. 0.95")
    badness, log_basin_fraction = np.asarray(badness, dtype=float), np.asarray(log_basin_fraction, dtype=float)
    difference, scatter, measurement, dof, n_used = (np.full(len(names), np.nan) for _ in range(5))
    reason = np.full(len(names), "measured", dtype=object)
    for row, name in enumerate(names):
        y, se = np.asarray(statistic[name], dtype=float), np.asarray(standard_error[name], dtype=float)
        if not y.shape == se.shape == badness.shape == log_basin_fraction.shape:
            raise ValueError(f"{name}: values {y.shape}, standard errors {se.shape}, badness {badness.shape} and log "
                             f"basin fractions {log_basin_fraction.shape} must have one entry per minimum")
        keep = np.isfinite(y) & np.isfinite(se) & np.isfinite(badness) & np.isfinite(log_basin_fraction)
        n_used[row] = keep.sum()
        design = np.column_stack([np.ones(keep.sum()), badness[keep], log_basin_fraction[keep]])
        if keep.sum() < min_rows or np.linalg.matrix_rank(design) < 3:
            reason[row] = (f"{int(keep.sum())} qualifying minima with a finite value and standard error (need "
                           f"{min_rows}, with both good and bad ones and differing basin fractions)")
            continue
        coef, scatter[row], measurement[row], dof[row] = least_squares_coefficient(design, y[keep], se[keep], 1)
        difference[row] = -coef
        if dof[row] < 1:
            reason[row] = f"{int(keep.sum())} minima for 3 coefficients: no residual degrees of freedom for an interval"
    total = np.hypot(scatter, measurement)
    with np.errstate(invalid="ignore"):
        quantile = np.where(dof >= 1, stats.t.ppf(0.5 + confidence / 2, np.where(dof >= 1, dof, 1)), np.nan)
    level = f"{100 * confidence:g} %"
    per_statistic = lambda values, *attrs: ("statistic", values, variable_attrs(*attrs))  # noqa: E731
    return xr.Dataset(
        {
            "matched_difference": per_statistic(difference, "good - bad at equal basin fraction (regression on "
                                                "test-error rank and log basin fraction, pooled over experiments)"),
            "matched_difference_se": per_statistic(total, "standard error of matched_difference: scatter of the minima "
                                                   "about the fit and their own measurement errors in quadrature"),
            "matched_difference_se_scatter": per_statistic(scatter, "part of matched_difference_se from the scatter of "
                                                           "the minima about the fit (HC3)"),
            "matched_difference_se_measurement": per_statistic(
                measurement, "part of matched_difference_se from each minimum's own measurement error "
                "(sqrt(sum_i w_i^2 se_i^2), w_i its weight in the badness coefficient)"),
            "matched_difference_low": per_statistic(difference - quantile * total, f"lower end of the {level} "
                                                    "Student-t interval of matched_difference (matched_dof)"),
            "matched_difference_high": per_statistic(difference + quantile * total, f"upper end of the {level} "
                                                     "Student-t interval of matched_difference (matched_dof)"),
            "matched_dof": per_statistic(dof, "residual degrees of freedom of the regression (minima - 3)"),
            "matched_n_minima": per_statistic(n_used, "qualifying probed minima in the regression"),
            "matched_reason": per_statistic(reason.astype(str), "why matched_difference or its interval is nan, "
                                            "if it is"),
        },
        coords={"statistic": ("statistic", np.asarray(names, dtype=object), variable_attrs("shape statistic"))},
    )


def _qualifying_minima(basins, tentacles):
    """Per qualifying probed minimum of every experiment: its shape statistics and their standard
    errors, test-error badness within its experiment (0 best .. 1 worst) and log basin fraction."""
    values = {name: [] for name in SHAPE_STATISTICS}
    errors = {name: [] for name in SHAPE_STATISTICS}
    badness, log_fraction = [], []
    for basin, tentacle in zip(basins, tentacles):
        rows = _qualifying(tentacle)
        test_error = basin["test_error"].sel(minimum=tentacle["minimum"].values[rows]).values
        if len(rows) < 2 or not np.isfinite(test_error).all() or np.ptp(test_error) == 0:
            continue
        badness.append(test_error_badness(test_error))
        log_fraction.append(np.log(tentacle["basin_fraction"].values[rows]))
        for name, (kind_of_error, _) in SHAPE_STATISTICS.items():
            value, se = shape_standard_error(tentacle, name, kind_of_error, rows)
            values[name].append(value)
            errors[name].append(se)
    join = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
    return ({name: join(parts) for name, parts in values.items()},
            {name: join(parts) for name, parts in errors.items()}, join(badness), join(log_fraction))


def test_error_badness(test_error: np.ndarray) -> np.ndarray:
    """Each minimum's test-error rank among ``test_error`` scaled to [0, 1] (0: the best, 1: the
    worst; ties share their mean rank). The test errors must not all be equal."""
    rank = stats.rankdata(test_error, method="average") - 1
    return rank / rank.max()


def shape_standard_error(tentacle: xr.Dataset, stat: str, kind_of_error: str, rows: np.ndarray) -> tuple:
    """A statistic at the given rows and its standard error: stored, or half its interval's width over
    the normal quantile of the file's ``confidence`` (nan where not measured)."""
    if stat not in tentacle:
        return np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    value = tentacle[stat].values[rows].astype(float)
    if kind_of_error == "se":
        return value, tentacle[f"{stat}_se"].values[rows].astype(float)
    quantile = stats.norm.ppf(0.5 + float(tentacle.attrs.get("confidence", 0.95)) / 2)
    with np.errstate(invalid="ignore"):  # an interval open at the top: inf or nan, then left out of the fit
        width = tentacle[f"{stat}_high"].values[rows] - tentacle[f"{stat}_low"].values[rows]
    return value, width / (2 * quantile)


def _qualifying(tentacle):
    """Rows of the probed minima with at least min_members members."""
    return np.flatnonzero(tentacle["n_members"].values >= int(tentacle.attrs.get("min_members", 1)))


def _long_name(name):
    if name in _LONG_NAMES:
        return _LONG_NAMES[name]
    for kind in ("good", "bad"):
        if name.startswith(f"{kind}_"):
            return f"{name[len(kind) + 1:].replace('_', ' ')} of the {kind} minimum (lower / higher test error " \
                   "of the pair of probed minima with >= min_members members, matched in basin fraction, whose " \
                   "test errors differ most; else the best / worst)"
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
    test_error = basins["test_error"].sel(minimum=tentacles["minimum"].values).values
    pair = good_and_bad(tentacles["basin_fraction"].values, test_error, rows, match_factor=match_factor)
    if pair is None:
        minimum = int(tentacles.attrs.get("min_members", 1))
        reason = (f"{len(rows)} probed minima with >= min_members={minimum} members; need two of different test "
                  "error")
        return row | shape | {"shape_reason": reason}
    good, bad = pair.indices
    for kind, index in (("good", good), ("bad", bad)):
        shape[f"{kind}_test_error"] = float(basins["test_error"].sel(minimum=tentacles["minimum"].values[index]))
        shape[f"{kind}_basin_fraction"] = float(tentacles["basin_fraction"][index])
        shape[f"{kind}_old_tentacle_fraction"] = float(tentacles["old_tentacle_fraction"][index])
        for stat, (kind_of_error, _) in SHAPE_STATISTICS.items():
            value, low, high = _shape_with_interval(tentacles, stat, kind_of_error, index)
            shape[f"{kind}_{stat}"], shape[f"{kind}_{stat}_low"], shape[f"{kind}_{stat}_high"] = value, low, high
    shape["basin_fraction_log_ratio"] = np.log(shape["good_basin_fraction"] / shape["bad_basin_fraction"])
    shape["matched"] = float(abs(shape["basin_fraction_log_ratio"]) <= np.log(match_factor))
    for stat in SHAPE_STATISTICS:
        se = np.hypot(*shape_standard_error(tentacles, stat, SHAPE_STATISTICS[stat][0], np.array([good, bad]))[1])
        with np.errstate(invalid="ignore"):
            difference = shape[f"good_{stat}"] - shape[f"bad_{stat}"]
        shape[f"{stat}_difference"] = difference
        shape[f"{stat}_difference_low"], shape[f"{stat}_difference_high"] = difference - Z_95 * se, difference + Z_95 * se
        shape[f"{stat}_difference_matched"] = difference if shape["matched"] else np.nan
    return row | shape | {"shape_reason": "measured" if shape["matched"] else
                          f"good and bad basin fractions differ by more than a factor {match_factor}: "
                          "compare with matched_difference"}


def _shape_with_interval(tentacles: xr.Dataset, stat: str, kind_of_error: str, index: int) -> tuple[float, float, float]:
    """A probed minimum's shape statistic with its 95 % interval (nan where not measured): the stored
    interval where the file has one at 95 % (Wilson and bootstrap intervals are not symmetric,
    and stay within what a fraction can be), else value +- 1.96 standard errors
    (:func:`shape_standard_error`)."""
    if stat not in tentacles:
        return np.nan, np.nan, np.nan
    if f"{stat}_low" in tentacles and float(tentacles.attrs.get("confidence", 0.95)) == 0.95:
        return tuple(float(tentacles[name][index]) for name in (stat, f"{stat}_low", f"{stat}_high"))
    value, se = (float(v[0]) for v in shape_standard_error(tentacles, stat, kind_of_error, np.array([index])))
    return value, value - Z_95 * se, value + Z_95 * se
