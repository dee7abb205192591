"""Stage ``summarize_rings``: the calibration table of the Kuramoto rings, read from the run.

The basin measurements are trusted on networks only after they reproduce what is known of the
twisted states of rings of identical Kuramoto oscillators (Wiley, Strogatz and Girvan 2006;
Zhang and Strogatz 2021). This stage collects, per ring and seed, the numbers that make that
comparison from the outputs of ``analyze_ring_basins`` and ``measure_ring_tentacles``: p(0) and
the fits of p(q) (Gaussian, with width sigma = (2c)^-1/2 growing as sqrt(n); exponential,
rejected), and the shape statistics of the q = 0 basin (start distance against exit radius,
reach, leaving fraction, thickness ratio, return probability beyond the initialization shell
against the basin fraction), and, for rings with a ``basin_sizes`` section, each measured twisted
state's basin fraction by thermodynamic integration (``estimate_ring_basin_sizes``) beside its
count. It writes them as a dataset and as the Markdown tables the README quotes, so no number
of those tables is typed by hand.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from basins.basin_volume import PLATEAU_DRIFTING, PLATEAU_UNCHECKED, plateau_basin_scores
from basins.io import variable_attrs

#: The twisted state whose basin is tabulated (the in-phase state, the largest basin).
WINDING = 0


def ring_calibration(
    labels: list[str], basins: list[xr.Dataset], tentacles: list[xr.Dataset],
    basin_size_labels: list[str] = (), basin_sizes: list[xr.Dataset] = (),
) -> xr.Dataset:
    """One row per ring and seed (``labels``, e.g. ``ring83/seed1``) of the calibration numbers.

    ``basins`` are ``analyze_ring_basins`` outputs (basin fractions per twisted state, the fits
    of p(q) on dim ``fit``), ``tentacles`` the ``measure_ring_tentacles`` outputs of the same
    rings and seeds. A ring whose q = 0 state was not probed gets nan shape statistics.
    ``basin_sizes`` are ``estimate_ring_basin_sizes`` outputs of the rings and seeds
    ``basin_size_labels``: one row each of their twisted states on dim ``measured_state``.
    """
    if len(basin_size_labels) != len(basin_sizes):
        raise ValueError(f"{len(basin_size_labels)} labels for {len(basin_sizes)} basin size files")
    if not (len(labels) == len(basins) == len(tentacles)):
        raise ValueError(
            f"{len(labels)} labels, {len(basins)} basin and {len(tentacles)} tentacle files: one each per ring"
        )
    rows = [_row(b, t) for b, t in zip(basins, tentacles)]
    names = list(rows[0]) if rows else []
    calibration = xr.Dataset(
        _columns("ring", rows, names),
        coords={"ring": ("ring", np.asarray(labels, dtype=object), variable_attrs("ring and seed"))},
        attrs={
            "winding_number": WINDING,
            "confidence": float(tentacles[0].attrs["confidence"]) if tentacles else np.nan,
        },
    )
    return calibration.merge(_measured_states(basin_size_labels, basin_sizes))


def _measured_states(labels, basin_sizes) -> xr.Dataset:
    """Every measured twisted state's estimated and counted ln basin fraction, one row each."""
    rows = [
        {"ring_of_state": label, **{_RENAMED.get(name, name): state[name].item() for name in _MEASURED},
         "largest_burn_in_drift": float(np.abs(state["burn_in_drift"]).max()),
         "plateau_score": float(sizes["plateau_score"]), "plateau_method": str(sizes["plateau_method"].values),
         **_own_plateau(state)}
        for label, sizes in zip(labels, basin_sizes)
        for state in (sizes.isel(minimum=index) for index in range(sizes.sizes["minimum"]))
    ]
    names = ("ring_of_state", *(_RENAMED.get(name, name) for name in _MEASURED), "largest_burn_in_drift", "plateau_score",
             "plateau_method", "own_plateau_score", "plateau_basin_failed")
    return xr.Dataset(
        _columns("measured_state", rows, names),
        coords={"measured_state": ("measured_state", np.arange(len(rows)), variable_attrs("measured twisted state"))},
    )


def _own_plateau(state) -> dict:
    """The state's own score in its stage's plateau check (by the half-length walk where the stage
    ran it, else by the halves) and whether it passed the per-basin level (files written before
    that level: unchecked)."""
    failed = int(state["plateau_basin_failed"]) if "plateau_basin_failed" in state else PLATEAU_UNCHECKED
    return {"own_plateau_score": float(plateau_basin_scores(state)), "plateau_basin_failed": failed}


def _columns(dim, rows, names):
    """The ``rows`` (dicts) as one described variable per name along ``dim``."""
    return {
        name: (dim, np.array([row[name] for row in rows], dtype=object if name in _TEXT else None),
               variable_attrs(_DESCRIPTIONS[name]))
        for name in names
    }


def _row(basins: xr.Dataset, tentacles: xr.Dataset) -> dict:
    n_oscillators = _ring_size(basins)
    reached = np.flatnonzero(basins["winding_number"].values == WINDING)
    if not reached.size:
        raise ValueError(f"no initial condition of the ring with n = {n_oscillators} reached the q = {WINDING} state")
    state = basins.isel(minimum=int(reached[0]))
    fits = {str(kind): basins.sel(fit=kind) for kind in basins["fit"].values}
    gaussian, exponential = fits["gaussian"], fits["exponential"]
    row = {
        "n_oscillators": n_oscillators,
        "n_members": int(basins.attrs["n_members_total"]),
        "p0": float(state["basin_fraction"]),
        "p0_se": float(state["basin_fraction_se"]),
        "gaussian_rate": float(gaussian["rate"]),
        "gaussian_rate_se": float(gaussian["rate_se"]),
        "gaussian_p_value": float(gaussian["p_value"]),
        "gaussian_dof": int(gaussian["chi_square_dof"]),
        "exponential_rate": float(exponential["rate"]),
        "exponential_rate_se": float(exponential["rate_se"]),
        "exponential_p_value": float(exponential["p_value"]),
        "sigma_over_sqrt_n": float((2 * gaussian["rate"]) ** -0.5 / np.sqrt(n_oscillators)),
        "start_distance_median": float(state["start_distance_median"]),
    }
    probed = np.flatnonzero(tentacles["winding_number"].values == WINDING)
    shape = tentacles.isel(minimum=int(probed[0])) if probed.size else None
    for name in _SHAPE:
        row[name] = float(shape[name]) if shape is not None else np.nan
    row["far_radius"] = float(tentacles["far_radius"])
    row["farthest_ray_radius"] = float(np.max(tentacles.attrs["ray_radii"]))
    row["distance_ratio"] = row["start_distance_median"] / row["median_exit_radius"]
    return row


def _ring_size(basins: xr.Dataset) -> int:
    return int(json.loads(basins.attrs["ring"])["n_oscillators"])


_SHAPE = (
    "basin_fraction", "median_exit_radius", "reach", "reach_low", "reach_high", "leaving_fraction",
    "leaving_fraction_low", "leaving_fraction_high", "median_thickness_ratio", "median_thickness_ratio_low",
    "median_thickness_ratio_high", "far_return_probability", "far_return_probability_se",
)

_MEASURED = (
    "winding_number", "n_members", "log_count_fraction", "log_count_fraction_low", "log_count_fraction_high",
    "log_basin_fraction", "log_basin_fraction_low", "log_basin_fraction_high", "log_measure_dof", "count_disagreement",
    "reference_inside_fraction", "undecided_fraction", "log_measure_half_drift", "half_drift_score", "basin_samples",
    "draws_check", "draws_check_threshold", "reason",
)
_TEXT = ("ring_of_state", "reason", "plateau_method")
_RENAMED = {"n_members": "members_of_state"}  # n_members is the ring's own (per ring and seed)

_DESCRIPTIONS = {
    "ring_of_state": "ring and seed of the measured twisted state",
    "winding_number": "winding number q of the measured twisted state",
    "members_of_state": "initial conditions that reached the measured state",
    "log_count_fraction": "ln of the state's counted basin fraction",
    "log_count_fraction_low": "ln of the lower end of its Wilson interval",
    "log_count_fraction_high": "ln of the upper end of its Wilson interval",
    "log_basin_fraction": "ln of the basin fraction by thermodynamic integration (estimate_ring_basin_sizes)",
    "log_basin_fraction_low": "lower end of its interval",
    "log_basin_fraction_high": "upper end of its interval",
    "log_measure_dof": "degrees of freedom of the estimate's standard error (its interval is Student's t at them)",
    "count_disagreement": "log_basin_fraction - log_count_fraction in combined standard errors",
    "reference_inside_fraction": "share of the strongest spring's draws that relaxed to the state",
    "undecided_fraction": "share of the walk's runs that were undecided (rejected moves: biases the estimate low)",
    "reason": "why the state has no estimate (empty: it has one)",
    "log_measure_half_drift": "the estimate from the second half of the walks' kept steps minus from the first (nats)",
    "half_drift_score": "log_measure_half_drift over its standard error, as a standard normal quantile",
    "plateau_score": "the walks' plateau score of the state's stage (ring and seed): standard normal at equilibrium",
    "plateau_method": "what the plateau score compares: the estimate with walks half as long, or each walk's halves",
    "own_plateau_score": "the state's own score in that comparison (half_walk_score or half_drift_score)",
    "plateau_basin_failed": "whether own_plateau_score passed its stage's per-basin level (0 no, 1 yes, 2 unchecked)",
    "draws_check": "largest disagreement of the integration with the springs' fresh draws (standard errors)",
    "draws_check_threshold": "the level draws_check is held to (Bonferroni over the springs compared)",
    "largest_burn_in_drift": "largest |burn_in_drift| over the couplings (a weak check of equilibration)",
    "basin_samples": "members' starts the walk's chains started among (0: all at the anchor)",
    "n_oscillators": "oscillators n",
    "n_members": "initial conditions",
    "p0": "basin fraction of the q = 0 state",
    "p0_se": "standard error of p0",
    "gaussian_rate": "c of the Gaussian fit p(q) ~ exp(-c q^2)",
    "gaussian_rate_se": "standard error of gaussian_rate",
    "gaussian_p_value": "chi-square goodness of fit of the Gaussian",
    "gaussian_dof": "degrees of freedom of that chi-square",
    "exponential_rate": "c of the exponential fit p(q) ~ exp(-c |q|)",
    "exponential_rate_se": "standard error of exponential_rate",
    "exponential_p_value": "chi-square goodness of fit of the exponential",
    "sigma_over_sqrt_n": "Gaussian width sigma = (2c)^-1/2 over sqrt(n): constant if sigma grows as sqrt(n)",
    "start_distance_median": "median distance of the q = 0 basin's members from their state (rad)",
    "basin_fraction": "basin fraction of the q = 0 state (tentacle stage's count)",
    "median_exit_radius": "Kaplan-Meier median radius at which rays from the q = 0 state leave its basin (rad)",
    "reach": "share of the q = 0 basin at its members' distances that rays reach only after leaving it",
    "reach_low": "lower confidence bound of reach",
    "reach_high": "upper confidence bound of reach",
    "leaving_fraction": "members whose segment to the q = 0 state leaves its basin",
    "leaving_fraction_low": "lower confidence bound of leaving_fraction",
    "leaving_fraction_high": "upper confidence bound of leaving_fraction",
    "median_thickness_ratio": "median over members of local thickness / distance to the state",
    "median_thickness_ratio_low": "lower confidence bound of median_thickness_ratio",
    "median_thickness_ratio_high": "upper confidence bound of median_thickness_ratio",
    "far_return_probability": "return probability of ray points beyond the initialization shell",
    "far_return_probability_se": "standard error of far_return_probability",
    "far_radius": "the initialization shell: median start distance of all members (rad)",
    "farthest_ray_radius": "largest ray radius (rad)",
    "distance_ratio": "start_distance_median / median_exit_radius",
}


def calibration_markdown(calibration: xr.Dataset) -> str:
    """The calibration table in Markdown, one row per ring and seed."""
    confidence = f"{100 * calibration.attrs['confidence']:.0f} %"
    header = (
        "| ring | initial conditions | p(0) | Gaussian fit c (chi-square p, dof) | exponential fit c (chi-square p) "
        "| sigma / sqrt(n) | q = 0: median start distance / median exit radius | q = 0: reach "
        "| q = 0: leaving fraction | q = 0: thickness ratio | q = 0: p(d) beyond the shell (rays to) "
        "| q = 0: basin fraction |\n" + "|---" * 12 + "|\n"
    )
    lines = []
    per_ring = calibration[[name for name, value in calibration.data_vars.items() if "ring" in value.dims]]
    for label in calibration["ring"].values:
        r = {name: value.item() for name, value in per_ring.sel(ring=label).data_vars.items()}
        lines.append(
            f"| {label} | {r['n_members']} | {r['p0']:.4f} +- {r['p0_se']:.4f} "
            f"| {r['gaussian_rate']:.4f} +- {r['gaussian_rate_se']:.4f} "
            f"({_p(r['gaussian_p_value'])}, {r['gaussian_dof']}) "
            f"| {r['exponential_rate']:.3f} +- {r['exponential_rate_se']:.3f} ({_p(r['exponential_p_value'])}) "
            f"| {r['sigma_over_sqrt_n']:.3f} "
            f"| {r['start_distance_median']:.2f} / {r['median_exit_radius']:.2f} rad = {r['distance_ratio']:.2f} "
            f"| {_interval(r, 'reach')} | {_interval(r, 'leaving_fraction')} "
            f"| {_interval(r, 'median_thickness_ratio', digits=3)} "
            f"| {r['far_return_probability']:.2f} +- {r['far_return_probability_se']:.2f} "
            f"({r['far_radius']:.1f}-{r['farthest_ray_radius']:.1f} rad) | {r['basin_fraction']:.3f} |"
        )
    return (
        header + "\n".join(lines) + "\n\n"
        f"Intervals in brackets: {confidence}; +- one standard error. sigma = (2c)^-1/2 is the width of "
        "the Gaussian. p(d) beyond the shell is read at the ray radii beyond the members' median start "
        "distance; a tentacled basin is re-entered there about as often as its basin fraction.\n"
        + _measured_states_markdown(calibration)
    )


def _measured_states_markdown(calibration: xr.Dataset) -> str:
    """The thermodynamic integration against counts, one row per measured twisted state."""
    if not calibration.sizes.get("measured_state"):
        return ""
    lines = []
    per_state = calibration[[name for name, value in calibration.data_vars.items() if "measured_state" in value.dims]]
    for index in range(calibration.sizes["measured_state"]):
        r = {name: value.item() for name, value in per_state.isel(measured_state=index).data_vars.items()}
        estimate = (f"{r['log_basin_fraction']:.2f} [{r['log_basin_fraction_low']:.2f}, "
                    f"{r['log_basin_fraction_high']:.2f}]" if np.isfinite(r["log_basin_fraction"]) else
                    f"none: {r['reason']}")
        lines.append(
            f"| {r['ring_of_state']} | {r['winding_number']} | {r['members_of_state']} "
            f"| {r['log_count_fraction']:.2f} [{r['log_count_fraction_low']:.2f}, {r['log_count_fraction_high']:.2f}] "
            f"| {estimate} | {r['log_measure_dof']:.0f} | {r['count_disagreement']:+.1f} | {r['reference_inside_fraction']:.2f} "
            f"| {r['undecided_fraction']:.4f} | {r['log_measure_half_drift']:+.2f} ({r['half_drift_score']:+.1f}) "
            f"| {r['plateau_score']:+.1f} ({r['plateau_method']}); own {r['own_plateau_score']:+.1f}"
            f"{' beyond the per-basin level' if r['plateau_basin_failed'] == PLATEAU_DRIFTING else ''} "
            f"| {r['largest_burn_in_drift']:.1f} "
            f"| {r['basin_samples']} | {r['draws_check']:.1f} / {r['draws_check_threshold']:.1f} |"
        )
    disagreement = calibration["count_disagreement"].values.astype(float)
    estimated = np.isfinite(disagreement)
    return (
        "\nBasin fractions by thermodynamic integration (stage estimate_ring_basin_sizes) against counts:\n\n"
        "| ring | q | members | ln p, counted | ln p, estimated | dof | difference (combined SE) | strongest spring's "
        "draws inside | undecided runs | second half - first half (nats; score) | walks' plateau score (stage) "
        "| largest burn-in drift | chains started among | fresh draws' check (largest / level) |\n"
        + "|---" * 14 + "|\n"
        + "\n".join(lines) + "\n\n"
        f"{int((np.abs(disagreement[estimated]) <= 2).sum())} of {int(estimated.sum())} estimates lie within two "
        f"combined standard errors of their counts; states without an estimate: {int((~estimated).sum())}. "
        "Intervals: the count's Wilson interval; the estimate's chains (chains that share a start count once; "
        "Student's t at dof), reference draws and quadrature error, "
        "not the bias of walks too short (low; docs/method.md). The halves' difference, over its standard error "
        "as a normal score, flags gross under-equilibration of one walk; the walks' plateau score pools the "
        "scores of a stage's states (Stouffer: standard normal at equilibrium, beyond +-1.96 the walks are "
        "too short; by walks half as long where the stage ran them, else by the halves), and each state's own "
        "score is held to the stage's level shared among its states (Sidak; marked where it passes); the fresh draws' check (the integration against the share of each spring's fresh draws "
        "inside, in standard errors) only where the draws hit the basin.\n"
    )


def _interval(row: dict, name: str, digits: int = 2) -> str:
    return f"{row[name]:.{digits}f} [{row[name + '_low']:.{digits}f}, {row[name + '_high']:.{digits}f}]"


def _p(value: float) -> str:
    return "< 1e-300" if value < 1e-300 else f"{value:.2g}"
