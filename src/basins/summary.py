"""Stage ``summarize_study``: the study's answer, experiment by experiment, in one table.

For every experiment and seed: how basin size goes with test error (rank correlation), and
whether the best minimum's basin reaches out along tentacles more than the worst's does
(tentacle fractions and distance ratios of the probed minima of lowest and highest test
error; the fraction saturates at 1 when every member starts beyond the median exit radius, and
the ratio then still tells how far beyond); and whether flat minima (small Hessian trace) are
the ones with large basins and low test error.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from basins.io import variable_attrs
from basins.stats import spearman_with_error


def summarize_study(
    labels: list[str], basins: list[xr.Dataset], tentacles: list[xr.Dataset], flatness: list[xr.Dataset]
) -> xr.Dataset:
    """One row per experiment and seed; ``labels`` name the rows (e.g. ``"name/seed1"``).

    Returns
    -------
    xarray.Dataset
        Along ``experiment``: ``n_minima``, ``unassigned_fraction`` (of which
        ``saddle_fraction`` and ``undecided_fraction``), ``on_tolerance_plateau`` (0 flags a
        minima count that depends on the tolerances), the Spearman correlation
        of basin fraction with test error, and for the probed minima of lowest ("good") and
        highest ("bad") test error their test error, basin fraction and tentacle fraction,
        each with its standard error; ``tentacle_difference`` = good - bad; the Spearman
        correlations of the Hessian trace (from ``measure_flatness``) with basin fraction and
        with test error.
    """
    if not (len(labels) == len(basins) == len(tentacles) == len(flatness)):
        raise ValueError("labels, basins, tentacles and flatness must have one entry per experiment and seed")
    rows = [_summarize_one(b, t) | _flatness_columns(b, f) for b, t, f in zip(basins, tentacles, flatness)]
    names = rows[0].keys() if rows else []
    columns = {name: np.array([row[name] for row in rows], dtype=float) for name in names}
    if rows:
        columns["tentacle_difference"] = columns["good_tentacle_fraction"] - columns["bad_tentacle_fraction"]
        columns["tentacle_difference_se"] = np.hypot(
            columns["good_tentacle_fraction_se"], columns["bad_tentacle_fraction_se"]
        )
    return xr.Dataset(
        {name: ("experiment", values, variable_attrs(_LONG_NAMES[name])) for name, values in columns.items()},
        coords={"experiment": ("experiment", np.asarray(labels, dtype=object), variable_attrs("experiment and seed"))},
    )


_LONG_NAMES = {
    "n_minima": "distinct minima found",
    "unassigned_fraction": "members that reached no minimum",
    "saddle_fraction": "members stopped at a saddle",
    "undecided_fraction": "members whose step budget ran out",
    "diverged_fraction": "members that diverged",
    "on_tolerance_plateau": "1 where the minima count is on a tolerance plateau (else a choice, not a measurement)",
    "rank_correlation": "Spearman correlation of basin fraction and test error",
    "rank_correlation_se": "standard error of rank_correlation",
    "good_test_error": "test error of the best probed minimum",
    "good_basin_fraction": "basin fraction of the best probed minimum",
    "good_tentacle_fraction": "tentacle fraction of the best probed minimum",
    "good_tentacle_fraction_se": "standard error of good_tentacle_fraction",
    "bad_test_error": "test error of the worst probed minimum",
    "bad_basin_fraction": "basin fraction of the worst probed minimum",
    "bad_tentacle_fraction": "tentacle fraction of the worst probed minimum",
    "bad_tentacle_fraction_se": "standard error of bad_tentacle_fraction",
    "good_distance_ratio": "median member start distance / median exit radius, best probed minimum",
    "good_distance_ratio_se": "bootstrap standard error of good_distance_ratio",
    "bad_distance_ratio": "median member start distance / median exit radius, worst probed minimum",
    "bad_distance_ratio_se": "bootstrap standard error of bad_distance_ratio",
    "tentacle_difference": "tentacle fraction, best minus worst probed minimum",
    "tentacle_difference_se": "standard error of tentacle_difference",
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


def _summarize_one(basins, tentacles):
    correlation = basins["rank_correlation_fraction_test_error"]
    row = {
        "n_minima": basins.sizes["minimum"],
        "unassigned_fraction": float(basins["unassigned_fraction"]),
        **{name: float(basins[name]) if name in basins else np.nan
           for name in ("saddle_fraction", "undecided_fraction", "diverged_fraction", "on_tolerance_plateau")},
        "rank_correlation": float(correlation),
        "rank_correlation_se": float(correlation.attrs.get("standard_error", np.nan)),
    }
    probed = tentacles["minimum"].values
    test_error = basins["test_error"].sel(minimum=probed).values if len(probed) else np.zeros(0)
    for kind, pick in (("good", np.nanargmin), ("bad", np.nanargmax)):
        if len(probed) == 0 or not np.isfinite(test_error).any():
            row.update({f"{kind}_{name}": np.nan for name in
                        ("test_error", "basin_fraction", "tentacle_fraction", "tentacle_fraction_se",
                         "distance_ratio", "distance_ratio_se")})
            continue
        index = pick(test_error)
        minimum = probed[index]
        row[f"{kind}_test_error"] = test_error[index]
        row[f"{kind}_basin_fraction"] = float(basins["basin_fraction"].sel(minimum=minimum))
        row[f"{kind}_tentacle_fraction"] = float(tentacles["tentacle_fraction"][index])
        row[f"{kind}_tentacle_fraction_se"] = float(tentacles["tentacle_fraction_se"][index])
        row[f"{kind}_distance_ratio"] = float(tentacles["distance_ratio"][index])
        row[f"{kind}_distance_ratio_se"] = float(tentacles["distance_ratio_se"][index])
    return row
