"""Rings of identical Kuramoto oscillators: the landscape whose basins are known.

``n`` phase oscillators on a ring, each coupled to its ``k`` nearest neighbours on either side:
d theta_i / dt = sum_j sin(theta_j - theta_i), the gradient flow of
V(theta) = -sum over coupled pairs cos(theta_j - theta_i). Its stable equilibria are the
q-twisted states theta_i = 2 pi q i / n + c, a circle of equilibria each (the global phase
shift c is free); for k = 1 exactly those with |q| < n / 4 are stable (Wiley, Strogatz and
Girvan 2006). Their basins are octopus-like (Zhang and Strogatz 2021), which makes the ring
the calibration case of the basin pipeline: the same engine, basin statistics and ray probes
run on it as on the networks.

States are ``(member, param)`` arrays of unwrapped phases, ``param`` indexing the oscillators.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from scipy import optimize, special, stats

from basins.engine.descent import descend_until_decided, descent_dataset, with_final_losses
from basins.engine.devices import TORCH_DTYPES, chunk_size, resolve_device
from basins.io import variable_attrs
from basins.labels import DIVERGED
from basins.landscapes import native_mlp

log = logging.getLogger(__name__)

DISTANCE_CONVENTION = (
    "Euclidean norm of the phase differences wrapped to [-pi, pi], minimized over a global "
    "phase shift (each twisted state is a circle of equilibria)"
)


@dataclass(frozen=True)
class KuramotoRing:
    """A ring of ``n_oscillators`` coupled to their ``coupling_range`` nearest neighbours per side."""

    n_oscillators: int
    coupling_range: int = 1

    def __post_init__(self):
        if self.n_oscillators < 3:
            raise ValueError(f"n_oscillators={self.n_oscillators}: a ring needs at least 3")
        if not 1 <= self.coupling_range < self.n_oscillators / 2:
            raise ValueError(
                f"coupling_range={self.coupling_range} must be between 1 and below "
                f"n_oscillators / 2 = {self.n_oscillators / 2} (neighbours on the two sides must differ)"
            )

    @classmethod
    def from_json(cls, text: str) -> KuramotoRing:
        """The inverse of ``json.dumps(ring.__dict__)``, as stored in stage outputs."""
        return cls(**json.loads(text))

    @property
    def n_params(self) -> int:
        return self.n_oscillators

    def energy_and_gradient(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``V`` per member and its gradient ``(member, oscillator)``; the flow is ``-grad``."""
        differences = self._differences(theta)
        energy = torch.zeros_like(theta[:, 0])
        for difference in differences:
            energy = energy - torch.cos(difference).sum(1)
        return energy, self._gradient(differences)

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """The gradient alone (no cosines): what the integrator's inner stages need."""
        return self._gradient(self._differences(theta))

    def _differences(self, theta):
        """theta_{i+shift} - theta_i around the ring, for shift = 1 .. coupling_range; by
        slices (rolling theta and the pulls copied both: 1.3x slower)."""
        n = self.n_oscillators
        return [
            torch.cat((theta[:, shift:] - theta[:, : n - shift], theta[:, :shift] - theta[:, n - shift :]), 1)
            for shift in range(1, self.coupling_range + 1)
        ]

    def _gradient(self, differences):
        # Pair (i, i + shift): -cos(theta_{i+shift} - theta_i) pulls on both ends.
        n = self.n_oscillators
        grad = torch.zeros_like(differences[0])
        for shift, difference in enumerate(differences, start=1):
            pull = torch.sin(difference)
            grad -= pull
            grad[:, shift:] += pull[:, : n - shift]  # oscillator i is pulled by pair (i - shift, i)
            grad[:, :shift] += pull[:, n - shift :]
        return grad

    def objective(self, theta: torch.Tensor, batch=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The :mod:`basins.engine.dynamics` objective; there is no data, so no minibatches."""
        if batch is not None:
            raise ValueError("an oscillator ring has no data to draw minibatches from; use full-batch dynamics")
        return self.energy_and_gradient(theta)

    __call__ = objective

    def objective_on(self, device: torch.device, dtype: torch.dtype):
        """The engine's objective for members on ``device`` in ``dtype``: the C kernel's where it
        runs them (float64 on the CPU: :class:`NativeRingObjective`), else this ring itself."""
        native = native_mlp.ring_kernel_for(self.n_oscillators, self.coupling_range, device, dtype)
        return self if native is None else NativeRingObjective(self, native)

    def twisted_state_energy(self, q: np.ndarray) -> np.ndarray:
        """``V`` of the q-twisted state: -n sum_m cos(2 pi q m / n)."""
        shifts = np.arange(1, self.coupling_range + 1)
        angles = 2 * np.pi * np.outer(np.asarray(q), shifts) / self.n_oscillators
        return -self.n_oscillators * np.cos(angles).sum(1)

    def stable_winding_numbers(self) -> np.ndarray:
        """Every q whose twisted state is linearly stable, in increasing order.

        Perturbation mode p of the q-twisted state decays at rate
        sum_m cos(2 pi q m / n) (2 - 2 cos(2 pi p m / n)); the state is stable when all modes
        p = 1..n-1 decay (for k = 1: cos(2 pi q / n) > 0, that is |q| < n / 4).
        """
        n = self.n_oscillators
        q = np.arange(-(n // 2), n // 2 + 1)
        shifts = np.arange(1, self.coupling_range + 1)
        weights = np.cos(2 * np.pi * np.outer(q, shifts) / n)  # (q, m)
        modes = 1 - np.cos(2 * np.pi * np.outer(shifts, np.arange(1, n)) / n)  # (m, p)
        return q[((weights @ modes) > 1e-12).all(axis=1)]


class NativeRingObjective:
    """A ring's objective by the C kernel (:class:`basins.landscapes.native_mlp.NativeRing`): V and
    its gradient, and the engine's windows of Dormand-Prince gradient flow as a loop in C
    (:mod:`basins.engine.windows`), the torch ring's to round-off (tests/test_oscillators.py).
    At n = 83 its relaxations are 5-8x faster than torch's ring (benchmarks/README.md, *Oscillator rings*)."""

    def __init__(self, ring: KuramotoRing, native: native_mlp.NativeRing):
        self.ring, self.native = ring, native

    def objective(self, theta: torch.Tensor, batch=None) -> tuple[torch.Tensor, torch.Tensor]:
        # a batch is refused by the ring's own objective: a ring has no data to draw from
        return self.ring.objective(theta, batch) if batch is not None else self.native(theta)

    __call__ = objective

    def compiled_steps(self, stepper, *, grad_tol: float, divergence_threshold: float, satisfied=None):
        """The window of ``stepper`` in C (Dormand-Prince gradient flow; None for other dynamics)."""
        if satisfied is not None:
            return None
        form = getattr(stepper, "compiled_form", lambda: None)()
        return self.native.compiled_steps(form, grad_tol=grad_tol, divergence_threshold=divergence_threshold)

    def threads_held(self):
        """Torch's operations between windows on one thread (:func:`basins.landscapes.native_mlp.threads_held`)."""
        return native_mlp.threads_held()


def uniform_phases(n_oscillators: int, member_ids: np.ndarray, *, seed: int) -> np.ndarray:
    """Initial conditions uniform on the torus, ``(member, oscillator)`` in [-pi, pi).

    Member ``i`` depends only on ``(seed, i)``, as the networks' initial parameters do.
    """
    member_ids = np.asarray(member_ids, dtype=np.int64)
    phases = np.empty((len(member_ids), n_oscillators))
    for row, member in enumerate(member_ids):
        phases[row] = np.random.default_rng([int(seed), int(member)]).uniform(-np.pi, np.pi, n_oscillators)
    return phases


def wrap(angle: np.ndarray) -> np.ndarray:
    """Angles mapped to [-pi, pi]."""
    return angle - 2 * np.pi * np.round(angle / (2 * np.pi))


def winding_number(theta: np.ndarray) -> np.ndarray:
    """The integer q = (1 / 2 pi) sum_i wrap(theta_{i+1} - theta_i) around the ring, per member."""
    steps = wrap(np.roll(theta, -1, axis=-1) - theta)
    return np.round(steps.sum(-1) / (2 * np.pi)).astype(np.int64)


def twisted_state(n_oscillators: int, q) -> np.ndarray:
    """theta_i = 2 pi q i / n, ``(n,)`` for one q or ``(len(q), n)`` for several."""
    q = np.asarray(q, dtype=np.float64)
    return 2 * np.pi * q[..., None] * np.arange(n_oscillators) / n_oscillators


def torus_distance(a: np.ndarray, b: np.ndarray, *, rows_per_block: int = 1024) -> np.ndarray:
    """min over c of |wrap(a - b - c)|, row by row (the convention :data:`DISTANCE_CONVENTION`).

    Exact: the stationary points of sum_i wrap(delta_i - c)^2 lie among
    c = mean(delta) + 2 pi j / n, j = 0..n-1 (each delta_i is unwrapped relative to c, and the
    unwrapping shifts add up to a multiple of 2 pi), so all n candidates are evaluated.
    """
    delta = wrap(np.atleast_2d(a) - np.atleast_2d(b))
    n = delta.shape[1]
    candidates = np.arange(n) * (2 * np.pi / n)
    distance = np.empty(len(delta))
    for start in range(0, len(delta), rows_per_block):
        block = delta[start : start + rows_per_block]
        shifts = block.mean(1, keepdims=True) + candidates  # (row, candidate)
        residual = wrap(block[:, None, :] - shifts[:, :, None])
        distance[start : start + rows_per_block] = np.sqrt((residual**2).sum(-1).min(1))
    return distance


def distance_to_twisted_state(theta: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Distance from each state to the circle of q-twisted states (``q`` per row)."""
    return torus_distance(theta, twisted_state(theta.shape[1], q))


def attractor_distance(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Distance from each start to the twisted-state circle its end point winds like.

    The ``distance`` of :func:`basins.basin_geometry.analyze_basins` for rings: measured to
    the exact attractor, not to where the integration stopped on it.
    """
    return distance_to_twisted_state(starts, winding_number(ends))


def relax_ring(
    ring: KuramotoRing,
    initial_theta: np.ndarray,
    member_ids: np.ndarray,
    *,
    dynamics: str,
    lr: float,
    max_steps: int,
    grad_tol: float,
    budget_factors: Sequence[float] = (1,),
    rtol: float = 1e-6,
    atol: float = 1e-9,
    momentum: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "float64",
    memory_budget_mb: float = 1024.0,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every_s: float = 300.0,
    progress_every_s: float = 30.0,
) -> xr.Dataset:
    """Run the dynamics on the ring from every starting state, with the training engine.

    The options are those of :func:`basins.training.train_ensemble` (minibatch SGD aside: a
    ring has no data: ``ring`` alone defines the landscape, and names it in a checkpoint).
    Returns the engine's per-member variables, ``loss`` being the energy V.
    """
    if initial_theta.shape != (len(member_ids), ring.n_params):
        raise ValueError(
            f"initial_theta has shape {initial_theta.shape}; expected ({len(member_ids)}, {ring.n_params})"
        )
    torch_device, torch_dtype = resolve_device(device), TORCH_DTYPES[dtype]
    state_bytes = torch_dtype.itemsize * ring.n_params
    chunk = chunk_size(state_bytes * (4 * ring.coupling_range + 40), state_bytes, memory_budget_mb, torch_device)
    objective = ring.objective_on(torch_device, torch_dtype)
    out = descend_until_decided(
        objective,
        initial_theta,
        member_ids,
        budget_factors=budget_factors,
        dynamics=dynamics,
        lr=lr,
        max_steps=max_steps,
        grad_tol=grad_tol,
        momentum=momentum,
        rtol=rtol,
        atol=atol,
        seed=seed,
        device=torch_device,
        dtype=torch_dtype,
        chunk=chunk,
        run_id=(ring, dtype),
        checkpoint_path=checkpoint_path,
        checkpoint_every_s=checkpoint_every_s,
        progress_every_s=progress_every_s,
    )
    out = with_final_losses(out, objective, lambda a: torch.as_tensor(a, dtype=torch_dtype, device=torch_device))
    result = descent_dataset(out, member_ids, initial_theta, loss_name="energy V")
    return result.assign_attrs(
        ring=json.dumps(ring.__dict__, sort_keys=True),
        n_params=ring.n_params,
        dynamics=dynamics,
        parameter_layout="one unwrapped phase per oscillator, in ring order",
    )


def classify_twisted_states(
    final_theta: np.ndarray, status: np.ndarray, ring: KuramotoRing, *, tolerance: float
) -> xr.Dataset:
    """The minima catalog of a ring: which twisted state each member reached.

    A member is assigned to the q-twisted state when its final state winds q times and lies
    within ``tolerance`` (:func:`torus_distance`) of that state's circle; otherwise (diverged,
    stopped near a saddle or short of the attractor) it is unassigned (-1). Minima are the
    twisted states reached, ordered by how many members reached them.
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance={tolerance} must be positive")
    q = winding_number(final_theta)
    distance = distance_to_twisted_state(final_theta, q)
    confirmed = (status != DIVERGED) & np.isfinite(distance) & (distance <= tolerance)
    reached, counts = np.unique(q[confirmed], return_counts=True)
    order = np.lexsort((reached, np.abs(reached), -counts))  # largest basin first; ties by |q|, q
    reached, counts = reached[order], counts[order]
    minimum_of_member = np.full(len(q), -1, dtype=np.int64)
    index_of_q = {int(value): index for index, value in enumerate(reached)}
    for row in np.flatnonzero(confirmed):
        minimum_of_member[row] = index_of_q[int(q[row])]
    stable = np.isin(reached, ring.stable_winding_numbers())
    log.info(
        "%d of %d members on a twisted state; %d states reached, q from %s to %s",
        confirmed.sum(), len(q), len(reached), reached.min(initial=0), reached.max(initial=0),
    )
    return xr.Dataset(
        {
            "winding_number": ("minimum", reached, variable_attrs("winding number q of the twisted state")),
            "theta": (
                ("minimum", "param"),
                twisted_state(ring.n_oscillators, reached),
                variable_attrs("the twisted state with phase shift 0", "rad"),
            ),
            "loss": ("minimum", ring.twisted_state_energy(reached), variable_attrs("energy V of the state")),
            "stable": ("minimum", stable, variable_attrs("linearly stable")),
            "n_members": ("minimum", counts, variable_attrs("members that reached it")),
            "minimum_of_member": ("member", minimum_of_member, variable_attrs("minimum reached (-1: none)")),
            "winding_number_of_member": ("member", q, variable_attrs("winding number of the final state")),
            "distance_to_twisted_state": (
                "member",
                distance,
                variable_attrs("distance of the final state to the twisted state of its winding number", "rad"),
            ),
        },
        coords={
            "minimum": ("minimum", np.arange(len(reached)), variable_attrs("minimum index, by basin size")),
            "param": ("param", np.arange(ring.n_oscillators), variable_attrs("oscillator index")),
        },
        attrs={
            "ring": json.dumps(ring.__dict__, sort_keys=True),
            "tolerance": tolerance,
            "distance_convention": DISTANCE_CONVENTION,
        },
    )


WINDING_MODELS = {"gaussian": np.square, "exponential": np.abs}


def fit_winding_distribution(
    winding_numbers: np.ndarray, counts: np.ndarray, support: np.ndarray, *, min_expected: float = 5.0
) -> xr.Dataset:
    """Maximum-likelihood fits of p(q) ~ exp(-c q^2) and p(q) ~ exp(-c |q|), with goodness of fit.

    Parameters
    ----------
    winding_numbers, counts : ndarray, shape (state,)
        The twisted states reached and how many members reached each.
    support : ndarray
        The q the model is normalized over (the stable twisted states); counts outside it are
        left out of the fit and reported as ``n_outside_support``.
    min_expected : float
        Pearson's chi-square pools the states of largest |q| until every bin expects at least
        this many members.

    Returns
    -------
    xarray.Dataset
        Dim ``fit`` (gaussian, exponential): the rate ``c`` with its standard error (from the
        Fisher information N Var_c[f(q)]), the log-likelihood, AIC, Pearson's chi-square with
        its degrees of freedom and p-value; ``fitted_probability(fit, winding)`` on the support.
    """
    support = np.asarray(support, dtype=np.int64)
    observed = np.zeros(len(support))
    inside = np.isin(winding_numbers, support)
    for q, count in zip(winding_numbers[inside], counts[inside]):
        observed[np.searchsorted(support, q)] = count
    total = observed.sum()
    if total == 0:
        raise ValueError("no member reached a twisted state in the support; nothing to fit")
    fits = {name: _fit_one(feature(support), observed, min_expected) for name, feature in WINDING_MODELS.items()}
    per_model = lambda key, *attrs: ("fit", [fits[m][key] for m in WINDING_MODELS], variable_attrs(*attrs))  # noqa: E731
    return xr.Dataset(
        {
            "rate": per_model("rate", "fitted c of p(q) ~ exp(-c f(q))"),
            "rate_se": per_model("rate_se", "standard error of rate"),
            "log_likelihood": per_model("log_likelihood", "multinomial log-likelihood at the fit"),
            "aic": per_model("aic", "Akaike information criterion (one parameter)"),
            "chi_square": per_model("chi_square", "Pearson chi-square of the pooled counts"),
            "chi_square_dof": per_model("dof", "degrees of freedom of chi_square"),
            "p_value": per_model("p_value", "chi-square goodness-of-fit p-value"),
            "fitted_probability": (
                ("fit", "winding"),
                np.array([fits[m]["probability"] for m in WINDING_MODELS]),
                variable_attrs("fitted p(q), normalized over the support"),
            ),
            "observed_count": ("winding", observed, variable_attrs("members that reached the q-twisted state")),
        },
        coords={
            "fit": ("fit", list(WINDING_MODELS), variable_attrs("gaussian: f = q^2; exponential: f = |q|")),
            "winding": ("winding", support, variable_attrs("winding number q (the stable support)")),
        },
        attrs={"n_fitted": int(total), "n_outside_support": int(counts[~inside].sum()), "min_expected": min_expected},
    )


def _fit_one(feature, observed, min_expected):
    total = observed.sum()

    def log_probability(rate):
        return -rate * feature - special.logsumexp(-rate * feature)

    def negative_log_likelihood(rate):
        return -(observed * log_probability(rate)).sum()

    rate = optimize.minimize_scalar(negative_log_likelihood, bounds=(0.0, 50.0), method="bounded",
                                    options={"xatol": 1e-10}).x
    p = np.exp(log_probability(rate))
    variance = (p * feature**2).sum() - (p * feature).sum() ** 2
    expected = total * p
    chi_square, dof = _pooled_chi_square(observed, expected, feature, min_expected=min_expected)
    log_likelihood = -negative_log_likelihood(rate)
    return {
        "rate": rate,
        "rate_se": 1 / np.sqrt(total * variance) if variance > 0 else np.nan,
        "log_likelihood": log_likelihood,
        "aic": 2 - 2 * log_likelihood,
        "chi_square": chi_square,
        "dof": dof,
        "p_value": stats.chi2.sf(chi_square, dof) if dof > 0 else np.nan,
        "probability": p,
    }


def _pooled_chi_square(observed, expected, feature, *, min_expected):
    """Pearson chi-square with the tail (largest f) pooled until each bin expects enough."""
    order = np.argsort(feature, kind="stable")
    bins_observed, bins_expected = [], []
    pending_observed = pending_expected = 0.0
    for index in order[::-1]:  # from the tail inwards
        pending_observed += observed[index]
        pending_expected += expected[index]
        if pending_expected >= min_expected:
            bins_observed.append(pending_observed)
            bins_expected.append(pending_expected)
            pending_observed = pending_expected = 0.0
    if pending_expected > 0 and bins_expected:  # what is left joins the innermost bin
        bins_observed[-1] += pending_observed
        bins_expected[-1] += pending_expected
    bins_observed, bins_expected = np.array(bins_observed), np.array(bins_expected)
    chi_square = float(((bins_observed - bins_expected) ** 2 / bins_expected).sum()) if len(bins_expected) else np.nan
    return chi_square, len(bins_expected) - 2  # one fitted rate, one normalization
