"""Figures of the jamming stage, drawn from an ``analyze_jamming`` output."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import seaborn as sns
import xarray as xr

from basins.figures import PAPER_SIZE, set_theme
from basins.jamming_analysis import cover_sat_probability
from basins.labels import SAT, STUCK, UNDECIDED_PHASE, UNSAT
from basins.stats import wilson_interval


def _depth_colors(jamming):
    depths = jamming["depth"].values
    return dict(zip(depths, sns.color_palette("viridis", len(depths))))


def _network_label(jamming, i):
    network = jamming.isel(network=i)
    depth, width, n = (int(network[name]) for name in ("network_depth", "network_width", "n_weights"))
    return f"perceptron, N={n}" if depth == 0 else f"depth {depth}, width {width}, N={n}"


def figure_jamming(jamming: xr.Dataset, *, title: str) -> plt.Figure:
    """N_Delta / N against P / N for every network (each seed's grid and fine-scan runs as dots,
    the grid's mean as a line), and the transition r* = P*/N per depth: each seed's with its
    bracket, the mean with its 95 % interval (:func:`basins.jamming_analysis.mean_transition_interval`)."""
    set_theme()
    fig, (phase_ax, ratio_ax) = plt.subplots(
        1, 2, figsize=(2 * PAPER_SIZE[0], PAPER_SIZE[1]), gridspec_kw={"width_ratios": [2, 1]}
    )
    colors = _depth_colors(jamming)
    markers = "osD^v<>p*h"
    for i in range(jamming.sizes["network"]):
        network = jamming.isel(network=i)
        depth, n_weights = int(network["network_depth"]), int(network["n_weights"])
        ratio = network["ratio"].values
        fraction = network["n_unsatisfied"].values / n_weights
        phase = network["phase"].values
        decided = (phase == SAT) | (phase == UNSAT)
        color, marker = colors[depth], markers[i % len(markers)]
        for k in range(jamming.sizes["seed"]):
            _scatter_runs(phase_ax, ratio, fraction[:, k], phase[:, k], color, marker)
        # the fine scan's sizes differ between seeds: marked as the grid's, not in the mean line
        _scatter_runs(phase_ax, network["fine_n_train"].values / n_weights,
                      network["fine_n_unsatisfied"].values / n_weights, network["fine_phase"].values, color, marker)
        with np.errstate(invalid="ignore"):  # nan where no seed decided a size
            mean = np.where(decided, fraction, 0).sum(1) / decided.sum(1)
        phase_ax.plot(ratio, mean, color=color, marker=marker, ms=3, lw=1, label=_network_label(jamming, i))
    for depth in jamming["depth"].values:
        r_star = float(jamming["transition_ratio_mean"].sel(depth=depth))
        if np.isfinite(r_star):
            phase_ax.axvline(r_star, color=colors[depth], ls=":", lw=1)
    # symlog: the jump at r* and the growth far above it (N_Delta up to P) on one axis
    phase_ax.set_yscale("symlog", linthresh=0.01)
    phase_ax.set(xscale="log", xlabel="P / N", ylabel=r"$N_\Delta$ / N", title=title)
    phase_ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    phase_ax.plot([], [], ls="none", marker="o", mfc="none", mec="tab:red", label="undecided (budget spent)")
    phase_ax.plot([], [], ls="none", marker="o", mfc="none", mec="0.5",
                  label="stuck (few points left: N_Delta < stuck_fraction N)")
    phase_ax.legend(fontsize=5, loc="upper left")

    for depth in jamming["depth"].values:
        at_depth = jamming["network_depth"] == depth
        estimates, lower, upper = (
            jamming[name].where(at_depth).values.ravel()
            for name in ("transition_ratio", "transition_ratio_lower", "transition_ratio_upper")
        )
        found = np.isfinite(estimates)
        # each seed's estimate with the bracket of decided sizes (grid and fine scan), beside the depth's mean
        offsets = depth + 0.12 + np.linspace(0, 0.24, max(found.sum(), 1))[: found.sum()]
        ratio_ax.errorbar(
            offsets, estimates[found], yerr=(estimates[found] - lower[found], upper[found] - estimates[found]),
            fmt="o", ms=2.5, color=colors[depth], alpha=0.6, lw=0.6, capsize=0,
        )
        summary = jamming.sel(depth=depth)
        mean = float(summary["transition_ratio_mean"])
        low, high = (float(summary.get(name, np.nan)) for name in ("transition_ratio_low", "transition_ratio_high"))
        interval = [[mean - low], [high - mean]] if np.isfinite([low, high]).all() else None
        ratio_ax.errorbar(depth, mean, yerr=interval, color="k", marker="_", ms=10, capsize=3, lw=1)
    ratio_ax.set(xlabel="depth (hidden layers)", ylabel="r* = P* / N", xticks=jamming["depth"].values)
    ratio_ax.set_title(
        "transition per seed (bars: bracket of decided P,\nfine scan included); mean with its 95 % interval\n"
        "(brackets and seed scatter; none where it is open above)", fontsize=7
    )
    fig.tight_layout()
    return fig


def _scatter_runs(ax, ratio, fraction, phase, color, marker):
    """Runs at P / N ``ratio`` with N_Delta / N ``fraction``: decided ones as dots, undecided and
    stuck ones as open markers (red, grey); nan phases (no run) are not drawn."""
    decided = (phase == SAT) | (phase == UNSAT)
    ax.scatter(ratio[decided], fraction[decided], s=6, color=color, marker=marker, alpha=0.4, lw=0)
    for value, edge in ((UNDECIDED_PHASE, "tab:red"), (STUCK, "0.5")):
        shown = phase == value
        ax.scatter(ratio[shown], fraction[shown], s=14, facecolor="none", edgecolor=edge, marker=marker, lw=0.7)


def figure_jamming_gaps(jamming: xr.Dataset, *, title: str) -> plt.Figure:
    """Densities at the runs next to the transition, SAT side and UNSAT side: gaps |Delta| of
    satisfied points (Delta < 0, solid) and overlaps Delta / sqrt(L) of unsatisfied ones
    (dashed, L the run's loss), with the fitted small-argument power laws."""
    set_theme()
    # The legends (one line per fit, with its errors and checks) go below the panels.
    fig, axes = plt.subplots(1, 2, figsize=(2 * PAPER_SIZE[0], 1.7 * PAPER_SIZE[1]), sharey=True)
    palette = sns.color_palette("colorblind", jamming.sizes["network"])
    centres = jamming["bin"].values
    for ax, side in zip(axes, jamming["side"].values):
        drawn = False
        for i in range(jamming.sizes["network"]):
            for constraint, style in zip(jamming["constraint"].values, ("-", "--")):
                cell = jamming.isel(network=i).sel(side=side, constraint=constraint)
                density = cell["delta_density"].values
                if not np.any(density > 0):
                    continue
                drawn = True
                exponent, stderr = float(cell["delta_exponent"]), float(cell["delta_exponent_stderr"])
                fit_p, raised = float(cell["delta_fit_p_value"]), float(cell["delta_exponent_raised_floor"])
                seeds = float(cell["delta_exponent_seed_stderr"])
                fitted = ""
                if np.isfinite(exponent):
                    fitted = (f", slope {exponent:.2f}$\\pm${stderr:.2f}, seeds $\\pm${seeds:.2f} "
                              f"(fit p {fit_p:.2g}; floor x10: {raised:.2f})")
                label = f"{_network_label(jamming, i)}, {constraint}{fitted}"
                shown = density > 0
                ax.plot(centres[shown], density[shown], ls=style, color=palette[i], marker=".", ms=3, lw=0.8, label=label)
                if np.isfinite(exponent):
                    in_range = (centres >= float(cell["delta_fit_lower"])) & (centres <= float(cell["delta_fit_upper"]))
                    span = centres[shown & in_range]
                    ax.plot(span, float(cell["delta_fit_prefactor"]) * span**exponent, color="k", lw=0.6)
        ax.set(
            xscale="log", yscale="log", xlabel=r"gaps $|\Delta|$; overlaps $\Delta / \sqrt{L}$",
            title=f"{side.upper()} side of the transition",
        )
        if drawn:
            ax.legend(fontsize=4.5, loc="upper left", bbox_to_anchor=(-0.15, -0.22), frameon=False)
        else:
            ax.text(0.5, 0.5, "no run on this side", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_ylabel("density")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def figure_jamming_test_error(jamming: xr.Dataset, *, title: str) -> plt.Figure:
    """Test error against the number of weights N at fixed training-set sizes P (mean and sd
    over seeds), one marker per depth: the cusp at the transition (Spigler et al. 2019)."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    sizes = jamming["train_size"].values
    shown = np.unique(np.round(np.linspace(0, sizes.size - 1, min(4, sizes.size))).astype(int))
    palette = sns.color_palette("rocket", shown.size)
    markers = dict(zip(jamming["depth"].values, "osD^v<>p*h"))
    for color, j in zip(palette, shown):
        at_size = jamming.isel(train_size=j)
        for depth in jamming["depth"].values:
            networks = np.flatnonzero(jamming["network_depth"].values == depth)
            order = networks[np.argsort(jamming["n_weights"].values[networks])]
            error = at_size["test_error"].values[order]
            ax.errorbar(
                jamming["n_weights"].values[order], np.nanmean(error, axis=1), yerr=np.nanstd(error, axis=1),
                color=color, marker=markers[depth], ms=3, lw=0.8, capsize=2,
                label=f"P={sizes[j]}, depth {depth}",
            )
    ax.set(xscale="log", xlabel="N (weights)", ylabel="test error", title=title)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=5)
    fig.tight_layout()
    return fig


def _fitted_free_parameters(network: xr.Dataset) -> str:
    """The free parameters the SAT/UNSAT brackets fix, as a legend's words ("" where not fitted)."""
    if "cover_fitted_free_parameters_low" not in network:
        return ""
    low, high = (float(network[f"cover_fitted_free_parameters_{end}"]) for end in ("low", "high"))
    return f"; N in [{low:.0f}, {high:.0f}]" if np.isfinite(low) else ""


def _capacity_brackets(ax, network: xr.Dataset, n_free: int, color) -> None:
    """Each seed's capacity bracket (largest SAT to smallest UNSAT size, grid and fine scan) as a
    segment at its survival plotting position 1 - (i - 1/2) / n, i its rank by bracket: on nested
    training sets P(SAT at P) is the probability that the capacity exceeds P, so the segments
    scatter about Cover's curve where it holds."""
    if "largest_sat_size" not in network:
        return
    lower, upper = network["largest_sat_size"].values, network["smallest_unsat_size"].values
    seen = (lower > 0) | np.isfinite(upper)
    lower, upper = lower[seen], np.where(np.isfinite(upper[seen]), upper[seen], lower[seen])
    order = np.argsort(lower + upper, kind="stable")
    height = 1 - (np.arange(order.size) + 0.5) / max(order.size, 1)
    ax.hlines(height, lower[order] / n_free, upper[order] / n_free, color=color, lw=2, alpha=0.45,
              label="each seed's capacity bracket")


def figure_jamming_cover(jamming: xr.Dataset, *, title: str) -> plt.Figure:
    """The calibration: SAT fraction of perceptrons on random patterns against P, with 95 %
    Wilson intervals over seeds, beside Cover's exact P(SAT) for N free parameters (1965), and
    each seed's capacity bracket from all its runs (the fine scan's sizes too)."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    calibrated = np.flatnonzero(np.isfinite(jamming["cover_family_p_value"].values))
    palette = sns.color_palette("colorblind", max(len(calibrated), 1))
    sizes = jamming["train_size"].values
    for color, i in zip(palette, calibrated):
        network = jamming.isel(network=i)
        n_free = int(network["n_free"])
        n_sat = network["sat_count"].values
        n_decided = n_sat + network["unsat_count"].values
        shown = n_decided > 0
        low, high = wilson_interval(n_sat[shown], n_decided[shown])
        fraction = n_sat[shown] / n_decided[shown]
        ax.errorbar(
            sizes[shown] / n_free, fraction, yerr=(fraction - low, high - fraction), fmt="o", ms=3, color=color,
            capsize=2, lw=0.8, label=f"measured (p = {float(network['cover_family_p_value']):.2g}"
            f"{_fitted_free_parameters(network)})",
        )
        dense = np.arange(1, int(sizes.max()) + 1)
        ax.plot(dense / n_free, cover_sat_probability(dense, n_free), color=color, lw=1, label=f"Cover, N={n_free}")
        _capacity_brackets(ax, network, n_free, color)
    if not len(calibrated):
        ax.text(0.5, 0.5, "no perceptron on random patterns", ha="center", va="center", transform=ax.transAxes)
    ax.axvline(2, color="k", ls=":", lw=0.8)
    ax.set(xlabel="P / N (N: free parameters, bias included)", ylabel="P(SAT)", ylim=(-0.03, 1.03), title=title)
    ax.legend(fontsize=5, loc="lower left")  # the plateau above and the tail to the right hold the data
    fig.tight_layout()
    return fig
