"""Re-runs of a Kuramoto ring from chosen points (rays, segments): three outcomes, as for networks.

The ring counterpart of :mod:`basins.reruns`: a run aimed at a twisted state returned when it
ends, within ``tolerance``, on that state's circle; it is undecided when it spent its budget
(continued to ``budget_factors`` first) or stopped at a saddle elsewhere; it left otherwise.
"""

from __future__ import annotations

import logging

import numpy as np

from basins.labels import BUDGET, DIVERGED, LEFT, RETURNED, SADDLE, UNDECIDED
from basins.oscillators import KuramotoRing, distance_to_twisted_state, relax_ring, twisted_state, winding_number, wrap
from basins.rays import Outcomes

log = logging.getLogger("basins.ring_reruns")


def ring_outcomes(
    ring: KuramotoRing,
    winding_numbers: np.ndarray,
    *,
    tolerance: float,
    relaxation: dict,
    budget_factors,
    seed: int,
    device: str = "auto",
    memory_budget_mb: float = 1024.0,
) -> Outcomes:
    """:data:`basins.rays.Outcomes` of the ring: relax every start, aimed at catalog minimum
    ``targets[k]`` (twisted state ``winding_numbers[targets[k]]``).

    A run within ``tolerance`` of its target circle counts as returned even if it spent its
    budget (as the catalogue counts members); one that spent it elsewhere is undecided.
    ``relaxation`` holds :func:`basins.oscillators.relax_ring`'s dynamics options.
    """
    winding_numbers = np.asarray(winding_numbers)

    def outcomes(starts, targets):
        result = relax_ring(ring, starts, np.arange(len(starts)), seed=seed, budget_factors=list(budget_factors),
                            device=device, memory_budget_mb=memory_budget_mb, progress_every_s=1e9, **relaxation)
        final, status = result["final_theta"].values, result["status"].values
        q = winding_numbers[np.asarray(targets)]
        close = distance_to_twisted_state(final, q) <= tolerance
        reached = (winding_number(final) == q) & close & (status != DIVERGED)
        outcome = np.select([reached, np.isin(status, (BUDGET, SADDLE))], [RETURNED, UNDECIDED], default=LEFT)
        log.info("%d starts: %d returned, %d undecided", len(starts), int(reached.sum()),
                 int((outcome == UNDECIDED).sum()))
        return outcome.astype(np.int8)

    return outcomes


def nearest_twisted_images(starts: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each start's nearest point on its q-twisted-state circle, and the start unwrapped about it.

    Returns ``(images, unwrapped)``, both ``(member, oscillator)``: ``images`` the twisted
    state shifted by the global phase c that minimizes the torus distance (exact, as in
    :func:`basins.oscillators.torus_distance`), ``unwrapped = images + wrap(starts - images)``,
    the same point of the torus, so that the straight segment between them is the shortest
    one and ``|unwrapped - images|`` is the torus distance.
    """
    starts = np.asarray(starts, dtype=np.float64)
    n = starts.shape[1]
    base = twisted_state(n, np.asarray(q))
    delta = wrap(starts - base)
    candidates = delta.mean(1, keepdims=True) + np.arange(n) * (2 * np.pi / n)  # (member, candidate)
    images, unwrapped = np.empty_like(starts), np.empty_like(starts)
    for block in range(0, len(starts), 1024):
        rows = slice(block, block + 1024)
        residual = wrap(delta[rows, None, :] - candidates[rows, :, None])
        best = (residual**2).sum(-1).argmin(1)
        shift = candidates[rows][np.arange(len(best)), best]
        images[rows] = base[rows] + shift[:, None]
        unwrapped[rows] = images[rows] + wrap(starts[rows] - images[rows])
    return images, unwrapped
