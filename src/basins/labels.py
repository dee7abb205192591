"""Status, label and outcome values shared by every stage: their one home (numpy only).

Runs of the dynamics end with a ``status``; catalogued members carry the ``label`` of their
minimum (>= 0) or a negative label saying why they have none (Attractors.jl's convention: -1
is "no attractor"); a re-run of the dynamics from a chosen point (rays, slices, segments) ends
with one of three ``outcome`` values, never two: a budget can leave a run undecided, and an
undecided run is not counted as having left.
"""

from __future__ import annotations

import numpy as np

# --- status of a run of the dynamics (training, re-runs, bands) ---------------------------
CONVERGED = 0  #: gradient norm at most grad_tol (or the stop test passed) at a minimum
BUDGET = 1  #: the step budget was spent first
DIVERGED = 2  #: loss not finite or parameters beyond the divergence threshold
SADDLE = 3  #: stopped where the Hessian has a negative eigenvalue, and kicks did not free it
STATUS_VALUES = (CONVERGED, BUDGET, DIVERGED, SADDLE)
STATUS_MEANINGS = "converged budget diverged saddle"

# --- the label of a member: the catalogued minimum it reached, or why none ----------------
UNASSIGNED = -1  #: diverged, or converged to a point the catalogue does not hold
AT_SADDLE = -2  #: stopped at a saddle (status SADDLE); a fraction, never a basin
UNDECIDED_LABEL = -3  #: the budget ran out before the run settled (status BUDGET)
LABEL_MEANINGS = "-1 none (diverged or uncatalogued), -2 stopped at a saddle, -3 undecided (budget spent)"

# --- the outcome of a re-run aimed at one minimum ------------------------------------------
LEFT = 0  #: converged to another minimum, or diverged
RETURNED = 1  #: converged to the target minimum
UNDECIDED = 2  #: budget spent (or stuck at a saddle) before either could be said
OUTCOME_VALUES = (LEFT, RETURNED, UNDECIDED)
OUTCOME_MEANINGS = "left returned undecided"

# --- the phase of a jamming run (basins.jamming) -------------------------------------------
SAT = 0  #: every training point ends with margin y f >= 1
UNSAT = 1  #: some point ends below the margin, at a converged minimum
UNDECIDED_PHASE = -1  #: neither can be said (diverged, or stuck near zero loss)
PHASE_MEANINGS = "0 SAT, 1 UNSAT, -1 undecided"


def label_of_status(status):
    """The negative label of members that did not converge: -3 budget, -2 saddle, -1 diverged.

    Converged members get -1 here too; the catalogue overwrites it with their minimum.
    """
    status = np.asarray(status)
    return np.select(
        [status == BUDGET, status == SADDLE], [UNDECIDED_LABEL, AT_SADDLE], default=UNASSIGNED
    ).astype(np.int64)
