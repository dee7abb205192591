"""Re-runs of the dynamics from chosen points (rays, slices, segments): three outcomes, never two.

A re-run that spends its step budget has not left its basin; it is undecided. Undecided runs
are continued to a larger budget, up to a cap (:func:`basins.engine.descent.descend_until_decided`);
what is still undecided then stays undecided (censored data), never counted as an exit or as a
basin of its own.
"""

from __future__ import annotations

import numpy as np

from basins.labels import BUDGET, CONVERGED, LEFT, RETURNED, SADDLE, UNDECIDED, label_of_status


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
