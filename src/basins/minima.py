"""Stage ``deduplicate_minima``: which endpoints of an ensemble are the same minimum.

Two endpoints are the same minimum, in the style of energy-landscape databases (Wales 2003),
when their losses differ by at most ``loss_tol``, the functions they compute differ by at most
``function_tol`` (RMS over a fingerprint set of inputs), and, for isolated minima, their
parameters differ by at most ``dist_tol`` once the network's symmetries (hidden-unit
permutations; sign flips for odd activations; positive rescaling for ReLU) are factored out.
The relation is closed transitively (single linkage).

Scale: the fingerprint is invariant under the symmetries, so candidate pairs are those within
``function_tol`` in a fixed orthonormal projection of it (a contraction, so no pair within
tolerance is lost to the projection), found with a k-d tree. Only pairs whose endpoints are
still in different components are compared exactly, a few per component per round (Boruvka's
scheme), so a minimum reached by ``m`` members costs O(m log m) exact checks, not O(m^2); and a
member whose candidates all lie in its own component (counted, not listed) is not enumerated,
so a dense minimum's O(m^2) pairs are listed only for its first few rows.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from basins.io import variable_attrs
from basins.labels import AT_SADDLE, CONVERGED, LABEL_MEANINGS, UNASSIGNED, UNDECIDED_LABEL, label_of_status
from basins.landscapes.architecture import Architecture
from basins.landscapes.outputs import network_outputs, output_margins
from basins.landscapes.symmetry import ODD_ACTIVATIONS, nearest_image_distance

TOLERANCE_FACTORS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # ascending, with 1.0: the chosen tolerances
CRITERIA = ("function", "function_and_parameters")
_SEARCH_DIMS = 16


def canonicalize(theta: np.ndarray, arch: Architecture) -> np.ndarray:
    """Canonical representatives ``(member, param)`` of parameter vectors under the symmetries.

    Hidden layers are fixed from the input upward. For odd activations each unit's sign is
    chosen so that its largest incoming weight (bias included) is positive; for ReLU each
    unit's incoming weights and bias are scaled to unit norm (the scale moves to the outgoing
    weights). Units are then sorted by a fixed random projection of their incoming weights.
    Near-ties in that sort can split one minimum; ``dist_tol`` absorbs small ones.
    Linear activations (a continuous GL(n) symmetry) get the sign and permutation steps only.
    """
    theta = np.array(theta, dtype=np.float64, copy=True)
    layers = list(zip(arch.layer_shapes, arch.layer_slices))
    rng = np.random.default_rng(20240229)
    n_members = theta.shape[0]
    for (shape, (w_in, b_in)), (next_shape, (w_out, _)) in zip(layers[:-1], layers[1:]):
        fan_in, width = shape
        incoming = theta[:, w_in].reshape(n_members, width, fan_in)
        bias = theta[:, b_in][..., None] if b_in is not None else np.zeros((n_members, width, 1))
        outgoing = theta[:, w_out].reshape(n_members, next_shape[1], width)
        unit = np.concatenate([incoming, bias], axis=2)
        if arch.activation in ODD_ACTIVATIONS:
            # The sign of a unit's largest incoming weight: stable unless two weights tie in
            # magnitude (a rule based on sums flips for units whose sum is near zero).
            largest = np.take_along_axis(unit, np.abs(unit).argmax(axis=2)[..., None], axis=2)[..., 0]
            sign = np.where(largest >= 0, 1.0, -1.0)
            unit, outgoing = unit * sign[..., None], outgoing * sign[:, None, :]
        elif arch.activation == "relu":
            norm = np.linalg.norm(unit, axis=2)
            norm = np.where(norm > 0, norm, 1.0)
            unit, outgoing = unit / norm[..., None], outgoing * norm[:, None, :]
        order = np.argsort(unit @ rng.standard_normal(fan_in + 1), axis=1)
        unit = np.take_along_axis(unit, order[..., None], axis=1)
        outgoing = np.take_along_axis(outgoing, order[:, None, :], axis=2)
        theta[:, w_in] = unit[..., :fan_in].reshape(n_members, width * fan_in)
        if b_in is not None:
            theta[:, b_in] = unit[..., fan_in]
        theta[:, w_out] = outgoing.reshape(n_members, next_shape[1] * width)
    return theta


def _hidden_units(theta, arch, layer):
    """Incoming weights with bias ``(member, unit, fan_in + 1)`` and outgoing ``(member, out, unit)``."""
    ((fan_in, width), (w_in, b_in)), ((_, fan_out), (w_out, _)) = list(
        zip(arch.layer_shapes, arch.layer_slices)
    )[layer : layer + 2]
    n = theta.shape[0]
    bias = theta[:, b_in][..., None] if b_in is not None else np.zeros((n, width, 1))
    return np.concatenate([theta[:, w_in].reshape(n, width, fan_in), bias], axis=2), theta[
        :, w_out
    ].reshape(n, fan_out, width)


def function_fingerprints(theta: np.ndarray, arch: Architecture, probe_inputs: np.ndarray) -> np.ndarray:
    """Outputs on the probe inputs ``(member, probe x output)``, scaled so distances are RMS."""
    outputs = network_outputs(theta, probe_inputs, arch)
    return outputs.reshape(len(outputs), len(probe_inputs) * arch.n_outputs) / np.sqrt(len(probe_inputs))


def probe_inputs_for(x_train: np.ndarray, n_probe: int, seed: int = 0) -> np.ndarray:
    """The training inputs plus ``n_probe`` Gaussian inputs with the training mean and spread."""
    rng = np.random.default_rng(seed)
    probes = x_train.mean(0) + x_train.std(0) * rng.standard_normal((n_probe, x_train.shape[1]))
    return np.concatenate([x_train, probes])


#: Margins this close to 0 (relative to the largest margin's scale) may be classified either
#: way by the training stage's own evaluation (its dtype, its order of summation).
BOUNDARY_ROUND_OFF = 1e-6
#: Bytes of hidden activations one chunk of minima may take while their test points are classified.
MISCLASSIFIED_CHUNK_BYTES = 2**27


def misclassified_test_points(theta: np.ndarray, arch: Architecture, x_test: np.ndarray, y_test: np.ndarray, *,
                              test_error: np.ndarray) -> np.ndarray:
    """Which test points each minimum ``theta (minimum, param)`` misclassifies: ``(minimum,
    test_sample)``, int8, 1 where the margin (:func:`basins.landscapes.outputs.output_margins`)
    is <= 0, as the training stage counts its ``test_error``.

    Raises ValueError where a minimum's count differs from its recorded ``test_error`` by more
    than its points within round-off of the boundary (:data:`BOUNDARY_ROUND_OFF`): the points
    must be the ones its test error was measured on."""
    y_test = np.asarray(y_test)
    widest = max(fan_out for _, fan_out in arch.layer_shapes)
    rows_at_once = max(1, MISCLASSIFIED_CHUNK_BYTES // (8 * max(1, len(y_test)) * widest))
    margin = np.zeros((len(theta), len(y_test)))
    for start in range(0, len(theta), rows_at_once):
        chunk = slice(start, start + rows_at_once)
        margin[chunk] = output_margins(network_outputs(theta[chunk], x_test, arch), y_test)
    wrong = (margin <= 0).astype(np.int8)
    scale = np.maximum(1.0, np.abs(margin).max(1, initial=0))  # each minimum's largest margin
    near_boundary = (np.abs(margin) <= BOUNDARY_ROUND_OFF * scale[:, None]).sum(1)
    off = np.abs(wrong.sum(1) - np.round(np.asarray(test_error) * len(y_test))) > near_boundary
    if np.any(off):
        first = int(np.flatnonzero(off)[0])
        raise ValueError(f"{int(off.sum())} minima misclassify another number of test points than their test error "
                         f"says (minimum {first}: {int(wrong[first].sum())} of {len(y_test)} points, test error "
                         f"{test_error[first]:.6g}): the test set is not the one the members were trained against")
    return wrong


def group_endpoints(
    fingerprints: np.ndarray,
    loss: np.ndarray,
    *,
    loss_tol: float,
    function_tol: float,
    same_parameters=None,
    joined: np.ndarray | None = None,
    max_pairs: int = 4_000_000,
) -> np.ndarray:
    """Labels ``(member,)`` of the connected components of the "same minimum" relation.

    Exact single linkage: two endpoints share a label if and only if a chain of confirmed pairs
    joins them. ``same_parameters(i, j) -> bool array`` is the optional exact parameter check of
    candidate pairs ``i, j`` (index arrays) that already passed the loss and function criteria.
    ``joined`` is a partition already known to be joined (labels ``(member,)``; a finer
    tolerance's result): pairs inside one of its groups are not checked again.

    Every pair within ``function_tol`` in a fixed projection of the fingerprints (a contraction,
    so no pair that can pass is missed) is a candidate, enumerated by ball queries in rows of at
    most ``max_pairs`` candidates (the memory bound). A candidate is checked only while its two
    endpoints are in different components, a few per component per round (:func:`_link_confirmed`),
    so a minimum reached by many members costs few exact checks.
    """
    n = len(loss)
    labels = np.arange(n) if joined is None else _components(n, np.arange(n), _first_of_group(joined))
    if n == 0:
        return labels.astype(np.int64)

    def same(i, j):
        return _same_minimum(i, j, loss, fingerprints, loss_tol, function_tol, same_parameters)

    search = _project(fingerprints)
    tree = cKDTree(search)
    n_candidates = tree.query_ball_point(search, function_tol, return_length=True)
    component_trees = {}
    for rows in _rows_of_at_most(n_candidates, max_pairs):
        rows = rows[_reach_other_components(rows, labels, search, n_candidates, function_tol, component_trees)]
        if not len(rows):
            continue
        neighbours = tree.query_ball_point(search[rows], function_tol)
        i = np.repeat(rows, [len(found) for found in neighbours])
        j = np.concatenate([np.asarray(found, dtype=np.int64) for found in neighbours])
        later = j > i  # each unordered pair once
        labels = _link_confirmed(labels, i[later], j[later], same)
    return labels


def _reach_other_components(rows, labels, search, n_candidates, radius, trees):
    """Which ``rows`` have a candidate outside their own component.

    The others need no enumeration: all their candidate pairs are joined already (in a minimum
    reached by many members, that is almost every member once its first rows are linked).
    Decided by counting, which enumerates nothing: candidates among all points against
    candidates among the component's own points (a k-d tree per component, kept in ``trees``
    while the component keeps its size).
    """
    sizes = np.bincount(labels)
    first = _first_of_group(labels)
    for stale in [key for key in trees if first[key[0]] != key[0] or sizes[labels[key[0]]] != key[1]]:
        del trees[stale]  # a component that has grown since
    own = np.ones(len(rows), dtype=np.int64)  # a point of its own
    for label in np.unique(labels[rows]):
        if sizes[label] == 1:
            continue
        here = labels[rows] == label
        key = (int(first[rows[here][0]]), int(sizes[label]))
        if key not in trees:
            trees[key] = cKDTree(search[labels == label])
        own[here] = trees[key].query_ball_point(search[rows[here]], radius, return_length=True)
    return n_candidates[rows] > own


def _rows_of_at_most(counts, max_pairs):
    """Consecutive row ranges whose counts add up to at most ``max_pairs`` (one row at least)."""
    start, total = 0, 0
    for row, count in enumerate(counts):
        if total and total + count > max_pairs:
            yield np.arange(start, row)
            start, total = row, 0
        total += count
    if start < len(counts):
        yield np.arange(start, len(counts))


def _link_confirmed(labels, i, j, same):
    """``labels`` joined along every candidate pair ``i, j`` that ``same`` confirms.

    Candidates inside one component need no check. Each round checks, for every component, up
    to ``quota`` of its candidates that still lead out of it (the quota doubles every round), as
    Boruvka's algorithm does: confirmed ones merge components, so a dense minimum of ``m``
    endpoints costs O(m log m) checks rather than one per pair; refused ones are dropped, and
    the doubling bounds the rounds spent between neighbouring minima that stay apart.
    """
    n, quota = len(labels), 1
    while len(i):
        a, b = labels[i], labels[j]
        apart = a != b
        i, j, a = i[apart], j[apart], a[apart]
        if not len(i):
            break
        by_component = np.argsort(a, kind="stable")
        first_of_component = np.searchsorted(a[by_component], a[by_component], side="left")
        rank = np.empty(len(a), dtype=np.int64)
        rank[by_component] = np.arange(len(a)) - first_of_component
        trial = np.flatnonzero(rank < quota)
        confirmed = same(i[trial], j[trial])
        if confirmed.any():
            everyone = np.arange(n)
            labels = _components(
                n, np.r_[everyone, i[trial][confirmed]], np.r_[_first_of_group(labels), j[trial][confirmed]]
            )
        untried = np.ones(len(i), dtype=bool)
        untried[trial] = False
        i, j, quota = i[untried], j[untried], 2 * quota
    return labels


def _same_minimum(i, j, loss, fingerprints, loss_tol, function_tol, same_parameters=None):
    """The dedup criterion for pairs ``i, j``: loss window, function distance, then (optional)
    the exact parameter check on the pairs that passed both."""
    same = np.abs(loss[i] - loss[j]) <= loss_tol
    # Chunks of pairs bound the memory of the fingerprint differences (~128 MB).
    chunk = max(1, 2**24 // max(1, fingerprints.shape[1]))
    in_window = np.flatnonzero(same)
    for start in range(0, len(in_window), chunk):
        rows = in_window[start : start + chunk]
        same[rows] = np.linalg.norm(fingerprints[i[rows]] - fingerprints[j[rows]], axis=1) <= function_tol
    if same_parameters is not None and same.any():
        same[same] = same_parameters(i[same], j[same])
    return same


def _project(vectors):
    """A fixed orthonormal projection to at most _SEARCH_DIMS dims (distances can only shrink)."""
    if vectors.shape[1] <= _SEARCH_DIMS:
        return vectors
    rng = np.random.default_rng(7)
    basis = np.linalg.qr(rng.standard_normal((vectors.shape[1], _SEARCH_DIMS)))[0]
    return vectors @ basis


def _first_of_group(labels):
    """For each point, the first point with its label."""
    _, first, group = np.unique(labels, return_index=True, return_inverse=True)
    return first[group]


def _components(n, i, j):
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _unit_separation(canonical, arch, chunk=4096):
    """Per endpoint and hidden layer, the least distance between two of its units (or, for
    odd activations, between a unit and the sign image of any unit, itself included)."""
    separation = np.empty((len(canonical), arch.depth))
    for layer in range(arch.depth):
        for start in range(0, len(canonical), chunk):
            units = _hidden_units(canonical[start : start + chunk], arch, layer)[0]
            gaps = np.linalg.norm(units[:, :, None, :] - units[:, None, :, :], axis=-1)
            width = units.shape[1]
            gaps[:, np.arange(width), np.arange(width)] = np.inf
            if arch.activation in ODD_ACTIVATIONS:
                gaps = np.minimum(gaps, np.linalg.norm(units[:, :, None, :] + units[:, None, :, :], axis=-1))
            separation[start : start + chunk, layer] = gaps.min(axis=(1, 2))
    return separation


def _identity_is_optimal(canonical, separation, i, j, arch):
    """Per pair, a sufficient condition for no image of ``j`` to be closer to ``i`` than ``j``.

    If every whole unit of ``j`` (incoming weights, bias and outgoing weights) is within half
    the unit separation of ``i`` (measured on incoming weights, a smaller number) from its
    counterpart, the triangle inequality makes each counterpart the strictly closest match,
    for any sign flips too. Rescalings (ReLU) are continuous: never assumed optimal.
    """
    if arch.activation == "relu":
        return np.zeros(len(i), dtype=bool)
    optimal = np.ones(len(i), dtype=bool)
    for layer in range(arch.depth):
        (in_i, out_i), (in_j, out_j) = _hidden_units(canonical[i], arch, layer), _hidden_units(canonical[j], arch, layer)
        deviation = np.sqrt(((in_i - in_j) ** 2).sum(-1) + ((out_i - out_j) ** 2).sum(1)).max(axis=1)
        optimal &= 2 * deviation < separation[i, layer]
    return optimal


def _parameter_check(canonical, separation, arch, dist_tol):
    def same_parameters(i, j):
        close = np.linalg.norm(canonical[i] - canonical[j], axis=1) <= dist_tol
        # A near-tie in the canonical sort can order two copies of a minimum differently:
        # those pairs get the distance to the nearest image (basins.landscapes.symmetry).
        doubtful = np.flatnonzero(~close)
        doubtful = doubtful[~_identity_is_optimal(canonical, separation, i[doubtful], j[doubtful], arch)]
        if len(doubtful):
            distance = nearest_image_distance(canonical[i[doubtful]], canonical[j[doubtful]], arch)
            close[doubtful] = distance <= dist_tol
        return close

    return same_parameters


def deduplicate_minima(
    training: xr.Dataset,
    arch: Architecture,
    probe_inputs: np.ndarray,
    *,
    loss_tol: float,
    function_tol: float,
    dist_tol: float,
    criterion: str = "function_and_parameters",
    test_set: tuple[np.ndarray, np.ndarray] | None = None,
) -> xr.Dataset:
    """Catalogue the distinct minima reached by the members of an ensemble.

    Parameters
    ----------
    training : xarray.Dataset
        The concatenated shards of ``train_ensemble`` (dims ``member``, ``param``), in any
        order.
    arch : Architecture
        The network, for its symmetries and fingerprints.
    probe_inputs : ndarray, shape (probe, feature)
        Inputs of the function fingerprint (see :func:`probe_inputs_for`).
    loss_tol : float
        Largest loss difference within one minimum. Too small splits a minimum whose members
        stopped at slightly different losses (keep it above the spread ``grad_tol`` allows);
        too large lets the other criteria alone decide.
    function_tol : float
        Largest RMS difference of the outputs on the probe inputs. Too small splits one
        minimum (members stop a distance ~ grad_tol / curvature from it); too large merges
        minima that compute nearly the same function.
    dist_tol : float
        Largest Euclidean distance between canonical parameter vectors (after optimal unit
        matching) within one minimum; same trade-off in parameter space. Unused with
        ``criterion="function"``.
    criterion : {"function", "function_and_parameters"}
        ``function`` groups endpoints into solution classes by what they compute, the right
        notion for non-isolated minima (no L2: the zero-loss set is a manifold);
        ``function_and_parameters`` also requires the parameters to agree (isolated minima).
    test_set : (x_test, y_test), optional
        The test inputs and labels behind the members' ``test_error``: with them, each minimum's
        errors point by point (:func:`misclassified_test_points`), so that a later stage can resample
        the test set and the minima's test errors together (they err on many of the same points).
    Returns
    -------
    xarray.Dataset
        ``theta(minimum, param)`` (canonical representative: the member of lowest loss, the
        first of those within round-off of it),
        ``loss``, ``train_error``, ``test_error``, ``grad_norm``, ``n_members`` per minimum
        (ordered by basin size, largest first, then by loss); ``minimum_of_member(member)``
        (-1 diverged, -2 stopped at a saddle, -3 budget spent: :mod:`basins.labels`) and the
        fraction of members of each kind (they add up to 1); ``n_minima_at_tolerance``, the
        count with every tolerance (``loss_tol``, ``function_tol``, ``dist_tol``) scaled by each
        factor of the ``tolerance`` coordinate, and
        whether the chosen tolerances lie on a plateau of it (:func:`tolerance_plateau`);
        with ``test_set``, ``test_misclassified (minimum, test_sample)``.
    """
    _check_tolerances(criterion, loss_tol=loss_tol, function_tol=function_tol, dist_tol=dist_tol)
    # Members in a fixed order (by member index), so shard order cannot change the result.
    training = training.sortby("member")
    converged = training["status"].values == CONVERGED
    converged &= np.isfinite(training["final_theta"].values).all(axis=1)
    canonical = canonicalize(training["final_theta"].values[converged], arch)
    fingerprints = function_fingerprints(canonical, arch, probe_inputs)
    loss = training["loss"].values[converged]
    group = _grouping(canonical, fingerprints, loss, arch, criterion=criterion, loss_tol=loss_tol,
                      function_tol=function_tol, dist_tol=dist_tol)
    groups, swept = _sweep_tolerances(group, len(loss))
    sizes, ranking, rank_of_group = _rank_by_size(groups, loss)
    labels = label_of_status(training["status"].values)
    labels[converged] = rank_of_group[groups]
    representatives = np.flatnonzero(converged)[_lowest_loss_members(groups, loss)[ranking]]
    canonical_of_member = np.full(training["final_theta"].shape, np.nan)
    canonical_of_member[converged] = canonical
    result = _as_dataset(training, canonical_of_member, labels, representatives, sizes[ranking], swept)
    result = result.assign(**_plateau_variables(np.asarray(swept)), **_label_fractions(labels))
    if test_set is not None and len(test_set[1]):
        final_theta = training["final_theta"].values[representatives]
        result["test_misclassified"] = (("minimum", "test_sample"), misclassified_test_points(
            final_theta, arch, *test_set, test_error=result["test_error"].values), variable_attrs(
            "1 where the minimum misclassifies the test point (its test error is the mean)", flag_values="0 1",
            flag_meanings="correct misclassified"))
        result = result.assign_coords(test_sample=("test_sample", np.arange(len(test_set[1])), variable_attrs(
            "test point, in the order of the data set's test split")))
    return result.assign_attrs(
        criterion=criterion,
        minima_are="solution classes: endpoints grouped by the function they compute"
        if criterion == "function"
        else "isolated minima: endpoints grouped by function and symmetry-reduced parameters",
        n_probe_inputs=len(probe_inputs),
    )


def _check_tolerances(criterion, **tolerances):
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r}; choose one of {CRITERIA}")
    for name, value in tolerances.items():
        if not value > 0:
            raise ValueError(f"{name}={value} must be positive")


def _grouping(canonical, fingerprints, loss, arch, *, criterion, loss_tol, function_tol, dist_tol):
    """``group(factor, joined)``: :func:`group_endpoints` with ``loss_tol``, ``function_tol`` and
    ``dist_tol`` scaled by ``factor``, starting from the partition ``joined``."""
    separation = _unit_separation(canonical, arch) if criterion == "function_and_parameters" else None

    def group(factor, joined):
        same_parameters = None
        if criterion == "function_and_parameters":
            same_parameters = _parameter_check(canonical, separation, arch, dist_tol * factor)
        return group_endpoints(
            fingerprints, loss, loss_tol=loss_tol * factor, function_tol=function_tol * factor,
            same_parameters=same_parameters, joined=joined,
        )

    return group


def _sweep_tolerances(group, n_points):
    """The grouping at factor 1 of :data:`TOLERANCE_FACTORS`, and the count of groups at each
    factor; ``group(factor, joined)`` groups the points starting from the partition ``joined``."""
    # Factors ascend, and each grouping starts from the one before it: a pair confirmed at a
    # smaller tolerance passes at a larger one, so this is still exact single linkage at every
    # factor, counts only fall along the sweep, and no pair is checked twice.
    swept, partition = [], np.arange(n_points)
    for factor in TOLERANCE_FACTORS:
        partition = group(factor, partition)
        swept.append(len(np.unique(partition)))
        if factor == 1.0:
            groups = partition
    return groups, swept


def _rank_by_size(groups, loss):
    """Sizes of the groups, the groups in rank order (largest first, then lowest loss) and the
    rank of each group."""
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    lowest_loss = np.full(len(sizes), np.inf)
    np.minimum.at(lowest_loss, groups, loss)
    ranking = np.lexsort((lowest_loss, -sizes))
    rank_of_group = np.empty_like(ranking)
    rank_of_group[ranking] = np.arange(len(ranking))
    return sizes, ranking, rank_of_group


def _lowest_loss_members(groups, loss):
    """The point of lowest loss in each group, by group: the first (lowest index) of the points
    within round-off of the group's lowest loss, so that runs agreeing to round-off pick the
    same one (polished members of one minimum differ in loss by a few ulps)."""
    if not len(groups):
        return groups
    lowest = np.full(groups.max() + 1, np.inf)
    np.minimum.at(lowest, groups, loss)
    tied = loss <= lowest[groups] + 64 * np.finfo(float).eps * (1 + np.abs(lowest[groups]))
    by_group_then_index = np.lexsort((np.arange(len(groups)), ~tied, groups))
    group_starts = np.r_[0, np.flatnonzero(np.diff(groups[by_group_then_index])) + 1].astype(np.int64)
    return by_group_then_index[group_starts]


def matching_options(minima_options: dict, x_train: np.ndarray) -> tuple[dict, np.ndarray]:
    """A ``minima`` config section as :func:`assign_to_catalog`'s criterion keywords, and the
    fingerprint's probe inputs (``n_probe`` of them beside ``x_train``)."""
    matching = dict(minima_options)
    probes = probe_inputs_for(x_train, matching.pop("n_probe"))
    return matching, probes


def assign_to_catalog(
    endpoints: np.ndarray,
    endpoint_loss: np.ndarray,
    catalog_theta: np.ndarray,
    catalog_loss: np.ndarray,
    arch: Architecture,
    probe_inputs: np.ndarray,
    *,
    catalog_labels: np.ndarray | None = None,
    loss_tol: float,
    function_tol: float,
    dist_tol: float,
    criterion: str = "function_and_parameters",
    n_candidates: int = 16,
) -> np.ndarray:
    """Label ``(point,)`` of the catalogued minimum each endpoint is, -1 where none matches.

    The identity rule of :func:`deduplicate_minima`, applied to new endpoints: an endpoint is a
    catalogued minimum when it is the same minimum (loss, function and, for isolated minima,
    symmetry-reduced parameters within the tolerances) as one of the catalogue's points, as
    single linkage would have joined it. Give the catalogue's *member endpoints* with their
    ``catalog_labels`` (``minimum_of_member``) and re-running a catalogued start reproduces its
    label; without labels the points are the minima themselves (label = row). Candidates are
    the ``n_candidates`` catalogue points nearest in function space, tried nearest first.
    Points of any symmetry frame; non-finite endpoints get -1.
    """
    labels = np.full(len(endpoints), UNASSIGNED, dtype=np.int64)
    catalog_labels = np.arange(len(catalog_theta)) if catalog_labels is None else np.asarray(catalog_labels)
    usable = (catalog_labels >= 0) & np.isfinite(catalog_theta).all(axis=1)
    catalog_theta, catalog_loss, catalog_labels = catalog_theta[usable], catalog_loss[usable], catalog_labels[usable]
    finite = np.flatnonzero(np.isfinite(endpoints).all(axis=1))
    if len(catalog_theta) == 0 or len(finite) == 0:
        return labels
    n_catalog = len(catalog_theta)
    points = canonicalize(np.concatenate([catalog_theta, endpoints[finite]]), arch)
    fingerprints = function_fingerprints(points, arch, probe_inputs)
    loss = np.r_[catalog_loss, endpoint_loss[finite]]
    same_parameters = None
    if criterion == "function_and_parameters":
        same_parameters = _parameter_check(points, _unit_separation(points, arch), arch, dist_tol)
    search = _project(fingerprints)  # a contraction: no candidate within function_tol is lost
    k = min(n_candidates, n_catalog)
    _, candidates = cKDTree(search[:n_catalog]).query(search[n_catalog:], k=k)
    candidates = np.asarray(candidates).reshape(len(finite), k)
    pending = np.arange(len(finite))
    for column in range(k):
        if not len(pending):
            break
        i, j = candidates[pending, column], n_catalog + pending
        match = _same_minimum(i, j, loss, fingerprints, loss_tol, function_tol, same_parameters)
        labels[finite[pending[match]]] = catalog_labels[i[match]]
        pending = pending[~match]
    return labels


def tolerance_plateau(counts: np.ndarray, *, min_span: float = 4.0) -> tuple[bool, float, float]:
    """Is the minima count on a plateau at the chosen tolerances, and where is the widest one?

    ``counts`` are the counts at :data:`TOLERANCE_FACTORS`. On a plateau means the count at
    factor 1 is unchanged over a range of factors that contains 1 and spans at least
    ``min_span`` (e.g. 0.5 to 2, or 1 to 5): the count is then a measurement, not a choice of
    tolerance. The widest plateau is the longest run of equal counts; its first and last
    factors are returned.
    """
    factors = np.asarray(TOLERANCE_FACTORS)
    runs = np.split(np.arange(len(counts)), np.flatnonzero(np.diff(counts)) + 1)
    chosen = next(run for run in runs if factors[run[0]] <= 1.0 <= factors[run[-1]])
    on_plateau = bool(factors[chosen[-1]] / factors[chosen[0]] >= min_span)
    widest = max(runs, key=lambda run: factors[run[-1]] / factors[run[0]])
    return on_plateau, float(factors[widest[0]]), float(factors[widest[-1]])


def _plateau_variables(counts):
    on_plateau, low, high = tolerance_plateau(counts)
    return {
        "on_tolerance_plateau": ((), np.int8(on_plateau), variable_attrs(
            "minima count unchanged over tolerance factors spanning >= 4 around 1", flag_values="0 1",
            flag_meanings="no_plateau plateau")),
        "widest_plateau_low": ((), low, variable_attrs("smallest tolerance factor of the widest plateau")),
        "widest_plateau_high": ((), high, variable_attrs("largest tolerance factor of the widest plateau")),
    }


def _label_fractions(labels):
    """Fractions of members per outcome; with the minima's they add up to 1."""
    n = max(len(labels), 1)
    names = {
        "assigned_fraction": (labels >= 0, "members at a catalogued minimum"),
        "saddle_fraction": (labels == AT_SADDLE, "members stopped at a saddle (never a basin)"),
        "undecided_fraction": (labels == UNDECIDED_LABEL, "members whose budget ran out"),
        "diverged_fraction": (labels == UNASSIGNED, "members that diverged"),
    }
    fractions = {name: ((), float(mask.sum() / n), variable_attrs(long_name)) for name, (mask, long_name) in names.items()}
    if not np.isclose(sum(value for _, value, _ in fractions.values()), 1.0) and len(labels):
        raise ValueError("member outcome fractions do not add up to 1: a label outside the documented values")
    return fractions


def _as_dataset(training, canonical_of_member, labels, representatives, sizes, swept):
    n_minima = len(representatives)
    per_minimum = lambda name: ("minimum", training[name].values[representatives], training[name].attrs)  # noqa: E731
    return xr.Dataset(
        {
            "theta": (
                ("minimum", "param"),
                canonical_of_member[representatives],
                variable_attrs("canonical parameters of the minimum's lowest-loss member"),
            ),
            "loss": per_minimum("loss"),
            "train_error": per_minimum("train_error"),
            "test_error": per_minimum("test_error"),
            "grad_norm": per_minimum("grad_norm"),
            "representative": (
                "minimum",
                training["member"].values[representatives],
                variable_attrs("member index of the representative"),
            ),
            "n_members": ("minimum", sizes.astype(np.int64), variable_attrs("members that reached it")),
            "minimum_of_member": (
                "member",
                labels,
                variable_attrs("minimum reached, or why none", flag_meanings=LABEL_MEANINGS),
            ),
            "n_minima_at_tolerance": (
                "tolerance",
                np.asarray(swept, dtype=np.int64),
                variable_attrs("number of minima with every tolerance scaled by the factor"),
            ),
        },
        coords={
            "minimum": ("minimum", np.arange(n_minima), variable_attrs("minimum index, by basin size")),
            "member": training["member"],
            "param": training["param"],
            "tolerance": (
                "tolerance",
                np.asarray(TOLERANCE_FACTORS),
                variable_attrs("factor multiplying loss_tol, function_tol and dist_tol in the sweep"),
            ),
        },
        attrs={
            "n_members_total": training.sizes["member"],
            "symmetries_factored_out": "hidden-unit permutations; sign flips (tanh, erf); "
            "positive rescaling (relu)",
            "distance": "Euclidean distance between canonical parameter vectors after optimal "
            "unit matching; function distance: RMS output difference on the probe inputs",
        },
    )
