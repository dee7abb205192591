"""Distance from one network to the nearest symmetric image of another.

The symmetry group of a fully connected network permutes the hidden units of each hidden layer;
for odd activations (``tanh``, ``erf``, ``linear``) it also flips the sign of a unit (incoming
weights, bias and outgoing weights together), for ``relu`` it rescales a unit by c > 0 (incoming
weights and bias times c, outgoing weights divided by c). Every image computes the same function.
For a reference ``a`` and a point ``b``, :func:`nearest_image` finds the image of ``b`` nearest to
``a`` in Euclidean distance.

Exact (``exact=True``):

- one hidden layer, any activation: the squared distance is a sum over matched pairs of whole
  units (incoming weights, bias, outgoing weights) plus the output bias, which no symmetry moves,
  so a linear assignment over the pair costs, each minimized over the unit's sign or scale, is the
  global minimum (Kuhn 1955);
- two or more hidden layers with an odd activation, while the group of all hidden layers but the
  last has at most ``max_exhaustive`` elements: those are enumerated and the last layer is
  assigned exactly for each.

Upper bounds (``exact=False``): ``relu`` with two or more hidden layers (one layer's scales couple
to the next layer's weights) and groups too large to enumerate. These use coordinate descent over
layers, each step an exact assignment for one layer with the others fixed (the weight matching of
Ainsworth et al. 2023, with the outgoing weights in the unit cost), started from the identity and
from input-side matching; the result is never farther than ``b`` itself.

For ``linear`` only permutations and sign flips are searched, not its full GL(width) symmetry: exact
means exact over that subgroup. A ReLU unit of ``b`` with zero incoming weights and bias (or zero
outgoing weights) may approach its infimum only as c -> infinity (or 0); there a finite c is used
whose excess over the infimum is at most ``1e-13`` times that unit's squared outgoing (incoming) norm.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from basins.landscapes.architecture import Architecture

ODD_ACTIVATIONS = ("tanh", "erf", "linear")
_LIMIT_RTOL = 1e-13  # excess over the infimum allowed where it is only reached in a limit
_MAX_ENUMERATED = 120  # widths up to 5 are assigned by vectorized enumeration, wider by scipy
_CHUNK = 1 << 21  # floats per intermediate array when vectorizing over members and group elements


def image(theta: np.ndarray, arch: Architecture, permutations, factors) -> np.ndarray:
    """The image ``(..., param)`` of ``theta`` under one group element per leading index.

    Parameters
    ----------
    theta : ndarray, shape (..., param)
        Flat parameter vectors (layout of :class:`basins.landscapes.architecture.Architecture`).
    arch : Architecture
    permutations : sequence of ``arch.depth`` int arrays, shape (..., width)
        Per hidden layer: unit ``i`` of the image is unit ``permutations[l][i]`` of ``theta``.
    factors : sequence of ``arch.depth`` float arrays, shape (..., width)
        Per hidden layer: the image's unit ``i`` has incoming weights and bias times
        ``factors[l][i]`` and outgoing weights divided by it; signs (+-1) for odd activations,
        positive scales for ReLU (other values give points that are not images).

    Returns
    -------
    ndarray, shape (..., param)
    """
    theta = np.asarray(theta, dtype=np.float64)
    if len(permutations) != arch.depth or len(factors) != arch.depth:
        raise ValueError(
            f"got {len(permutations)} permutations and {len(factors)} factors; pass one of each "
            f"per hidden layer (arch.depth={arch.depth})"
        )
    result, lead = theta.copy(), theta.shape[:-1]
    for layer, (order, factor) in enumerate(zip(permutations, factors)):
        (fan_in, width), (w_in, b_in) = arch.layer_shapes[layer], arch.layer_slices[layer]
        fan_out, w_out = arch.layer_shapes[layer + 1][1], arch.layer_slices[layer + 1][0]
        order = np.broadcast_to(np.asarray(order, dtype=np.intp), lead + (width,))
        factor = np.broadcast_to(np.asarray(factor, dtype=np.float64), lead + (width,))
        incoming = result[..., w_in].reshape(lead + (width, fan_in))
        incoming = np.take_along_axis(incoming, order[..., None], -2) * factor[..., None]
        result[..., w_in] = incoming.reshape(lead + (-1,))
        if b_in is not None:
            result[..., b_in] = np.take_along_axis(result[..., b_in], order, -1) * factor
        outgoing = result[..., w_out].reshape(lead + (fan_out, width))
        outgoing = np.take_along_axis(outgoing, order[..., None, :], -1) / factor[..., None, :]
        result[..., w_out] = outgoing.reshape(lead + (-1,))
    return result


def nearest_image(
    reference: np.ndarray, theta: np.ndarray, arch: Architecture, *, max_exhaustive: int = 20_000
) -> tuple[np.ndarray, bool]:
    """The image of ``theta`` nearest to ``reference``, and whether it is exactly the nearest.

    Parameters
    ----------
    reference, theta : ndarray, shape (param,)
        Finite flat parameter vectors of ``arch``.
    arch : Architecture
    max_exhaustive : int
        Largest group of the lower hidden layers (all but the last) enumerated for odd
        activations with depth >= 2; larger groups fall back to coordinate descent. Runtime and
        memory grow in proportion to it.

    Returns
    -------
    image : ndarray, shape (param,)
        An image of ``theta`` (same function), never farther from ``reference`` than ``theta``.
    exact : bool
        True where ``image`` is the nearest image (see the module docstring); otherwise its
        distance is an upper bound on the nearest one's.
    """
    reference, theta = (np.asarray(v, dtype=np.float64) for v in (reference, theta))
    _check_points(reference, theta, arch, ndim=1)
    if not (np.isfinite(reference).all() and np.isfinite(theta).all()):
        raise ValueError("reference and theta must be finite; use nearest_images to skip rows")
    images, exact = _nearest(reference[None], theta[None], arch, max_exhaustive)
    return images[0], exact


def nearest_images(
    references: np.ndarray, thetas: np.ndarray, arch: Architecture, *, max_exhaustive: int = 20_000
) -> tuple[np.ndarray, np.ndarray]:
    """Row by row :func:`nearest_image`: images ``(member, param)`` and exact flags ``(member,)``.

    Rows where either input is not finite give NaN and ``False``. ``max_exhaustive`` is that of
    :func:`nearest_image`. Exact cases are vectorized over members.
    """
    references, thetas = (np.asarray(v, dtype=np.float64) for v in (references, thetas))
    _check_points(references, thetas, arch, ndim=2)
    finite = np.isfinite(references).all(axis=1) & np.isfinite(thetas).all(axis=1)
    images = np.full(thetas.shape, np.nan)
    exact = np.zeros(len(thetas), dtype=bool)
    if finite.any():
        images[finite], exact[finite] = _nearest(references[finite], thetas[finite], arch, max_exhaustive)
    return images, exact


def nearest_image_elements(references: np.ndarray, thetas: np.ndarray, arch: Architecture) -> tuple[list, list]:
    """The group element that carries each row of ``thetas`` to its image nearest the same row of
    ``references``: per hidden layer, permutations and factors ``(member, width)`` in the form
    :func:`image` takes, so that ``image(thetas, arch, *element)`` is :func:`nearest_images`'
    result. Applied to other points, the element moves them as it moves ``thetas`` (a member's
    start along with its endpoint). Exact; for networks of at most one hidden layer.
    """
    references, thetas = (np.asarray(v, dtype=np.float64) for v in (references, thetas))
    _check_points(references, thetas, arch, ndim=2)
    if arch.depth > 1:
        raise ValueError(
            f"group elements are found for networks of at most one hidden layer (arch.depth={arch.depth}); "
            "use nearest_images for the images themselves"
        )
    if not (np.isfinite(references).all() and np.isfinite(thetas).all()):
        raise ValueError("references and thetas must be finite")
    if arch.depth == 0:
        return [], []
    order, factor = _best_layer_element(references, thetas, arch, 0)
    return [order], [factor]


def nearest_image_distance(
    starts: np.ndarray, ends: np.ndarray, arch: Architecture, **options
) -> np.ndarray:
    """Distance ``(member,)`` from each start to the nearest symmetric image of its end.

    NaN where a start or end is not finite. Exact or an upper bound as :func:`nearest_image`
    says; ``options`` (``max_exhaustive``) are passed to :func:`nearest_images`.
    """
    images, _ = nearest_images(starts, ends, arch, **options)
    return np.linalg.norm(np.asarray(starts, dtype=np.float64) - images, axis=1)


def _check_points(references, thetas, arch, ndim):
    if references.shape != thetas.shape or references.ndim != ndim or thetas.shape[-1] != arch.n_params:
        layout = "(param,)" if ndim == 1 else "(member, param)"
        raise ValueError(
            f"got shapes {references.shape} and {thetas.shape}; pass two arrays of shape {layout} "
            f"with param = arch.n_params = {arch.n_params}"
        )


def _nearest(references, thetas, arch, max_exhaustive):
    if arch.depth == 0:
        return thetas.copy(), True
    if arch.depth == 1:
        order, factor = _best_layer_element(references, thetas, arch, 0)
        return image(thetas, arch, [order], [factor]), True
    if arch.activation in ODD_ACTIVATIONS and _lower_group_size(arch) <= max_exhaustive:
        return _exhaustive(references, thetas, arch), True
    return _descend(references, thetas, arch), False


def _lower_group_size(arch):
    return (math.factorial(arch.width) * 2**arch.width) ** (arch.depth - 1)


def _units(theta, arch, layer):
    """Incoming weights and bias ``(..., unit, fan_in [+1])`` and outgoing ``(..., unit, fan_out)``."""
    (fan_in, width), (w_in, b_in) = arch.layer_shapes[layer], arch.layer_slices[layer]
    fan_out, w_out = arch.layer_shapes[layer + 1][1], arch.layer_slices[layer + 1][0]
    lead = theta.shape[:-1]
    incoming = theta[..., w_in].reshape(lead + (width, fan_in))
    if b_in is not None:
        incoming = np.concatenate([incoming, theta[..., b_in][..., None]], axis=-1)
    return incoming, np.swapaxes(theta[..., w_out].reshape(lead + (fan_out, width)), -1, -2)


def _pair_costs(a_in, a_out, b_in, b_out, activation):
    """Squared distance ``(..., i, j)`` of reference unit i to unit j at its best factor; the factor."""
    dot_in = a_in @ np.swapaxes(b_in, -1, -2)
    dot_out = a_out @ np.swapaxes(b_out, -1, -2)
    norm_a = ((a_in**2).sum(-1) + (a_out**2).sum(-1))[..., :, None]
    if activation == "relu":
        in_b, out_b = (b_in**2).sum(-1)[..., None, :], (b_out**2).sum(-1)[..., None, :]
        scale, excess = _best_scales(in_b, dot_in, out_b, dot_out)
        return norm_a + excess, scale
    dot = dot_in + dot_out
    norm_b = ((b_in**2).sum(-1) + (b_out**2).sum(-1))[..., None, :]
    return norm_a + norm_b - 2 * np.abs(dot), np.where(dot < 0, -1.0, 1.0)


def _best_scales(A, B, C, D):
    """Scale c > 0 minimizing g(c) = A c^2 - 2 B c + C / c^2 - 2 D / c, and its infimum g."""
    shape = np.broadcast_shapes(A.shape, B.shape, C.shape, D.shape)
    A, B, C, D = (np.broadcast_to(x, shape).ravel() for x in (A, B, C, D))
    scale, value = np.ones(A.size), np.zeros(A.size)
    regular = (A > 0) & (C > 0)
    scale[regular], value[regular] = _quartic_minimum(A[regular], B[regular], C[regular], D[regular])
    # b_in = 0: g = C / c^2 - 2 D / c, least at c = C / D, or approached as c -> infinity.
    no_in = (A == 0) & (C > 0)
    rises = no_in & (D > 0)
    scale[rises], value[rises] = C[rises] / D[rises], -D[rises] ** 2 / C[rises]
    far = no_in & ~rises
    scale[far] = (2 * np.abs(D[far]) + C[far]) / (_LIMIT_RTOL * C[far])
    # b_out = 0: g = A c^2 - 2 B c, least at c = B / A, or approached as c -> 0.
    no_out = (C == 0) & (A > 0)
    rises = no_out & (B > 0)
    scale[rises], value[rises] = B[rises] / A[rises], -B[rises] ** 2 / A[rises]
    near = no_out & ~rises
    scale[near] = _LIMIT_RTOL * A[near] / (A[near] + 2 * np.abs(B[near]))
    return scale.reshape(shape), value.reshape(shape)


def _quartic_minimum(A, B, C, D):
    # g'(c) = 0 is A c^4 - B c^3 + D c - C = 0; with c = s t, s = (C / A)^(1/4), it is the monic,
    # well-scaled t^4 + p3 t^3 + p1 t - 1 = 0, whose roots are its companion matrix's eigenvalues
    # (one batched call). p(0) < 0 < p(inf), so a positive root, the minimizer, always exists;
    # g is flat there, so the eigensolver's round-off in c barely moves g.
    s = (C / A) ** 0.25
    p3, p1 = -B / (A * s), D * s / C
    companion = np.zeros((len(A), 4, 4))
    companion[:, 0, 0], companion[:, 0, 2], companion[:, 0, 3] = -p3, -p1, 1.0
    companion[:, 1, 0] = companion[:, 2, 1] = companion[:, 3, 2] = 1.0
    t = np.linalg.eigvals(companion).real
    c = np.concatenate([s[:, None] * t, np.ones((len(A), 1))], axis=1)  # c = 1 as a fallback
    c = np.where(c > 0, c, np.nan)
    g = A[:, None] * c**2 - 2 * B[:, None] * c + C[:, None] / c**2 - 2 * D[:, None] / c
    best = np.nanargmin(g, axis=1)[:, None]
    return np.take_along_axis(c, best, 1)[:, 0], np.take_along_axis(g, best, 1)[:, 0]


def _assign(cost):
    """Optimal permutations ``(..., n)`` of square cost matrices ``(..., n, n)``, and their totals."""
    lead, n = cost.shape[:-2], cost.shape[-1]
    flat = cost.reshape(-1, n, n)
    orders, totals = np.empty((len(flat), n), dtype=np.intp), np.empty(len(flat))
    if math.factorial(n) <= _MAX_ENUMERATED:
        # Enumerating all n! assignments in numpy beats one scipy call per matrix for small n.
        candidates = _permutations(n)
        step = max(1, _CHUNK // (len(candidates) * n))
        for start in range(0, len(flat), step):
            sums = flat[start : start + step][:, np.arange(n), candidates].sum(-1)
            best = sums.argmin(axis=1)
            orders[start : start + step] = candidates[best]
            totals[start : start + step] = sums[np.arange(len(best)), best]
    else:
        # Imported here: scipy.optimize costs half a second of every job's start, and small
        # networks never come here.
        from scipy.optimize import linear_sum_assignment

        for row, matrix in enumerate(flat):
            orders[row] = linear_sum_assignment(matrix)[1]
            totals[row] = matrix[np.arange(n), orders[row]].sum()
    return orders.reshape(lead + (n,)), totals.reshape(lead)


@functools.lru_cache(maxsize=None)
def _permutations(n):
    return np.array(list(itertools.permutations(range(n))), dtype=np.intp).reshape(-1, n)


@functools.lru_cache(maxsize=None)
def _signed_permutations(n):
    """Every (permutation, sign pattern) of n units: orders and signs, each ``(n! 2^n, n)``."""
    signs = np.array(list(itertools.product([1.0, -1.0], repeat=n))).reshape(-1, n)
    orders = _permutations(n)
    return np.repeat(orders, len(signs), axis=0), np.tile(signs, (len(orders), 1))


def _best_layer_element(references, current, arch, layer):
    """Exact best permutation and factors ``(..., width)`` of one layer, the others held fixed."""
    (a_in, a_out), (b_in, b_out) = _units(references, arch, layer), _units(current, arch, layer)
    cost, factor = _pair_costs(a_in, a_out, b_in, b_out, arch.activation)
    order, _ = _assign(cost)
    return order, np.take_along_axis(factor, order[..., None], -1)[..., 0]


def _exhaustive(references, thetas, arch):
    """Nearest images for odd activations by enumerating the lower layers' group."""
    orders, signs = _signed_permutations(arch.width)
    n_lower = arch.depth - 1
    combos = np.indices((len(orders),) * n_lower).reshape(n_lower, -1).T
    orders, signs = orders[combos], signs[combos]  # (element, lower layer, unit)
    step = max(1, _CHUNK // (len(combos) * arch.width * (arch.width + 1 + arch.n_outputs)))
    chunks = [slice(start, start + step) for start in range(0, len(thetas), step)]
    return np.concatenate([_exhaustive_chunk(references[c], thetas[c], arch, orders, signs) for c in chunks])


def _exhaustive_chunk(references, thetas, arch, orders, signs):
    top = arch.depth - 1
    # Signs and permutations preserve norms, so every squared distance is a constant minus twice
    # the overlap with the reference: the top layer's pair cost is -2 |overlap| at the best sign.
    overlap = _top_overlap(references, thetas, arch, orders[:, -1], signs[:, -1])
    factor = np.where(overlap < 0, -1.0, 1.0)
    lower = -2 * _lower_overlap(references, thetas, arch, orders, signs)
    top_orders, totals = _bounded_totals(lower, -2 * np.abs(overlap))  # (member, element[, unit])
    best = np.argmin(totals, axis=1)
    members = np.arange(len(thetas))
    top_order = top_orders[members, best]
    top_factor = np.take_along_axis(factor[members, best], top_order[..., None], -1)[..., 0]
    permutations = [orders[best, layer] for layer in range(top)] + [top_order]
    return image(thetas, arch, permutations, [signs[best, layer] for layer in range(top)] + [top_factor])


def _bounded_totals(lower, cost):
    """Lower cost plus the top layer's assignment ``(member, element)``; inf where provably not least."""
    # Branch and bound: row or column minima bound an assignment from below, so only elements
    # whose bound beats the best total found (here that of the least bound) need a full one.
    # (minima over slices: numpy reduces slowly over a short last axis)
    row_minima = functools.reduce(np.minimum, [cost[..., j] for j in range(cost.shape[-1])])
    column_minima = functools.reduce(np.minimum, [cost[..., i, :] for i in range(cost.shape[-1])])
    bound = lower + np.maximum(row_minima.sum(-1), column_minima.sum(-1))
    members, first = np.arange(len(cost)), bound.argmin(axis=1)
    orders = np.zeros(cost.shape[:-1], dtype=np.intp)
    totals = np.full(bound.shape, np.inf)
    orders[members, first], value = _assign(cost[members, first])
    totals[members, first] = lower[members, first] + value
    alive = bound < totals[members, first][:, None]
    alive[members, first] = False
    orders[alive], value = _assign(cost[alive])
    totals[alive] = lower[alive] + value
    return orders, totals


def _top_overlap(references, thetas, arch, order, sign):
    """Overlap ``(member, element, i, j)`` of reference unit i with top-layer unit j, inputs moved."""
    top = arch.depth - 1
    a_in, a_out = _units(references, arch, top)
    b_in, b_out = _units(thetas, arch, top)
    fixed = a_in[..., arch.width :] @ np.swapaxes(b_in[..., arch.width :], -1, -2) + a_out @ np.swapaxes(b_out, -1, -2)
    moved = np.moveaxis(b_in[..., order], -2, 1) * sign[:, None, :]  # (member, element, j, k)
    return a_in[:, None, :, : arch.width] @ np.swapaxes(moved, -1, -2) + fixed[:, None]


def _lower_overlap(references, thetas, arch, orders, signs):
    """Inner product ``(member, element)`` of the reference with each image, lower hidden layers only."""
    a_in, _ = _units(references, arch, 0)
    b_in, _ = _units(thetas, arch, 0)
    # The first layer through a table of unit overlaps: its fan_in may be large.
    dot = a_in @ np.swapaxes(b_in, -1, -2)
    total = (dot[:, np.arange(arch.width), orders[:, 0]] * signs[:, 0]).sum(-1)
    for layer in range(1, arch.depth - 1):
        a_in, _ = _units(references, arch, layer)
        b_in, _ = _units(thetas, arch, layer)
        moved = _move_columns(b_in, orders[:, layer - 1], signs[:, layer - 1])
        moved = np.take_along_axis(moved, orders[None, :, layer, :, None], 2)
        moved = moved * signs[None, :, layer, :, None]
        total = total + (a_in[:, None] * moved).sum((-1, -2))
    return total


def _move_columns(units, order, sign):
    """``(member, element, unit, width [+1])``: units with the layer below moved by each element."""
    width = order.shape[-1]
    weights = np.moveaxis(units[..., order], -2, 1) * sign[:, None, :]
    bias = np.broadcast_to(units[:, None, :, width:], weights.shape[:-1] + (units.shape[-1] - width,))
    return np.concatenate([weights, bias], axis=-1)


def _descend(references, thetas, arch, max_sweeps=50):
    """Coordinate descent over layers from two starts, vectorized over members; the nearer result."""
    starts = [_identity(arch, len(thetas)), _input_side_start(references, thetas, arch)]
    first, second = (_descend_from(references, thetas, arch, *start, max_sweeps) for start in starts)
    nearer = ((references - first) ** 2).sum(1) <= ((references - second) ** 2).sum(1)
    return np.where(nearer[:, None], first, second)


def _descend_from(references, thetas, arch, orders, factors, max_sweeps):
    current = image(thetas, arch, orders, factors)
    best, best_distance = current.copy(), ((references - current) ** 2).sum(1)
    active = np.ones(len(thetas), dtype=bool)  # members still gaining; the others are frozen
    for _ in range(max_sweeps):
        rows = np.flatnonzero(active)
        for layer in range(arch.depth):
            step = _best_layer_element(references[rows], current[rows], arch, layer)
            _compose(orders, factors, layer, *step, rows=rows)
            # Rebuilt from theta, so round-off does not accumulate over sweeps.
            current[rows] = image(thetas[rows], arch, [o[rows] for o in orders], [f[rows] for f in factors])
        distance = ((references[rows] - current[rows]) ** 2).sum(1)
        # Each step is exact for its layer, so a sweep cannot lose beyond round-off; ReLU scales
        # creep towards the optimum, so a member stops once a sweep gains almost nothing.
        active[rows] = distance < best_distance[rows] * (1 - 1e-12)
        nearer = rows[distance < best_distance[rows]]
        best[nearer], best_distance[nearer] = current[nearer], distance[distance < best_distance[rows]]
        if not active.any():
            break
    return best


def _identity(arch, n_members):
    orders = [np.tile(np.arange(arch.width), (n_members, 1)) for _ in range(arch.depth)]
    return orders, [np.ones((n_members, arch.width)) for _ in range(arch.depth)]


def _compose(orders, factors, layer, step_order, step_factor, rows=slice(None)):
    """Follow layer ``layer``'s elements of members ``rows`` by ``(step_order, step_factor)``, in place."""
    orders[layer][rows] = np.take_along_axis(orders[layer][rows], step_order, -1)
    factors[layer][rows] = np.take_along_axis(factors[layer][rows], step_order, -1) * step_factor


def _input_side_start(references, thetas, arch):
    """Layer by layer from the input, units matched on incoming weights and bias only."""
    orders, factors = _identity(arch, len(thetas))
    current = thetas
    for layer in range(arch.depth):
        a_in, _ = _units(references, arch, layer)
        b_in, _ = _units(current, arch, layer)
        dot = a_in @ np.swapaxes(b_in, -1, -2)
        norm_a, norm_b = np.linalg.norm(a_in, axis=-1)[..., :, None], np.linalg.norm(b_in, axis=-1)[..., None, :]
        if arch.activation == "relu":
            # Norms matched rather than the best incoming scale, which the outgoing weights
            # (not seen here) would bound: that can be 0 or tiny.
            factor = np.where((norm_a > 0) & (norm_b > 0), norm_a / np.where(norm_b > 0, norm_b, 1.0), 1.0)
        else:
            factor = np.where(dot < 0, -1.0, 1.0)
        step_order, _ = _assign(norm_a**2 + (factor * norm_b) ** 2 - 2 * factor * dot)
        _compose(orders, factors, layer, step_order, np.take_along_axis(factor, step_order[..., None], -1)[..., 0])
        current = image(thetas, arch, orders, factors)
    return orders, factors


def group_order(arch: Architecture) -> int:
    """Elements of the dynamics' discrete symmetry group: each hidden layer's permutations, times
    its sign flips for odd activations (ReLU's rescalings are not symmetries of an L2-regularized
    loss, nor of the Gaussian initial measure, so its group is the permutations)."""
    per_layer = math.factorial(arch.width) * (2**arch.width if arch.activation in ODD_ACTIVATIONS else 1)
    return per_layer**arch.depth


def orbit_size(theta: np.ndarray, arch: Architecture, *, atol: float = 1e-8) -> float:
    """How many times the basin of ``theta``'s images within ``atol`` fits in the basin of all its
    images: the group's order (:func:`group_order`) over the number of its elements that move
    ``theta`` by at most ``atol`` (Euclidean distance over all parameters, the rule by which a
    re-run's endpoint is told from the anchor's own image). The number of distinct images where
    ``atol`` separates them (a whole number wherever the elements within ``atol`` form a group).

    A minimum's catalogue basin (all its images) has this many times the measure of the basin
    of one image, when the initial measure is invariant under the group: the re-runs count every
    image within ``atol`` of the anchor's as the anchor's, so one "image basin" holds that many
    images' basins. One hidden layer: an element within ``atol`` sends each unit to one within
    ``atol`` of it (up to sign, odd activations), so it acts within the classes of units so
    joined; its displacements are enumerated per class (up to :data:`_MAX_CLASS` units) and
    combined under the bound. At ``atol`` near 0 this is the order over the stabilizer (units
    that coincide: m! per class of m, and 2^m for a class of zero units, odd activations).
    Deeper networks: only generic points (no two units of a layer within ``atol`` up to sign,
    incoming weights and bias), whose stabilizer is trivial; others refused.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (arch.n_params,):
        raise ValueError(f"theta has shape {theta.shape}; the architecture has {arch.n_params} parameters")
    if arch.depth == 0:
        return 1.0
    if arch.depth == 1:
        incoming, outgoing = _units(theta, arch, 0)
        return group_order(arch) / _elements_within(np.concatenate([incoming, outgoing], axis=-1), arch, atol)
    for layer in range(arch.depth):
        if _elements_within(_units(theta, arch, layer)[0], arch, atol) != 1:
            raise ValueError(f"layer {layer} has units that coincide (up to sign) within {atol}: the orbit size of "
                             "such a point is only computed for one hidden layer")
    return float(group_order(arch))


#: Most units in one class of units within ``atol`` of each other that :func:`orbit_size` enumerates (m! 2^m elements).
_MAX_CLASS = 7


def _elements_within(units, arch, atol):
    """Signed permutations (odd activations; permutations otherwise) of ``units (unit, feature)``
    that move them by at most ``atol`` in all: sum over units of |s_j u_pi(j) - u_j|^2 <= atol^2."""
    odd = arch.activation in ODD_ACTIVATIONS
    bound = atol**2 * (1 + 1e-12)  # exact coincidences at atol = 0 stay in
    displacements = np.zeros(1)  # of the elements found so far, class by class
    for members in _classes_within(units, odd, atol):
        if odd:
            orders, signs = _signed_permutations(len(members))
        else:
            orders = _permutations(len(members))
            signs = np.ones(orders.shape)
        own = units[members]
        moved = own[orders] * signs[..., None]
        cost = np.sum((moved - own) ** 2, axis=(-2, -1))
        cost = cost[cost <= bound]
        displacements = (displacements[:, None] + cost[None, :]).ravel()
        displacements = displacements[displacements <= bound]
    return len(displacements)


def _classes_within(units, odd, atol):
    """The units joined (transitively) where one lies within ``atol`` of another, or of its
    negative for odd activations; a class over :data:`_MAX_CLASS` units is refused."""
    n = len(units)
    distance = np.linalg.norm(units[:, None] - units[None], axis=-1)
    if odd:
        distance = np.minimum(distance, np.linalg.norm(units[:, None] + units[None], axis=-1))
    label = np.arange(n)
    for _ in range(n):  # propagate the smallest label along near pairs
        label = np.min(np.where(distance <= atol, label[None, :], n), axis=1)
    classes = [np.flatnonzero(label == value) for value in np.unique(label)]
    largest = max(len(members) for members in classes)
    if largest > _MAX_CLASS:
        raise ValueError(f"{largest} units lie within {atol} of each other: their images are not enumerated "
                         f"(at most {_MAX_CLASS})")
    return classes
