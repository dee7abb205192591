"""Stage ``connect_minima``: transition states, the minima they join, and the disconnectivity graph.

Following the energy-landscape program of Wales (2003) as applied to neural networks by
Verpoort, Lee and Wales (2020), and the ``connect`` procedure of OPTIM and PATHSAMPLE (Wales
2002, Mol. Phys. 100, 3285; Trygubenko and Wales 2004): a pair of minima is joined by a nudged
elastic band (:mod:`basins.engine.paths`); every local maximum of the relaxed band is refined to
a transition state; steepest descents from each verified index-1 saddle name the two minima it
joins; the gaps left between consecutive minima along the band are connected in turn, until the
pair is joined by a path of verified transition states or its budget of bands is spent (then it
is reported unconnected). A band with no maximum is no edge: descents from its images decide
whether its two ends are one minimum (merged, and recorded) or the band needs more images.
Minima found on the way join the graph. Minima and transition states give the disconnectivity
graph (:mod:`basins.disconnectivity`) and the funnel measure.

Pairs are each minimum's nearest neighbours in the symmetry-aligned distance, plus the edges
of a minimum spanning tree that keep the graph connected, so the number of bands grows
linearly with the number of minima rather than quadratically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist, squareform

from basins.disconnectivity import escape_barriers, funnel_fraction, superbasins
from basins.engine.paths import (
    Energy,
    band_maxima,
    end_segment_peaks,
    nudged_elastic_band,
    refine_transition_states,
    stationary_point_index,
)
from basins.io import variable_attrs
from basins.labels import (
    BAND_DIVERGED,
    BAND_ENDS_MERGED,
    BAND_NO_VERIFIED_SADDLE,
    BAND_OUTCOME_MEANINGS,
    BAND_TRANSITION_STATES,
    BAND_UNRESOLVED,
    DIVERGED,
    PAIR_CONNECTED,
    PAIR_MERGED,
    PAIR_OUTCOME_MEANINGS,
    PAIR_UNCONNECTED,
    UNASSIGNED,
)

log = logging.getLogger(__name__)

#: A check descent's endpoint that is a minimum the graph lacks (check descents add none).
NOT_IN_GRAPH = -2

#: A descent started a distance delta along the mode of a saddle (curvature lambda) refined to
#: gradient g follows the mode only where |lambda| delta exceeds g by this factor; closer in, the
#: leftover gradient of the refinement, not the mode, sets where both descents go.
MODE_DOMINANCE = 10.0

#: ``align(reference (param,), theta (param,)) -> theta`` in the symmetry frame nearest the reference.
Align = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``descend_from(points (n, param), grad_tol) -> (endpoints, energies, converged, kicked)``:
#: descent from each point (the experiment's dynamics, steepest or not), stopped at gradient
#: norm ``grad_tol`` (None: the descent's own tolerance); endpoints in the catalog's canonical
#: frame; ``kicked`` where the descent stopped at a saddle and was moved off it (then the kick,
#: not the landscape alone, chose the minimum reached).
Descend = Callable[[np.ndarray, float | None], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
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


# Long only by its signature and numpydoc docstring (89 lines); the body is ~20 lines.
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
    max_image_doublings: int = 2,
    max_bands_per_pair: int = 8,
    spring: float = 1.0,
    band_dynamics: str = "gd",
    band_lr: float = 0.01,
    band_max_steps: int = 20000,
    band_force_tol: float = 1e-3,
    band_climb_tol: float = 1e-2,
    end_segment_points: int = 8,
    ts_grad_tol: float = 1e-6,
    ts_max_steps: int = 200,
    trust_radius: float = 0.1,
    index_tolerance: float = 1e-6,
    displacement: float = 1e-2,
    check_displacement: float = 1e-4,
    descent_grad_tol: float = 0.0,
    max_dense_params: int = 2000,
    n_levels: int = 40,
    device: str = "cpu",
    chunk: int = 4096,
) -> xr.Dataset:
    """Connect neighbouring minima through verified transition states, recursively, and draw
    the disconnectivity graph they give.

    Each pair gets a nudged elastic band. Every interior maximum of the relaxed band is refined
    by eigenvector following, and so is the highest point of each end segment whose inner image
    lies below its end minimum (energy rises away from a minimum, so that segment holds a
    maximum the images missed: a barrier closer to the minimum than the image spacing). A
    refined point is a transition state of the graph (an edge)
    only if it has exactly one negative Hessian eigenvalue and the two descents from it, a
    small ``displacement`` to either side along that eigenvector, reach two distinct minima.
    Walking along the band, the minima so named leave gaps (first end to the first state's
    near minimum, one state's far minimum to the next one's near minimum, ..., to the second
    end); each gap not yet joined in the graph gets a band of its own, and so on, until the
    pair is joined or ``max_bands_per_pair`` bands are spent (OPTIM's ``connect``).

    A band with no maximum (and no verified saddle from its end segments) is never an edge.
    Steepest descents from its interior images decide: all reach one minimum, and the two ends
    are that minimum (merged; a flat valley the catalog split), unless an end is a minimum of
    its own (the descent from it stays there: a basin narrower than the displacement, never
    merged); otherwise the band missed the barrier between two images and is relaxed again
    with twice the images, up to ``max_image_doublings`` times. The same retry follows a
    band whose maxima refine to no verified transition state. A pair neither joined nor merged
    when its budget is spent, or with no gap left to try, is reported unconnected
    (``pair_outcome``; ``pair_budget_spent``, ``pair_images_spent`` and ``pair_descent_undecided``
    say which budget ended it, and the log names the pairs). A pair whose gap another pair's
    band is trying waits for that band's outcome and is tried again if it is still apart.

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
        is. Minima reached that the catalog lacks join the graph (``found_by_descent``).
    n_neighbors : int
        Nearest minima each minimum is joined to.
    n_images, max_image_doublings, max_bands_per_pair : int
        Interior images of a first band; how often a band without a verified transition state is
        retried with twice the images; bands a pair may spend in all, gaps and retries included.
        More images resolve barriers closer together; each band costs ``n_images + 2`` energy
        evaluations per relaxation step.
    spring, band_dynamics, band_lr, band_max_steps, band_force_tol, band_climb_tol
        The nudged elastic band (:func:`basins.engine.paths.nudged_elastic_band`). Plain gradient
        steps are the default: on network bands FIRE's inertia was seen to carry images far
        uphill (energies 100x the minima's) where gradient steps relaxed the same band
        smoothly; the band only has to bring its maxima near the saddles, which the refinement
        then converges to.
    end_segment_points : int
        Evenly spaced points of an end segment whose inner image lies below its end, the
        highest of which is refined (0: end segments are not searched).
    ts_grad_tol, ts_max_steps, trust_radius, index_tolerance
        Transition-state refinement (:func:`basins.engine.paths.refine_transition_states`).
    displacement, descent_grad_tol : float
        Distance from a transition state, along its negative-curvature mode, at which the two
        descents start: small enough to stay in the saddle's two valleys, and never raised. On
        a flat saddle (curvature lambda) the gradient there, about |lambda| x ``displacement``,
        can lie below the descents' own stopping tolerance ``descent_grad_tol``; those descents
        are then stopped at a tenth of it instead, so none stops before it starts. (Raising the
        distance instead carried descents past the near minimum: at lambda = -5e-5 and a
        tolerance of 1e-5 it reached 2, beyond a minimum 0.7 away.)
    check_displacement : float
        The descents from every verified saddle are run again from this distance (0: not): a
        saddle whose minima differ at the two distances is named by where its descents start
        (``ts_displacement_sensitive``; it stays an edge, as named at ``displacement``, and is
        counted in ``n_displacement_sensitive_edges``). The descents are ``descend_from``'s,
        the experiment's own dynamics: for steepest descent the smaller distance is the nearer
        the zero-displacement limit that defines the saddle's minima; for an inertial dynamics
        (FIRE) a flag may be that dynamics' own sensitivity to its start. Where the
        mode's gradient there would not outweigh the saddle's leftover gradient by
        :data:`MODE_DOMINANCE`, the check starts further out, up to half ``displacement``;
        a saddle that needs more is not checked (``ts_check_displacement`` NaN).
    max_dense_params : int
        Refinement forms dense Hessians; larger networks are refused with this limit named.
    n_levels : int
        Energy levels of the disconnectivity graph, from the lowest minimum to above the highest
        transition state.
    device, chunk
        Where ``energy``'s tensors live, and the bands relaxed at once (the caller sizes it to
        its memory budget: a band is ``n_images + 2`` evaluations of ``energy``).

    Catalog entries that are no minimum (a Morse index above 0 in their dense Hessian, by
    ``index_tolerance``) are refused: left out of the graph, listed (dim ``refused_minimum``:
    ``refused_catalog_index``, ``refused_morse_index``, ``refused_lowest_eigenvalue``) and
    logged.

    Returns
    -------
    xarray.Dataset
        Per distinct minimum: ``energy``, ``theta (minimum, param)``, ``catalog_index`` (its row
        in the input, -1 if found by descent), ``found_by_descent``, ``superbasin (level,
        minimum)``, ``escape_barrier``, ``in_funnel``. Per catalog entry merged into another
        (dim ``merged_minimum``): ``merged_catalog_index``, ``merged_energy``, ``merged_into``
        (the distinct minimum it is), ``merged_band``. Per pair: ``minimum_pair (pair, end)``
        (input rows), ``aligned_distance``, ``pair_outcome``, ``pair_n_bands``,
        ``pair_budget_spent``, ``pair_images_spent``, ``pair_descent_undecided``. Per band: ``band_pair``,
        ``band_end_minimum (band, end)``, ``band_n_images``, ``band_energy (band, image)`` and
        ``band_arclength`` (NaN past the band's images), ``band_status``, ``band_steps``,
        ``band_fell_back``, ``n_band_maxima``, ``n_band_end_peaks``, ``band_outcome``,
        ``band_merge_refused``. Per refined maximum (dim ``transition_state``): ``ts_band``,
        ``ts_from_end_segment``, ``ts_theta``, ``ts_energy``, ``ts_grad_norm``, ``ts_index``,
        ``ts_lowest_eigenvalue``,
        ``ts_converged``, ``connected_minimum (transition_state, end)``, ``barrier``,
        ``ts_descent_kicked``, ``connected_minimum_checked (transition_state, end)`` (from
        ``check_displacement``), ``ts_check_displacement``, ``ts_displacement_sensitive``,
        ``ts_duplicate_of``, ``ts_duplicate_named_otherwise`` and
        ``is_edge`` (a verified, first-found transition state between two distinct minima).
        Attributes ``funnel_fraction``, ``n_edges``, ``n_merged``, ``n_unconnected``,
        ``n_top_components``, ``n_kicked_edges`` (edges one of whose minima a kick off a higher
        saddle chose: ``ts_descent_kicked``), ``n_displacement_sensitive_edges``, ``n_unchecked_edges``
        (edges whose check was skipped or whose check descents did not both converge),
        ``n_refused_not_minima``.

    References
    ----------
    Henkelman, Uberuaga and Jónsson (2000), J. Chem. Phys. 113, 9901 (climbing-image NEB).
    Wales (2002), Mol. Phys. 100, 3285; Trygubenko and Wales (2004), J. Chem. Phys. 120, 2082
    (discrete path sampling; recursive connection of minima). Verpoort, Lee and Wales (2020),
    PNAS 117, 21857 (network loss landscapes).
    """
    theta = np.asarray(theta, dtype=np.float64)
    minimum_energy = np.asarray(minimum_energy, dtype=np.float64)
    _check_connection(theta, max_dense_params=max_dense_params, max_image_doublings=max_image_doublings,
                      max_bands_per_pair=max_bands_per_pair, end_segment_points=end_segment_points,
                      displacement=displacement, check_displacement=check_displacement)
    connector = _Connector(
        energy=energy, align=align, descend_from=descend_from, assign=assign, n_images=n_images,
        max_images=n_images * 2**max_image_doublings, max_bands_per_pair=max_bands_per_pair,
        end_segment_points=end_segment_points,
        band_options=dict(spring=spring, dynamics=band_dynamics, lr=band_lr, max_steps=band_max_steps,
                          force_tol=band_force_tol, climb_tol=band_climb_tol, device=device, chunk=chunk),
        ts_options=dict(grad_tol=ts_grad_tol, max_steps=ts_max_steps, trust_radius=trust_radius,
                        index_tolerance=index_tolerance, device=device),
        displacement=displacement, check_displacement=check_displacement,
        descent_tol=max(descent_grad_tol, ts_grad_tol),
    )
    kept, refused = _minima_of_catalog(energy, theta, index_tolerance=index_tolerance, device=device)
    pairs, distance = neighbour_pairs(theta[kept], n_neighbors, align)
    log.info("%d minima, %d pairs to connect", len(kept), len(pairs))
    catalog = _Catalog(theta[kept], minimum_energy[kept])
    record = _connect_pairs(pairs, catalog, connector)

    def same_point(reference, theta):
        """Two refined saddles closer, up to symmetry, than the descents' displacement are one."""
        return np.linalg.norm(align(reference, theta) - reference) <= displacement

    graph = _graph_dataset(pairs, distance, catalog, record, n_levels, same_point)
    return _in_input_rows(graph, kept, refused)


def _minima_of_catalog(energy, theta, *, index_tolerance, device, max_bytes=2**28):
    """Rows of the catalog that are minima (Morse index 0 in the dense Hessian), and the Morse
    index and lowest eigenvalue of the others, which the graph refuses."""
    rows_per_chunk = max(1, max_bytes // (8 * max(theta.shape[1], 1) ** 2))
    checked = [stationary_point_index(energy, theta[i:i + rows_per_chunk], index_tolerance=index_tolerance,
                                      device=device) for i in range(0, len(theta), rows_per_chunk)]
    morse_index = np.concatenate([c["index"] for c in checked]) if checked else np.zeros(0, dtype=np.int64)
    lowest = np.concatenate([c["lowest_eigenvalue"] for c in checked]) if checked else np.zeros(0)
    not_minimum = np.flatnonzero(morse_index > 0)
    if len(not_minimum):
        log.warning("catalog rows %s are no minima (Morse index %s, lowest eigenvalue %s): left out of the graph",
                    not_minimum.tolist(), morse_index[not_minimum].tolist(),
                    np.array2string(lowest[not_minimum], precision=3))
    refused = {
        "refused_catalog_index": _variable("refused_minimum", not_minimum, "catalog row that is no minimum (left out)"),
        "refused_morse_index": _variable("refused_minimum", morse_index[not_minimum],
                                         "negative Hessian eigenvalues at it (index_tolerance)"),
        "refused_lowest_eigenvalue": _variable("refused_minimum", lowest[not_minimum], "its lowest Hessian eigenvalue"),
    }
    return np.flatnonzero(morse_index == 0), refused


def _in_input_rows(graph, kept, refused):
    """The graph with its catalog rows counted in the input catalog (refused rows included)."""
    def to_input(rows):
        return np.where(rows >= 0, kept[np.maximum(rows, 0)], rows) if len(kept) else rows

    for name in ("catalog_index", "merged_catalog_index", "minimum_pair"):
        graph[name] = graph[name].copy(data=to_input(graph[name].values))
    graph = graph.assign(refused)
    graph = graph.assign_coords(refused_minimum=("refused_minimum", np.arange(graph.sizes.get("refused_minimum", 0)),
                                         variable_attrs("catalog entry refused: no minimum")))
    return graph.assign_attrs(n_refused_not_minima=int(graph.sizes.get("refused_minimum", 0)))


def _check_connection(theta, *, max_dense_params, max_image_doublings, max_bands_per_pair, end_segment_points,
                      displacement, check_displacement):
    """Refuse a network too large for dense Hessians, budgets below their least value, or a
    check displacement that is not a second distance, well inside the first."""
    if theta.shape[1] > max_dense_params:
        raise ValueError(
            f"the network has {theta.shape[1]} parameters; transition-state refinement forms dense "
            f"Hessians up to max_dense_params={max_dense_params}. Raise it (cost ~ param^2 "
            "memory and param Hessian-vector products per step) or use a smaller network."
        )
    budgets = (("max_image_doublings", max_image_doublings, 0), ("max_bands_per_pair", max_bands_per_pair, 1),
               ("end_segment_points", end_segment_points, 0))
    for name, value, low in budgets:
        if value < low:
            raise ValueError(f"{name}={value} must be at least {low}")
    if not displacement > 0 or not 0 <= check_displacement <= displacement / 2:
        raise ValueError(f"displacement={displacement} must be positive, and check_displacement="
                         f"{check_displacement} 0 (no check) or at most half of it (a distance the "
                         "first descents do not start from)")


@dataclass(frozen=True)
class _Connector:
    """The landscape and the settings every band, refinement and descent of a connection uses."""

    energy: Energy
    align: Align
    descend_from: Descend
    assign: Assign
    n_images: int
    max_images: int
    max_bands_per_pair: int
    end_segment_points: int
    band_options: dict
    ts_options: dict
    displacement: float
    check_displacement: float
    descent_tol: float


class _Catalog:
    """The minima known so far (input rows first, then those found by descent), which of them
    are one minimum (``same``) and which are joined by verified transition states (``joined``):
    two union-finds over the same rows."""

    def __init__(self, theta, energy):
        self.theta, self.energy, self.n_input = theta, energy, len(theta)
        self._same, self._component = list(range(len(theta))), list(range(len(theta)))
        self.merges = []  # (row, row it is the same minimum as, band)

    def __len__(self):
        return len(self.theta)

    @staticmethod
    def _find(parent, i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def root(self, i):
        return self._find(self._same, int(i)) if i >= 0 else UNASSIGNED

    def joined(self, i, j):
        return self._find(self._component, self.root(i)) == self._find(self._component, self.root(j))

    def add(self, theta, energy):
        self.theta, self.energy = np.vstack([self.theta, theta]), np.r_[self.energy, energy]
        self._same.append(len(self._same))
        self._component.append(len(self._component))
        return len(self.theta) - 1

    def join(self, i, j):
        self._component[self._find(self._component, self.root(i))] = self._find(self._component, self.root(j))

    def merge(self, i, into, band):
        i, into = self.root(i), self.root(into)
        if i != into:
            self.join(i, into)
            self._same[i] = into
            self.merges.append((i, into, band))


def _connect_pairs(pairs, catalog, connector):
    """Rounds of bands, all relaxed together, until no pair has a gap left to try; the bands
    and transition states found, and the bands each pair spent."""
    record = {"bands": [], "ts": [], "n_bands": np.zeros(len(pairs), dtype=np.int64),
              "budget_spent": np.zeros(len(pairs), dtype=bool), "images_spent": np.zeros(len(pairs), dtype=bool),
              "descent_undecided": np.zeros(len(pairs), dtype=bool)}
    queue = [(p, int(a), int(b), connector.n_images) for p, (a, b) in enumerate(pairs)]
    while queue:
        work, planned, deferred = [], set(), []
        for item in queue:
            pair, a, b, _ = item
            gap = tuple(sorted((catalog.root(a), catalog.root(b))))
            if catalog.joined(a, b):
                continue
            if gap in planned:  # another pair's band has it this round: try again after it
                deferred.append(item)
                continue
            if record["n_bands"][pair] >= connector.max_bands_per_pair:
                record["budget_spent"][pair] = True
                continue
            record["n_bands"][pair] += 1
            planned.add(gap)
            work.append(item)
        if not work:
            break
        bands = _relax_bands(work, catalog, connector, first_id=len(record["bands"]))
        # A diverged band's images are wherever the relaxation blew them: neither its maxima are
        # refined nor its images drained (_next_gaps tries its ends again).
        relaxed = [band for band in bands if band["status"] != DIVERGED]
        saddles = _refine_band_maxima(relaxed, connector)
        _name_saddle_minima(saddles, catalog, connector)
        # Bands with neither an interior maximum nor an edge from an end segment: drained.
        with_edge = {id(s["band"]) for s in saddles if s["is_edge"]}
        _check_bands_without_maxima([b for b in relaxed if not b["n_maxima"] and id(b) not in with_edge], catalog,
                                    connector)
        queue = [gap for band in bands for gap in _next_gaps(band, saddles, catalog, connector)] + deferred
        for band in bands:
            record["images_spent"][band["pair"]] |= band["images_spent"]
        for saddle in saddles:  # a verified saddle whose descent spent its budget names no minimum
            if saddle["converged"] and saddle["index"] == 1 and UNASSIGNED in saddle["connected"]:
                record["descent_undecided"][saddle["band"]["pair"]] = True
        record["ts"] += [{**s, "band": s["band"]["id"]} for s in saddles]
        record["bands"] += bands
        log.info("round of %d bands: %d transition states verified, %d gaps to connect next",
                 len(bands), sum(s["is_edge"] for s in saddles), len(queue))
    return record


def _relax_bands(work, catalog, connector, *, first_id):
    """One relaxed band per work item ``(pair, minimum, minimum, n_images)``, relaxed together
    per number of images."""
    bands = [None] * len(work)
    for n_images in sorted({item[3] for item in work}):
        chosen = [k for k, item in enumerate(work) if item[3] == n_images]
        start = catalog.theta[[work[k][1] for k in chosen]]
        end = np.array([connector.align(catalog.theta[work[k][1]], catalog.theta[work[k][2]]) for k in chosen])
        out = nudged_elastic_band(connector.energy, start, end, n_images=n_images, **connector.band_options)
        for row, k in enumerate(chosen):
            pair, a, b, _ = work[k]
            bands[k] = {"id": first_id + k, "pair": pair, "ends": (a, b), "n_images": n_images,
                        "images": out["bands"][row], "energies": out["energies"][row],
                        "status": int(out["status"][row]), "steps": int(out["steps"][row]),
                        "fell_back": int(out["fell_back"][row]), "n_maxima": 0, "n_end_peaks": 0,
                        "merge_refused": False}
    return bands


def _refine_band_maxima(bands, connector):
    """Every interior maximum of every band, then the highest point of every end segment that
    must hold one, refined by eigenvector following: one record each, in band order."""
    starts = []  # (band, position along it in images, point, the band's direction there)
    for band in bands:
        images = band["images"]
        maxima = np.flatnonzero(band_maxima(band["energies"][None])[0])
        band["n_maxima"] = len(maxima)
        starts += [(band, float(k), images[k], images[k + 1] - images[k - 1]) for k in maxima]
    peaks = end_segment_peaks(connector.energy, [band["images"] for band in bands],
                              [band["energies"] for band in bands], connector.end_segment_points,
                              connector.ts_options["device"])
    for row, position, point, tangent in peaks:
        bands[row]["n_end_peaks"] += 1
        starts.append((bands[row], position, point, tangent))
    if not starts:
        return []
    refined = refine_transition_states(connector.energy, np.array([s[2] for s in starts]), **connector.ts_options)
    refined = _polish_flat_saddles(refined, connector)
    saddles = []
    for row, (band, position, _, tangent) in enumerate(starts):
        saddles.append({
            "band": band, "image": position, "from_end_segment": not position.is_integer(),
            **{key: value[row] for key, value in refined.items()},
            # the side of the mode that points along the band, toward its second end
            "forward": 1.0 if refined["mode"][row] @ tangent >= 0 else -1.0,
        })
    return saddles


def _mode_dominant_distance(grad_norm, curvature):
    """How far along its mode from a saddle refined to gradient ``grad_norm`` (curvature along
    the mode ``curvature``) a descent must start for the mode's gradient to outweigh the leftover
    one by :data:`MODE_DOMINANCE`."""
    return MODE_DOMINANCE * np.asarray(grad_norm) / np.maximum(np.abs(curvature), 1e-300)


def _polish_flat_saddles(refined, connector, floor=1e-13):
    """Index-1 saddles whose leftover gradient g would steer the descents from them (|lambda|
    times the shorter descent displacement below :data:`MODE_DOMINANCE` g) refined on, to a
    gradient that lets the mode dominate (not below ``floor``, round-off's); each keeps the
    closer of its two refinements. A flat saddle (lambda ~ -5e-5) met at the refinement's
    tolerance 1e-6 otherwise sent both descents where the leftover gradient pointed."""
    shortest = connector.check_displacement or connector.displacement
    flat = np.flatnonzero(refined["converged"] & (refined["index"] == 1) & (refined["grad_norm"] > floor) & (
        _mode_dominant_distance(refined["grad_norm"], refined["lowest_eigenvalue"]) > shortest))
    if not len(flat):
        return refined
    # the gradient at which that distance is the shortest displacement
    target = np.abs(refined["lowest_eigenvalue"][flat]) * shortest / MODE_DOMINANCE
    options = {**connector.ts_options, "grad_tol": float(max(target.min(), floor))}
    again = refine_transition_states(connector.energy, refined["theta"][flat], **options)
    moved = np.linalg.norm(again["theta"] - refined["theta"][flat], axis=1)
    # the same saddle (within the descents' displacement), still index 1, and closer to it
    better = (again["index"] == 1) & (again["grad_norm"] < refined["grad_norm"][flat]) & (
        moved <= connector.displacement)
    log.info("%d flat saddles refined on: gradient %s -> %s", len(flat),
             np.array2string(refined["grad_norm"][flat], precision=1), np.array2string(again["grad_norm"], precision=1))
    polished = {key: value.copy() for key, value in refined.items()}
    for key in ("theta", "energy", "grad_norm", "mode", "lowest_eigenvalue"):
        polished[key][flat[better]] = again[key][better]
    polished["steps"][flat] += again["steps"]
    return polished


def _name_saddle_minima(saddles, catalog, connector):
    """The minima each index-1 saddle joins, near end first (``connected``), from descents a
    displacement along its mode; ``is_edge`` where they are two distinct minima, both below it.
    The descents again from ``check_displacement`` (``checked``; NOT_IN_GRAPH where one reaches a
    minimum the graph lacks, which the check does not add)."""
    for saddle in saddles:
        saddle["connected"] = saddle["checked"] = (UNASSIGNED, UNASSIGNED)
        saddle["check_step"] = np.nan
        saddle["is_edge"], saddle["kicked"] = False, False
    verified = [s for s in saddles if s["converged"] and s["index"] == 1 and np.isfinite(s["energy"])]
    if not verified:
        return
    labels, kicked = _descents_along_modes(verified, np.full(len(verified), connector.displacement), catalog,
                                           connector, add_new=True)
    checkable, check_step = _check_displacements(verified, connector)
    to_check, steps = [saddle for saddle, can in zip(verified, checkable) if can], check_step[checkable]
    if to_check:
        checked, _ = _descents_along_modes(to_check, steps, catalog, connector, add_new=False)
        for saddle, pair, step in zip(to_check, checked, steps):
            saddle["checked"], saddle["check_step"] = tuple(pair), step
    for saddle, (near, far), kick in zip(verified, labels, kicked):
        saddle["connected"], saddle["kicked"] = (near, far), bool(kick)
        saddle["is_edge"] = bool(near >= 0 and far >= 0 and catalog.root(near) != catalog.root(far))
        # A transition state lies above both minima it joins; one that does not sits on a shoulder
        # (a catalog entry that is no minimum), whatever its gradient and index say.
        if saddle["is_edge"] and not saddle["energy"] > catalog.energy[[near, far]].max():
            log.warning("a verified saddle at energy %.10g is not above both minima it joins (%d, %d): no edge",
                        saddle["energy"], near, far)
            saddle["is_edge"] = False
        if saddle["is_edge"]:
            catalog.join(near, far)


def _check_displacements(saddles, connector):
    """Which saddles the second descents can check, and from how far: ``check_displacement``,
    or further out where the mode must dominate the saddle's leftover gradient
    (:data:`MODE_DOMINANCE`), but never beyond half the first ``displacement`` (then the check
    says nothing the first descents did not, and the saddle is not checked)."""
    if connector.check_displacement <= 0:
        return np.zeros(len(saddles), dtype=bool), np.full(len(saddles), np.nan)
    step = np.maximum(connector.check_displacement, _mode_dominant_distance(
        [s["grad_norm"] for s in saddles], [s["lowest_eigenvalue"] for s in saddles]))
    return step <= connector.displacement / 2, step


def _descents_along_modes(saddles, steps, catalog, connector, *, add_new):
    """Minima (near, far) reached by descents ``steps`` (one per saddle) to either side of each
    saddle along its mode, and whether a kick off a higher saddle was taken on either side."""
    back = [s["theta"] - s["forward"] * step * s["mode"] for s, step in zip(saddles, steps)]
    ahead = [s["theta"] + s["forward"] * step * s["mode"] for s, step in zip(saddles, steps)]
    grad_tol = _tolerance_below_start(min(abs(s["lowest_eigenvalue"]) * step for s, step in zip(saddles, steps)),
                                      connector.descent_tol)
    labels, kicked = _descend_to_minima(np.array(back + ahead), catalog, connector, grad_tol, add_new=add_new)
    return labels.reshape(2, -1).T, kicked.reshape(2, -1).any(0)


def _tolerance_below_start(start_gradient, descent_tol, floor=1e-13):
    """The gradient norm at which descents that start at gradient ``start_gradient`` stop: their
    own tolerance (None), or a tenth of the start's where that is below it (not below ``floor``,
    round-off's, in units of the energy per unit distance)."""
    if start_gradient >= 10 * descent_tol:
        return None
    return max(0.1 * start_gradient, floor)


def _check_bands_without_maxima(flat, catalog, connector):
    """Bands without a barrier: descents from their interior images and from a displacement
    inside each end (``image_minima``); the two ends merged where all of them reached one
    minimum, unless an end is a minimum of its own. A basin that reaches less than
    ``displacement`` along the band drains into its neighbour's; the descent from the end
    itself tells such a minimum (it stays) from a catalog entry on a valley's floor (it moves
    on): the first is never merged (``merge_refused``) and its band is retried."""
    if not flat:
        return
    points = []
    for band in flat:
        images = band["images"]
        inward = [images[1] - images[0], images[-2] - images[-1]]
        inward = [step / max(np.linalg.norm(step), 1e-300) * connector.displacement for step in inward]
        points.append(np.vstack([images[0] + inward[0], images[1:-1], images[-1] + inward[1], images[0], images[-1]]))
    labels = np.split(_descend_to_minima(np.concatenate(points), catalog, connector)[0], len(flat))
    for band, reached in zip(flat, labels):
        drained, from_ends = reached[:-2], reached[-2:]
        band["image_minima"] = [catalog.root(label) for label in drained]
        if not ((drained >= 0).all() and len(set(band["image_minima"])) == 1):
            continue
        target = band["image_minima"][0]
        own = [end for end, stays in zip(band["ends"], from_ends) if catalog.root(end) != target
               and stays == catalog.root(end)]
        if own:
            band["merge_refused"] = True
            log.info("band %d drains to minimum %d, but its end %s is a minimum of its own: not merged, retried",
                     band["id"], target, own)
            continue
        for end in band["ends"]:
            catalog.merge(end, target, band["id"])


def _next_gaps(band, saddles, catalog, connector):
    """The band's outcome, and the work items it leaves: each gap between consecutive minima
    along it that the graph does not join yet; the band's own two ends again, with twice the
    images, where it resolved no barrier between them."""
    a, b = band["ends"]
    found = sorted((s for s in saddles if s["band"] is band and s["is_edge"]), key=lambda s: s["image"])
    if band["status"] == DIVERGED:
        band["outcome"] = BAND_DIVERGED
        chain = [a, b]  # its ends again, with more images (shorter springs, smaller steps)
    elif band["n_maxima"] or found:
        band["outcome"] = BAND_TRANSITION_STATES if found else BAND_NO_VERIFIED_SADDLE
        chain = [a] + [m for s in found for m in s["connected"]] + [b]
    else:
        band["outcome"] = BAND_ENDS_MERGED if catalog.root(a) == catalog.root(b) else BAND_UNRESOLVED
        # Consecutive images that reach different minima straddle a barrier the band missed.
        chain = [a] + [m for m in band["image_minima"] if m >= 0] + [b]
    gaps, band["images_spent"] = {}, False
    for s, t in zip(chain[:-1], chain[1:]):
        if s < 0 or t < 0 or catalog.joined(s, t) or (s, t) in gaps:
            continue
        if {catalog.root(s), catalog.root(t)} != {catalog.root(a), catalog.root(b)}:
            gaps[s, t] = connector.n_images
        elif band["n_images"] * 2 <= connector.max_images:
            gaps[s, t] = band["n_images"] * 2
        else:
            band["images_spent"] = True
    return [(band["pair"], s, t, n_images) for (s, t), n_images in gaps.items()]


def _descend_to_minima(points, catalog, connector, grad_tol=None, *, add_new=True):
    """Catalog row (of the minimum itself, merges resolved) reached from each point, -1 where
    the descent did not converge, and whether a kick off a saddle was taken on the way;
    endpoints the catalog lacks are added to it (``add_new``), else labelled NOT_IN_GRAPH."""
    endpoints, energies, converged, kicked = connector.descend_from(points, grad_tol)
    if not converged.all():
        log.warning("%d of %d descents did not converge: their minima are unknown (-1)", int((~converged).sum()),
                    len(points))
    labels = np.full(len(points), UNASSIGNED, dtype=np.int64)
    if converged.any():
        labels[converged] = connector.assign(endpoints[converged], energies[converged], catalog.theta, catalog.energy)
    if add_new:
        _add_unmatched(labels, converged, endpoints, energies, catalog, connector)
    else:
        labels[converged & (labels == UNASSIGNED)] = NOT_IN_GRAPH
    return (np.array([catalog.root(label) if label >= 0 else label for label in labels], dtype=np.int64),
            np.asarray(kicked, dtype=bool))


def _add_unmatched(labels, converged, endpoints, energies, catalog, connector):
    """Converged endpoints no catalogued minimum matches join the catalog, ``labels`` updated:
    each unmatched endpoint becomes a minimum in turn, and the rest are matched against it."""
    n_before = len(catalog)
    while True:
        unmatched = np.flatnonzero(converged & (labels == UNASSIGNED))
        if not len(unmatched):
            break
        first, rest = unmatched[0], unmatched[1:]
        labels[first] = catalog.add(endpoints[first], energies[first])
        if len(rest):
            match = connector.assign(endpoints[rest], energies[rest], catalog.theta[-1:], catalog.energy[-1:])
            labels[rest[match == 0]] = labels[first]
    if len(catalog) > n_before:
        log.info("descents found %d minima not in the catalog", len(catalog) - n_before)


def _graph_dataset(pairs, distance, catalog, record, n_levels, same_point):
    """The distinct minima, the pairs' outcomes, every band and refined maximum, and the
    disconnectivity graph of the verified transition states."""
    distinct, merged, index, roots = _distinct_minima(catalog)

    def final(rows):
        """Rows of the working catalog as distinct minima, merges resolved."""
        rows = np.asarray(rows, dtype=np.int64)
        return np.where(rows >= 0, index[roots[np.maximum(rows, 0)]], UNASSIGNED)

    energy = catalog.energy[distinct]
    ts = _transition_state_variables(record["ts"], energy, final, catalog.theta.shape[1], same_point)
    is_edge = ts["is_edge"][1]
    edges, edge_energy = ts["connected_minimum"][1][is_edge], ts["ts_energy"][1][is_edge]
    levels = _levels(energy, edge_energy, n_levels)
    labels = superbasins(energy, edges, edge_energy, levels)
    fraction, in_funnel = funnel_fraction(energy, edges)
    n_top = len(np.unique(labels[-1][labels[-1] >= 0])) if len(energy) else 0
    outcome = np.array([PAIR_MERGED if catalog.root(a) == catalog.root(b) else
                        PAIR_CONNECTED if catalog.joined(a, b) else PAIR_UNCONNECTED for a, b in pairs], dtype=np.int64)
    _log_outcomes(outcome, record, merged, is_edge, fraction, n_top)
    minima = _minimum_variables(catalog, distinct, merged, index[roots[merged]], labels,
                                escape_barriers(energy, edges, edge_energy), in_funnel)
    connections = _pair_variables(pairs, distance, outcome, record)
    bands = _band_variables(record["bands"], final)
    coords = _graph_coords(n_minima=len(distinct), n_merged=len(merged), n_pairs=len(pairs),
                           n_bands=len(record["bands"]), n_ts=len(record["ts"]),
                           n_images=bands["band_energy"][1].shape[1], n_params=catalog.theta.shape[1], levels=levels)
    attrs = {
        "funnel_fraction": fraction,
        "n_edges": int(is_edge.sum()),
        "n_kicked_edges": int((is_edge & ts["ts_descent_kicked"][1]).sum()),
        "n_displacement_sensitive_edges": int((is_edge & ts["ts_displacement_sensitive"][1]).sum()),
        # an edge whose check was skipped, or whose check descents did not both converge, is unchecked
        "n_unchecked_edges": int((is_edge & (ts["connected_minimum_checked"][1] == UNASSIGNED).any(1)).sum()),
        "n_merged": len(merged),
        "n_unconnected": int((outcome == PAIR_UNCONNECTED).sum()),
        "n_top_components": n_top,
        "barrier_is": "every maximum of every band refined by eigenvector following; an edge is an "
        "index-1 saddle whose two steepest descents reach distinct minima",
    }
    return xr.Dataset({**minima, **connections, **bands, **ts}, coords=coords, attrs=attrs)


def _distinct_minima(catalog):
    """Catalog rows that are distinct minima and rows merged into another; each row's index
    among the distinct minima (-1: merged) and the row of the minimum it is."""
    roots = np.array([catalog.root(i) for i in range(len(catalog))], dtype=np.int64)
    is_root = roots == np.arange(len(catalog))
    distinct, merged = np.flatnonzero(is_root), np.flatnonzero(~is_root)
    index = np.full(len(catalog), UNASSIGNED, dtype=np.int64)
    index[distinct] = np.arange(len(distinct))
    return distinct, merged, index, roots


def _minimum_variables(catalog, distinct, merged, merged_into, superbasin, escape_barrier, in_funnel):
    """Per distinct minimum and per catalog entry merged into another."""
    merged_band = dict((row, band) for row, _, band in catalog.merges)
    return {
        "energy": _variable("minimum", catalog.energy[distinct], "energy of the minimum (training loss)"),
        "theta": _variable(("minimum", "param"), catalog.theta[distinct], "parameters of the minimum (canonical)"),
        "catalog_index": _variable("minimum", np.where(distinct < catalog.n_input, distinct, UNASSIGNED),
                                   "row of the minimum in the input catalog (-1: found by descent)"),
        "found_by_descent": _variable("minimum", distinct >= catalog.n_input,
                                      "not in the catalog: first reached by a descent from a band or saddle"),
        "merged_catalog_index": _variable("merged_minimum", np.where(merged < catalog.n_input, merged, UNASSIGNED),
                                          "catalog row found to be the same minimum as another (-1: found by descent)"),
        "merged_energy": _variable("merged_minimum", catalog.energy[merged], "its energy"),
        "merged_into": _variable("merged_minimum", merged_into, "the distinct minimum it is"),
        "merged_band": _variable("merged_minimum", np.array([merged_band[row] for row in merged], dtype=np.int64),
                                 "band whose images all drained to one minimum"),
        "superbasin": _variable(("level", "minimum"), superbasin,
                                "lowest minimum of the superbasin at that level (-1: above the level)"),
        "escape_barrier": _variable("minimum", escape_barrier,
                                    "lowest transition state joined to the minimum minus its energy"),
        "in_funnel": _variable("minimum", in_funnel, "in the monotonic sequence basin of the global minimum"),
    }


def _pair_variables(pairs, distance, outcome, record):
    """Per pair: its minima, their aligned distance, the outcome and the budgets it spent."""
    return {
        "minimum_pair": _variable(("pair", "end"), pairs, "catalog rows the connection joins"),
        "aligned_distance": _variable("pair", distance, "parameter distance after symmetry alignment"),
        "pair_outcome": _variable("pair", outcome, "outcome of the connection", flag_values=[0, 1, 2],
                                  flag_meanings=PAIR_OUTCOME_MEANINGS),
        "pair_n_bands": _variable("pair", record["n_bands"], "bands relaxed for the pair, gaps and retries included"),
        "pair_budget_spent": _variable("pair", record["budget_spent"],
                                       "max_bands_per_pair reached with gaps left (unconnected)"),
        "pair_images_spent": _variable("pair", record["images_spent"],
                                       "a band without a verified saddle was not retried: max_image_doublings reached"),
        "pair_descent_undecided": _variable(
            "pair", record["descent_undecided"],
            "a descent from a verified transition state of the pair's bands spent its budget (its minimum unknown)"),
    }


def _graph_coords(*, n_minima, n_merged, n_pairs, n_bands, n_ts, n_images, n_params, levels):
    return {
        "minimum": ("minimum", np.arange(n_minima), variable_attrs("distinct minimum index")),
        "merged_minimum": ("merged_minimum", np.arange(n_merged),
                           variable_attrs("catalog entry merged into another minimum")),
        "pair": ("pair", np.arange(n_pairs), variable_attrs("pair index")),
        "band": ("band", np.arange(n_bands), variable_attrs("band index, in the order relaxed")),
        "transition_state": ("transition_state", np.arange(n_ts), variable_attrs("refined band maximum index")),
        "end": ("end", np.arange(2), variable_attrs("0: first minimum; 1: second")),
        "image": ("image", np.arange(n_images), variable_attrs("band image, end images included")),
        "param": ("param", np.arange(n_params), variable_attrs("parameter index")),
        "level": ("level", levels, variable_attrs("energy level of the disconnectivity graph")),
    }


def _variable(dims, values, *attrs, **extra):
    return dims, np.asarray(values), variable_attrs(*attrs, **extra)


def _band_variables(bands, final):
    """Per band: its pair, ends, images, energy profile and arclength (NaN past its images),
    status and outcome."""
    width = max([band["n_images"] + 2 for band in bands], default=2)
    energy, arclength = np.full((len(bands), width), np.nan), np.full((len(bands), width), np.nan)
    for row, band in enumerate(bands):
        energy[row, : band["n_images"] + 2] = band["energies"]
        steps = np.linalg.norm(np.diff(band["images"], axis=0), axis=1)
        arclength[row, : band["n_images"] + 2] = np.r_[0.0, np.cumsum(steps)]
    values = lambda key: np.array([band[key] for band in bands], dtype=np.int64)  # noqa: E731
    return {
        "band_pair": _variable("band", values("pair"), "pair the band works for"),
        "band_end_minimum": _variable(("band", "end"), final(np.array([b["ends"] for b in bands]).reshape(-1, 2)),
                                      "minima at the band's ends"),
        "band_n_images": _variable("band", values("n_images"), "interior images of the band"),
        "band_energy": _variable(("band", "image"), energy, "energy of the relaxed band's images (NaN: none)"),
        "band_arclength": _variable(("band", "image"), arclength, "distance along the band"),
        "band_status": _variable("band", values("status"), "band relaxation status", flag_values=[0, 1, 2],
                                 flag_meanings="converged budget diverged"),
        "band_steps": _variable("band", values("steps"), "band relaxation steps"),
        "band_fell_back": _variable("band", values("fell_back"), "relaxed again by gradient steps after FIRE "
                                    "left it at the budget (band_dynamics fire_then_gd)"),
        "n_band_maxima": _variable("band", values("n_maxima"), "interior local maxima of the band"),
        "n_band_end_peaks": _variable("band", values("n_end_peaks"), "end segments whose highest point was "
                                      "refined: the image next to that end lies below it"),
        "band_merge_refused": _variable("band", values("merge_refused").astype(bool), "its images drained to one "
                                        "minimum, but an end is a minimum of its own (its descent stays): not merged"),
        "band_outcome": _variable("band", values("outcome"), "what the band showed", flag_values=[0, 1, 2, 3, 4],
                                  flag_meanings=BAND_OUTCOME_MEANINGS),
    }


def _transition_state_variables(ts, minimum_energy, final, n_params, same_point):
    """Per refined maximum: where it is, what it is, the minima it joins and whether it is an edge."""
    values = lambda key, dtype=float: np.array([s[key] for s in ts], dtype=dtype)  # noqa: E731
    energy = values("energy")
    connected = final(np.array([s["connected"] for s in ts], dtype=np.int64).reshape(-1, 2))
    is_edge = values("is_edge", bool) & (connected[:, 0] != connected[:, 1])
    theta = values("theta").reshape(-1, n_params)
    duplicate_of = _duplicate_transition_states(connected, energy, is_edge, theta, same_point)
    named_otherwise = np.array([k_dup >= 0 and sorted(connected[k]) != sorted(connected[k_dup])
                                for k, k_dup in enumerate(duplicate_of)], dtype=bool)
    kicked = values("kicked", bool)
    kicked[duplicate_of[(duplicate_of >= 0) & kicked]] = True  # found again with a kick: the same saddle
    checked = np.array([s["checked"] for s in ts], dtype=np.int64).reshape(-1, 2)
    checked = np.where(checked == NOT_IN_GRAPH, NOT_IN_GRAPH, final(checked))
    sensitive = is_edge & (checked != UNASSIGNED).all(1) & (checked != connected).any(1)
    undecided = is_edge & (values("check_step") > 0) & (checked == UNASSIGNED).any(1)
    if undecided.any():
        log.warning("transition states %s: a check descent did not converge, so their edges are unchecked",
                    np.flatnonzero(undecided).tolist())
    for k in np.flatnonzero(sensitive):
        log.warning("transition state %d: its descents name minima %s from the displacement and %s from the check "
                    "displacement (-2: a minimum the graph lacks): which minima it joins depends on where the "
                    "descents start", k, connected[k].tolist(), checked[k].tolist())
    for k in np.flatnonzero(named_otherwise):
        log.warning("transition state %d is %d found again, its descents naming minima %s instead of %s: which "
                    "minima this saddle joins is not decided by the landscape alone (a descent stopped at a "
                    "saddle and was kicked off it)", k, duplicate_of[k], connected[k].tolist(),
                    connected[duplicate_of[k]].tolist())
    barrier = np.where(connected >= 0, energy[:, None] - minimum_energy[np.maximum(connected, 0)], np.nan)
    return {
        "ts_band": _variable("transition_state", values("band", np.int64), "band whose maximum was refined"),
        "ts_from_end_segment": _variable("transition_state", values("from_end_segment", bool),
                                         "refined from the highest point of an end segment, not an image"),
        "ts_theta": _variable(("transition_state", "param"), theta, "transition state parameters"),
        "ts_energy": _variable("transition_state", energy, "energy of the refined maximum"),
        "ts_grad_norm": _variable("transition_state", values("grad_norm"), "gradient norm at it"),
        "ts_index": _variable("transition_state", values("index", np.int64), "negative Hessian eigenvalues at it"),
        "ts_lowest_eigenvalue": _variable("transition_state", values("lowest_eigenvalue"),
                                          "lowest Hessian eigenvalue at it (the curvature along its mode)"),
        "ts_converged": _variable("transition_state", values("converged", bool), "refinement met ts_grad_tol"),
        "connected_minimum": _variable(("transition_state", "end"), connected, "minimum reached by descent from "
                                       "the transition state, the band's first end's side first (-1: none)"),
        "barrier": _variable(("transition_state", "end"), barrier, "transition state energy minus that minimum's"),
        "connected_minimum_checked": _variable(
            ("transition_state", "end"), checked, "minimum reached by descent from check_displacement (-1: none or "
            "not checked; -2: a minimum the graph lacks)"),
        "ts_check_displacement": _variable(
            "transition_state", values("check_step"), "distance of the check descents: check_displacement, or "
            "further where the saddle's leftover gradient needs it (NaN: not checked)"),
        "ts_displacement_sensitive": _variable(
            "transition_state", sensitive, "an edge whose minima differ when its descents start at "
            "check_displacement: named by where the descents start, not the landscape alone"),
        "ts_duplicate_of": _variable("transition_state", duplicate_of,
                                     "earlier transition state it repeats (-1: first found)"),
        "ts_descent_kicked": _variable(
            "transition_state", kicked, "a descent from it, or from a repeat of it, stopped at a higher saddle and "
            "was kicked off it: the kick, not the landscape alone, chose that minimum"),
        "ts_duplicate_named_otherwise": _variable(
            "transition_state", named_otherwise,
            "a repeat of an earlier transition state whose descents named other minima (kick-dependent)"),
        "is_edge": _variable("transition_state", is_edge & (duplicate_of < 0),
                             "verified index-1 saddle between two distinct minima, first found"),
    }


#: Two verified transition states are one when their energies agree to this relative tolerance
#: and they join the same minima or lie within the descents' displacement of each other up to
#: symmetry (the same saddle, whose descents a kick off a higher saddle sent to other minima). A
#: saddle refined to gradient g lies ~g / |lambda| from the true one, its energy off by
#: ~g^2 / (2 |lambda|) (lambda its negative eigenvalue): ~1e-7 relative at the flattest saddles of
#: the default study, near this tolerance, though repeats found there agree to 5e-10 (an
#: independent referee, session 21); a tolerance per pair from g and lambda is open.
SAME_SADDLE_RTOL = 1e-7


def _duplicate_transition_states(connected, ts_energy, is_edge, theta, same_point):
    """For each refined maximum, the first earlier edge at the same energy that joins the same
    two minima or is the same point up to symmetry (``same_point``), -1 where none."""
    duplicate_of = np.full(len(ts_energy), UNASSIGNED, dtype=np.int64)
    first = []
    for k in np.flatnonzero(is_edge):
        match = [j for j in first if np.isclose(ts_energy[j], ts_energy[k], rtol=SAME_SADDLE_RTOL, atol=0)
                 and (sorted(connected[j]) == sorted(connected[k]) or same_point(theta[j], theta[k]))]
        if match:
            duplicate_of[k] = match[0]
        else:
            first.append(k)
    return duplicate_of


def _log_outcomes(outcome, record, merged, is_edge, fraction, n_top):
    """The connection's outcome in the log, the pairs a budget left unconnected named."""
    log.info("%d pairs connected, %d merged, %d unconnected; %d bands; %d transition states; %d catalog "
             "entries merged; funnel fraction %.3f, %d components", (outcome == PAIR_CONNECTED).sum(),
             (outcome == PAIR_MERGED).sum(), (outcome == PAIR_UNCONNECTED).sum(), len(record["bands"]),
             is_edge.sum(), len(merged), fraction, n_top)
    unconnected = outcome == PAIR_UNCONNECTED
    if unconnected.any():
        log.warning("pairs %s stay unconnected; max_bands_per_pair spent: %s; max_image_doublings spent: %s; "
                    "a descent from a transition state undecided: %s", np.flatnonzero(unconnected).tolist(),
                    np.flatnonzero(unconnected & record["budget_spent"]).tolist(),
                    np.flatnonzero(unconnected & record["images_spent"]).tolist(),
                    np.flatnonzero(unconnected & record["descent_undecided"]).tolist())


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
