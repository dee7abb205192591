"""Minima of a ReLU network's loss that sit on kinks.

A hidden unit's pre-activation ``z`` on a training point (layer ``l``, unit ``u``, point ``s``)
is a smooth function of the parameters wherever the units below it are off their own kinks on
that point, and the loss is not differentiable where it vanishes: its gradient jumps across that
surface (a *kink*). First-layer kinks are hyperplanes (``z = w . x_s + c``); deeper ones are
curved. Descent methods stop on kinks (BFGS's line search lands on them and cannot cross), and
a minimum there need not have a vanishing gradient, so the gradient test cannot decide such a
run. Near a point where the kinks ``K`` are active (within ``reach`` of it, every other kink at
least ``gap`` times further),

    L(theta_0 + v) = L(theta_0) + grad L_0 . v + sum_k c_k relu(a_k . v) + o(|v|),

with ``L_0`` smooth (each active unit's output taken as 0 on its point), ``a_k = grad z_k`` and
``c_k = dL/dh`` the loss's derivative in that unit's output on that point. Where a point has
active kinks in several layers this holds in the coordinates ``q' = q + (dz/dh) relu(q_below)``
of each layer (on each orthant of the lower ``q`` a linear change of variables, one to one),
with a lower kink's ``c_k`` its derivative through the active units above it as lines of their
slopes ``s`` (:meth:`_KinkedLoss.convexities_and_multipliers`, found from the top layer down). Its
Clarke subdifferential (in those coordinates) is
``{grad L_0 + sum_k s_k c_k a_k : s in [0, 1]^K}`` when the ``a_k`` are linearly independent
(then the ``z_k`` serve as local coordinates and the 2^K orthants are the loss's smooth
pieces; kinks of one unit with the same gradient, ``z = b`` on all points whose layers below
are off, are one surface and count once with their ``c_k`` summed, but for a kink whose point
has active kinks below it, where ``z = b + (dz/dh) relu(q_below)``: it stays its own). The
stationarity measure of nonsmooth optimization is its smallest element's norm (bounded least
squares); it replaces the gradient norm of the smooth test. A kink whose point has zero loss
derivative, or a layer above it off on that point, changes nothing nearby: it is not *felt*
and never active.

Certificate (:func:`certify_kink_minimum`). The point is first moved onto the kinks' common
manifold ``M = {z_k = 0}`` (Gauss-Newton steps of the size of the kink distances; one step for
the first layer's flat kinks) and Newton-polished along it. On ``M`` the loss equals ``L^s``,
the network with each active unit's ReLU replaced on its point by the line ``s_k z``, for every
``s``; with ``s`` the multipliers (``grad L^s = grad L_0 + sum s_k c_k a_k`` normal to nothing:
least squares), the Hessian of ``L`` along ``M`` is the tangent projection of the Hessian of
``L^s`` (``M``'s curvature enters through the ``s_k z_k`` terms; on the first layer's flat
kinks they vanish along ``M``). Where every active kink is convex (``c_k > 0``: the loss bends up
across it) and every ``s_k`` lies strictly inside (0, 1), the directional derivative in any
direction that leaves ``M`` is positive (``c_k (relu(q) - s_k q) > 0`` for ``q != 0``): the loss
grows linearly off the kinks. Along ``M`` the point is stationary, and a minimum where the
reduced Hessian (the ReLU rescalings ``(a w, a c, v / a)`` of each hidden unit taken out where
there is no weight decay: they leave the loss unchanged) has no negative eigenvalue beyond
round-off; an independent referee built a certified-looking saddle (a unit on at every point
with output weight 0) that only this second-order test refuses. A concave kink (``c_k < 0``)
always leaves a descending side; a multiplier on the box's boundary leaves a direction of zero
slope: neither is certified. Without weight decay the point is judged balanced (each hidden
unit rescaled so that its incoming and outgoing norms are equal: the same network), since a
unit's rescaling moves the Hessian's eigenvalues apart by its square and would let a saddle
pass as flat against the largest one (the session-32 referee, at a = 1e4). Second order says
nothing along a flat direction (an eigenvalue within 1e-8 of the largest): the loss is probed
along each, back on the kinks, at distances 1e-6, 1e-4 and 1e-2 either way, and a fall refuses
the point; where none falls it is certified, with that evidence (not a proof) beyond second
order.

Known answers (tests/test_relu_kinks.py): the bounded least squares and the multiplier rule on
hand-made subgradients; runs of the jamming stage that BFGS left on kinks, one and two hidden
layers, certified, then checked by brute force (the loss rises along thousands of random
directions at radii 1e-7 to 1e-3, linearly); the same points moved along ``M`` come back under
the polish and are refused without it; the reduced Hessian on a curved ``M`` against second
differences of the loss along curves on ``M``; an active set without a gap is refused; a
depth-2 jammed minimum with three points on kinks in both layers, certified and brute-forced;
a unit's ``z = b`` kinks merged with one over a lower kink, which certified a non-minimum
(session-30 referee), kept apart and refused; the saddle with another unit rescaled by 1e4 and
1e5 (session-32 referee), refused; a minimum whose redundant linear layer makes exact flat
directions (the two-layer case above), certified, and brute force agrees.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from scipy.optimize import lsq_linear

from basins.landscapes.architecture import Architecture
from basins.landscapes.losses import l2_penalty, sample_losses

#: Losses whose derivative in the output is continuous: the only kinks are the ReLUs'.
SMOOTH_LOSSES = ("quadratic_hinge", "mse", "cross_entropy")
#: Distances within which kinks are read as active, tried from the smallest: BFGS leaves its
#: end point 1e-14 to 1e-10 from the kinks it stopped on, and the next kinks are usually 1e-5
#: or more away.
REACHES = tuple(10.0**-k for k in range(12, 2, -1))
#: On the kinks after the polish: active kinks this many times closer than any other.
_ON_KINK = 1e-6
#: Relative to the reduced Hessian's largest |eigenvalue|: curvatures below this in size are
#: flat (round-off of a flat direction reaches 1e-12), more negative ones make a saddle, and
#: Newton steps leave directions below it alone.
_FLAT = 1e-8
#: Distances at which the flat directions of the reduced Hessian are probed (:func:`_descends_along`).
_FLAT_PROBES = (1e-6, 1e-4, 1e-2)
#: Gauss-Newton steps onto curved kinks (each one squares the distance: 1e-4 -> 1e-8 -> 1e-16).
_PROJECTION_STEPS = 8
#: The polish takes dense Hessians by autograd, one backward pass per parameter: beyond this
#: many parameters (config/paper.yaml's N ~ 2000) it would take minutes a member on a CPU.
MAX_PARAMS = 1000


@dataclasses.dataclass(frozen=True)
class KinkCertificate:
    """What :func:`certify_kink_minimum` found at one point.

    ``theta``: the point polished on the kinks' manifold (the start where there was no active
    set); ``loss`` there; ``subgradient_norm``: the smallest element of the Clarke
    subdifferential there (the gradient norm off kinks); ``n_active``: active kinks;
    ``multiplier_margin``: the smallest of ``s_k``, ``1 - s_k`` and of the convexities ``c_k``'s
    signs (> 0: every kink convex and every multiplier strictly inside; nan without kinks);
    ``reduced_lowest_eigenvalue``: lowest eigenvalue of the Hessian along ``M`` (rescalings taken
    out without weight decay); ``certified``: a minimum to first order off ``M`` and a
    stationary point on it with no negative curvature along it (beyond round-off: :data:`_FLAT`;
    along flat directions the loss probed, :func:`_descends_along`),
    with ``subgradient_norm <= grad_tol``; ``reason``: why not; ``shift``: how far the point
    moved from the start.
    """

    theta: np.ndarray
    loss: float
    subgradient_norm: float
    n_active: int
    multiplier_margin: float
    reduced_lowest_eigenvalue: float
    certified: bool
    reason: str
    shift: float = 0.0


def kink_distances(theta: torch.Tensor, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """Distance in parameter space from ``theta (param,)`` to each kink ``z_{layer, s, unit} =
    0``, ``(layer, sample, unit)``, to first order: ``|z| / |grad z|``."""
    _check_network(arch)
    pre, _ = kinked_forward(theta, x, arch)
    return pre.abs() / _preactivation_jacobian(theta, x, arch).norm(dim=-1)


def active_kinks(distances: torch.Tensor, *, reach: float, gap: float) -> torch.Tensor | None:
    """The kinks within ``reach`` (a mask shaped as ``distances``), or None where the set is
    ambiguous: some kink lies between ``reach`` and ``gap * reach`` (then a point could as well
    be read as on it or off it)."""
    if not (reach > 0 and gap > 1):
        raise ValueError(f"reach={reach} must be > 0 and gap={gap} > 1")
    active = distances <= reach
    if ((distances > reach) & (distances <= gap * reach)).any():
        return None
    return active


def clarke_stationarity(
    smooth_gradient: np.ndarray, kink_gradients: np.ndarray, convexity: np.ndarray
) -> tuple[float, np.ndarray, float]:
    """The smallest element's norm of ``{g + sum_k s_k c_k a_k : s in [0, 1]^K}``, the
    multipliers ``s`` of ``g + sum_k s_k c_k a_k = 0`` (least squares; where the set contains 0
    and the ``c_k a_k`` are independent, its unique solution) and the margin
    ``min_k min(s_k, 1 - s_k, sign c_k)`` (> 0: a minimum to first order, see the module).

    ``smooth_gradient (param,)``: ``g``; ``kink_gradients (kink, param)``: ``a_k = grad z_k``;
    ``convexity (kink,)``: ``c_k``. A margin within the multipliers' own uncertainty (the
    residual and the round-off of ``g`` over the smallest singular value of the ``c_k a_k``)
    is reported as 0: no margin."""
    g = np.asarray(smooth_gradient, dtype=float)
    if not len(convexity):
        return float(np.linalg.norm(g)), np.empty(0), np.nan
    columns = (np.asarray(kink_gradients) * np.asarray(convexity)[:, None]).T  # (param, kink)
    bounded = lsq_linear(columns, -g, bounds=(0.0, 1.0), method="bvls", tol=1e-15)
    norm = float(np.linalg.norm(columns @ bounded.x + g))
    multipliers = np.linalg.lstsq(columns, -g, rcond=None)[0]
    margin = float(min(multipliers.min(), (1 - multipliers).min(), np.sign(convexity).min()))
    # The multipliers are known to (residual + round-off of g) / the smallest singular value:
    # a margin inside that is no margin.
    smallest_singular = np.linalg.svd(columns, compute_uv=False).min()
    uncertainty = (norm + 64 * np.finfo(float).eps * np.linalg.norm(g)) / max(smallest_singular, np.finfo(float).tiny)
    return norm, multipliers, margin if margin > uncertainty else min(margin, 0.0)


def certify_kink_minimum(
    theta: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    arch: Architecture,
    *,
    loss: str,
    margin: float = 1.0,
    l2: float = 0.0,
    grad_tol: float,
    reaches: tuple[float, ...] = REACHES,
    gap: float = 100.0,
    newton_steps: int = 64,
    no_higher_than: float | None = None,
) -> KinkCertificate:
    """Whether ``theta (param,)`` sits next to a minimum of the mean ``loss`` over ``x (sample,
    feature)``, ``y (sample,)`` (plus ``l2 / 2 |theta|^2``) on ReLU kinks: see the module.

    Each of ``reaches`` whose active set is unambiguous (:func:`active_kinks` with ``gap``) and
    differs from the smaller ones' is tried in turn: the point is moved onto those kinks,
    polished by up to ``newton_steps`` Newton steps along their manifold (0: only moved onto
    it; the polish stops earlier where no step lowers the loss any more: 16, the default until
    session 32, left a homotopy's end point that 32 certify at a Clarke measure of 2e-7, per the
    session-32 referee) and judged there. The first certified point is returned, else the first attempt's
    refusal. Each attempt judges its own end point exactly, so trying several sets can certify a
    minimum that is there, never one that is not. A certified point never has a higher loss than
    ``theta``, or than ``no_higher_than`` where given (beyond round-off: a candidate proposed
    by :mod:`basins.landscapes.softplus_homotopy` is held to the loss of the point it started
    from)."""
    _check_network(arch)
    if not covers(arch, loss):
        raise ValueError(f"loss={loss!r}: the kink certificate needs a loss smooth in the output, one of {SMOOTH_LOSSES}")
    if arch.n_params > MAX_PARAMS:
        raise ValueError(f"{arch.n_params} parameters: the kink certificate's dense Hessians go to {MAX_PARAMS}")
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    start = torch.as_tensor(theta, dtype=torch.float64).clone()
    # Without weight decay each hidden unit's rescaling leaves the loss as it is but scales the
    # Hessian's eigenvalues apart (by a^2: the session-32 referee had a saddle certified as flat
    # after one unit was rescaled by 1e4). The point is judged balanced, a scale of its own
    # orbit; the certified point is given back in the start's scales.
    factors = None if l2 else balancing_factors(start, arch)
    start = start if factors is None else rescaled(start, arch, factors)
    found = _certified_in_these_scales(start, x, y, arch, loss=loss, margin=margin, l2=l2, grad_tol=grad_tol,
                                       reaches=reaches, gap=gap, newton_steps=newton_steps, no_higher_than=no_higher_than)
    if factors is None:
        return found
    back = rescaled(torch.as_tensor(found.theta), arch, [1 / factor for factor in factors])
    return dataclasses.replace(found, theta=back.numpy())


def _certified_in_these_scales(start, x, y, arch, *, loss, margin, l2, grad_tol, reaches, gap, newton_steps,
                               no_higher_than) -> KinkCertificate:
    """:func:`certify_kink_minimum` at ``start`` as given."""
    objective = _KinkedLoss(arch, x, y, loss, margin, l2)
    bound = _raised_by_round_off(float(objective(start)) if no_higher_than is None else no_higher_than)
    distances = objective.felt_distances(start)
    attempts, tried = [], []
    for reach in sorted(reaches):
        active = active_kinks(distances, reach=reach, gap=gap)
        if active is None or not active.any() or any(torch.equal(active, done) for done in tried):
            continue
        tried.append(active)
        attempts.append(
            _certify_on(start, active, objective, grad_tol=grad_tol, newton_steps=newton_steps, bound=bound)
        )
        if attempts[-1].certified:
            return attempts[-1]
    if attempts:
        return attempts[0]
    norm = float(objective.gradient(start, None).norm())
    on_none = bool(distances.min() > max(reaches))
    reason = "on no kink" if on_none else "no unambiguous set of active kinks"
    return _refused(start, objective, norm, 0, reason)


def _certify_on(start, active, objective, *, grad_tol, newton_steps, bound) -> KinkCertificate:
    """:func:`certify_kink_minimum` with the active kinks ``active (layer, sample, unit)``, the
    loss at most ``bound``."""
    n_active = int(active.sum())
    groups = _same_kinks(objective.kink_gradients(start, active), active)
    if torch.linalg.matrix_rank(_once(objective.kink_gradients(start, active), groups)) <= groups.max():
        return _refused(start, objective, np.nan, n_active, "kink gradients linearly dependent")
    point = objective.onto_kinks(start, active)
    lowest = np.nan
    for iteration in range(newton_steps + 1):
        along, gradient, constraints, _, tangent = objective.along_kinks(point, active)
        constraints = _once(constraints, groups)
        convexity, multipliers = objective.convexities_and_multipliers(point, active, groups, gradient, constraints)
        multipliers = multipliers[groups]
        reduced = tangent.T @ objective.hessian(point, active, multipliers) @ tangent
        values, vectors = torch.linalg.eigh(reduced)
        lowest, largest = float(values[0]), float(values.abs().max())
        if iteration == newton_steps:
            break
        curved = values > _FLAT * largest
        step = -tangent @ (vectors @ torch.where(curved, (vectors.T @ along) / values.clamp_min(1e-300), 0.0))
        moved = _accepted_step(objective, point, active, step, float(along.norm()))
        if moved is None:
            break
        point = moved
    # ``gradient``, ``constraints`` and ``convexity`` are the last iteration's, at ``point``, one
    # row per kink surface.
    norm, _, first_order = clarke_stationarity(gradient.numpy(), constraints.numpy(), convexity.numpy())
    distances = objective.felt_distances(point)
    nearest_other = distances[~active].min().clamp_max(1.0) if (~active).any() else 1.0
    if distances[active].max() > _ON_KINK * nearest_other:
        return _refused(point, objective, norm, n_active, "the polish came close to another kink")
    loss = float(objective(point))
    if loss > bound:
        return _refused(point, objective, norm, n_active, "the point on the kinks has a higher loss than allowed "
                        "(the start's, or the finish's end point's for the homotopy's candidate)")
    saddle = lowest < -_FLAT * largest
    flat = tangent @ vectors[:, values.abs() <= _FLAT * largest]
    descending = not saddle and _descends_along(objective, point, active, flat, loss)
    certified = first_order > 0 and norm <= grad_tol and not saddle and not descending
    # Every test that fails is named: above grad_tol the multipliers' margin is within its own
    # uncertainty (clarke_stationarity), so the measure, not the margin, says why.
    failed = [
        f"Clarke stationarity measure {norm:.2g} above grad_tol" if norm > grad_tol else "",
        "no multiplier margin (a concave kink, a multiplier outside (0, 1), or a margin within its "
        "uncertainty)" if not first_order > 0 else "",
        f"negative curvature {lowest:.2g} along the kinks: a saddle" if saddle else "",
        f"the loss falls along the kinks in a flat direction (curvature within {_FLAT:g} of {largest:.2g}): a "
        "saddle beyond the second order" if descending else "",
    ]
    reason = "" if certified else "not a minimum: " + "; ".join(part for part in failed if part)
    return KinkCertificate(
        point.numpy(), loss, norm, n_active, first_order, lowest, certified, reason, float((point - start).norm()),
    )


def _descends_along(objective, point, active, directions, loss) -> bool:
    """Whether the loss falls below ``loss`` (beyond round-off) at a point of the kinks' manifold
    near ``point`` along any of the flat ``directions (param, k)`` of the reduced Hessian: each
    probed at :data:`_FLAT_PROBES` distances either way, moved back onto the kinks.

    Second order says nothing along a flat direction (an exact one: the loss does not change
    along a linear layer's redundant weights, tests/test_relu_kinks.py; or one whose first
    change is at fourth order, as at a jamming run's minimum the session-32 referee found). The
    probes decide only where they find the loss falling; none falling is evidence, not proof,
    of a minimum beyond the second order."""
    floor = loss - _round_off(loss)
    for direction in directions.T:
        for distance in _FLAT_PROBES:
            for sign in (1.0, -1.0):
                probe = objective.onto_kinks(point + sign * distance * direction, active)
                if float(objective(probe)) < floor:
                    return True
    return False


def _same_kinks(constraints, active) -> torch.Tensor:
    """Each active kink's surface ``(kink,)``: kinks of one unit whose pre-activations have the
    same gradient are one surface and count once, their convexities summed (``z = b`` on every
    point whose layers below are all off, or repeated training points: the same function of the
    parameters, so ``sum_k c_k relu(a . v) = (sum_k c_k) relu(a . v)``)."""
    layer, sample, unit = torch.nonzero(active, as_tuple=True)
    # A kink whose point has active kinks in a layer below is its own surface: there z = b +
    # (dz/dh) relu(q_below), not the others' z = b, and its convexity must not be summed with
    # theirs (an independent referee certified a non-minimum so, session 30). Its gradient then
    # repeats theirs, and the set is refused as linearly dependent.
    below = (torch.cumsum(active.any(2).int(), 0) - active.any(2).int())[layer, sample] > 0
    own = torch.where(below, sample, -1)
    keys = torch.cat([torch.stack([layer, unit, own], 1).to(constraints.dtype), constraints], 1)
    return torch.unique(keys, dim=0, return_inverse=True)[1]


def _once(rows, groups) -> torch.Tensor:
    """One of the identical ``rows (kink, param)`` of each surface of ``groups``."""
    once = torch.zeros(int(groups.max()) + 1, rows.shape[1], dtype=rows.dtype)
    once[groups] = rows
    return once


def _summed(values, groups) -> torch.Tensor:
    """``values (kink,)`` summed over each surface of ``groups``."""
    return torch.zeros(int(groups.max()) + 1, dtype=values.dtype).index_add_(0, groups, values)


@dataclasses.dataclass(frozen=True)
class _KinkedLoss:
    """The mean loss of one network with the active kinks' units on their points replaced by
    lines of given slopes (0: ``L_0`` of the module; off the active kinks it is the loss
    itself)."""

    arch: Architecture
    x: torch.Tensor
    y: torch.Tensor
    loss: str
    margin: float
    l2: float

    def __call__(self, theta: torch.Tensor, active: torch.Tensor | None = None, slopes=None) -> torch.Tensor:
        return self._value(theta, active, slopes)[0]

    def _value(self, theta, active, slopes):
        _, output = kinked_forward(theta, self.x, self.arch, active, slopes)
        per_sample = sample_losses(output.view(1, -1, 1), self.y, loss=self.loss, margin=self.margin)[0]
        return per_sample.mean() + l2_penalty(theta, self.l2), output

    def felt_distances(self, theta):
        """:func:`kink_distances`, +inf on the kinks that are not felt: on points whose loss and
        its derivative vanish (a quadratic hinge's satisfied points), and below a layer that is
        off on the point (every unit beyond the largest reach on its off side)."""
        pre, _ = kinked_forward(theta, self.x, self.arch)
        distances = pre.abs() / _preactivation_jacobian(theta, self.x, self.arch).norm(dim=-1)
        layer_off = ((pre < 0) & (distances > max(REACHES))).all(2)  # (layer, sample)
        off_above = torch.flip(torch.cumsum(torch.flip(layer_off.int(), [0]), 0), [0]) - layer_off.int() > 0
        felt = (self.output_derivative(theta) != 0).unsqueeze(0) & ~off_above
        return torch.where(felt.unsqueeze(2), distances, torch.inf)

    def gradient(self, theta, active, slopes=None):
        variable = theta.clone().requires_grad_(True)
        return torch.autograd.grad(self(variable, active, slopes), variable)[0]

    def hessian(self, theta, active, multipliers=None):
        """Hessian of ``L^s``, ``s`` the ``multipliers`` of the active kinks in their order."""
        return torch.autograd.functional.hessian(
            lambda t: self(t, active, _slopes(active, multipliers)), theta, vectorize=True
        )

    def kink_gradients(self, theta, active):
        """``a_k = grad z_k`` of the active kinks ``(kink, param)``."""
        x, on_them = _their_points(self.x, active)
        return _preactivation_jacobian(theta, x, self.arch, on_them)[on_them]

    def onto_kinks(self, theta, active):
        """``theta`` moved onto the active kinks' manifold by Gauss-Newton steps (least-squares
        steps, the smallest move to first order), until the kink distances stop shrinking."""
        best, nearest = theta, torch.inf
        x, on_them = _their_points(self.x, active)
        for _ in range(_PROJECTION_STEPS + 1):
            pre, _ = kinked_forward(theta, x, self.arch, on_them)
            constraints = _preactivation_jacobian(theta, x, self.arch, on_them)[on_them]
            distance = float((pre[on_them].abs() / constraints.norm(dim=1)).max())
            if not distance < nearest:
                break
            best, nearest = theta, distance
            theta = theta - torch.linalg.lstsq(constraints, pre[on_them].unsqueeze(1), driver="gelsd").solution[:, 0]
        return best

    def along_kinks(self, theta, active):
        """At ``theta`` on the active kinks: the gradient along them in an orthonormal basis of
        their tangent space (ReLU rescalings taken out without weight decay), ``grad L_0``, the
        kink gradients ``a_k``, the convexities ``c_k`` and that basis ``(param, dim)``."""
        gradient, constraints = self.gradient(theta, active), self.kink_gradients(theta, active)
        convexity = self.unit_output_derivative(theta, active)[active]
        tangent = null_space(constraints if self.l2 else torch.cat([constraints, _rescalings(theta, self.arch)]))
        return tangent.T @ gradient, gradient, constraints, convexity, tangent

    def convexities_and_multipliers(self, theta, active, groups, gradient, constraints):
        """The convexities ``c`` and multipliers ``s`` ``(surface,)`` of the active kinks' surfaces
        (``groups``; ``constraints`` one row a surface): ``grad L_0 + sum s c a = 0`` by least
        squares, each ``c`` the unit's derivative in its output with the active units above it
        lines of their multipliers' slopes, found from the top layer down.

        A kink whose point has active kinks in layers above it enters those units' pre-activations
        through ``relu``: in the coordinates ``q' = q + (dz/dh) relu(q_below)`` of each layer (a
        piecewise linear change of variables, one to one) the first-order model is again a sum of
        ``c relu(q')`` terms, with ``c`` of a lower kink its ``L^s`` derivative: ``L_0``'s plus
        what reaches the loss through the active units above, ``sum (dz_above / dh) s c_above``.
        Where no point has kinks in two layers these are ``L_0``'s convexities.
        """
        layers = torch.nonzero(active, as_tuple=True)[0]
        surface_layer = torch.zeros(int(groups.max()) + 1, dtype=layers.dtype).index_copy_(0, groups, layers)
        products = torch.linalg.lstsq(constraints.T, -gradient.unsqueeze(1), driver="gelsd").solution[:, 0]  # s c
        convexity = torch.zeros_like(products)
        multipliers = torch.zeros_like(products)
        for layer in reversed(range(self.arch.depth)):
            here = surface_layer == layer
            if not here.any():
                continue
            slopes = _slopes(active, multipliers[groups])
            derivative = _summed(self.unit_output_derivative(theta, active, slopes)[active], groups)
            convexity[here] = derivative[here]
            multipliers[here] = products[here] / derivative[here]
        return convexity, multipliers

    def output_derivative(self, theta, active=None):
        """``dL/df (sample,)``: the loss's derivative in the network's output on each sample."""
        _, output = self._value(theta.detach(), active, None)
        output = output.detach().requires_grad_(True)
        per_sample = sample_losses(output.view(1, -1, 1), self.y, loss=self.loss, margin=self.margin)[0]
        return torch.autograd.grad(per_sample.mean(), output)[0]

    def unit_output_derivative(self, theta, active, slopes=None):
        """``dL/dh (layer, sample, unit)``: the loss's derivative in each hidden unit's output on
        each sample (``L^s``'s: the active units lines of ``slopes``, 0 where None: ``L_0``'s)."""
        arch = self.arch
        nudge = torch.zeros(arch.depth, len(self.x), arch.width, dtype=theta.dtype, requires_grad=True)
        _, output = kinked_forward(theta.detach(), self.x, arch, active, slopes, nudge=nudge)
        per_sample = sample_losses(output.view(1, -1, 1), self.y, loss=self.loss, margin=self.margin)[0]
        return torch.autograd.grad(per_sample.mean(), nudge)[0]


def _accepted_step(objective, point, active, step, before):
    """``point + step`` moved back onto the kinks (halved until it lowers the gradient along
    them without raising the loss beyond round-off), or None where no halving does."""
    loss = float(objective(point, active))
    for _ in range(30):
        trial = objective.onto_kinks(point + step, active)
        if float(objective(trial, active)) <= _raised_by_round_off(loss) and float(
            objective.along_kinks(trial, active)[0].norm()
        ) < before:
            return trial
        step = step / 2
    return None


def _raised_by_round_off(loss: float) -> float:
    """The largest loss that is ``loss`` up to round-off."""
    return loss + _round_off(loss)


def _round_off(loss: float) -> float:
    """Loss changes this small are round-off (64 ulps of the loss, and of 1)."""
    return 64 * np.finfo(float).eps * (1 + abs(loss))


def _refused(point, objective, norm, n_active, reason):
    return KinkCertificate(point.numpy(), float(objective(point)), norm, n_active, np.nan, np.nan, False, reason)


def covers(arch: Architecture, loss: str | None = None) -> bool:
    """Whether the certificate applies to networks ``arch`` (ReLU, hidden layers, one output)
    and, where given, to ``loss`` (one of :data:`SMOOTH_LOSSES`)."""
    network = arch.depth >= 1 and arch.n_outputs == 1 and arch.activation == "relu"
    return network and (loss is None or loss in SMOOTH_LOSSES)


def _check_network(arch: Architecture) -> None:
    if not covers(arch):
        raise ValueError(f"{arch}: the kink certificate covers ReLU networks with hidden layers and one output")


def _slopes(active, multipliers):
    """The active kinks' slopes ``(layer, sample, unit)`` (0 elsewhere), from ``multipliers``
    in the active kinks' order (None: all 0)."""
    slopes = torch.zeros(active.shape, dtype=torch.float64)
    if multipliers is not None:
        slopes[active] = multipliers
    return slopes


def kinked_forward(theta, x, arch, active=None, slopes=None, nudge=None, activation=torch.relu):
    """Pre-activations ``(layer, sample, unit)`` and outputs ``(sample,)`` of one network whose
    units on the ``active (layer, sample, unit)`` kinks are lines of ``slopes`` (0 where None),
    every other unit a ReLU (or ``activation``: the softplus homotopy's smoothed ReLU);
    ``nudge`` (shaped as the pre-activations) is added to each hidden layer's output, to read
    the loss's derivative in it."""
    hidden, pre = x, []
    layers = list(zip(arch.layer_shapes, arch.layer_slices))
    for layer, ((fan_in, fan_out), (w_slice, b_slice)) in enumerate(layers):
        z = hidden @ theta[w_slice].view(fan_out, fan_in).T
        if b_slice is not None:
            z = z + theta[b_slice]
        if layer == len(layers) - 1:
            return (torch.stack(pre) if pre else z.new_empty(0)), z[:, 0]
        pre.append(z)
        hidden = activation(z)
        if active is not None:
            hidden = torch.where(active[layer], (0.0 if slopes is None else slopes[layer]) * z, hidden)
        if nudge is not None:
            hidden = hidden + nudge[layer]


def _their_points(x, active):
    """The training points with active kinks ``(point, feature)`` and the active mask on them
    alone (a kink's pre-activation depends on its own point only; same order of the kinks)."""
    points = active.any(2).any(0)
    return x[points], active[:, points]


def _preactivation_jacobian(theta, x, arch, active=None):
    """``grad z`` of every hidden pre-activation ``(layer, sample, unit, param)`` (of ``L_0``'s
    network where ``active`` is given: those units' outputs 0 on their points), layer by layer
    by the chain rule: a layer's own weights and bias enter as its input and 1, the layers below
    through its weights times the slopes (0 or 1) of the units below. Equal to forward-mode
    differentiation of :func:`kinked_forward` (``tests/test_relu_kinks.py``), without its cost."""
    n_points, n_params = len(x), arch.n_params
    hidden, hidden_jacobian, jacobians = x, None, []
    hidden_layers = list(zip(arch.layer_shapes, arch.layer_slices))[:-1]
    for layer, ((fan_in, fan_out), (w_slice, b_slice)) in enumerate(hidden_layers):
        weight = theta[w_slice].view(fan_out, fan_in)
        units = torch.arange(fan_out).unsqueeze(1)
        jacobian = torch.zeros(n_points, fan_out, n_params, dtype=theta.dtype)
        jacobian[:, units, w_slice.start + units * fan_in + torch.arange(fan_in)] = hidden.unsqueeze(1)
        if b_slice is not None:
            jacobian[:, units[:, 0], b_slice.start + units[:, 0]] = 1.0
        if hidden_jacobian is not None:
            jacobian += torch.einsum("ui,sip->sup", weight, hidden_jacobian)
        jacobians.append(jacobian)
        pre = hidden @ weight.T + (theta[b_slice] if b_slice is not None else 0.0)
        on = pre > 0 if active is None else (pre > 0) & ~active[layer]
        hidden, hidden_jacobian = torch.where(on, pre, 0.0), on.unsqueeze(2) * jacobian
    return torch.stack(jacobians)


def _rescalings(theta: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """Per hidden unit ``(layer * unit, param)``, the tangent of ``(a w, a c, v / a)`` at ``a =
    1`` (its incoming weights and bias times ``a``, its outgoing weights over ``a``): a direction
    along which the loss without weight decay does not change."""
    return unit_rows(theta, arch, outgoing=-1.0)


def unit_rows(theta: torch.Tensor, arch: Architecture, *, outgoing: float) -> torch.Tensor:
    """Per hidden unit ``(layer * unit, param)``: the unit's incoming weights and bias in their
    places and its outgoing weights times ``outgoing``, zero elsewhere. With ``outgoing = -1``
    the tangent of the unit's rescaling (:func:`_rescalings`); with 0 the gradient of half its
    incoming norm squared."""
    rows = torch.zeros(arch.depth * arch.width, arch.n_params, dtype=theta.dtype)
    slices, shapes = arch.layer_slices, arch.layer_shapes
    for layer in range(arch.depth):
        (w_in, b_in), (w_out, _) = slices[layer], slices[layer + 1]
        (fan_in, width), (_, fan_out) = shapes[layer], shapes[layer + 1]
        for unit in range(width):
            row = rows[layer * arch.width + unit]
            incoming = slice(w_in.start + unit * fan_in, w_in.start + (unit + 1) * fan_in)
            row[incoming] = theta[incoming]
            if b_in is not None:
                row[b_in.start + unit] = theta[b_in.start + unit]
            if outgoing:
                out = w_out.start + unit + width * torch.arange(fan_out)  # column ``unit`` of (fan_out, width)
                row[out] = outgoing * theta[out]
    return rows


def balancing_factors(theta: torch.Tensor, arch: Architecture, *, sweeps: int = 200) -> list[torch.Tensor]:
    """Per hidden layer, each unit's factor ``a`` ``(unit,)`` such that :func:`rescaled` gives the
    same network with every hidden unit's incoming weights and bias as long as its outgoing
    weights (a unit with either zero keeps a = 1). Layer by layer, repeated until no factor
    changes beyond round-off: a unit's outgoing weights are the next layer's incoming ones."""
    factors = [torch.ones(arch.width, dtype=theta.dtype) for _ in range(arch.depth)]
    current = theta.clone()
    for _ in range(sweeps):
        largest_change = 0.0
        for layer in range(arch.depth):
            incoming, outgoing = unit_norms(current, arch, layer)
            usable = (incoming > 0) & (outgoing > 0)
            change = torch.where(usable, (outgoing / incoming.where(usable, 1.0)).sqrt(), 1.0)
            current = rescaled_layer(current, arch, layer, change)
            factors[layer] = factors[layer] * change
            largest_change = max(largest_change, float((change.log().abs()).max()))
        if largest_change <= 1e-13:
            break
    return factors


def rescaled(theta: torch.Tensor, arch: Architecture, factors: list[torch.Tensor]) -> torch.Tensor:
    """``theta`` with each hidden unit's incoming weights and bias times its factor and its
    outgoing weights over it (``factors``: one ``(unit,)`` a hidden layer): the same ReLU network."""
    for layer, factor in enumerate(factors):
        theta = rescaled_layer(theta, arch, layer, factor)
    return theta


def rescaled_layer(theta: torch.Tensor, arch: Architecture, layer: int, factor: torch.Tensor) -> torch.Tensor:
    """:func:`rescaled` with the units of hidden layer ``layer`` alone, by ``factor (unit,)``."""
    theta = theta.clone()
    (w_in, b_in), (w_out, _) = arch.layer_slices[layer], arch.layer_slices[layer + 1]
    (fan_in, width), (_, fan_out) = arch.layer_shapes[layer], arch.layer_shapes[layer + 1]
    theta[w_in] = (theta[w_in].view(width, fan_in) * factor.unsqueeze(1)).flatten()
    if b_in is not None:
        theta[b_in] = theta[b_in] * factor
    theta[w_out] = (theta[w_out].view(fan_out, width) / factor).flatten()
    return theta


def unit_norms(theta: torch.Tensor, arch: Architecture, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The incoming (weights and bias) and outgoing weights' norms ``(unit,)`` of a hidden layer."""
    (w_in, b_in), (w_out, _) = arch.layer_slices[layer], arch.layer_slices[layer + 1]
    (fan_in, width), (_, fan_out) = arch.layer_shapes[layer], arch.layer_shapes[layer + 1]
    incoming = (theta[w_in].view(width, fan_in) ** 2).sum(1) + (theta[b_in] ** 2 if b_in is not None else 0.0)
    return incoming.sqrt(), theta[w_out].view(fan_out, width).norm(dim=0)


def null_space(rows: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis ``(param, dim)`` of the directions orthogonal to every row."""
    _, singular, vh = torch.linalg.svd(rows, full_matrices=True)
    rank = int((singular > singular.max() * rows.shape[1] * torch.finfo(rows.dtype).eps).sum())
    return vh[rank:].T
