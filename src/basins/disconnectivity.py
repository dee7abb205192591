"""Disconnectivity graphs (Becker and Karplus 1997; Wales, Miller and Walsh 1998).

Minima are the leaves; at each energy level the minima below it that are joined by transition
states below it form one superbasin (a union-find over the edges sorted by barrier). The tree of
superbasins across levels is the disconnectivity graph; its drawing is :func:`tree_segments`.
"""

from __future__ import annotations

import numpy as np

ABSENT = -1


def superbasins(
    minimum_energy: np.ndarray, edges: np.ndarray, edge_energy: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """Superbasin of every minimum at every level, ``(level, minimum)``.

    A minimum belongs to the superbasin labelled by the lowest minimum it is connected to
    through transition states below the level (ties: the lower index); ``-1`` where the
    minimum itself lies at or above the level.

    Parameters
    ----------
    minimum_energy : ndarray, shape (minimum,)
    edges : ndarray of int, shape (edge, 2)
        Pairs of minima joined by a transition state.
    edge_energy : ndarray, shape (edge,)
        Energy of that transition state (not the barrier height).
    levels : ndarray, shape (level,)
        Energy levels, ascending.
    """
    minimum_energy = np.asarray(minimum_energy, dtype=float)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    edge_energy = np.asarray(edge_energy, dtype=float)
    levels = np.asarray(levels, dtype=float)
    if len(edges) != len(edge_energy):
        raise ValueError(f"{len(edges)} edges but {len(edge_energy)} edge energies")
    if np.any(np.diff(levels) <= 0):
        raise ValueError("levels must be strictly ascending")
    if len(edges) and (edges.min() < 0 or edges.max() >= len(minimum_energy)):
        raise ValueError("edges name minima that do not exist")
    # The root of every set is its lowest minimum, so a label means the same at every level.
    rank = np.lexsort((np.arange(len(minimum_energy)), minimum_energy))
    position = np.empty_like(rank)
    position[rank] = np.arange(len(rank))
    parent = np.arange(len(minimum_energy))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = np.argsort(edge_energy, kind="stable")
    labels = np.full((len(levels), len(minimum_energy)), ABSENT, dtype=np.int64)
    next_edge = 0
    for k, level in enumerate(levels):
        while next_edge < len(order) and edge_energy[order[next_edge]] < level:
            a, b = (find(i) for i in edges[order[next_edge]])
            if a != b:
                low, high = (a, b) if position[a] < position[b] else (b, a)
                parent[high] = low
            next_edge += 1
        present = minimum_energy < level
        labels[k, present] = [find(i) for i in np.flatnonzero(present)]
    return labels


def tree_segments(
    minimum_energy: np.ndarray, labels: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The drawing of a disconnectivity graph: line segments and the x position of each minimum.

    Each superbasin is a node at its level; it is joined to each of its superbasins one level
    down, and a minimum that first appears below the level ends at its own energy. Children are
    placed with the one holding the lowest minimum in the middle and the others alternately to
    its sides, by ascending lowest energy (the usual layout), so funnels stand upright.

    Returns
    -------
    segments : ndarray, shape (segment, 2, 2)
        ``((x0, y0), (x1, y1))`` per line.
    x_of_minimum : ndarray, shape (minimum,)
        Horizontal position of every leaf (NaN for minima above the top level).
    """
    minimum_energy = np.asarray(minimum_energy, dtype=float)
    x_of_minimum = np.full(len(minimum_energy), np.nan)
    segments = []
    top = len(levels) - 1
    roots = _children(labels, top + 1, np.flatnonzero(labels[top] != ABSENT), minimum_energy) if len(levels) else []
    next_x = [0.0]

    def place(k, members):
        """Lay out the node holding ``members`` at level ``k``; its x and the y of its top."""
        if k < 0 or len(members) == 1 and labels[k, members[0]] == ABSENT:
            leaf = members[0]
            x_of_minimum[leaf] = next_x[0]
            next_x[0] += 1.0
            return x_of_minimum[leaf], minimum_energy[leaf]
        ends = [place(k - 1, child) for child in _children(labels, k, members, minimum_energy)]
        x = float(np.mean([end[0] for end in ends]))
        segments.extend(((x, levels[k]), end) for end in ends)
        return x, levels[k]

    for root in roots:
        x, y = place(top, root)
        segments.append(((x, y), (x, y + (levels[-1] - levels[0]) / max(len(levels), 1))))
    return np.asarray(segments, dtype=float).reshape(-1, 2, 2), x_of_minimum


def _children(labels, k, members, minimum_energy):
    """Groups of ``members`` (present at level ``k``) that form one node at level ``k - 1``:
    superbasins there, and single minima absent there; ordered lowest in the middle."""
    below = labels[k - 1, members] if k > 0 else np.full(len(members), ABSENT)
    groups = [members[below == label] for label in np.unique(below[below != ABSENT])]
    groups += [np.array([m]) for m in members[below == ABSENT]]
    groups.sort(key=lambda group: minimum_energy[group].min())
    # Lowest in the middle: 0 -> centre, then 1 left, 2 right, 3 further left, ...
    arranged = []
    for rank, group in enumerate(groups):
        arranged.insert(0, group) if rank % 2 else arranged.append(group)
    return arranged


def funnel_fraction(minimum_energy: np.ndarray, edges: np.ndarray) -> tuple[float, np.ndarray]:
    """Fraction of minima in the monotonic sequence basin of the global minimum.

    A minimum belongs to it when a sequence of transition states leads from it to the global
    minimum through minima of ever lower energy (Berry and Kunz 1995; the "funnel" of
    Wales, Miller and Walsh 1998). One funnel gives 1; a landscape of many competing
    low minima gives a small fraction.

    Returns
    -------
    fraction : float
    in_funnel : ndarray of bool, shape (minimum,)
    """
    minimum_energy = np.asarray(minimum_energy, dtype=float)
    n = len(minimum_energy)
    in_funnel = np.zeros(n, dtype=bool)
    if n == 0:
        return float("nan"), in_funnel
    uphill = [[] for _ in range(n)]
    for a, b in np.asarray(edges, dtype=np.int64).reshape(-1, 2):
        if minimum_energy[a] < minimum_energy[b]:
            uphill[a].append(b)
        elif minimum_energy[b] < minimum_energy[a]:
            uphill[b].append(a)
    stack = [int(np.argmin(minimum_energy))]
    in_funnel[stack[0]] = True
    while stack:
        for higher in uphill[stack.pop()]:
            if not in_funnel[higher]:
                in_funnel[higher] = True
                stack.append(higher)
    return float(in_funnel.mean()), in_funnel


def escape_barriers(minimum_energy: np.ndarray, edges: np.ndarray, edge_energy: np.ndarray) -> np.ndarray:
    """Lowest barrier out of each minimum, ``(minimum,)``: the lowest transition state joined to
    it minus its energy; NaN for a minimum with no transition state."""
    lowest = np.full(len(minimum_energy), np.inf)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    for end in (0, 1):
        np.minimum.at(lowest, edges[:, end], np.asarray(edge_energy, dtype=float))
    return np.where(np.isfinite(lowest), lowest - np.asarray(minimum_energy, dtype=float), np.nan)
