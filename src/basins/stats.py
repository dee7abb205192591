"""Statistics shared by stages and figures: numpy and scipy only (no torch)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def wilson_interval(successes: np.ndarray, n: int, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (Wilson 1927); sensible at p near 0 or 1."""
    if n <= 0:
        raise ValueError(f"n={n}: an interval needs at least one trial")
    p = np.asarray(successes, dtype=np.float64) / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    # At p = 0 or 1 the bound is exactly p; clipping removes round-off on the wrong side.
    return np.clip(centre - half, 0.0, p), np.clip(centre + half, p, 1.0)


def spearman_with_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman's rank correlation and its standard error 1.03 / sqrt(n - 3) (Fieller et al. 1957)."""
    finite = np.isfinite(a) & np.isfinite(b)
    n = int(finite.sum())
    if n < 4 or np.ptp(a[finite]) == 0 or np.ptp(b[finite]) == 0:
        return float("nan"), float("nan")
    rho = stats.spearmanr(a[finite], b[finite]).statistic
    return float(rho), float(1.03 / np.sqrt(n - 3))
