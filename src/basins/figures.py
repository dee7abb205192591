"""The study's figures: one function per figure, datasets in, a matplotlib figure out.

All figures share one seaborn theme and a colorblind-safe palette, and are saved without
timestamps so that rerunning the workflow gives byte-identical files.
"""

from __future__ import annotations

import os

import matplotlib
import matplotlib.collections
import matplotlib.ticker

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
import xarray as xr  # noqa: E402

from basins.comparison import dynamics_names  # noqa: E402
from basins.disconnectivity import tree_segments  # noqa: E402
from basins.labels import AT_SADDLE, UNASSIGNED, UNDECIDED_LABEL  # noqa: E402
from basins.rays import select_minima_to_probe  # noqa: E402
from basins.stats import spearman_with_error  # noqa: E402

PAPER_SIZE = (3.4, 2.6)  # one column of a two-column paper, inches


def set_theme() -> None:
    sns.set_theme(context="paper", style="ticks", palette="colorblind", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "svg.hashsalt": "basins"})


def save_figure(fig: plt.Figure, pdf_path: str | os.PathLike, png_path: str | os.PathLike) -> None:
    """Write PDF and PNG with no creation date or software stamp, then close the figure."""
    fig.savefig(pdf_path, metadata={"CreationDate": None, "Producer": None, "Creator": None})
    fig.savefig(png_path, metadata={"Software": None}, dpi=200)
    plt.close(fig)


def _empty(ax, message):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _wilson_error_bars(basins):
    """Distances from each basin fraction down and up to its Wilson interval bounds."""
    fraction = basins["basin_fraction"].values
    return np.vstack(
        [fraction - basins["basin_fraction_low"].values, basins["basin_fraction_high"].values - fraction]
    )


def _minimum_labels(basins, minima, *, short=False):
    """Legend labels of catalog minima and the order to draw them in.

    Twisted states of a ring are named by their winding number q (ordered by |q|); network
    minima by index and test error (ordered by test error).
    """
    if "winding_number" in basins:
        q = basins["winding_number"].sel(minimum=minima).values
        return [f"q = {value}" for value in q], np.abs(q)
    test_error = basins["test_error"].sel(minimum=minima).values
    if short:
        return [str(m) for m in minima], test_error
    return [f"min {m}, test err {e:.3f}" for m, e in zip(minima, test_error)], test_error


def figure_basin_sizes(basins: xr.Dataset, *, title: str) -> plt.Figure:
    """Rank-size plot of basin fractions with Wilson 95 % intervals (log-log)."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    fraction = basins["basin_fraction"].values
    if len(fraction) == 0:
        _empty(ax, "no minimum reached")
        return fig
    rank = np.arange(1, len(fraction) + 1)
    errors = _wilson_error_bars(basins)
    ax.errorbar(rank, fraction, yerr=errors, fmt="o", ms=3, capsize=2, lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank of minimum by basin size")
    ax.set_ylabel("basin fraction")
    unassigned = float(basins["unassigned_fraction"])
    ax.set_title(f"{title}\n{len(fraction)} minima, {unassigned:.1%} unassigned", fontsize=8)
    sns.despine(fig)
    return fig


def figure_basin_vs_test_error(basins: xr.Dataset, *, title: str) -> plt.Figure:
    """Basin fraction against test error of each minimum, with the rank correlation."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    fraction = basins["basin_fraction"].values
    if len(fraction) == 0:
        _empty(ax, "no minimum reached")
        return fig
    errors = _wilson_error_bars(basins)
    ax.errorbar(basins["test_error"].values, fraction, yerr=errors, fmt="o", ms=3, capsize=2, lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("test error of the minimum")
    ax.set_ylabel("basin fraction")
    rho = basins["rank_correlation_fraction_test_error"]
    ax.set_title(
        f"{title}\nSpearman rho = {float(rho):.2f} +- {rho.attrs['standard_error']:.2f}", fontsize=8
    )
    sns.despine(fig)
    return fig


def figure_travel_distance(basins: xr.Dataset, *, title: str, n_largest: int = 8) -> plt.Figure:
    """Distributions of start-to-minimum distance for the largest basins."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    labels = basins["minimum_of_member"].values
    shown = labels[(labels >= 0) & (labels < n_largest)]
    if len(shown) == 0:
        _empty(ax, "no minimum reached")
        return fig
    sns.boxplot(
        x=shown, y=basins["start_distance"].values[(labels >= 0) & (labels < n_largest)],
        ax=ax, color=sns.color_palette("colorblind")[0], fliersize=1.5, linewidth=0.8,
    )
    ax.set_xlabel("minimum (ordered by basin size)")
    ax.set_ylabel("distance start to minimum")
    ax.set_title(title, fontsize=8)
    sns.despine(fig)
    return fig


def figure_return_probability(rays: xr.Dataset, basins: xr.Dataset, tentacles: xr.Dataset | None = None, *,
                              title: str) -> plt.Figure:
    """Return probability p(d) along random rays for every probed minimum (among decided runs;
    the band spans undecided runs counted as left to counted as returned); triangles mark the
    Kaplan-Meier median exit radius (censored rays kept), dashed lines each minimum's basin
    fraction, and the grey line the shell distance beyond which ``measure_tentacles`` takes
    p(d)'s far-out level (squares at the right edge, with standard errors)."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    if rays.sizes["minimum"] == 0:
        _empty(ax, "no minimum probed")
        return fig
    labels, rank = _minimum_labels(basins, rays["minimum"].values)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, rays.sizes["minimum"]))
    radius = rays["radius"].values
    for color, row in zip(colors, np.argsort(rank, kind="stable")):
        minimum = rays["minimum"].values[row]
        fraction = float(basins["basin_fraction"].sel(minimum=minimum))
        ax.errorbar(
            radius, rays["return_probability"].values[row],
            yerr=rays["return_probability_se"].values[row], marker="o", ms=2.5, lw=0.9, capsize=1.5,
            color=color, label=f"{labels[row]}, basin {fraction:.3f}",
        )
        ax.fill_between(radius, rays["return_probability_low"].values[row],
                        rays["return_probability_high"].values[row], color=color, alpha=0.15, lw=0)
        ax.axhline(fraction, color=color, ls="--", lw=0.7)
        median_exit = float(rays["median_exit_radius"][row])
        if np.isfinite(median_exit):
            ax.plot([median_exit], [0], marker="^", color=color, clip_on=False, ms=5)
        if tentacles is not None and np.isfinite(float(tentacles["far_return_probability"].sel(minimum=minimum))):
            far = tentacles.sel(minimum=minimum)
            ax.errorbar([radius[-1] * 1.2], [float(far["far_return_probability"])],
                        yerr=[float(far["far_return_probability_se"])], marker="s", ms=3, color=color, capsize=1.5,
                        clip_on=False)
    if tentacles is not None:
        ax.axvline(float(tentacles["far_radius"]), color="0.6", lw=0.7)
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("distance d from the minimum along a ray")
    ax.set_ylabel("return probability p(d)")
    ax.set_title(f"{title}\n{rays.sizes['direction']} rays, {len(radius)} radii {radius[0]:.3g}-{radius[-1]:.3g}; "
                 "dashed: basin fraction; squares: far-out level", fontsize=7)
    ax.legend(fontsize=5.5, frameon=False, loc="lower left")
    sns.despine(fig)
    return fig


def figure_tentacles(tentacles: xr.Dataset, basins: xr.Dataset, rays: xr.Dataset, *, title: str) -> plt.Figure:
    """Member start distances against first exit radii, for every probed minimum, labelled with
    reach (head vs reach) and its joint bootstrap interval."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    probed = tentacles["minimum"].values
    if len(probed) == 0:
        _empty(ax, "no minimum probed")
        return fig
    labels = basins["minimum_of_member"].values
    palette = sns.color_palette("colorblind")
    starts = [basins["start_distance"].values[labels == m] for m in probed]
    positions = np.arange(len(probed))
    ax.boxplot(
        [s if len(s) else [np.nan] for s in starts], positions=positions - 0.15, widths=0.25,
        patch_artist=True, boxprops={"facecolor": palette[0], "alpha": 0.6}, flierprops={"ms": 1.5},
        medianprops={"color": "black"},
    )
    for position, exits, observed in zip(positions, rays["exit_radius"].values, rays["exit_observed"].values):
        seen, censored = exits[observed == 1], exits[(observed == 0) & (exits > 0)]
        ax.plot(np.full(len(seen), position + 0.15), seen, "x", color=palette[3], ms=3)
        ax.plot(np.full(len(censored), position + 0.15), censored, "^", color=palette[3], ms=3, mfc="none")
    names = _minimum_labels(basins, probed, short=True)[0]
    reach = [
        f"{name}\n{r:.2f} [{low:.2f}, {high:.2f}]" if np.isfinite(r) else f"{name}\n–"
        for name, r, low, high in zip(names, tentacles["reach"].values, tentacles["reach_low"].values,
                                      tentacles["reach_high"].values)
    ]
    ax.set_xticks(positions, reach, fontsize=5.5)
    ax.set_yscale("log")
    ax.set_xlabel(("twisted state" if "winding_number" in basins else "minimum") + " / reach [95 % interval]")
    ax.set_ylabel("distance from the minimum")
    ax.set_title(f"{title}\nboxes: member starts; crosses: ray exits; open triangles: censored rays", fontsize=8)
    sns.despine(fig)
    return fig


def figure_basin_shape(tentacles: xr.Dataset, basins: xr.Dataset, *, title: str) -> plt.Figure:
    """Star-shapedness and local thickness of sampled members against their distance to the
    minimum, one colour per probed minimum with ``min_members`` members (networks: good =
    lowest test error, bad = highest).

    Left: the fraction of the segment from the minimum to the start that lies in the basin
    (1: star-shaped along it). Right: thickness (median exit radius of random rays from the
    start) over the distance; open triangles: beyond the largest radius (a lower bound).
    Legends give each minimum's leaving fraction and median thickness ratio with intervals.
    """
    set_theme()
    fig, (star, thick) = plt.subplots(1, 2, figsize=(PAPER_SIZE[0] * 2, PAPER_SIZE[1]), layout="constrained")
    member_minimum = tentacles["minimum_of_member"].values
    measured = tentacles["minimum"].values[np.isin(tentacles["minimum"].values, member_minimum)]
    if len(measured) == 0:
        _empty(star, "no probed minimum with min_members members")
        _empty(thick, "no probed minimum with min_members members")
        return fig
    names, rank = _minimum_labels(basins, measured)
    if "winding_number" not in basins:
        best, worst = measured[np.argmin(rank)], measured[np.argmax(rank)]
        names = [f"{name} ({'good' if m == best else 'bad' if m == worst else 'other'})"
                 for name, m in zip(names, measured)]
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(measured)))
    distance = tentacles["distance_to_minimum"].values
    ratio_all = tentacles["thickness_ratio"].values
    # beyond the largest radius: drawn as a lower bound (open triangle) at largest radius / distance
    bound = float(tentacles["radius"].values.max()) / distance
    for color, row in zip(colors, np.argsort(rank, kind="stable")):
        minimum = measured[row]
        mine = member_minimum == minimum
        summary = tentacles.sel(minimum=minimum)
        leaving = (f"leaving {float(summary['leaving_fraction']):.2f} [{float(summary['leaving_fraction_low']):.2f}, "
                   f"{float(summary['leaving_fraction_high']):.2f}]")
        star.plot(distance[mine], tentacles["inside_fraction"].values[mine], "o", ms=2.5, alpha=0.7, color=color,
                  label=f"{names[row]}: {leaving}")
        probed = mine & (tentacles["thickness_probed"].values == 1)
        thickness = (f"{float(summary['median_thickness_ratio']):.2g} "
                     f"[{float(summary['median_thickness_ratio_low']):.2g}, "
                     f"{float(summary['median_thickness_ratio_high']):.2g}]")
        censored = probed & np.isinf(ratio_all)
        thick.plot(distance[probed & ~censored], ratio_all[probed & ~censored], "o", ms=2.5, alpha=0.7, color=color,
                   label=f"{names[row]}: {thickness}")
        thick.plot(distance[censored], bound[censored], "^", ms=3.5, mfc="none", color=color)
    star.set_ylim(-0.03, 1.03)
    star.set_xlabel("distance from start to minimum")
    star.set_ylabel("fraction of the segment in the basin")
    star.set_title(f"star-shapedness: {tentacles.sizes['distance']} points per segment,\n"
                   f"up to {tentacles.attrs['n_star_members']} members per minimum", fontsize=7)
    star.legend(fontsize=5, frameon=False, loc="lower left")
    thick.set_yscale("log")
    thick.set_xlabel("distance from start to minimum")
    thick.set_ylabel("local thickness / distance")
    thick.set_title(f"local thickness: {tentacles.sizes['direction']} rays from each of up to "
                    f"{tentacles.attrs['n_thickness_members']} starts per minimum\n(open triangles: beyond the "
                    "largest radius)", fontsize=7)
    thick.legend(fontsize=5, frameon=False, loc="lower left")
    sns.despine(fig)
    fig.suptitle(title, fontsize=8)
    return fig


def figure_winding_distribution(basins: xr.Dataset, *, title: str) -> plt.Figure:
    """Basin fraction p(q) of each twisted state, with the Gaussian and exponential fits."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    if basins.sizes["minimum"] == 0:
        _empty(ax, "no twisted state reached")
        return fig
    ax.errorbar(basins["winding_number"].values, basins["basin_fraction"].values, yerr=_wilson_error_bars(basins),
                fmt="o", ms=3, capsize=2, lw=0.8, color="black", label="measured (95 % Wilson)", zorder=3)
    palette = sns.color_palette("colorblind")
    n_fitted, n_total = basins.attrs["n_fitted"], basins.attrs["n_members_total"]
    # The fits are drawn one state beyond the farthest reached, not over the whole stable range.
    shown = np.abs(basins["winding"].values) <= np.abs(basins["winding_number"].values).max() + 1
    for color, model in zip((palette[0], palette[1]), basins["fit"].values):
        fit = basins.sel(fit=model).isel(winding=shown)
        formula = "exp(-c q²)" if model == "gaussian" else "exp(-c |q|)"
        ax.plot(fit["winding"].values, fit["fitted_probability"].values * n_fitted / n_total, "-", lw=1.0, color=color,
                label=f"{formula}: c = {float(fit['rate']):.3f}±{float(fit['rate_se']):.3f}, "
                f"χ² p = {float(fit['p_value']):.2g}")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("winding number q")
    ax.set_ylabel("basin fraction p(q)")
    ax.set_title(f"{title}\n{n_total} initial conditions, {float(basins['unassigned_fraction']):.1%} unassigned",
                 fontsize=8)
    ax.legend(fontsize=5.5, frameon=False, loc="lower center")
    sns.despine(fig)
    return fig


def figure_flatness(flatness: xr.Dataset, basins: xr.Dataset, *, title: str) -> plt.Figure:
    """Top Hessian eigenvalue and trace of each minimum against its test error and basin size."""
    set_theme()
    fig, axes = plt.subplots(2, 2, figsize=(PAPER_SIZE[0] * 1.6, PAPER_SIZE[1] * 1.6), layout="constrained")
    if flatness.sizes["minimum"] == 0:
        for ax in axes.flat:
            _empty(ax, "no minimum")
        return fig
    measures = {
        "top Hessian eigenvalue": (flatness["top_eigenvalue"].isel(eigen=0).values, None),
        "Hessian trace": (flatness["trace"].values, flatness["trace_se"].values),
    }
    against = {"test error": basins["test_error"].values, "basin fraction": basins["basin_fraction"].values}
    for row, (name, (values, errors)) in enumerate(measures.items()):
        for column, (other, x) in enumerate(against.items()):
            ax = axes[row, column]
            ax.errorbar(x, values, yerr=errors, fmt="o", ms=3, capsize=1.5, lw=0.7)
            rho, rho_se = spearman_with_error(x, values)
            ax.set_title(f"Spearman rho = {rho:.2f} ± {rho_se:.2f}", fontsize=7)
            if not np.any(values):
                # e.g. a piecewise-linear loss at zero: flatness shows in the local energy only
                ax.text(0.5, 0.8, "Hessian vanishes at every minimum", transform=ax.transAxes,
                        ha="center", fontsize=7, color="0.4")
            if other == "basin fraction":
                ax.set_xscale("log")
            if np.all(values > 0):
                ax.set_yscale("log")
            ax.set_xlabel(other)
            ax.set_ylabel(name)
    sns.despine(fig)
    fig.suptitle(f"{title}\nHessian of the training loss at each minimum ({flatness.attrs['hessian']})", fontsize=8)
    return fig


def figure_local_energy(flatness: xr.Dataset, basins: xr.Dataset, *, title: str, n_largest: int = 6) -> plt.Figure:
    """Local energy delta-E(sigma) of the largest basins' minima and of the best and worst."""
    set_theme()
    fig, ax = plt.subplots(figsize=PAPER_SIZE)
    if flatness.sizes["minimum"] == 0:
        _empty(ax, "no minimum")
        return fig
    test_error = basins["test_error"].values
    shown = select_minima_to_probe(basins["basin_fraction"].values, test_error, n_largest=n_largest)
    norm = matplotlib.colors.Normalize(np.nanmin(test_error), np.nanmax(test_error) + 1e-12)
    cmap = plt.get_cmap("viridis")
    sigma = flatness["sigma"].values
    for minimum in shown:
        ax.errorbar(sigma, flatness["local_energy"].values[minimum], yerr=flatness["perturbed_error_se"].values[minimum],
                    marker="o", ms=2.5, lw=0.9, capsize=1.5, color=cmap(norm(test_error[minimum])),
                    label=f"min {minimum}: basin {basins['basin_fraction'].values[minimum]:.3f}")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="test error")
    _local_energy_axes(ax, sigma)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=5, frameon=False, loc="upper left")
    sns.despine(fig)
    return fig


def figure_protocols(protocols: xr.Dataset, *, title: str) -> plt.Figure:
    """Local energy curves of the minima each protocol reaches (member-weighted, with standard
    errors), and test error against local energy at the reference sigma, minimum by minimum."""
    set_theme()
    fig, (curves, scatter) = plt.subplots(1, 2, figsize=(2 * PAPER_SIZE[0], PAPER_SIZE[1]), layout="constrained")
    sigma = protocols["sigma"].values
    reference = protocols.attrs["reference_sigma"]
    at_reference = np.flatnonzero(np.isclose(sigma, reference))[0]
    palette = sns.color_palette("colorblind", protocols.sizes["experiment"])
    for i, (name, color) in enumerate(zip(protocols["experiment"].values, palette)):
        energy, se = protocols["local_energy"].values[i], protocols["local_energy_se"].values[i]
        curves.plot(sigma, energy, marker="o", ms=2.5, lw=1.0, color=color, label=str(name))
        curves.fill_between(sigma, energy - se, energy + se, color=color, alpha=0.25, lw=0)
        mine = protocols["protocol"].values == i
        scatter.scatter(protocols["pooled_local_energy"].values[mine], protocols["pooled_test_error"].values[mine],
                        s=4 + 200 * protocols["pooled_basin_fraction"].values[mine], color=color, alpha=0.45, lw=0)
        scatter.errorbar(energy[at_reference], protocols["test_error"].values[i], yerr=protocols["test_error_se"].values[i],
                         xerr=se[at_reference], color=color, marker="D", ms=5, mec="k", mew=0.6, capsize=2)
    curves.axvline(reference, color="0.6", lw=0.6, ls=":")
    _local_energy_axes(curves, sigma)
    curves.legend(fontsize=6, frameon=False, loc="upper left")
    rho = protocols["rank_correlation"]
    scatter.set_xlabel(f"ΔE at sigma = {reference:g}")
    scatter.set_ylabel("test error")
    scatter.set_title(f"minima (area: basin); ◆ protocol mean; Spearman {float(rho):.2f} ± "
                      f"{rho.attrs.get('standard_error', np.nan):.2f}", fontsize=7)
    fig.suptitle(title, fontsize=8)
    sns.despine(fig)
    return fig


def _local_energy_axes(ax, sigma):
    """sigma from 0 on a symlog axis (linear below its smallest nonzero value), delta-E up."""
    ax.set_xscale("symlog", linthresh=sigma[sigma > 0].min() if (sigma > 0).any() else 1.0)
    ax.set_xlim(0, sigma.max() * 1.2)
    ax.set_xlabel("relative perturbation sigma")
    ax.set_ylabel("local energy ΔE (training error)")


def figure_local_entropy(enumeration: xr.Dataset, *, title: str) -> plt.Figure:
    """Local entropy (1/N) log n(d) of the densest and the typical solution, and its bound, per load."""
    set_theme()
    alphas = enumeration["alpha"].values
    fig, axes = plt.subplots(1, len(alphas), figsize=(PAPER_SIZE[0] * 0.75 * len(alphas) + 0.6, PAPER_SIZE[1]),
                             squeeze=False, sharey=True, layout="constrained")
    n_weights = enumeration.attrs["n_weights"]
    d = enumeration["distance"].values / n_weights
    palette = sns.color_palette("colorblind")
    with np.errstate(divide="ignore"):
        bound = np.log(enumeration["bound_count"].values) / n_weights
        curves = {name: np.log(enumeration[f"{name}_count"].values) / n_weights for name in ("densest", "median")}
    for column, (alpha, ax) in enumerate(zip(alphas, axes[0])):
        ax.plot(d, bound, "--", color="0.4", lw=0.9, label="bound log C(N, d) / N")
        for color, (name, label) in zip(palette, (("densest", "densest solution"), ("median", "typical (median)"))):
            values = np.where(np.isfinite(curves[name][column]), curves[name][column], np.nan)
            mean, spread = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            ax.plot(d, mean, "-o", ms=2.5, lw=0.9, color=color, label=label)
            ax.fill_between(d, mean - spread, mean + spread, color=color, alpha=0.2, lw=0)
        solutions = enumeration["n_solutions"].values[column]
        ax.set_title(f"alpha = {alpha:.2g} (P = {int(enumeration['n_patterns'][column])})\n"
                     f"{solutions.mean():.0f} solutions on average", fontsize=7)
        ax.set_xlabel("Hamming distance d / N")
        if column == 0:
            ax.set_ylabel("local entropy (1/N) log n(d)")
    axes[0, 0].legend(fontsize=5.5, frameon=False, loc="lower center")
    sns.despine(fig)
    fig.suptitle(f"{title}: binary perceptron, N = {n_weights}", fontsize=8)
    return fig


#: Colours and legend names of the labels of cells that reached no catalogued minimum.
_NO_MINIMUM = {
    UNASSIGNED: ((0.8, 0.8, 0.8), "none (diverged or\nuncatalogued)"),
    AT_SADDLE: ((0.55, 0.0, 0.0), "saddle"),
    UNDECIDED_LABEL: ((1.0, 0.93, 0.55), "undecided\n(budget spent)"),
}


def figure_basin_slices(slices: xr.Dataset, *, title: str) -> plt.Figure:
    """Each plane's grid of starting points, coloured by the minimum reached."""
    set_theme()
    n_planes = slices.sizes["plane"]
    fig, axes = plt.subplots(
        1, max(n_planes, 1), figsize=(PAPER_SIZE[0] * max(n_planes, 1) * 0.8, PAPER_SIZE[1]), squeeze=False,
        layout="constrained",
    )
    if n_planes == 0:
        _empty(axes[0, 0], "no minimum in the catalogue: no plane to slice")
        return fig
    labels = slices["label"].values
    found = np.unique(labels[labels >= 0])
    palette = sns.color_palette("colorblind", max(len(found), 1))
    colour_of = {minimum: palette[index % len(palette)] for index, minimum in enumerate(found)}
    colour_of |= {label: colour for label, (colour, _) in _NO_MINIMUM.items()}
    for plane, ax in zip(range(n_planes), axes[0]):
        scale = float(slices["scale"][plane])
        image = np.array([[colour_of[v] for v in row] for row in labels[plane]])
        ax.imshow(image.transpose(1, 0, 2), origin="lower", extent=(-scale, scale, -scale, scale),
                  interpolation="nearest")
        ax.plot([0], [0], marker="*", color="black", ms=7)
        partner = float(slices["partner_u"][plane])
        kind = "random plane"
        if np.isfinite(partner):
            ax.plot([partner], [0], marker="*", color="white", mec="black", ms=7)
            kind = "through two minima"
        ax.set_title(f"{kind}\nboundary fraction {float(slices['boundary_fraction'][plane]):.2f}", fontsize=7)
        ax.set_xlabel("axis 0 distance")
        if plane == 0:
            ax.set_ylabel("axis 1 distance")
    handles = [plt.Line2D([], [], ls="", marker="s", color=colour_of[m], label=f"min {m}") for m in found[:8]]
    handles += [plt.Line2D([], [], ls="", marker="s", color=colour, label=name)
                for label, (colour, name) in _NO_MINIMUM.items() if (labels == label).any()]
    fig.legend(handles=handles, fontsize=5.5, frameon=False, loc="outside right upper", ncol=1)
    fig.suptitle(title, fontsize=8, y=1.04)
    return fig


def figure_dynamics_comparison(comparison: xr.Dataset, *, title: str, n_largest: int = 8) -> plt.Figure:
    """Basin fractions of the reference catalog's largest minima under each dynamics (left), and
    the paired change of the largest basin's fraction between every two dynamics (right: row
    minus column, with its standard error; a flat-seeking dynamics against its control, plain
    Langevin at its temperature, says what the local entropy adds to the noise)."""
    set_theme()
    fig, (ax, pairs) = plt.subplots(
        1, 2, figsize=(PAPER_SIZE[0] * 2.4, PAPER_SIZE[1] * 1.1), width_ratios=(1.3, 1), layout="constrained"
    )
    shown = comparison["basin_fraction"].isel(minimum=slice(0, n_largest))
    if shown.sizes["minimum"] == 0:
        _empty(ax, "the reference found no minimum")
        _empty(pairs, "the reference found no minimum")
        return fig
    table = shown.to_dataframe().reset_index()
    names = [str(name) for name in comparison["experiment"].values]
    labels = {
        name: f"{short}: agree {a:.2f}±{se:.2f}, unmatched {u:.2f}, no minimum {n:.2f}"
        for name, short, a, se, u, n in zip(
            names, dynamics_names(names), comparison["agreement"].values, comparison["agreement_se"].values,
            comparison["unmatched_fraction"].values, comparison["unassigned_fraction"].values,
        )
    }
    table["dynamics"] = table["experiment"].astype(str).map(labels)
    sns.barplot(table, x="minimum", y="basin_fraction", hue="dynamics", ax=ax, palette="colorblind")
    ax.set_xlabel(f"minimum of {comparison.attrs['reference_experiment']} (by basin size)")
    ax.set_ylabel("basin fraction")
    ax.set_ylim(0, 1.8 * max(float(shown.max()), 0.01))  # room above the bars for the legend
    ax.legend(fontsize=5.5, frameon=False, title=None, loc="upper right")
    _largest_basin_changes(pairs, comparison.isel(minimum=0))
    fig.suptitle(title, fontsize=8)
    sns.despine(fig)
    return fig


def _largest_basin_changes(ax, largest: xr.Dataset) -> None:
    """Annotated matrix of the paired change of one minimum's basin fraction, row minus column."""
    change, error = largest["basin_fraction_change"].values, largest["basin_fraction_change_se"].values
    names = dynamics_names([str(name) for name in largest["experiment"].values])
    text = np.vectorize(lambda c, e: "" if c == 0 and e == 0 else f"{c:+.2f}\n±{e:.2f}")
    annotations = text(change, np.nan_to_num(error))
    scale = max(0.05, float(np.nanmax(np.abs(change))))  # the changes' own range, so small ones show
    sns.heatmap(change, ax=ax, cmap="vlag", center=0, vmin=-scale, vmax=scale, annot=annotations, fmt="",
                annot_kws={"fontsize": 4.5}, xticklabels=names, yticklabels=names, cbar_kws={"shrink": 0.7})
    ax.tick_params(labelsize=5)
    ax.set_xlabel("baseline")
    ax.set_ylabel("dynamics")
    ax.set_title(f"largest basin (minimum {int(largest['minimum'])}): paired change, row - column", fontsize=6)


def figure_summary(summary: xr.Dataset, *, title: str) -> plt.Figure:
    """The study's answer per experiment: basin size vs test error, reach of
    good vs bad minima (only minima with min_members members; absent where fewer qualify), flatness."""
    set_theme()
    fig, (left, right, flat) = plt.subplots(1, 3, figsize=(PAPER_SIZE[0] * 3, PAPER_SIZE[1] * 1.1),
                                            layout="constrained")
    names = [str(name) for name in summary["experiment"].values]
    if not names:
        _empty(left, "no experiment")
        return fig
    rows = np.arange(len(names))
    palette = sns.color_palette("colorblind")
    left.errorbar(summary["rank_correlation"].values, rows, xerr=summary["rank_correlation_se"].values,
                  fmt="o", ms=3, capsize=2, lw=0.8, color=palette[0])
    left.axvline(0, color="0.6", lw=0.6)
    left.set_yticks(rows, names, fontsize=6)
    left.set_ylim(-0.6, len(rows) - 0.4 + 0.8)  # the same rows as the other panels, under their legends
    left.set_xlim(-1.05, 1.05)
    left.set_xlabel("rank correlation (basin size, test error)")
    left.set_title("negative: larger basins generalize better", fontsize=7)
    for offset, kind, color in ((-0.12, "good", palette[2]), (0.12, "bad", palette[3])):
        value = summary[f"{kind}_reach"].values
        error = np.vstack([value - summary[f"{kind}_reach_low"].values, summary[f"{kind}_reach_high"].values - value])
        right.errorbar(value, rows + offset, xerr=error, fmt="o", ms=3, capsize=2, lw=0.8, color=color,
                       label=f"{kind} minimum ({'lowest' if kind == 'good' else 'highest'} test error)")
    right.set_xlim(-0.05, 1.05)
    right.set_yticks(rows, [""] * len(rows))
    right.set_ylim(-0.6, len(rows) - 0.4 + 0.8)
    right.set_xlabel("reach: share of the basin met only after leaving it")
    right.set_title("0: star-shaped head; near 1: thin tentacles (95 % intervals)", fontsize=7)
    right.legend(fontsize=5.5, frameon=False, loc="upper center", ncol=2)
    for offset, other, color in ((-0.12, "basin_fraction", palette[0]), (0.12, "test_error", palette[1])):
        flat.errorbar(summary[f"trace_vs_{other}"].values, rows + offset, xerr=summary[f"trace_vs_{other}_se"].values,
                      fmt="o", ms=3, capsize=2, lw=0.8, color=color, label=f"with {other.replace('_', ' ')}")
    flat.axvline(0, color="0.6", lw=0.6)
    flat.set_xlim(-1.05, 1.05)
    flat.set_yticks(rows, [""] * len(rows))
    flat.set_ylim(-0.6, len(rows) - 0.4 + 0.8)
    flat.set_xlabel("rank correlation of the Hessian trace")
    flat.set_title("flat minima: large basins? low test error?", fontsize=7)
    flat.legend(fontsize=5.5, frameon=False, loc="upper center", ncol=2)
    sns.despine(fig)
    fig.suptitle(title, fontsize=8)
    return fig


def _graph_label(graph):
    return f"{graph.attrs['experiment']}: P = {graph.attrs['n_train']}, depth {graph.attrs['depth']}"


def _test_error_colors(graphs):
    errors = np.concatenate([graph["test_error"].values for graph in graphs] or [np.zeros(1)])
    low, high = (np.nanmin(errors), np.nanmax(errors)) if np.isfinite(errors).any() else (0.0, 1.0)
    return matplotlib.colors.Normalize(low, max(high, low + 0.01)), plt.get_cmap("viridis")


def figure_disconnectivity(connectivity: list[xr.Dataset], *, title: str) -> plt.Figure:
    """Disconnectivity graphs side by side, leaves coloured by the minimum's test error."""
    set_theme()
    n = len(connectivity)
    fig, axes = plt.subplots(1, n, figsize=(PAPER_SIZE[0] * 0.9 * n + 0.6, PAPER_SIZE[1] * 1.3),
                             layout="constrained", squeeze=False)
    norm, cmap = _test_error_colors(connectivity)
    for ax, graph in zip(axes[0], connectivity):
        energy, levels = graph["energy"].values, graph["level"].values
        if graph.sizes["minimum"] == 0:
            _empty(ax, "no minimum")
            continue
        segments, x = tree_segments(energy, graph["superbasin"].values, levels)
        ax.add_collection(matplotlib.collections.LineCollection(segments, colors="0.3", linewidths=0.6))
        new = graph["found_by_descent"].values
        colors = cmap(norm(graph["test_error"].values))
        ax.scatter(x[~new], energy[~new], c=colors[~new], s=9, zorder=3, label="catalogued")
        ax.scatter(x[new], energy[new], facecolors="none", edgecolors=colors[new], s=9, zorder=3,
                   label="found from a saddle")
        ax.set_xlim(np.nanmin(x) - 1, np.nanmax(x) + 1)
        ax.set_ylim(energy.min() - 0.05 * np.ptp(levels), segments[:, :, 1].max())
        ax.set_xticks([])
        ax.set_ylabel("training loss")
        ax.set_title(f"{_graph_label(graph)}\n{graph.sizes['minimum']} minima, {graph.attrs['n_edges']} "
                     f"transition states, funnel {graph.attrs['funnel_fraction']:.2f}", fontsize=6)
        sns.despine(ax=ax, bottom=True)
    axes[0, 0].legend(fontsize=5, frameon=False, loc="lower right")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes[0, -1], label="test error")
    fig.suptitle(title, fontsize=8)
    return fig


def figure_barriers(connectivity: list[xr.Dataset], *, title: str) -> plt.Figure:
    """Barrier heights of the verified transition states, and each minimum's escape barrier
    against its test error."""
    set_theme()
    fig, (left, right) = plt.subplots(1, 2, figsize=(PAPER_SIZE[0] * 2, PAPER_SIZE[1]), layout="constrained")
    barriers = [graph["barrier"].values[graph["is_edge"].values].ravel() for graph in connectivity]
    positive = np.concatenate([b[b > 0] for b in barriers] or [np.zeros(0)])
    if not len(positive):
        _empty(left, "no transition state joins two minima")
    else:
        bins = np.geomspace(positive.min(), positive.max() * 1.001, 20)
        for graph, values in zip(connectivity, barriers):
            left.hist(values[values > 0], bins=bins, histtype="step", lw=1.1,
                      label=f"{_graph_label(graph)} ({len(values) // 2} states)")
        left.set_xscale("log")
        left.legend(fontsize=5, frameon=False)
    left.set_xlabel("barrier height (from either minimum)")
    left.set_ylabel("count")
    for graph in connectivity:
        right.plot(graph["test_error"].values, graph["escape_barrier"].values, "o", ms=3, alpha=0.8,
                   label=_graph_label(graph))
    if any(np.isfinite(graph["escape_barrier"].values).any() for graph in connectivity):
        right.set_yscale("log")
    right.set_xlabel("test error of the minimum")
    right.set_ylabel("lowest escape barrier")
    sns.despine(fig)
    fig.suptitle(title, fontsize=8)
    return fig


#: The graph statistics drawn by :func:`figure_connectivity_comparison`, with their axis labels.
_COMPARED_STATISTICS = {
    "n_minima": "distinct minima",
    "funnel_fraction": "funnel fraction",
    "median_escape_barrier": "median escape barrier",
}


def figure_connectivity_comparison(comparison: xr.Dataset, *, title: str) -> plt.Figure:
    """Per statistic of the graphs, every seed's value per experiment and the seeds' mean, with
    each pair's permutation-test verdict above the panel."""
    set_theme()
    experiments = comparison["experiment"].values
    fig, axes = plt.subplots(1, len(_COMPARED_STATISTICS), layout="constrained",
                             figsize=(PAPER_SIZE[0] * 0.8 * len(_COMPARED_STATISTICS), PAPER_SIZE[1] * 1.3))
    labels = [f"{name}\nP = {n_train}, depth {depth}, N = {n_params}" for name, n_train, depth, n_params in zip(
        experiments, comparison["n_train"].values, comparison["depth"].values, comparison["n_params"].values)]
    for ax, (statistic, label) in zip(axes, _COMPARED_STATISTICS.items()):
        values = comparison["value"].sel(statistic=statistic).values  # (experiment, seed)
        for position, seed_values in enumerate(values):
            shown = seed_values[np.isfinite(seed_values)]
            ax.plot(np.full(len(shown), position) + np.linspace(-0.12, 0.12, len(shown)), shown, "o", ms=3.5,
                    alpha=0.8, color=f"C{position}")
        means = comparison["mean"].sel(statistic=statistic).values
        ax.hlines(means, np.arange(len(means)) - 0.25, np.arange(len(means)) + 0.25, colors="0.2", lw=1.2,
                  label="mean over seeds")
        if statistic == "median_escape_barrier" and np.nanmin(values, initial=np.inf) > 0:
            ax.set_yscale("log")
        ax.set_xticks(np.arange(len(experiments)), labels, fontsize=5, rotation=20, ha="right")
        ax.set_xlim(-0.6, len(experiments) - 0.4)
        ax.set_ylabel(label)
        rows = comparison.sel(statistic=statistic)
        verdicts = [f"{first} vs {second}: {difference:+.3g}, p = {p:.2g}, {verdict.split(' (')[0]}"
                    for first, second, difference, p, verdict in zip(
                        rows["first"].values, rows["second"].values, rows["difference"].values,
                        rows["p_value"].values, rows["verdict"].values)]
        ax.set_title("\n".join(verdicts), fontsize=4.5, loc="left")
    axes[0].legend(fontsize=5, frameon=False)
    sns.despine(fig)
    n_seeds = comparison.sizes["seed"]
    replicates = comparison.attrs["replicates"].split(" (")[0]
    fig.suptitle(f"{title}: {n_seeds} seed{'s' if n_seeds > 1 else ''}, replicating {replicates}", fontsize=8)
    return fig
