"""Stage ``connect_minima``: barriers, transition states and the disconnectivity graph.

Following the energy-landscape program of Wales (2003) as applied to neural networks by
Verpoort, Lee and Wales (2020): pairs of catalogued minima are joined by nudged elastic bands
(:mod:`basins.engine.paths`), each band's highest image is refined to a transition state, and two
steepest-descent paths from that saddle name the minima it actually connects. Minima and
transition states give the disconnectivity graph (:mod:`basins.disconnectivity`) and the
funnel measure.

Pairs are each minimum's nearest neighbours in the symmetry-aligned distance, plus the edges
of a minimum spanning tree that keep the graph connected, so the number of bands grows
linearly with the number of minima rather than quadratically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import xarray as xr
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist, squareform

from basins.disconnectivity import escape_barriers, funnel_fraction, superbasins
from basins.engine.paths import Energy, count_band_maxima, nudged_elastic_band, refine_transition_states
from basins.io import variable_attrs
from basins.labels import CONVERGED, UNASSIGNED

log = logging.getLogger(__name__)

#: ``align(reference (param,), theta (param,)) -> theta`` in the symmetry frame nearest the reference.
Align = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``descend_from(points (n, param)) -> (endpoints, energies, converged)``: steepest descent from
#: each point; endpoints in the catalog's canonical frame.
Descend = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
#: ``assign(endpoints, energies, minima_theta, minima_energy) -> (n,)``: the minimum each endpoint
#: is, by the catalog's own criterion, -1 where none.
Assign = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def neighbour_pairs(theta: np.ndarray, n_neighbors: int, align: Align) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(pair, 2)`` of minima to connect, and their aligned distances ``(pair,)``.

    Each minimum is paired with its ``n_neighbors`` nearest minima in the aligned distance,
    chosen among twice as many candidates nearest in the canonical frame (alignment only
    shortens distances). The minimum spanning tree of canonical distances is added so that
    every minimum can be reached.
    """
    n_minima = len(theta)
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors={n_neighbors} must be at least 1")
    if n_minima < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    n_candidates = min(n_minima, 2 * n_neighbors + 1)
    _, candidates = cKDTree(theta).query(theta, k=n_candidates)
    aligned = {}
    for i, row in enumerate(candidates.reshape(n_minima, -1)):
        others = [j for j in row if j != i]
        distance = [np.linalg.norm(theta[i] - align(theta[i], theta[j])) for j in others]
        for rank in np.argsort(distance, kind="stable")[:n_neighbors]:
            aligned.setdefault(tuple(sorted((i, int(others[rank])))), distance[rank])
    # O(minima^2) canonical distances: cheap next to one band, and no minimum is left isolated.
    tree = minimum_spanning_tree(squareform(pdist(theta))).tocoo()
    for i, j in zip(tree.row, tree.col):
        key = tuple(sorted((int(i), int(j))))
        if key not in aligned:
            aligned[key] = np.linalg.norm(theta[key[0]] - align(theta[key[0]], theta[key[1]]))
    pairs = np.array(sorted(aligned), dtype=np.int64)
    return pairs, np.array([aligned[tuple(p)] for p in pairs])


def connect_minima(
    theta: np.ndarray,
    minimum_energy: np.ndarray,
    energy: Energy,
    *,
    align: Align,
    descend_from: Descend,
    assign: Assign,
    n_neighbors: int = 2,
    n_images: int = 16,
    spring: float = 1.0,
    band_dynamics: str = "gd",
    band_lr: float = 0.01,
    band_max_steps: int = 20000,
    band_force_tol: float = 1e-3,
    band_climb_tol: float = 1e-2,
    ts_grad_tol: float = 1e-6,
    ts_max_steps: int = 200,
    trust_radius: float = 0.1,
    index_tolerance: float = 1e-6,
    displacement: float = 1e-2,
    descent_grad_tol: float = 0.0,
    max_dense_params: int = 2000,
    n_levels: int = 40,
    device: str = "cpu",
    chunk: int = 4096,
) -> xr.Dataset:
    """Transition states between neighbouring minima and the disconnectivity graph they give.

    Parameters
    ----------
    theta : ndarray, shape (minimum, param)
        Catalogued minima (canonical representatives).
    minimum_energy : ndarray, shape (minimum,)
        Their energies (training loss with the L2 term).
    energy : callable
        ``(n, param) -> (n,)`` differentiable energy of any points.
    align : callable
        Moves a minimum into the symmetry frame nearest another before the band is built.
    descend_from, assign : callable
        Steepest descent from points, and the catalog's criterion of which minimum an endpoint
        is. Descents from a transition state that reach an uncatalogued minimum add it to the
        graph (the ensemble missed it); new minima are not paired further.
    n_neighbors : int
        Nearest minima each minimum is joined to.
    n_images, spring, band_dynamics, band_lr, band_max_steps, band_force_tol, band_climb_tol
        The nudged elastic band (:func:`basins.engine.paths.nudged_elastic_band`). Plain gradient
        steps are the default: on network bands FIRE's inertia was seen to carry images far
        uphill (energies 100x the minima's) where gradient steps relaxed the same band
        smoothly; the band only has to bring its highest image near the saddle, which the
        refinement then converges to.
    ts_grad_tol, ts_max_steps, trust_radius, index_tolerance
        Transition-state refinement (:func:`basins.engine.paths.refine_transition_states`).
    displacement, descent_grad_tol : float
        Distance from a transition state, along its negative-curvature mode, at which the two
        descents start: small enough to stay in the saddle's two valleys. Where the gradient
        there would not reach 10 x the descent's own stopping tolerance ``descent_grad_tol``,
        the distance is raised until it does, so no descent stops before it starts.
    max_dense_params : int
        Refinement forms dense Hessians; larger networks are refused with this limit named.
    n_levels : int
        Energy levels of the disconnectivity graph, from the lowest minimum to above the highest
        transition state.
    device, chunk
        Where ``energy``'s tensors live, and the bands relaxed at once (the caller sizes it to
        its memory budget: a band is ``n_images + 2`` evaluations of ``energy``).

    Returns
    -------
    xarray.Dataset
        Per pair: ``minimum_pair (pair, end)``, ``aligned_distance``, the relaxed band's
        ``band_energy (pair, image)`` and ``band_arclength``, ``band_status``,
        ``n_band_maxima``, the transition state's ``ts_theta (pair, param)``, ``ts_energy``,
        ``ts_grad_norm``, ``ts_index``, ``ts_converged``, the minima it connects
        ``connected_minimum (pair, end)`` and the ``barrier (pair, end)`` from each, and
        ``is_edge`` (a verified transition state between two distinct minima), ``is_barrierless``
        (a converged band that rises monotonically: its minima join at the higher one's energy). Per minimum:
        ``energy``, ``superbasin (level, minimum)``, ``in_funnel``. Attributes
        ``funnel_fraction``, ``n_edges``, ``n_top_components``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    minimum_energy = np.asarray(minimum_energy, dtype=np.float64)
    n_minima, n_params = theta.shape
    if n_params > max_dense_params:
        raise ValueError(
            f"the network has {n_params} parameters; transition-state refinement forms dense "
            f"Hessians up to max_dense_params={max_dense_params}. Raise it (cost ~ param^2 "
            "memory and param Hessian-vector products per step) or use a smaller network."
        )
    pairs, distance = neighbour_pairs(theta, n_neighbors, align)
    log.info("%d minima, %d pairs to connect", n_minima, len(pairs))
    ends = np.stack([theta[pairs[:, 0]], np.array([align(theta[a], theta[b]) for a, b in pairs])]) if len(pairs) else np.zeros((2, 0, n_params))
    band = nudged_elastic_band(
        energy, ends[0], ends[1], n_images=n_images, spring=spring, dynamics=band_dynamics,
        lr=band_lr, max_steps=band_max_steps, force_tol=band_force_tol,
        climb_tol=band_climb_tol, device=device, chunk=chunk,
    )
    highest = band["energies"][:, 1:-1].argmax(1) + 1
    saddle = refine_transition_states(
        energy, band["bands"][np.arange(len(pairs)), highest], grad_tol=ts_grad_tol,
        max_steps=ts_max_steps, trust_radius=trust_radius, index_tolerance=index_tolerance, device=device,
    )
    log.info("%d of %d bands converged; %d saddles of index 1",
             (band["status"] == CONVERGED).sum(), len(pairs), (saddle["converged"] & (saddle["index"] == 1)).sum())
    step = np.maximum(displacement, 10 * max(descent_grad_tol, ts_grad_tol) / np.maximum(np.abs(saddle["lowest_eigenvalue"]), 1e-300))
    offsets = step[:, None] * saddle["mode"]
    connected = np.full((len(pairs), 2), UNASSIGNED, dtype=np.int64)
    found = np.zeros(n_minima, dtype=bool)
    if len(pairs):
        sides = np.concatenate([saddle["theta"] + offsets, saddle["theta"] - offsets])
        labels, theta, minimum_energy, found = _descend_to_minima(sides, theta, minimum_energy, descend_from, assign)
        connected = labels.reshape(2, -1).T
    connected = np.where(np.isfinite(saddle["energy"])[:, None], connected, UNASSIGNED)
    n_minima = len(theta)
    is_edge = (
        saddle["converged"] & (saddle["index"] == 1) & (connected >= 0).all(1) & (connected[:, 0] != connected[:, 1])
    )
    barrier = np.where(connected >= 0, saddle["energy"][:, None] - minimum_energy[np.maximum(connected, 0)], np.nan)
    # A converged band that rises monotonically from one minimum to the other has no barrier:
    # the higher end drains downhill into the lower (flat valleys split by the catalog look so),
    # so the two join at the higher one's energy.
    n_maxima = count_band_maxima(band["energies"])
    barrierless = (band["status"] == CONVERGED) & (n_maxima == 0)
    edges = np.concatenate([connected[is_edge], pairs[barrierless]])
    edge_energy = np.r_[saddle["energy"][is_edge], minimum_energy[pairs[barrierless]].max(1)]
    levels = _levels(minimum_energy, edge_energy, n_levels)
    labels = superbasins(minimum_energy, edges, edge_energy, levels)
    fraction, in_funnel = funnel_fraction(minimum_energy, edges)
    n_top = len(np.unique(labels[-1][labels[-1] >= 0])) if n_minima else 0
    log.info("%d transition states join distinct minima; funnel fraction %.3f, %d components",
             is_edge.sum(), fraction, n_top)
    arclength = np.concatenate(
        [np.zeros((len(pairs), 1)), np.cumsum(np.linalg.norm(np.diff(band["bands"], axis=1), axis=2), axis=1)], axis=1
    )
    per_pair = lambda values, *attrs, **extra: ("pair", values, variable_attrs(*attrs, **extra))  # noqa: E731
    return xr.Dataset(
        {
            "energy": ("minimum", minimum_energy, variable_attrs("energy of the minimum (training loss)")),
            "theta": (("minimum", "param"), theta, variable_attrs("parameters of the minimum (canonical)")),
            "found_by_descent": ("minimum", found,
                                 variable_attrs("not in the catalog: first reached from a transition state")),
            "minimum_pair": (("pair", "end"), pairs, variable_attrs("minima joined by the band")),
            "aligned_distance": per_pair(distance, "parameter distance after symmetry alignment"),
            "band_energy": (("pair", "image"), band["energies"], variable_attrs("energy of the relaxed band's images")),
            "band_arclength": (("pair", "image"), arclength, variable_attrs("distance along the band")),
            "band_status": per_pair(band["status"].astype(np.int64), "band relaxation status",
                                    flag_values=[0, 1, 2], flag_meanings="converged budget diverged"),
            "band_steps": per_pair(band["steps"].astype(np.int64), "band relaxation steps"),
            "n_band_maxima": per_pair(n_maxima,
                                      "local maxima of the band (above 1: intermediate minima)"),
            "ts_theta": (("pair", "param"), saddle["theta"], variable_attrs("transition state parameters")),
            "ts_energy": per_pair(saddle["energy"], "energy of the transition state"),
            "ts_grad_norm": per_pair(saddle["grad_norm"], "gradient norm at the transition state"),
            "ts_index": per_pair(saddle["index"].astype(np.int64), "negative Hessian eigenvalues at it"),
            "ts_converged": per_pair(saddle["converged"], "refinement met ts_grad_tol"),
            "connected_minimum": (("pair", "end"), connected.astype(np.int64),
                                  variable_attrs("minimum reached by descent from the transition state (-1: none)")),
            "barrier": (("pair", "end"), barrier, variable_attrs("transition state energy minus that minimum's")),
            "is_edge": per_pair(is_edge, "verified index-1 saddle between two distinct catalogued minima"),
            "is_barrierless": per_pair(barrierless, "converged band without a barrier: joined at the higher end"),
            "superbasin": (("level", "minimum"), labels,
                           variable_attrs("lowest minimum of the superbasin at that level (-1: above the level)")),
            "escape_barrier": ("minimum", escape_barriers(minimum_energy, edges, edge_energy),
                               variable_attrs("lowest transition state joined to the minimum minus its energy")),
            "in_funnel": ("minimum", in_funnel, variable_attrs("in the monotonic sequence basin of the global minimum")),
        },
        coords={
            "minimum": ("minimum", np.arange(n_minima), variable_attrs("minimum index, by basin size")),
            "pair": ("pair", np.arange(len(pairs)), variable_attrs("pair index")),
            "end": ("end", np.arange(2), variable_attrs("0: first minimum of the pair; 1: second")),
            "image": ("image", np.arange(n_images + 2), variable_attrs("band image, end images included")),
            "param": ("param", np.arange(n_params), variable_attrs("parameter index")),
            "level": ("level", levels, variable_attrs("energy level of the disconnectivity graph")),
        },
        attrs={
            "funnel_fraction": fraction,
            "n_edges": int(is_edge.sum()),
            "n_barrierless": int(barrierless.sum()),
            "n_top_components": n_top,
            "barrier_is": "highest saddle on the band, refined by eigenvector following; the two "
            "minima it connects are found by steepest descent from it",
        },
    )


def _descend_to_minima(points, theta, minimum_energy, descend_from, assign):
    """Catalog index reached from each point, the catalog grown by the new minima found, and
    which of its minima are new."""
    endpoints, energies, converged = descend_from(points)
    labels = np.full(len(points), UNASSIGNED, dtype=np.int64)
    if converged.any():
        labels[converged] = assign(endpoints[converged], energies[converged], theta, minimum_energy)
    n_catalogued = len(theta)
    # Each unmatched endpoint becomes a minimum in turn, and the rest are matched against it.
    while True:
        unmatched = np.flatnonzero(converged & (labels == UNASSIGNED))
        if not len(unmatched):
            break
        first = unmatched[0]
        theta, minimum_energy = np.vstack([theta, endpoints[first]]), np.r_[minimum_energy, energies[first]]
        labels[first] = len(theta) - 1
        rest = unmatched[1:]
        if len(rest):
            match = assign(endpoints[rest], energies[rest], theta[-1:], minimum_energy[-1:])
            labels[rest[match == 0]] = len(theta) - 1
    if len(theta) > n_catalogued:
        log.info("descents from transition states found %d minima not in the catalog", len(theta) - n_catalogued)
    return labels, theta, minimum_energy, np.arange(len(theta)) >= n_catalogued


def _levels(minimum_energy, edge_energy, n_levels):
    """Ascending levels from just above the lowest minimum to above everything."""
    if n_levels < 2:
        raise ValueError(f"n_levels={n_levels} must be at least 2")
    if not len(minimum_energy):
        return np.arange(n_levels, dtype=float)
    low = minimum_energy.min()
    high = max(minimum_energy.max(), edge_energy.max() if len(edge_energy) else low)
    span = high - low if high > low else max(abs(low), 1.0)  # one minimum and no edge: any span
    spacing = span / (n_levels - 1)
    return low + spacing * (np.arange(n_levels) + 0.5)
