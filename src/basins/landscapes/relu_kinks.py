"""Minima of a one-hidden-layer ReLU network's loss that sit on kinks.

A hidden unit's pre-activation ``z = w . x_s + c`` on a training point ``s`` is linear in the
parameters, and the loss is not differentiable where it vanishes: its gradient jumps across that
hyperplane (a *kink*). Descent methods stop on kinks (BFGS's line search lands on them and cannot
cross), and a minimum there need not have a vanishing gradient, so the gradient test cannot
decide such a run. Near a point where the kinks ``K`` (within ``reach`` of it, every other kink
at least ``gap`` times further) are active, the loss is

    L(theta) = L_0(theta) + sum_k c_k relu(q_k) + o(|theta - theta_0|),   q_k = grad z_k . (theta - theta_0),

with ``L_0`` smooth (each active unit's output taken as 0) and ``c_k = dL/dh`` the loss's
derivative in that unit's output on that point. Its Clarke subdifferential is
``{grad L_0 + sum_k s_k c_k grad z_k : s in [0, 1]^K}`` when the ``grad z_k`` are linearly
independent (then the ``z_k`` serve as local coordinates and the 2^K orthants are the loss's
smooth pieces). The stationarity measure of nonsmooth optimization is its smallest element's
norm (bounded least squares); it replaces the gradient norm of the smooth test.

Certificate (:func:`certify_kink_minimum`). The point is first moved onto the kinks' common
subspace ``M = {z_k = 0}`` (a least-squares step of the size of the kink distances) and
Newton-polished on it: ``L`` restricted to ``M`` is ``L_0``, smooth. There the multipliers ``s``
solve ``grad L_0 + sum s_k c_k grad z_k = 0``. Where every active kink is convex (``c_k > 0``:
the loss bends up across it) and every ``s_k`` lies strictly inside (0, 1), the directional
derivative in any direction that leaves ``M`` is positive (``c_k (relu(q) - s_k q) > 0`` for
``q != 0``): the loss grows linearly off the kinks. Along ``M`` the point is stationary, and a
minimum where the reduced Hessian (the ReLU rescalings ``(a w, a c, v / a)`` of each unit taken
out where there is no weight decay: they leave the loss unchanged) has no negative eigenvalue
beyond round-off; an independent referee built a certified-looking saddle (a unit on at every
point with output weight 0) that only this second-order test refuses. A concave kink
(``c_k < 0``) always leaves a descending side; a multiplier on the box's boundary leaves a
direction of zero slope: neither is certified. A flat direction (an eigenvalue within
round-off of 0) is not decided beyond the second order.

Known answers (tests/test_relu_kinks.py): the bounded least squares and the multiplier rule on
hand-made subgradients; runs of the jamming stage that BFGS left on kinks, certified, then
checked by brute force (the loss rises along thousands of random directions at radii 1e-7 to
1e-3); the same points moved along ``M`` come back under the polish and are refused without it;
an active set without a gap is refused.
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
#: The polish takes dense Hessians by autograd, one backward pass per parameter: beyond this
#: many parameters (config/paper.yaml's N ~ 2000) it would take minutes a member on a CPU.
MAX_PARAMS = 1000


@dataclasses.dataclass(frozen=True)
class KinkCertificate:
    """What :func:`certify_kink_minimum` found at one point.

    ``theta``: the point polished on the kinks' subspace (the start where there was no active
    set); ``loss`` there; ``subgradient_norm``: the smallest element of the Clarke
    subdifferential there (the gradient norm off kinks); ``n_active``: active kinks;
    ``multiplier_margin``: the smallest of ``s_k``, ``1 - s_k`` and of the convexities ``c_k``'s
    signs (> 0: every kink convex and every multiplier strictly inside; nan without kinks);
    ``reduced_lowest_eigenvalue``: lowest eigenvalue of the Hessian on ``M`` (rescalings taken
    out without weight decay); ``certified``: a minimum to first order off ``M`` and a
    stationary point on it with no negative curvature along it (beyond round-off: :data:`_FLAT`),
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
    """Distance in parameter space from ``theta (param,)`` to each kink hyperplane
    ``z_{s,unit} = 0``, ``(sample, unit)``: ``|z| / |grad z|``."""
    _check_network(arch)
    pre = _preactivations(theta, x, arch)
    return pre.abs() / _kink_gradient_norms(x, arch).unsqueeze(1)


def active_kinks(distances: torch.Tensor, *, reach: float, gap: float) -> torch.Tensor | None:
    """The kinks within ``reach`` ``(sample, unit)``, or None where the set is ambiguous: some
    kink lies between ``reach`` and ``gap * reach`` (then a point could as well be read as on it
    or off it)."""
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
    newton_steps: int = 16,
) -> KinkCertificate:
    """Whether ``theta (param,)`` sits next to a minimum of the mean ``loss`` over ``x (sample,
    feature)``, ``y (sample,)`` (plus ``l2 / 2 |theta|^2``) on ReLU kinks: see the module.

    Each of ``reaches`` whose active set is unambiguous (:func:`active_kinks` with ``gap``) and
    differs from the smaller ones' is tried in turn: the point is moved onto those kinks,
    polished by up to ``newton_steps`` Newton steps on their subspace (0: only moved onto it) and
    judged there. The first certified point is returned, else the first attempt's refusal. Each
    attempt judges its own end point exactly, so trying several sets can certify a minimum that
    is there, never one that is not. A certified point never has a higher loss than ``theta``
    (beyond round-off)."""
    _check_network(arch)
    if loss not in SMOOTH_LOSSES:
        raise ValueError(f"loss={loss!r}: the kink certificate needs a loss smooth in the output, one of {SMOOTH_LOSSES}")
    if arch.n_params > MAX_PARAMS:
        raise ValueError(f"{arch.n_params} parameters: the kink certificate's dense Hessians go to {MAX_PARAMS}")
    x = torch.as_tensor(x, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64)
    start = torch.as_tensor(theta, dtype=torch.float64).clone()
    objective = _KinkedLoss(arch, x, y, loss, margin, l2)
    distances = objective.felt_distances(start)
    attempts, tried = [], []
    for reach in sorted(reaches):
        active = active_kinks(distances, reach=reach, gap=gap)
        if active is None or not active.any() or any(torch.equal(active, done) for done in tried):
            continue
        tried.append(active)
        attempts.append(_certify_on(start, active, objective, grad_tol=grad_tol, newton_steps=newton_steps))
        if attempts[-1].certified:
            return attempts[-1]
    if attempts:
        return attempts[0]
    norm = float(objective.gradient(start, None).norm())
    on_none = bool(distances.min() > max(reaches))
    reason = "on no kink" if on_none else "no unambiguous set of active kinks"
    return _refused(start, objective, norm, 0, reason)


def _certify_on(start, active, objective, *, grad_tol, newton_steps) -> KinkCertificate:
    """:func:`certify_kink_minimum` with the active kinks ``active (sample, unit)``."""
    x, arch = objective.x, objective.arch
    point = start.clone()
    samples, units = torch.nonzero(active, as_tuple=True)
    constraints = _kink_gradients(x, arch, samples, units)  # (kink, param)
    if torch.linalg.matrix_rank(constraints) < len(samples):
        return _refused(point, objective, np.nan, len(samples), "kink gradients linearly dependent")
    point = point - torch.linalg.pinv(constraints) @ _preactivations(point, x, arch)[samples, units]
    tangent = _null_space(constraints if objective.l2 else torch.cat([constraints, _rescalings(point, arch)]))
    lowest, largest = np.nan, np.nan
    for iteration in range(newton_steps + 1):
        gradient, hessian = objective.gradient(point, active), objective.hessian(point, active)
        values, vectors = torch.linalg.eigh(tangent.T @ hessian @ tangent)
        lowest, largest = float(values[0]), float(values.abs().max())
        if iteration == newton_steps:
            break
        along = tangent.T @ gradient
        curved = values > _FLAT * largest
        step = -tangent @ (vectors @ torch.where(curved, (vectors.T @ along) / values.clamp_min(1e-300), 0.0))
        moved = _accepted_step(objective, point, active, step, float(along.norm()), tangent)
        if moved is None:
            break
        point = moved
    convexity = objective.unit_output_derivative(point, active)[samples, units]
    # ``gradient`` is the last iteration's, at ``point`` (the loop ends before moving it again).
    norm, _, first_order = clarke_stationarity(gradient.numpy(), constraints.numpy(), convexity.numpy())
    distances = objective.felt_distances(point)
    nearest_other = distances[~active].min().clamp_max(1.0) if (~active).any() else 1.0
    if distances[active].max() > _ON_KINK * nearest_other:
        return _refused(point, objective, norm, len(samples), "the polish came close to another kink")
    loss = float(objective(point))
    if loss > _raised_by_round_off(float(objective(start))):
        return _refused(point, objective, norm, len(samples), "the point on the kinks has a higher loss than the start")
    saddle = lowest < -_FLAT * largest
    certified = first_order > 0 and norm <= grad_tol and not saddle
    reason = "" if certified else (
        "a concave kink or a multiplier outside (0, 1): not a minimum" if not first_order > 0
        else f"Clarke stationarity measure {norm:.2g} above grad_tol" if norm > grad_tol
        else f"negative curvature {lowest:.2g} along the kinks: a saddle"
    )
    return KinkCertificate(
        point.numpy(), loss, norm, len(samples), first_order, lowest, certified, reason,
        float((point - start).norm()),
    )


@dataclasses.dataclass(frozen=True)
class _KinkedLoss:
    """The mean loss of one network with the slopes of the active kinks set to 0 (``L_0`` of the
    module; off the active kinks it is the loss itself)."""

    arch: Architecture
    x: torch.Tensor
    y: torch.Tensor
    loss: str
    margin: float
    l2: float

    def __call__(self, theta: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        return self._value(theta, active)[0]

    def _value(self, theta, active):
        (w_in, b_in), (w_out, b_out) = self.arch.layer_slices
        pre = _preactivations(theta, self.x, self.arch)
        on = pre > 0 if active is None else (pre > 0) & ~active
        hidden = torch.where(on, pre, 0.0)
        output = hidden @ theta[w_out] + (theta[b_out] if b_out is not None else 0.0)
        per_sample = sample_losses(output.view(1, -1, 1), self.y, loss=self.loss, margin=self.margin)[0]
        return per_sample.mean() + l2_penalty(theta, self.l2), output

    def felt_distances(self, theta):
        """:func:`kink_distances`, +inf on points whose loss and its derivative vanish (a
        quadratic hinge's satisfied points): their kinks do not change the loss."""
        felt = (self.output_derivative(theta, None) != 0).unsqueeze(1)
        return torch.where(felt, kink_distances(theta, self.x, self.arch), torch.inf)

    def gradient(self, theta, active):
        variable = theta.clone().requires_grad_(True)
        return torch.autograd.grad(self(variable, active), variable)[0]

    def hessian(self, theta, active):
        return torch.autograd.functional.hessian(lambda t: self(t, active), theta)

    def output_derivative(self, theta, active):
        """``dL/df (sample,)``: the loss's derivative in the network's output on each sample."""
        value, output = self._value(theta.detach(), active)
        output = output.detach().requires_grad_(True)
        per_sample = sample_losses(output.view(1, -1, 1), self.y, loss=self.loss, margin=self.margin)[0]
        return torch.autograd.grad(per_sample.mean(), output)[0]

    def unit_output_derivative(self, theta, active):
        """``dL/dh (sample, unit)``: the loss's derivative in each hidden unit's output."""
        (_, _), (w_out, _) = self.arch.layer_slices
        return self.output_derivative(theta, active).unsqueeze(1) * theta[w_out].detach().unsqueeze(0)


def _accepted_step(objective, point, active, step, before, tangent):
    """``point + step`` (halved until it lowers the gradient along ``M`` without raising the loss
    beyond round-off), or None where no halving does."""
    loss = float(objective(point, active))
    for _ in range(30):
        trial = point + step
        if float(objective(trial, active)) <= _raised_by_round_off(loss) and float(
            (tangent.T @ objective.gradient(trial, active)).norm()
        ) < before:
            return trial
        step = step / 2
    return None


def _raised_by_round_off(loss: float) -> float:
    """The largest loss that is ``loss`` up to round-off (64 ulps of it, and of 1)."""
    return loss + 64 * np.finfo(float).eps * (1 + abs(loss))


def _refused(point, objective, norm, n_active, reason):
    return KinkCertificate(point.numpy(), float(objective(point)), norm, n_active, np.nan, np.nan, False, reason)


def _check_network(arch: Architecture) -> None:
    if arch.depth != 1 or arch.n_outputs != 1 or arch.activation != "relu":
        raise ValueError(f"{arch}: the kink certificate covers one-hidden-layer ReLU networks with one output")


def _preactivations(theta: torch.Tensor, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """Hidden pre-activations ``(sample, unit)`` of one network."""
    (w_in, b_in), _ = arch.layer_slices
    pre = x @ theta[w_in].view(arch.width, arch.n_inputs).T
    return pre + theta[b_in] if b_in is not None else pre


def _kink_gradient_norms(x: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """``|grad z|`` per sample: the input, with a 1 for the bias."""
    return torch.sqrt((x * x).sum(1) + (1.0 if arch.bias else 0.0))


def _kink_gradients(x, arch, samples, units) -> torch.Tensor:
    """``grad z`` of the kinks ``(samples[k], units[k])``, ``(kink, param)``: the input in the
    unit's incoming weights, 1 at its bias."""
    (w_in, b_in), _ = arch.layer_slices
    rows = torch.zeros(len(samples), arch.n_params, dtype=x.dtype)
    index = torch.arange(len(samples))
    for feature in range(arch.n_inputs):
        rows[index, w_in.start + units * arch.n_inputs + feature] = x[samples, feature]
    if b_in is not None:
        rows[index, b_in.start + units] = 1.0
    return rows


def _rescalings(theta: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """Per hidden unit ``(unit, param)``, the tangent of ``(a w, a c, v / a)`` at ``a = 1``: a
    direction along which the loss without weight decay does not change."""
    (w_in, b_in), (w_out, _) = arch.layer_slices
    rows = torch.zeros(arch.width, arch.n_params, dtype=theta.dtype)
    incoming = theta[w_in].view(arch.width, arch.n_inputs)
    for unit in range(arch.width):
        rows[unit, w_in.start + unit * arch.n_inputs : w_in.start + (unit + 1) * arch.n_inputs] = incoming[unit]
        if b_in is not None:
            rows[unit, b_in.start + unit] = theta[b_in][unit]
        rows[unit, w_out.start + unit] = -theta[w_out][unit]
    return rows


def _null_space(rows: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis ``(param, dim)`` of the directions orthogonal to every row."""
    _, singular, vh = torch.linalg.svd(rows, full_matrices=True)
    rank = int((singular > singular.max() * rows.shape[1] * torch.finfo(rows.dtype).eps).sum())
    return vh[rank:].T
