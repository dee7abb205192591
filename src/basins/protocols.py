"""Stage ``compare_protocols``: how flat are the minima that different training protocols reach?

Protocols here are ways of training one network on one data set: the loss, the schedule of
its inverse temperature (a cross-entropy whose beta grows slowly anneals, a fixed large beta
quenches), the stopping rule (error counting stops at the first zero-error point). Baldassi,
Pittorino and Zecchina (2020) relate their generalization to the flatness of the minima they
reach. The local energy (training error after multiplicative perturbations, from
``measure_flatness``) depends only on the network's function on the training set, not on the
loss a protocol minimized, so it puts all protocols on one scale; Hessians do not (each is
the Hessian of its own loss) and are reported only beside it.

A protocol's typical minimum is a member drawn at random: every average here weights a
catalogued minimum by its basin (the members that reached it).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from basins.io import variable_attrs
from basins.stats import spearman_with_error


def compare_protocols(
    experiments: list[str],
    minima: list[xr.Dataset],
    flatness: list[xr.Dataset],
    *,
    reference_sigma: float,
    n_starts: list[int] | None = None,
) -> xr.Dataset:
    """Member-weighted flatness and test error of each protocol's minima.

    Parameters
    ----------
    experiments : list of str
        One experiment (protocol) each, on the same data and network.
    minima, flatness : list of xarray.Dataset
        Each experiment's catalog (``deduplicate_minima``) and its flatness (``measure_flatness``),
        measured on one grid of perturbation sizes.
    reference_sigma : float
        The perturbation size, on that grid, at which minima are compared one by one.
    n_starts : list of int, optional
        Each experiment's number of starts (``ensemble.n_members``) when a noisy dynamics ran every
        start several times (member = draw * n_starts + start): the runs of one start are then
        one cluster in the standard errors (None: every member its own start).

    Returns
    -------
    xarray.Dataset
        ``(experiment, sigma)``: ``local_energy`` and its standard error ``local_energy_se``
        (draw noise of the perturbations plus the sampling of minima by the starts, the runs
        of one start clustered);
        ``(experiment,)``: ``test_error``, ``train_error``, ``weight_norm``,
        ``top_eigenvalue`` (of each protocol's own loss) and ``assigned_fraction``;
        ``(pooled_minimum,)``: every catalogued minimum of every protocol with its ``protocol``,
        ``basin_fraction``, ``test_error`` and local energy at ``reference_sigma``; the
        scalar ``rank_correlation`` of those two across the pooled minima.
    """
    if not (len(experiments) == len(minima) == len(flatness)) or not experiments:
        raise ValueError("experiments, minima and flatness need one entry per protocol, and at least one")
    sigmas, reference = _common_sigma_grid(experiments, flatness, reference_sigma)
    n_starts = n_starts or [catalog.sizes["member"] for catalog in minima]
    per_protocol = [_typical_minimum(catalog, measured, starts)
                    for catalog, measured, starts in zip(minima, flatness, n_starts)]
    stacked = {name: np.stack([row[name] for row in per_protocol]) for name in per_protocol[0]}
    pooled_energy = np.concatenate([m["local_energy"].values[:, reference] for m in flatness])
    return xr.Dataset(
        {**_per_protocol_variables(stacked), **_pooled_minimum_variables(minima, pooled_energy)},
        coords={
            "experiment": ("experiment", np.asarray(experiments, dtype=object), variable_attrs("protocol")),
            "sigma": ("sigma", sigmas, variable_attrs("relative perturbation size")),
            "pooled_minimum": ("pooled_minimum", np.arange(len(pooled_energy)), variable_attrs("minimum of any protocol")),
        },
        attrs={"reference_sigma": float(sigmas[reference])},
    )


def _common_sigma_grid(experiments, flatness, reference_sigma):
    """The perturbation sizes every protocol was measured at, and the index of ``reference_sigma`` on them."""
    sigmas = flatness[0]["sigma"].values
    for name, measured in zip(experiments, flatness):
        if not np.array_equal(measured["sigma"].values, sigmas):
            raise ValueError(
                f"experiment {name!r} measured its local energy at sigmas {measured['sigma'].values}, "
                f"{experiments[0]!r} at {sigmas}; protocols are compared on one grid"
            )
    matches = np.flatnonzero(np.isclose(sigmas, reference_sigma))
    if not len(matches):
        raise ValueError(f"reference_sigma={reference_sigma} is not on the local energy grid {sigmas}")
    return sigmas, matches[0]


def _per_protocol_variables(stacked):
    per_experiment = lambda name, *attrs: ("experiment", stacked[name], variable_attrs(*attrs))  # noqa: E731
    return {
        "local_energy": (
            ("experiment", "sigma"),
            stacked["local_energy"],
            variable_attrs("training error increase under perturbation (delta-E), member-weighted"),
        ),
        "local_energy_se": (
            ("experiment", "sigma"),
            stacked["local_energy_se"],
            variable_attrs("standard error of local_energy"),
        ),
        "test_error": per_experiment("test_error", "test error (0-1), member-weighted"),
        "test_error_se": per_experiment("test_error_se", "standard error of test_error"),
        "train_error": per_experiment("train_error", "training error (0-1), member-weighted"),
        "weight_norm": per_experiment("weight_norm", "Euclidean norm of the parameters, member-weighted"),
        "top_eigenvalue": per_experiment(
            "top_eigenvalue", "largest Hessian eigenvalue of the protocol's own loss, member-weighted"
        ),
        "assigned_fraction": per_experiment("assigned_fraction", "members that reached a catalogued minimum"),
    }


def _pooled_minimum_variables(minima, pooled_energy):
    """Every catalogued minimum of every protocol, and the rank correlation of its flatness and test error."""
    pooled_test_error = np.concatenate([c["test_error"].values for c in minima])
    rho, rho_se = spearman_with_error(pooled_energy, pooled_test_error)
    return {
        "protocol": (
            "pooled_minimum",
            np.concatenate([np.full(c.sizes["minimum"], i) for i, c in enumerate(minima)]),
            variable_attrs("index of the protocol (experiment) that reached this minimum"),
        ),
        "pooled_basin_fraction": (
            "pooled_minimum",
            np.concatenate([c["n_members"].values / c.sizes["member"] for c in minima]),
            variable_attrs("fraction of the protocol's members that reached this minimum"),
        ),
        "pooled_test_error": ("pooled_minimum", pooled_test_error, variable_attrs("test error of this minimum")),
        "pooled_local_energy": (
            "pooled_minimum",
            pooled_energy,
            variable_attrs("delta-E of this minimum at reference_sigma"),
        ),
        "rank_correlation": (
            (),
            rho,
            variable_attrs(
                "Spearman correlation of local energy at reference_sigma and test error, pooled minima",
                standard_error=rho_se,
            ),
        ),
    }


def _typical_minimum(catalog: xr.Dataset, measured: xr.Dataset, n_starts: int) -> dict[str, np.ndarray]:
    """Member-weighted averages over one protocol's catalog, with standard errors."""
    n_members = catalog.sizes["member"]
    counts = catalog["n_members"].values.astype(np.float64)
    n_assigned = counts.sum()
    sigmas = measured.sizes["sigma"]
    if n_assigned == 0:
        nan = np.full(sigmas, np.nan)
        return dict(local_energy=nan, local_energy_se=nan, test_error=np.nan, test_error_se=np.nan,
                    train_error=np.nan, weight_norm=np.nan, top_eigenvalue=np.nan, assigned_fraction=0.0)
    weights = counts / n_assigned
    energy = measured["local_energy"].values
    mean_energy = weights @ energy
    # Two sources of noise: the finite draws of perturbations at each minimum (one set per
    # minimum, shared by its members), and which minima the starts happened to reach.
    draw_variance = (weights**2) @ measured["perturbed_error_se"].values ** 2
    test_error = catalog["test_error"].values
    mean_test_error = weights @ test_error
    labels, starts = catalog["minimum_of_member"].values, catalog["member"].values % n_starts
    return dict(
        local_energy=mean_energy,
        local_energy_se=np.sqrt(draw_variance + _clustered_variance(energy, mean_energy, labels, starts)),
        test_error=mean_test_error,
        test_error_se=np.sqrt(_clustered_variance(test_error, mean_test_error, labels, starts)),
        train_error=weights @ catalog["train_error"].values,
        weight_norm=weights @ np.linalg.norm(catalog["theta"].values, axis=1),
        top_eigenvalue=weights @ measured["top_eigenvalue"].values[:, 0],
        assigned_fraction=n_assigned / n_members,
    )


def _clustered_variance(value, mean, labels, starts):
    """Variance of the mean over assigned runs of ``value[label]`` (per minimum, ``(minimum,
    ...)``), the runs of one start summed before squaring (the cluster-robust variance of a
    mean; with one run per start, the spread over runs divided by their number)."""
    assigned = labels >= 0
    residual = value[labels[assigned]] - mean  # (run, ...)
    per_start = np.zeros((starts.max() + 1, *residual.shape[1:]))
    np.add.at(per_start, starts[assigned], residual)
    return (per_start**2).sum(axis=0) / assigned.sum() ** 2
