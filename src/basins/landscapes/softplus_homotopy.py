"""A softplus-smoothing homotopy that carries a ReLU network onto the kinks of a minimum.

A minimum of a ReLU network's loss often sits on kinks (:mod:`basins.landscapes.relu_kinks`),
where the gradient jumps. BFGS stops short of such a minimum wherever its line search cannot
cross the kinks in the right proportions: its end point is then not on a clean set of kinks
(the near ones do not stand apart from the rest), and the kink certificate refuses it. The
homotopy replaces every hidden ReLU by

    softplus_beta(z) = log(1 + exp(beta z)) / beta,

a smooth function within ``log(2) / beta`` of relu(z) (exponentially closer off ``|z| ~
1 / beta``), minimizes that smooth loss by damped Newton steps (dense Hessians by autograd: the
jamming sweep's N ~ 150-200 parameters make them cheap) at the first ``beta``, and continues
from each end point at the next, larger one. A kink that the ReLU minimum sits on, with
multiplier ``s`` (:func:`basins.landscapes.relu_kinks.clarke_stationarity`), is a smooth
minimum's point at ``sigmoid(beta z) = s``, i.e. ``z = logit(s) / beta``: as beta grows the
smooth minima approach the ReLU minimum's kinks at that rate, while the other kinks stay where
they are. At the last beta (1e8) the active kinks lie ~1e-8 from the point and the rest
typically 1e-4 or more: a clean set that the certificate can read (at 1e7 the depth-2 minimum of
the tests has its 55 kinks within 1.6e-7 and the next at 8e-5, inside the certificate's factor
100 of every reach).

Three things make Newton's steps work here. (1) Between betas a tangent predictor in u = 1 /
beta: to first order each active kink's z is logit(s) u, linear in u, so the predictor lands
next to the next minimum; from the previous one instead, the kinks with s near 0 or 1 would sit
where the sharper softplus is exponentially flat (sigmoid(10 logit s)) and Newton's steps crawl.
(2) Without weight decay the steps keep each hidden unit's incoming norm (the ReLU loss does not
change along its rescalings, the smoothed one falls slowly along them: a valley the steps would
drift down for ever). (3) Curvatures below 1e-10 of the largest are left alone: at large beta
the curvature across the active kinks (~beta) and along them (down to ~1e-5) differ by more than
float64 resolves in one solve; the certificate's polish moves along the kinks afterwards. A run
whose smoothed loss still falls along such flat directions, a long shallow valley, ends there,
not at a minimum, and the certificate refuses it.

The homotopy decides nothing: it only proposes a point, and the certificate judges that
point as it judges any other (it certifies a minimum that is there, never one that is not).
Known answers (tests/test_softplus_homotopy.py): softplus_beta tends to relu (loss and gradient
away from kinks, within ``log(2) / beta`` everywhere); a certified depth-2 jammed minimum
(N = 190, P = 520, 55 kinks in two layers) displaced by 1e-6 off its kinks (refused there) is
carried back to the same kinks and loss (to 1e-8); the tangent predictor from beta = 1e6 to 1e7
there lowers the gradient at 1e7 a thousandfold; the gauge leaves the ReLU loss unchanged; a
start from which the homotopy is not let converge, and a satisfiable training set, end at
points the certificate refuses; a candidate above the loss it is held to is refused.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from basins.landscapes.architecture import Architecture
from basins.landscapes.losses import l2_penalty, sample_losses
from basins.landscapes.relu_kinks import kinked_forward, null_space, rescaled_layer, unit_norms, unit_rows

#: softplus is taken as linear beyond beta z = 40 (torch's threshold): its error there, e^-40
#: / beta, is below float64's resolution of z.
_LINEAR_BEYOND = 40.0
#: Armijo's sufficient decrease: a step must lower the loss by this fraction of its first-order
#: prediction.
_ARMIJO = 1e-4
#: Relative to the largest, curvatures of the Newton step's Hessian below this are flat and left
#: alone. Smaller (1e-13) lets the steps follow shallow valleys further, at several times the
#: cost; in a probe (session 31) it certified neither of the two undecided runs of the default
#: study it was tried on (depth 2 seed 3, P = 520; depth 3 seed 3, P = 381).
_FLAT = 1e-10
#: A loss change this many times float64's epsilon (relative) is round-off.
_ROUND_OFF = 64 * np.finfo(float).eps
#: Step halvings before a Newton step is given up (the loss no longer falls beyond round-off).
_HALVINGS = 40


@dataclasses.dataclass(frozen=True)
class HomotopyEnd:
    """Where :func:`follow_softplus_homotopy` ended: ``theta (param,)``; per beta run
    ``betas (beta,)`` (the schedule, up to a beta that spent its steps), the Newton ``iterations`` taken and the smooth loss's
    ``grad_norm`` (across the rescalings without weight decay) and ``smooth_loss`` at the end
    of that beta; and the ReLU network's loss at the start and at ``theta``."""

    theta: np.ndarray
    betas: np.ndarray
    iterations: np.ndarray
    grad_norm: np.ndarray
    smooth_loss: np.ndarray
    start_loss: float
    end_loss: float


def softplus_relu(z: torch.Tensor, beta: float) -> torch.Tensor:
    """``log(1 + exp(beta z)) / beta``: relu(z) smoothed on the scale ``1 / beta``."""
    return F.softplus(z, beta=beta, threshold=_LINEAR_BEYOND)


def smooth_loss(
    theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, arch: Architecture, *, beta: float, loss: str,
    margin: float = 1.0, l2: float = 0.0,
) -> torch.Tensor:
    """The mean ``loss`` of one ReLU network ``theta (param,)`` on ``x (sample, feature)``, ``y
    (sample,)`` with every hidden ReLU replaced by :func:`softplus_relu` (plus ``l2 / 2
    |theta|^2``); ``beta`` = inf: the ReLU network's own."""
    activation = torch.relu if beta == np.inf else functools.partial(softplus_relu, beta=beta)
    _, output = kinked_forward(theta, x, arch, activation=activation)
    per_sample = sample_losses(output.view(1, -1, 1), y, loss=loss, margin=margin)[0]
    return per_sample.mean() + l2_penalty(theta, l2)


def follow_softplus_homotopy(
    theta: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    arch: Architecture,
    *,
    loss: str,
    margin: float = 1.0,
    l2: float = 0.0,
    betas: Sequence[float] = (1e3, 1e4, 1e5, 1e6, 1e7, 1e8),
    newton_steps: int = 100,
    grad_tol: float = 1e-12,
) -> HomotopyEnd:
    """Minimize the softplus-smoothed loss (:func:`smooth_loss`) from ``theta (param,)`` at each
    of ``betas`` in turn, each from the previous one's end point: a candidate point on the kinks
    of a minimum of the ReLU network's loss (see the module), for
    :func:`basins.landscapes.relu_kinks.certify_kink_minimum` to judge.

    Parameters
    ----------
    theta : ndarray, shape (param,)
        The start (the quasi-Newton finish's end point in the jamming sweep).
    x, y : ndarray, shapes (sample, feature), (sample,)
        The training set; ``loss``, ``margin``, ``l2`` as for the certificate.
    betas : sequence of float
        Increasing inverse smoothing scales. The first must be small enough that the smoothed
        loss's minimum is near the start (1e3 against pre-activations of order one), the last
        large enough that the minimum's kinks lie far closer than the others (1e8: ~1e-8
        against ~1e-4).
    newton_steps : int
        Newton iterations per beta at most. Each costs a dense Hessian (one backward pass per
        parameter, vectorized): ~0.1 s at N = 190, P = 520 on one CPU core. A beta that spends
        them above ``grad_tol`` ends the homotopy there (its records then stop at that beta).
    grad_tol : float
        A beta is done once the smooth loss's gradient norm is at most this. Its minimum need
        not be met to the certificate's tolerance: the certificate polishes along the kinks.

    Each step is Newton's on the Hessian shifted (Levenberg) to twice its most negative
    eigenvalue where it is not positive definite, with a backtracking (Armijo) line search on
    the smooth loss; a beta ends early where Newton's predicted decrease is round-off or no step
    lowers the loss. Between betas, a tangent predictor (see the module). Nocedal and Wright
    (2006), *Numerical Optimization*, sections 3.1, 3.4 and 11.3 (continuation).
    """
    betas = check_schedule(betas, newton_steps)
    start = point = torch.as_tensor(np.asarray(theta), dtype=torch.float64).clone()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    # Without weight decay the ReLU loss is the same along each hidden unit's rescaling (a w,
    # a c, v / a); the smoothed one is not (a unit scaled up is a sharper softplus) and falls
    # slowly along it, a valley Newton's steps would drift down for ever. The steps keep each
    # unit's incoming norm to first order, and each unit is rescaled back to it after a step.
    gauge = None if l2 else _GaugeFixed(arch, _incoming_norms(point, arch))
    smoothed = functools.partial(smooth_loss, x=x, y=y, arch=arch, loss=loss, margin=margin, l2=l2)
    iterations, norms, losses = [], [], []
    for index, beta in enumerate(betas):
        energy = functools.partial(smoothed, beta=float(beta))
        if index:
            point = _predicted(smoothed, point, gauge, betas[index - 1], beta)
        point, taken, norm, value = _minimize_by_newton(energy, point, gauge, max_steps=newton_steps, grad_tol=grad_tol)
        iterations.append(taken)
        norms.append(norm)
        losses.append(value)
        if taken == newton_steps and norm > grad_tol:
            # Not at this beta's minimum: the path of minima is lost, and larger betas would
            # only sharpen a point on no path (at depth 3 five betas of 100 steps each, 55 s a
            # run, ended on no clean set of kinks). The certificate judges the point reached.
            break
    betas = betas[: len(iterations)]
    with torch.no_grad():
        start_loss, end_loss = (float(smoothed(at, beta=np.inf)) for at in (start, point))
    return HomotopyEnd(
        point.numpy(), betas, np.asarray(iterations), np.asarray(norms), np.asarray(losses), start_loss, end_loss
    )


def check_schedule(betas: Sequence[float], newton_steps: int) -> np.ndarray:
    """``betas`` as an array, once they increase and are positive and ``newton_steps`` >= 1."""
    betas = np.asarray(betas, dtype=float)
    if betas.ndim != 1 or not len(betas) or not (betas > 0).all() or (np.diff(betas) <= 0).any():
        raise ValueError(f"betas={betas.tolist()}: give increasing positive inverse smoothing scales, e.g. [1e3, 1e4]")
    if newton_steps < 1:
        raise ValueError(f"newton_steps={newton_steps}: at least one Newton step per beta is needed")
    return betas


def _minimize_by_newton(energy, point, gauge, *, max_steps, grad_tol):
    """Damped Newton on ``energy`` from ``point`` (across the rescalings where ``gauge`` is
    given): the end point, the iterations taken and the gradient norm and value there."""
    for iteration in range(max_steps + 1):
        value, gradient = _value_and_gradient(energy, point)
        basis = _across_rescalings(point, gauge)
        norm = float((basis.T @ gradient).norm())
        if norm <= grad_tol or iteration == max_steps:
            return point, iteration, norm, float(value)
        step = -_solved(energy, point, basis, gradient)
        slope = float(gradient @ step)
        if -slope <= _ROUND_OFF * (1 + abs(float(value))):  # Newton's predicted decrease: none left
            return point, iteration, norm, float(value)
        moved = _armijo(energy, point, value, slope, step, gauge)
        if moved is None:
            return point, iteration, norm, float(value)
        point = moved


def _predicted(smoothed, point, gauge, beta, next_beta):
    """The tangent predictor of the continuation in ``u = 1 / beta``: ``point``, a minimum at
    ``beta``, moved by ``dtheta/du (1/next_beta - 1/beta)``, with ``dtheta/du = -H^-1 dg/du``
    (``dg/du`` by central differences in u); ``point`` itself where that does not lower the
    smoothed loss at ``next_beta``. Near the ReLU minimum each active kink's pre-activation is
    ``logit(s) u`` to first order in u, so the predictor lands next to the next minimum, where
    Newton's steps converge: from ``point`` itself they would start where the softplus of the
    kinks with ``s`` near 0 or 1 is exponentially flat (``sigmoid(10 logit s)``) and crawl."""
    energy = functools.partial(smoothed, beta=float(beta))
    relative = 1e-4
    gradients = [_value_and_gradient(functools.partial(smoothed, beta=float(beta) / (1 + sign * relative)), point)[1]
                 for sign in (1, -1)]
    by_u = (gradients[0] - gradients[1]) * beta / (2 * relative)
    tangent = -_solved(energy, point, _across_rescalings(point, gauge), by_u)
    predicted = point + tangent * (1 / next_beta - 1 / beta)
    predicted = predicted if gauge is None else gauge(predicted)
    with torch.no_grad():
        lower = float(smoothed(predicted, beta=float(next_beta))) < float(smoothed(point, beta=float(next_beta)))
    return predicted if lower else point


def _value_and_gradient(energy, point):
    variable = point.clone().requires_grad_(True)
    value = energy(variable)
    return value.detach(), torch.autograd.grad(value, variable)[0]


def _across_rescalings(point, gauge):
    """An orthonormal basis ``(param, dim)`` of the directions the steps take: all of them
    (weight decay), or those along the gauge ``|in_u| = const`` (across the ReLU rescalings, which
    change each ``|in_u|``: a step along it moves the norms only to second order, so the gauge's
    rescaling back changes the smoothed loss only to second order too)."""
    return torch.eye(len(point), dtype=point.dtype) if gauge is None else null_space(gauge.normals(point))


def _solved(energy, point, basis, vector):
    """``(H + mu I)^-1 vector`` in the directions of ``basis``, ``H`` the Hessian of ``energy``
    there and ``mu`` the Levenberg shift: 0 where ``H`` is positive definite, else twice its
    most negative eigenvalue's size. Directions whose shifted curvature is below :data:`_FLAT`
    of the largest are left alone: at large beta the curvature across the active kinks (~beta)
    and along them (down to ~1e-5) differ by more than float64 resolves, and the solve's
    round-off would send the step far along the flat directions (the kink certificate's polish
    moves along them afterwards)."""
    hessian = basis.T @ torch.autograd.functional.hessian(energy, point, vectorize=True) @ basis
    values, vectors = torch.linalg.eigh((hessian + hessian.T) / 2)
    values = values + 2 * max(-float(values[0]), 0.0)
    kept = values > _FLAT * float(values.abs().max())
    return basis @ (vectors @ torch.where(kept, (vectors.T @ (basis.T @ vector)) / values.clamp_min(1e-300), 0.0))


def _armijo(energy, point, value, slope, step, gauge):
    """``point + t step`` (rebalanced by ``gauge`` where given) for the first ``t`` in 1, 1/2,
    1/4, ... that lowers ``energy`` by :data:`_ARMIJO` of ``t slope`` (None where none does
    within :data:`_HALVINGS` halvings)."""
    if not slope < 0:
        return None
    size = 1.0
    with torch.no_grad():
        for _ in range(_HALVINGS):
            trial = point + size * step
            trial = trial if gauge is None else gauge(trial)
            if float(energy(trial)) <= float(value) + _ARMIJO * size * slope:
                return trial
            size /= 2
    return None


@dataclasses.dataclass(frozen=True)
class _GaugeFixed:
    """Rescales each hidden unit of a point, layer by layer from the input, to the incoming
    norms ``norms`` (one list a layer): the same ReLU network, on the gauge ``|in_u| = norms``."""

    arch: Architecture
    norms: list

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        for layer, wanted in enumerate(self.norms):
            # A layer's rescaling changes the next layer's incoming norms: one layer at a time.
            factor = wanted / unit_norms(theta, self.arch, layer)[0].clamp_min(1e-300)
            theta = rescaled_layer(theta, self.arch, layer, factor)
        return theta

    def normals(self, theta: torch.Tensor) -> torch.Tensor:
        """``(unit, param)``: each hidden unit's incoming weights and bias in their places, the
        gradient of ``|in_u|^2 / 2``."""
        return unit_rows(theta, self.arch, outgoing=0.0)


def _incoming_norms(theta, arch) -> list:
    """Per hidden layer, each unit's incoming weights' and bias's norm ``(unit,)``."""
    return [unit_norms(theta, arch, layer)[0] for layer in range(arch.depth)]
