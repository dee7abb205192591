"""Where SAT turns UNSAT: each run's phase, and the transition P* of one network and seed from
its runs' phases.

Its own module (numpy only) because both the sweep (to decide phases and place its fine scan)
and the analysis (to read them again with silenced points set apart) use it: a change to the
analysis then reruns no sweep.
"""

from __future__ import annotations

import numpy as np

from basins.labels import CONVERGED, SAT, STUCK, UNDECIDED_PHASE, UNSAT


def transition_size(n_train: np.ndarray, phase: np.ndarray) -> float:
    """P* between the SAT and UNSAT runs of one network and seed (nan if one phase is missing).

    Among thresholds between consecutive decided sizes, the one that misclassifies the fewest
    runs (UNSAT below it, SAT above it); ties give the geometric middle of the tied range.
    Only SAT and UNSAT runs count: undecided and stuck runs are ignored.
    """
    found = _best_thresholds(n_train, phase)
    if found is None:
        return np.nan
    sizes, best = found
    thresholds = np.sqrt(sizes[:-1] * sizes[1:])
    return float(np.sqrt(thresholds[best[0]] * thresholds[best[-1]]))


def transition_bracket(n_train: np.ndarray, phase: np.ndarray) -> tuple[float, float]:
    """The decided sizes that enclose the best thresholds of :func:`transition_size`: the grid
    only places P* between them (nan, nan if one phase is missing)."""
    found = _best_thresholds(n_train, phase)
    if found is None:
        return np.nan, np.nan
    sizes, best = found
    return float(sizes[best[0]]), float(sizes[best[-1] + 1])


def _best_thresholds(n_train, phase):
    """The distinct decided sizes, sorted, and the indices of the thresholds between consecutive
    ones that misclassify the fewest runs (a size fitted twice, as the fine scan's passes may,
    is one place, not a cut); None without both phases or two distinct sizes."""
    decided = (np.asarray(phase) == SAT) | (np.asarray(phase) == UNSAT)
    sizes, phases = np.asarray(n_train, dtype=float)[decided], np.asarray(phase)[decided]
    distinct = np.unique(sizes)
    if not (phases == SAT).any() or not (phases == UNSAT).any() or distinct.size < 2:
        return None
    thresholds = np.sqrt(distinct[:-1] * distinct[1:])
    errors = np.array([((phases == UNSAT) & (sizes < t)).sum() + ((phases == SAT) & (sizes > t)).sum() for t in thresholds])
    return distinct, np.flatnonzero(errors == errors.min())


def classify_phase(
    status: np.ndarray,
    n_unsatisfied: np.ndarray,
    *,
    n_weights: int,
    stuck_fraction: float,
    n_silenced: np.ndarray | None = None,
) -> np.ndarray:
    """Phase per member: of converged members, SAT (no unsatisfied point), stuck or UNSAT;
    undecided for every member that spent its budget or diverged, whatever its loss. Stuck:
    fewer than ``stuck_fraction * n_weights`` unsatisfied points (Geiger et al.'s rule, which
    the sweep applies). With ``n_silenced`` the ones on which a hidden layer is off are not
    counted: the dead-ReLU reading that :mod:`basins.jamming_analysis` reports beside it (a
    silenced point exerts no force on any weight)."""
    converged = status == CONVERGED
    seen = n_unsatisfied if n_silenced is None else n_unsatisfied - n_silenced
    failed = seen < stuck_fraction * n_weights
    decided = np.select([n_unsatisfied == 0, failed], [SAT, STUCK], default=UNSAT)
    return np.where(converged, decided, UNDECIDED_PHASE)
