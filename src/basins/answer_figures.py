"""The answer figure, drawn from an ``answer_hypothesis`` output."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import xarray as xr

from basins.answer import STATISTICS
from basins.figures import PAPER_SIZE, set_theme


def figure_answer(answer: xr.Dataset, *, title: str) -> plt.Figure:
    """One panel per statistic: the pooled rank correlation against network size, with its
    interval, per family, and each replicate's value as a dot; the side the hypothesis expects
    is shaded."""
    set_theme()
    statistics = list(STATISTICS)
    fig, axes = plt.subplots(
        1, len(statistics), figsize=(len(statistics) * PAPER_SIZE[0] * 0.8, PAPER_SIZE[1]), sharex=True, sharey=True
    )
    families = list(dict.fromkeys(answer["family"].values))
    colors = dict(zip(families, sns.color_palette("colorblind", max(1, len(families)))))
    for ax, statistic in zip(axes, statistics):
        sign = STATISTICS[statistic][3]
        ax.axhspan(0, -1.05 if sign < 0 else 1.05, color="0.92", lw=0)
        ax.axhline(0, color="0.4", lw=0.6)
        rows = np.flatnonzero(answer["statistic"].values == statistic)
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
        if not np.isfinite(answer["estimate"].values[rows]).any():
            ax.text(0.5, 0.5, "undefined in every row\n(reasons in answer.md)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=7)
        ax.set_xscale("log")
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("parameters N")
        ax.set_title(statistic.replace("_vs_", " vs ").replace("_", " "), fontsize=7)
    axes[0].set_ylabel("rank correlation (pooled)")
    if families:
        axes[-1].legend(fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=8)
    return fig
