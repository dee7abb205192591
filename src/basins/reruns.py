"""Re-runs of the dynamics from chosen points (rays, slices, segments): three outcomes, never two.

A re-run that spends its step budget has not left its basin; it is undecided. Undecided runs
are run again from their start with a larger budget, up to a cap; what is still undecided then
stays undecided (censored data), never counted as an exit or as a basin of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from basins.labels import (
    BUDGET,
    CONVERGED,
    LEFT,
    RETURNED,
    SADDLE,
    UNDECIDED,
    label_of_status,
)

#: ``run(starts (point, param), budget_factor) -> (final_theta, loss, status)``: the
#: experiment's dynamics from every start with ``budget_factor`` times its step budget.
Run = Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray, np.ndarray]]


def run_until_decided(
    run: Run, starts: np.ndarray, *, budget_factors: Sequence[float] = (1, 4, 16)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final points, losses and statuses ``(point, ...)``, budgets escalated for undecided runs.

    Every start is run with the first factor; those that end with status ``BUDGET`` are run
    again, from their start (the dynamics' own state, e.g. Adam's moments, is not carried
    over), with the next factor, and so on. Larger factors decide more runs at more cost; the
    last one is the cap.
    """
    factors = np.asarray(budget_factors, dtype=float)
    if len(factors) == 0 or (factors <= 0).any() or (np.diff(factors) <= 0).any():
        raise ValueError(f"budget_factors={list(budget_factors)}: give positive, increasing factors")
    final_theta, loss, status = (np.array(a) for a in run(starts, float(factors[0])))
    for factor in factors[1:]:
        again = np.flatnonzero(status == BUDGET)
        if not len(again):
            break
        theta_again, loss_again, status_again = run(starts[again], float(factor))
        final_theta[again], loss[again], status[again] = theta_again, loss_again, status_again
    return final_theta, loss, status


def outcomes_of(reached_label: np.ndarray, status: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``RETURNED`` where a converged run reached its target minimum, ``UNDECIDED`` where the
    budget ran out or the run stopped at a saddle, ``LEFT`` otherwise (converged elsewhere,
    to a catalogued minimum or not, or diverged)."""
    status = np.asarray(status)
    returned = (status == CONVERGED) & (np.asarray(reached_label) == np.asarray(targets))
    undecided = np.isin(status, (BUDGET, SADDLE))
    return np.select([returned, undecided], [RETURNED, UNDECIDED], default=LEFT).astype(np.int8)


def labels_of(reached_label: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Catalogue label of each run: its minimum where it converged, else why none
    (:func:`basins.labels.label_of_status`)."""
    status = np.asarray(status)
    return np.where(status == CONVERGED, reached_label, label_of_status(status)).astype(np.int64)
