"""The answer figure, drawn from an ``answer_hypothesis`` output."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr

from basins.answer import CONTROLS, STATISTICS, WALK_STATISTIC
from basins.summary import SHAPE_STATISTICS
from basins.figures import PAPER_SIZE, set_theme


def figure_answer(answer: xr.Dataset, *, title: str) -> plt.Figure:
    """One panel per statistic, a row per kind: the rank correlations (with basin sizes by the walk,
    where the answer has them), the same with each control
    of :data:`basins.answer.CONTROLS` held fixed, and the good - bad shape differences: the pooled estimate against
    network size, with its interval, per family, and each replicate's value as a dot; the side
    the hypothesis expects is shaded, and an open triangle on it, beside the estimate, marks the
    effect each row's replicates decide with probability 0.8 (``detectable``: smaller ones they
    decide less often), a line from it the same at the largest between-replicate spread
    they leave possible (``detectable_at_tau_bound``)."""
    set_theme()
    walked = [WALK_STATISTIC] if WALK_STATISTIC in set(answer["statistic"].values) else []
    kinds = (
        ([name for name, spec in STATISTICS.items() if spec[-1] is None] + walked, True, "rank correlation (pooled)"),
        *(([name for name, spec in STATISTICS.items() if spec[-1] == control], True, f"{label} (pooled)")
          for control, label in CONTROLS.items()),
        ([f"good_minus_bad_{name}" for name in SHAPE_STATISTICS], False, "good - bad, matched size (pooled)"),
    )
    n_columns = max(len(statistics) for statistics, _, _ in kinds)
    fig, axes = plt.subplots(
        len(kinds), n_columns, figsize=(n_columns * PAPER_SIZE[0] * 0.8, len(kinds) * PAPER_SIZE[1]), squeeze=False,
        layout="constrained",
    )
    families = list(dict.fromkeys(answer["family"].values))
    colors = dict(zip(families, sns.color_palette("colorblind", max(1, len(families)))))
    for row_axes, (statistics, is_correlation, label) in zip(axes, kinds):
        for ax in row_axes[len(statistics):]:
            ax.axis("off")
        for ax, statistic in zip(row_axes, statistics):
            rows = np.flatnonzero(answer["statistic"].values == statistic)
            _panel(ax, answer, rows, families, colors, is_correlation)
            ax.set_title(statistic.replace("_vs_", " vs ").replace("_", " "), fontsize=7)
        row_axes[0].set_ylabel(label)
    if families:
        axes[0, len(kinds[0][0]) - 1].legend(fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=8)
    return fig


def _panel(ax, answer, rows, families, colors, is_correlation):
    """One statistic's rows: pooled estimates with intervals, replicate dots, the expected side."""
    if not len(rows):
        return
    sign = int(answer["expected_sign"].values[rows[0]])
    finite = lambda values: values[np.isfinite(values)]  # noqa: E731
    limit = 1.05 if is_correlation else max(0.05, 1.1 * np.max(np.abs(finite(np.r_[
        answer["low"].values[rows], answer["high"].values[rows], answer["replicate_estimate"].values[rows].ravel(), 0.0
    ]))))
    for family in families:
        mine = rows[answer["family"].values[rows] == family]
        if not len(mine):
            continue
        size = answer["n_params"].values[mine].astype(float)
        estimate, low, high = (answer[name].values[mine] for name in ("estimate", "low", "high"))
        defined = np.isfinite(low)
        ax.errorbar(
            size[defined], estimate[defined], yerr=[estimate[defined] - low[defined], high[defined] - estimate[defined]],
            fmt="o", color=colors[family], ms=4, capsize=2, label=family,
        )
        ax.plot(size[~defined], estimate[~defined], "o", mfc="none", color=colors[family], ms=4)
        for row, n in zip(mine, size):
            values = answer["replicate_estimate"].values[row]
            ax.plot(np.full(values.shape, n), values, ".", color=colors[family], alpha=0.4, ms=3)
        reach = sign * np.minimum(answer["detectable"].values[mine], limit)  # inside the panel
        ax.plot(size * 1.15, reach, "v" if sign < 0 else "^", mfc="none", color=colors[family], ms=4, mew=0.8)
        at_bound = sign * np.minimum(answer["detectable_at_tau_bound"].values[mine], limit)
        ax.vlines(size * 1.15, reach, at_bound, color=colors[family], lw=0.8)  # up to tau's upper bound
    if not np.isfinite(answer["estimate"].values[rows]).any():
        ax.text(0.5, 0.5, "undefined in every row\n(reasons in answer.md)", ha="center", va="center",
                transform=ax.transAxes, fontsize=7)
    ax.axhspan(0, -limit if sign < 0 else limit, color="0.92", lw=0, zorder=0)
    ax.axhline(0, color="0.4", lw=0.6, zorder=0.5)
    ax.set_xscale("log")
    sizes = answer["n_params"].values.astype(float)
    ax.set_xlim(sizes.min() / 1.5, sizes.max() * 1.5)  # also where no row of the panel is defined
    ax.set_xticks(np.unique(sizes), [f"{n:g}" for n in np.unique(sizes)])  # the sizes run, nothing between
    ax.minorticks_off()
    ax.set_ylim(-limit, limit)
    ax.set_xlabel("parameters N")
