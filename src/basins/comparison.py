"""Stage ``compare_dynamics``: how much of a basin is the landscape's, how much the optimizer's.

Experiments that share a data set, network, loss and initial conditions but differ in their
dynamics (gradient flow, GD, SGD, Adam, FIRE) are compared member by member: each experiment's
minima are matched to the reference experiment's catalog, and for every initial condition we
ask whether both dynamics carried it to the same minimum.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from basins.io import variable_attrs


def compare_dynamics(
    minimum_of_member: np.ndarray,
    catalog_maps: list[np.ndarray],
    experiments: list[str],
    n_reference_minima: int,
    reference_basin_fraction: np.ndarray | None = None,
) -> xr.Dataset:
    """Per-member agreement and basin fractions of several dynamics on one landscape.

    Parameters
    ----------
    minimum_of_member : ndarray, shape (experiment, member)
        Each experiment's own minimum labels (-1: none) for the same initial conditions; the
        first experiment is the reference.
    catalog_maps : list of ndarray
        For each experiment, the reference-catalog index of each of its minima (-1: not in the
        reference catalog); the identity for the reference itself.
    experiments : list of str
        Experiment names, reference first.
    n_reference_minima : int
        Size of the reference catalog.
    reference_basin_fraction : ndarray, shape (minimum,), optional
        The reference's basin fraction of each of its minima over its whole ensemble (not only
        the compared members); given, each member is scored by the size of the reference basin
        of the minimum it reached (0 for a minimum the reference never found).

    Returns
    -------
    xarray.Dataset
        ``agreement(experiment)``: fraction of members assigned under both the reference and
        this dynamics that reached the same minimum, with its binomial standard error;
        ``basin_fraction(experiment, minimum)`` over the reference catalog;
        ``unmatched_fraction(experiment)``: members that reached a minimum the reference
        never found; ``basin_fraction_change(experiment, baseline, minimum)``, this dynamics'
        fraction minus the baseline dynamics' (any of the experiments: the reference, or a
        control such as plain Langevin dynamics at a flat-seeking run's temperature), with its
        paired standard error over the same members (``basin_fraction_change_se``: the spread
        of each member's change of indicator, so members both dynamics send to the minimum
        cancel; a noisy dynamics' own randomness is in that spread, member by member); with
        ``reference_basin_fraction``, ``reached_basin_size(experiment)``, the mean over members
        of the reference basin fraction of the minimum each reached (how large, under the
        reference dynamics, the basins this dynamics ends in are), and its paired change
        ``reached_basin_size_change(experiment, baseline)`` with ``_se``, over the members
        both assigned.
    """
    labels = np.asarray(minimum_of_member)
    if labels.ndim != 2 or labels.shape[0] != len(catalog_maps) or len(experiments) != labels.shape[0]:
        raise ValueError(
            f"minimum_of_member has shape {labels.shape}; expected (experiment, member) with "
            f"{len(experiments)} experiments and one catalog map each"
        )
    mapped = np.stack(
        [np.where(own >= 0, mapping[np.maximum(own, 0)], -1) if len(mapping) else np.full_like(own, -1)
         for own, mapping in zip(labels, catalog_maps)]
    )
    reference = mapped[0]
    agreement, agreement_se = np.full(len(experiments), np.nan), np.full(len(experiments), np.nan)
    for row, other in enumerate(mapped):
        both = (labels[0] >= 0) & (labels[row] >= 0)
        if both.any():
            agreement[row] = np.mean(other[both] == reference[both])
            agreement_se[row] = np.sqrt(agreement[row] * (1 - agreement[row]) / both.sum())
    n_members = labels.shape[1]
    fraction = np.stack([np.bincount(m[m >= 0], minlength=n_reference_minima) / n_members for m in mapped])
    unmatched = ((labels >= 0) & (mapped < 0)).mean(axis=1)
    change = fraction[:, None, :] - fraction[None, :, :]  # (experiment, baseline, minimum)
    sizes = {} if reference_basin_fraction is None else _reached_basin_sizes(labels, mapped, reference_basin_fraction)
    return xr.Dataset(
        {
            **sizes,
            "agreement": ("experiment", agreement, variable_attrs("members reaching the reference's minimum")),
            "agreement_se": ("experiment", agreement_se, variable_attrs("standard error of agreement")),
            "basin_fraction": (
                ("experiment", "minimum"),
                fraction,
                variable_attrs("fraction of initial conditions reaching the reference minimum"),
            ),
            "unmatched_fraction": (
                "experiment",
                unmatched,
                variable_attrs("members reaching a minimum outside the reference catalog"),
            ),
            "basin_fraction_change": (("experiment", "baseline", "minimum"), change,
                                      variable_attrs("basin fraction minus the baseline's, same members")),
            "basin_fraction_change_se": (
                ("experiment", "baseline", "minimum"), _paired_change_se(mapped, n_reference_minima),
                variable_attrs("paired standard error of basin_fraction_change")),
        },
        coords={
            "experiment": ("experiment", np.asarray(experiments, dtype=object), variable_attrs("experiment")),
            "baseline": ("baseline", np.asarray(experiments, dtype=object), variable_attrs(
                "experiment the change is taken from")),
            "minimum": ("minimum", np.arange(n_reference_minima), variable_attrs("reference catalog index")),
        },
        attrs={"reference_experiment": experiments[0]},
    )


def _paired_change_se(mapped, n_minima):
    """Per experiment, baseline and reference minimum, the standard error over members of the
    change of "reaches it" from the baseline to the experiment."""
    reaches = (mapped[:, :, None] == np.arange(n_minima)[None, None, :]).astype(float)  # (experiment, member, minimum)
    return _paired_changes(reaches)[1]


def _reached_basin_sizes(labels, mapped, reference_basin_fraction):
    """Per member the reference basin fraction of the minimum it reached (nan: no minimum), its
    mean per experiment and the paired changes between experiments with their errors."""
    fraction = np.asarray(reference_basin_fraction, dtype=float)
    size = np.where(mapped >= 0, fraction[np.maximum(mapped, 0)], 0.0)
    size[labels < 0] = np.nan  # (experiment, member)
    change, change_se = _paired_changes(size)
    pair = ("experiment", "baseline")
    return {
        "reached_basin_size": ("experiment", np.nanmean(size, axis=1), variable_attrs(
            "mean over members of the reference basin fraction of the minimum reached")),
        "reached_basin_size_change": (pair, change, variable_attrs(
            "reached_basin_size minus the baseline's, paired over members both assigned")),
        "reached_basin_size_change_se": (pair, change_se, variable_attrs(
            "paired standard error of reached_basin_size_change")),
    }


def _paired_changes(values):
    """Mean and standard error over members of ``values[experiment] - values[baseline]``, from
    ``values (experiment, member, ...)``, over the members where both are finite (nan: none,
    or for the error fewer than two): ``(experiment, baseline, ...)`` each."""
    difference = values[:, None] - values[None, :]  # (experiment, baseline, member, ...)
    finite = np.isfinite(difference)
    count = finite.sum(axis=2)
    filled = np.where(finite, difference, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=2) / count
        spread = np.where(finite, difference - np.expand_dims(mean, 2), 0.0)
        variance = (spread**2).sum(axis=2) / (count - 1)
        error = np.sqrt(variance / count)
    return np.where(count > 0, mean, np.nan), np.where(count > 1, error, np.nan)
