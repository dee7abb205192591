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

# --- the outcome of connecting two minima (basins.connectivity) ---------------------------
PAIR_CONNECTED = 0  #: joined by a path of verified transition states
PAIR_MERGED = 1  #: the two are one minimum (a band without a barrier, images draining to one)
PAIR_UNCONNECTED = 2  #: neither, when the pair's budget of bands was spent or no gap was left to try
PAIR_OUTCOME_MEANINGS = "connected merged unconnected"
#: what one relaxed band showed
BAND_TRANSITION_STATES = 0  #: at least one maximum refined to a verified transition state
BAND_NO_VERIFIED_SADDLE = 1  #: maxima, none refined to an index-1 saddle between two minima
BAND_ENDS_MERGED = 2  #: no maximum, and every image drains to one minimum
BAND_UNRESOLVED = 3  #: no maximum, but images drain to different minima: more images needed
BAND_DIVERGED = 4  #: the relaxation diverged: its images say nothing, the ends are tried again
BAND_OUTCOME_MEANINGS = "transition_states no_verified_saddle ends_merged unresolved diverged"

# --- the phase of a jamming run (basins.jamming) -------------------------------------------
SAT = 0  #: every training point ends with margin y f >= 1
UNSAT = 1  #: converged to a minimum with a finite fraction of the points below the margin
UNDECIDED_PHASE = -1  #: neither can be said: the step budget ran out first, or diverged
STUCK = 2  #: converged with a few points below the margin (0 < N_Delta < stuck_fraction N)
PHASE_VALUES = (UNDECIDED_PHASE, SAT, UNSAT, STUCK)
PHASE_MEANINGS = "undecided sat unsat stuck"


def label_of_status(status):
    """The negative label of members that did not converge: -3 budget, -2 saddle, -1 diverged.

    Converged members get -1 here too; the catalogue overwrites it with their minimum.
    """
    status = np.asarray(status)
    return np.select(
        [status == BUDGET, status == SADDLE], [UNDECIDED_LABEL, AT_SADDLE], default=UNASSIGNED
    ).astype(np.int64)
