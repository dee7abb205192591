"""Stage ``compare_dynamics``: how much of a basin is the landscape's, how much the optimizer's.

Experiments that share a data set, network, loss and initial conditions but differ in their
dynamics (gradient flow, GD, SGD, Adam, FIRE) are compared member by member: each experiment's
minima are matched to the reference experiment's catalog, and for every initial condition we
ask whether both dynamics carried it to the same minimum.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import xarray as xr

from basins.io import variable_attrs


def compare_dynamics(
    minimum_of_member: Sequence[np.ndarray],
    catalog_maps: list[np.ndarray],
    experiments: list[str],
    n_reference_minima: int,
    reference_basin_fraction: np.ndarray | None = None,
) -> xr.Dataset:
    """Per-start agreement and basin fractions of several dynamics on one landscape.

    Parameters
    ----------
    minimum_of_member : sequence of ndarray, each (start,) or (draw, start)
        Each experiment's own minimum labels (-1: none) for the same initial conditions; the
        first experiment is the reference. A noisy dynamics (Langevin, Entropy-GD, replicated
        GD, SGD) may run every start several times with independent noise: its rows are those
        draws, and every statistic averages a start's draws before it averages over starts,
        so each start is one independent unit and its draws shrink the noise's share of the
        error.
    catalog_maps : list of ndarray
        For each experiment, the reference-catalog index of each of its minima (-1: not in the
        reference catalog); the identity for the reference itself.
    experiments : list of str
        Experiment names, reference first.
    n_reference_minima : int
        Size of the reference catalog.
    reference_basin_fraction : ndarray, shape (minimum,), optional
        The reference's basin fraction of each of its minima over its whole ensemble (not only
        the compared starts); given, each run is scored by the size of the reference basin of
        the minimum it reached (0 for a minimum the reference never found).

    Returns
    -------
    xarray.Dataset
        ``n_draws(experiment)``; ``agreement(experiment)``: over the starts, the fraction of
        (draw, reference draw) pairs assigned under both that reached the same minimum, with
        its standard error over starts; ``basin_fraction(experiment, minimum)`` over the
        reference catalog (a start counts with the fraction of its draws that reached the
        minimum); ``unmatched_fraction(experiment)``: runs that reached a minimum the
        reference never found; ``unassigned_fraction(experiment)``: runs with no minimum
        (diverged, stopped at a saddle, or undecided on their budget), which count as reaching
        none of the minima in ``basin_fraction`` and its changes and are left out of
        ``agreement`` and ``reached_basin_size`` (the three add up to 1 with the basin
        fractions, checked); ``basin_fraction_change(experiment, baseline, minimum)``, this
        dynamics' fraction minus the baseline dynamics' (any of the experiments: the
        reference, or a control such as plain Langevin dynamics at a flat-seeking run's
        temperature), with its paired standard error over the same starts
        (``basin_fraction_change_se``: the spread of each start's change, so starts both
        dynamics send to the minimum cancel; a noisy dynamics' own randomness is in that
        spread, start by start); with ``reference_basin_fraction``,
        ``reached_basin_size(experiment)``, the mean over starts of the reference basin
        fraction of the minimum reached (how large, under the reference dynamics, the basins
        this dynamics ends in are), and its paired change
        ``reached_basin_size_change(experiment, baseline)`` with ``_se``, over the starts both
        assigned.
    """
    labels = [np.atleast_2d(np.asarray(own)) for own in minimum_of_member]
    n_starts = {own.shape[1] for own in labels}
    if len(labels) != len(catalog_maps) or len(experiments) != len(labels) or len(n_starts) != 1:
        raise ValueError(
            f"minimum_of_member has shapes {[own.shape for own in labels]}; expected (draw, start) "
            f"with the same starts for {len(experiments)} experiments and one catalog map each"
        )
    mapped = [np.where(own >= 0, mapping[np.maximum(own, 0)], -1) if len(mapping) else np.full_like(own, -1)
              for own, mapping in zip(labels, catalog_maps)]
    minima = np.arange(n_reference_minima)
    # (experiment, start, minimum): the fraction of a start's draws that reached each minimum
    reaches = np.stack([(runs[:, :, None] == minima).mean(axis=0) for runs in mapped])
    agreement, agreement_se = _agreement(labels, mapped)
    unmatched = np.array([((own >= 0) & (runs < 0)).mean() for own, runs in zip(labels, mapped)])
    unassigned = np.array([(own < 0).mean() for own in labels])
    total = reaches.mean(axis=1).sum(axis=1) + unmatched + unassigned
    if not np.allclose(total, 1.0, rtol=0, atol=1e-12):
        raise AssertionError(f"basin, unmatched and unassigned fractions add up to {total}, not 1")
    change, change_se = _paired_changes(reaches)  # (experiment, baseline, minimum)
    sizes = {} if reference_basin_fraction is None else _reached_basin_sizes(labels, mapped, reference_basin_fraction)
    return xr.Dataset(
        {
            **sizes,
            "n_draws": ("experiment", [len(own) for own in labels], variable_attrs(
                "runs of each start with independent noise")),
            "agreement": ("experiment", agreement, variable_attrs("runs reaching the reference's minimum")),
            "agreement_se": ("experiment", agreement_se, variable_attrs("standard error of agreement over starts")),
            "basin_fraction": (
                ("experiment", "minimum"),
                reaches.mean(axis=1),
                variable_attrs("fraction of initial conditions reaching the reference minimum"),
            ),
            "unmatched_fraction": (
                "experiment",
                unmatched,
                variable_attrs("runs reaching a minimum outside the reference catalog"),
            ),
            "unassigned_fraction": ("experiment", unassigned, variable_attrs(
                "runs with no minimum: diverged, at a saddle, or undecided")),
            "basin_fraction_change": (("experiment", "baseline", "minimum"), change,
                                      variable_attrs("basin fraction minus the baseline's, same starts")),
            "basin_fraction_change_se": (("experiment", "baseline", "minimum"), change_se,
                                         variable_attrs("paired standard error of basin_fraction_change")),
        },
        coords={
            "experiment": ("experiment", np.asarray(experiments, dtype=object), variable_attrs("experiment")),
            "baseline": ("baseline", np.asarray(experiments, dtype=object), variable_attrs(
                "experiment the change is taken from")),
            "minimum": ("minimum", minima, variable_attrs("reference catalog index")),
        },
        attrs={"reference_experiment": experiments[0], "n_starts_compared": labels[0].shape[1]},
    )


def _agreement(labels, mapped):
    """Per experiment, the mean over starts of the fraction of its (draw, reference draw) pairs,
    both assigned, that reached the same minimum, and its standard error over starts."""
    assigned_reference, reference = labels[0] >= 0, mapped[0]
    per_start = []
    for own, runs in zip(labels, mapped):
        both = (own >= 0)[:, None, :] & assigned_reference[None, :, :]  # (draw, reference draw, start)
        same = (runs[:, None, :] == reference[None, :, :]) & both
        with np.errstate(invalid="ignore", divide="ignore"):
            per_start.append(same.sum(axis=(0, 1)) / both.sum(axis=(0, 1)))
    return _mean_and_error(np.stack(per_start), axis=1)


def _reached_basin_sizes(labels, mapped, reference_basin_fraction):
    """Per start the mean over its assigned draws of the reference basin fraction of the minimum
    reached (nan: none assigned), its mean per experiment and the paired changes between
    experiments with their errors."""
    fraction = np.asarray(reference_basin_fraction, dtype=float)
    per_start = []
    for own, runs in zip(labels, mapped):
        size = np.where(runs >= 0, fraction[np.maximum(runs, 0)], 0.0)
        size[own < 0] = np.nan  # (draw, start)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_start.append(np.nansum(size, axis=0) / np.isfinite(size).sum(axis=0))
    size = np.stack(per_start)  # (experiment, start)
    change, change_se = _paired_changes(size)
    pair = ("experiment", "baseline")
    return {
        "reached_basin_size": ("experiment", _mean_and_error(size, axis=1)[0], variable_attrs(
            "mean over starts of the reference basin fraction of the minimum reached")),
        "reached_basin_size_change": (pair, change, variable_attrs(
            "reached_basin_size minus the baseline's, paired over starts both assigned")),
        "reached_basin_size_change_se": (pair, change_se, variable_attrs(
            "paired standard error of reached_basin_size_change")),
    }


def _paired_changes(values):
    """Mean and standard error over starts of ``values[experiment] - values[baseline]``, from
    ``values (experiment, start, ...)``, over the starts where both are finite:
    ``(experiment, baseline, ...)`` each."""
    return _mean_and_error(values[:, None] - values[None, :], axis=2)


def _mean_and_error(values, axis):
    """Mean and standard error of the mean along ``axis`` over the finite entries (nan where
    there are none, or for the error fewer than two)."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    filled = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=axis) / count
        spread = np.where(finite, values - np.expand_dims(mean, axis), 0.0)
        error = np.sqrt((spread**2).sum(axis=axis) / (count - 1) / count)
    return np.where(count > 0, mean, np.nan), np.where(count > 1, error, np.nan)


def dynamics_names(names: list[str]) -> list[str]:
    """Experiment names without the prefix they share ("reference" for the one that is all prefix)."""
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    if prefix not in names:  # whole words only: adam and anneal share "a", not a name
        prefix = prefix[: prefix.rfind("_") + 1]
    return [name[len(prefix):].lstrip("_") or "reference" for name in names]


def comparison_markdown(comparison: xr.Dataset) -> str:
    """The dynamics comparison in Markdown: one row per dynamics, then the paired changes of the
    reference's largest basin (and of the reached basin size) between every two dynamics."""
    names = dynamics_names([str(name) for name in comparison["experiment"].values])
    largest = comparison.isel(minimum=0)
    sized = "reached_basin_size" in comparison
    lines = [
        f"Reference: {comparison.attrs['reference_experiment']}; {comparison.attrs['n_starts_compared']} "
        "starts compared (a noisy dynamics' draws of a start averaged first); +- one standard error over "
        "starts. Largest basin: the reference catalogue's minimum 0.",
        "",
        "| dynamics | noise draws | agreement with the reference | unmatched | no minimum | largest basin"
        + (" | reached basin size |" if sized else " |"),
        "|---|---|---|---|---|---" + ("|---|" if sized else "|"),
    ]
    for row, name in enumerate(names):
        r = comparison.isel(experiment=row)
        lines.append(
            f"| {name} | {int(r.n_draws)} | {float(r.agreement):.2f} +- {float(r.agreement_se):.2f} "
            f"| {float(r.unmatched_fraction):.2f} | {float(r.unassigned_fraction):.2f} "
            f"| {float(largest.basin_fraction[row]):.2f} |"
            + (f" {float(r.reached_basin_size):.3f} |" if sized else "")
        )
    lines += _change_matrix("Paired change of the largest basin's fraction, row - column",
                            largest.basin_fraction_change.values, largest.basin_fraction_change_se.values, names)
    if sized:
        lines += _change_matrix("Paired change of the reached basin size, row - column",
                                comparison.reached_basin_size_change.values,
                                comparison.reached_basin_size_change_se.values, names, digits=3)
    return "\n".join(lines) + "\n"


def _change_matrix(title, change, error, names, digits=2):
    lines = ["", f"{title}:", "", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row, name in enumerate(names):
        cells = ["" if row == column else f"{change[row, column]:+.{digits}f} +- {error[row, column]:.{digits}f}"
                 for column in range(len(names))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
