"""Stage ``deduplicate_minima``: which endpoints of an ensemble are the same minimum.

Endpoints are first put in a canonical form that factors out the symmetries of the network
(hidden-unit permutations; sign flips for odd activations; positive rescaling for ReLU), then
grouped in the style of energy-landscape databases (Wales 2003): two endpoints are the same
minimum when their losses differ by at most ``loss_tol`` and their canonical parameters by at
most ``dist_tol``, closed transitively (single linkage, union-find). Neighbour search uses a
k-d tree, so the cost grows as K log K in the number of endpoints for well-separated minima.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from basins.io import variable_attrs
from basins.networks import Architecture
from basins.training import CONVERGED

UNASSIGNED = -1
TOLERANCE_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)
_ODD_ACTIVATIONS = ("tanh", "erf")


def canonicalize(theta: np.ndarray, arch: Architecture) -> np.ndarray:
    """Canonical representatives ``(member, param)`` of parameter vectors under the symmetries.

    Hidden layers are fixed from the input upward. For odd activations each unit's sign is
    chosen so that its incoming weights and bias sum to a non-negative number; for ReLU each
    unit's incoming weights and bias are scaled to unit norm (the scale moves to the outgoing
    weights). Units are then sorted by a fixed random projection of their incoming weights.
    Near-ties in that sort can split one minimum; ``dist_tol`` absorbs small ones.
    Linear activations (a continuous GL(n) symmetry) get the permutation step only.
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
        if arch.activation in _ODD_ACTIVATIONS:
            sign = np.where(unit.sum(axis=2) >= 0, 1.0, -1.0)
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


def group_endpoints(points: np.ndarray, loss: np.ndarray, *, loss_tol: float, dist_tol: float) -> np.ndarray:
    """Group labels ``(member,)``: connected components of the "same minimum" relation."""
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(points).query_pairs(r=dist_tol, output_type="ndarray")
    if len(pairs):
        pairs = pairs[np.abs(loss[pairs[:, 0]] - loss[pairs[:, 1]]) <= loss_tol]
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def deduplicate_minima(
    training: xr.Dataset,
    arch: Architecture,
    *,
    loss_tol: float,
    dist_tol: float,
) -> xr.Dataset:
    """Catalogue the distinct minima reached by the members of an ensemble.

    Parameters
    ----------
    training : xarray.Dataset
        The concatenated shards of ``train_ensemble`` (dims ``member``, ``param``).
    arch : Architecture
        The network, for its symmetries.
    loss_tol : float
        Largest loss difference within one minimum. Too small splits a minimum whose members
        stopped at slightly different losses (set it above the spread that ``grad_tol``
        allows); too large merges distinct minima of similar loss that are also close.
    dist_tol : float
        Largest Euclidean distance between canonical parameter vectors within one minimum
        (chained transitively). Too small splits one minimum (members stop within about
        ``grad_tol / lambda_min`` of it); too large merges neighbouring minima. The output's
        ``n_minima_at_tolerance`` shows how the count moves with it.

    Returns
    -------
    xarray.Dataset
        ``theta(minimum, param)`` (canonical representative: the member of lowest loss),
        ``loss``, ``train_error``, ``test_error``, ``grad_norm``, ``n_members`` per minimum
        (ordered by basin size, largest first); ``minimum_of_member(member)`` (-1 for members
        that diverged or ran out of budget); ``n_minima_at_tolerance(tolerance)``.
    """
    if loss_tol < 0 or dist_tol <= 0:
        raise ValueError(f"loss_tol={loss_tol} must be >= 0 and dist_tol={dist_tol} > 0")
    converged = training["status"].values == CONVERGED
    converged &= np.isfinite(training["final_theta"].values).all(axis=1)
    canonical = canonicalize(training["final_theta"].values[converged], arch)
    loss = training["loss"].values[converged]
    groups = group_endpoints(canonical, loss, loss_tol=loss_tol, dist_tol=dist_tol)
    sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    # Rank minima by basin size, then by loss, so labels are stable and meaningful.
    lowest_loss = np.full(len(sizes), np.inf)
    np.minimum.at(lowest_loss, groups, loss)
    ranking = np.lexsort((lowest_loss, -sizes))
    rank_of_group = np.empty_like(ranking)
    rank_of_group[ranking] = np.arange(len(ranking))
    labels = np.full(training.sizes["member"], UNASSIGNED, dtype=np.int64)
    labels[converged] = rank_of_group[groups]
    by_group_then_loss = np.lexsort((loss, groups))
    group_starts = np.r_[0, np.flatnonzero(np.diff(groups[by_group_then_loss])) + 1]
    lowest_member = by_group_then_loss[group_starts.astype(np.int64)] if len(groups) else groups
    representatives = np.flatnonzero(converged)[lowest_member[ranking]]
    swept = [
        len(np.unique(group_endpoints(canonical, loss, loss_tol=loss_tol, dist_tol=dist_tol * f)))
        for f in TOLERANCE_FACTORS
    ]
    return _as_dataset(training, canonical, converged, labels, representatives, sizes[ranking], swept, dist_tol)


def _as_dataset(training, canonical, converged, labels, representatives, sizes, swept, dist_tol):
    n_minima = len(representatives)
    canonical_of_member = np.full(training["final_theta"].shape, np.nan)
    canonical_of_member[converged] = canonical
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
                variable_attrs("minimum reached (-1: diverged or not converged)"),
            ),
            "n_minima_at_tolerance": (
                "tolerance",
                np.asarray(swept, dtype=np.int64),
                variable_attrs("number of minima found with dist_tol scaled by the factor"),
            ),
        },
        coords={
            "minimum": ("minimum", np.arange(n_minima), variable_attrs("minimum index, by basin size")),
            "member": training["member"],
            "param": training["param"],
            "tolerance": (
                "tolerance",
                np.asarray(TOLERANCE_FACTORS) * dist_tol,
                variable_attrs("dist_tol used in the sweep"),
            ),
        },
        attrs={
            "n_members_total": training.sizes["member"],
            "criterion": "same minimum: |loss difference| <= loss_tol and canonical distance <= "
            "dist_tol, closed transitively (single linkage)",
            "symmetries_factored_out": "hidden-unit permutations; sign flips (tanh, erf); "
            "positive rescaling (relu)",
            "distance": "Euclidean distance between canonical parameter vectors",
        },
    )
