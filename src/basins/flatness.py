"""Stage ``measure_flatness``: Hessian spectra and local energy at every catalogued minimum.

Wide flat minima are the literature's explanation of generalization (Baldassi, Pittorino and
Zecchina 2020); this stage puts their flatness beside basin size and test error. Everything is
batched over minima: the Hessian of each minimum's training loss is only touched through
Hessian-vector products (:func:`basins.engine.curvature.make_hvp`), for all minima at once.

- ``top_eigenvalues`` by Lanczos with full reorthogonalization (exact once the Krylov space
  spans the parameters);
- ``trace`` by Hutchinson's estimator with Rademacher probes, with its standard error;
- the full spectrum by dense ``eigvalsh`` when the parameter count is small, else a spectral
  density by stochastic Lanczos quadrature (Ubaru, Chen and Saad 2017);
- the index (negative eigenvalues: a saddle has some, a minimum none);
- the local energy: the mean training error (and loss) after multiplicative Gaussian
  perturbations theta (1 + sigma xi) of every parameter, against sigma.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import xarray as xr

from basins.engine.curvature import dense_hessians, hutchinson_trace, lanczos, make_hvp
from basins.io import variable_attrs

log = logging.getLogger(__name__)


def spectral_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, width: float) -> np.ndarray:
    """Gaussian-smoothed density on ``grid`` of point masses ``weights`` at ``nodes``, per row."""
    kernel = np.exp(-0.5 * ((grid[None, None, :] - nodes[:, :, None]) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    return (weights[:, :, None] * kernel).sum(1)


def local_energy(
    theta: np.ndarray,
    errors_and_losses: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    sigmas: np.ndarray,
    *,
    n_draws: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Training error and loss after multiplicative perturbations, ``(minimum, sigma)``.

    Every parameter is multiplied by ``1 + sigma xi``, xi standard normal, ``n_draws`` times
    per minimum and sigma (minimum m draws from ``(seed, m)``, the same xi at every sigma so
    the curves are smooth in sigma). ``errors_and_losses(points (n, param))`` evaluates the
    training error and loss of each point. Returns the means, their standard errors and the
    local energy delta-E(sigma) = error(sigma) - error(0).
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if (sigmas < 0).any() or n_draws < 2:
        raise ValueError(f"sigmas={sigmas} must be >= 0 and n_draws={n_draws} >= 2")
    n_minima, n_params = theta.shape
    out = {name: np.zeros((n_minima, len(sigmas))) for name in ("error", "error_se", "loss", "loss_se")}
    base_error, _ = errors_and_losses(theta)
    for m in range(n_minima):
        noise = np.random.default_rng([seed, m]).standard_normal((n_draws, n_params))
        points = theta[m] * (1 + sigmas[:, None, None] * noise[None])  # (sigma, draw, param)
        error, loss = errors_and_losses(points.reshape(-1, n_params))
        error, loss = error.reshape(len(sigmas), n_draws), loss.reshape(len(sigmas), n_draws)
        out["error"][m], out["error_se"][m] = error.mean(1), error.std(1, ddof=1) / np.sqrt(n_draws)
        out["loss"][m], out["loss_se"][m] = loss.mean(1), loss.std(1, ddof=1) / np.sqrt(n_draws)
    out["local_energy"] = out["error"] - base_error[:, None]
    return out


def measure_flatness(
    theta: np.ndarray,
    member_loss: Callable[[torch.Tensor], torch.Tensor],
    errors_and_losses: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    n_top: int = 5,
    n_lanczos: int = 40,
    n_hutchinson: int = 64,
    n_slq: int = 4,
    max_dense_params: int = 1500,
    n_bins: int = 80,
    index_tolerance: float = 1e-6,
    sigmas: list[float] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    n_draws: int = 200,
    seed: int = 0,
    device: str = "cpu",
    chunk: int | None = None,
) -> xr.Dataset:
    """Hessian spectra and local energy of every minimum ``theta (minimum, param)``.

    Parameters
    ----------
    member_loss : callable
        ``(minimum, param) -> (minimum,)`` training loss of each point, differentiable (see
        :func:`basins.landscapes.objective.member_losses`).
    errors_and_losses : callable
        Training error and loss of a batch of points (see :func:`network_errors_and_losses`).
    n_top, n_lanczos : int
        Top eigenvalues reported, and Lanczos iterations computing them.
    n_hutchinson : int
        Rademacher probes of the trace estimate.
    n_slq, n_bins : int
        Lanczos runs averaged in the stochastic Lanczos quadrature density, and its grid size.
    max_dense_params : int
        Up to this parameter count the Hessians are formed densely: full spectrum, exact trace
        and index.
    index_tolerance : float
        An eigenvalue counts as negative below ``-index_tolerance * max |eigenvalue|``.
    sigmas, n_draws : list, int
        Relative perturbation sizes and draws per minimum and size of the local energy.
    chunk : int, optional
        Minima whose Hessians are worked on at once (all by default); bounds the memory of
        catalogs with many minima (see :func:`hessian_chunk_size`). The random probes are
        drawn chunk after chunk, so the stochastic estimates (Hutchinson, stochastic Lanczos)
        depend on it within their errors; dense spectra and the local energy do not.

    Returns
    -------
    xarray.Dataset
        ``top_eigenvalue (minimum, eigen)``, ``trace`` and ``trace_se`` (Hutchinson),
        ``index``, ``spectral_density (minimum, bin)``; with dense Hessians also
        ``spectrum (minimum, mode)`` and ``exact_trace``; ``local_energy``, ``perturbed_error``,
        ``perturbed_loss`` ``(minimum, sigma)`` with standard errors.
    """
    n_minima, n_params = theta.shape
    torch_theta = torch.as_tensor(theta, dtype=torch.float64, device=device)
    hvp = make_hvp(member_loss)
    generator = torch.Generator().manual_seed(seed)
    dense = n_params <= max_dense_params
    log.info("%d minima of %d parameters: %s Hessians", n_minima, n_params, "dense" if dense else "Lanczos")
    if n_minima:
        hessians = _hessian_summary(
            hvp, torch_theta, chunk=chunk or n_minima, n_top=n_top, n_lanczos=n_lanczos, n_hutchinson=n_hutchinson,
            n_slq=n_slq, dense=dense, generator=generator, index_tolerance=index_tolerance, n_bins=n_bins,
        )
        energy = local_energy(theta, errors_and_losses, np.asarray(sigmas), n_draws=n_draws, seed=seed)
    else:
        hessians = _HessianSummary(
            top=np.zeros((0, n_top)), trace=np.zeros(0), trace_se=np.zeros(0), index=np.zeros(0, dtype=int),
            grid=np.zeros(n_bins), density=np.zeros((0, n_bins)), spectrum=np.zeros((0, n_params)),
        )
        energy = {name: np.zeros((0, len(sigmas))) for name in ("error", "error_se", "loss", "loss_se", "local_energy")}
    return _flatness_dataset(hessians, energy, n_minima=n_minima, n_top=n_top, n_params=n_params, sigmas=sigmas,
                             dense=dense, seed=seed)


class _HessianSummary(NamedTuple):
    """Per minimum: top eigenvalues, Hutchinson trace, index, spectral density on ``grid`` and,
    with dense Hessians, the spectrum (None otherwise)."""

    top: np.ndarray
    trace: np.ndarray
    trace_se: np.ndarray
    index: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    spectrum: np.ndarray | None


def _hessian_summary(hvp, theta, *, chunk, n_top, n_lanczos, n_hutchinson, n_slq, dense, generator, index_tolerance,
                     n_bins) -> _HessianSummary:
    """The Hessian measures of every minimum, ``chunk`` minima at a time."""
    parts = [
        _hessian_measures(hvp, theta[start : start + chunk], n_top=n_top, n_lanczos=n_lanczos,
                          n_hutchinson=n_hutchinson, n_slq=n_slq, dense=dense, generator=generator)
        for start in range(0, len(theta), chunk)
    ]
    top, trace, trace_se, nodes, weights, counted = (np.concatenate(arrays) for arrays in zip(*parts))
    index = (counted < -index_tolerance * np.abs(counted).max(1, keepdims=True)).sum(1)
    low, high = float(nodes.min()), float(nodes.max())
    grid = np.linspace(low - 0.05 * (high - low + 1e-12), high + 0.05 * (high - low + 1e-12), n_bins)
    density = spectral_density(nodes, weights, grid, width=max(2 * (grid[1] - grid[0]), 1e-12))
    return _HessianSummary(top, trace, trace_se, index, grid, density, nodes if dense else None)


def _flatness_dataset(hessians, energy, *, n_minima, n_top, n_params, sigmas, dense, seed):
    per_minimum = lambda values, *attrs: ("minimum", values, variable_attrs(*attrs))  # noqa: E731
    per_sigma = lambda values, *attrs: (("minimum", "sigma"), values, variable_attrs(*attrs))  # noqa: E731
    data_vars = dict(
        top_eigenvalue=(("minimum", "eigen"), hessians.top, variable_attrs("largest Hessian eigenvalues (Lanczos)")),
        trace=per_minimum(hessians.trace, "Hessian trace (Hutchinson)"),
        trace_se=per_minimum(hessians.trace_se, "standard error of trace"),
        index=per_minimum(np.asarray(hessians.index, dtype=np.int64),
                          "negative Hessian eigenvalues" + ("" if dense else " (negative Ritz values: a lower bound)")),
        spectral_density=(("minimum", "bin"), hessians.density, variable_attrs("Hessian spectral density")),
        local_energy=per_sigma(energy["local_energy"], "training error increase under perturbation (delta-E)"),
        perturbed_error=per_sigma(energy["error"], "mean training error of perturbed minima"),
        perturbed_error_se=per_sigma(energy["error_se"], "standard error of perturbed_error"),
        perturbed_loss=per_sigma(energy["loss"], "mean training loss of perturbed minima"),
        perturbed_loss_se=per_sigma(energy["loss_se"], "standard error of perturbed_loss"),
    )
    coords = {
        "minimum": ("minimum", np.arange(n_minima), variable_attrs("minimum index, by basin size")),
        "eigen": ("eigen", np.arange(n_top), variable_attrs("rank of eigenvalue, largest first")),
        "bin": ("bin", hessians.grid, variable_attrs("eigenvalue")),
        "sigma": ("sigma", np.asarray(sigmas, dtype=np.float64), variable_attrs("relative perturbation size")),
    }
    if dense:
        spectrum = hessians.spectrum
        data_vars["spectrum"] = (("minimum", "mode"), spectrum, variable_attrs("Hessian eigenvalues, ascending"))
        data_vars["exact_trace"] = per_minimum(spectrum.sum(1), "Hessian trace (dense)")
        coords["mode"] = ("mode", np.arange(n_params), variable_attrs("eigenvalue index, ascending"))
    return xr.Dataset(data_vars, coords=coords, attrs={"hessian": "dense" if dense else "lanczos", "seed": seed})


def hessian_chunk_size(n_params: int, *, dense: bool, n_lanczos: int, memory_budget_mb: float, network_chunk: int) -> int:
    """Minima per chunk of :func:`measure_flatness` within ``memory_budget_mb``: the dense
    Hessians (with ``eigvalsh``'s copy) or the Lanczos basis, and no more than a quarter of the
    members the training engine evaluates at once (``network_chunk``: a Hessian-vector
    product keeps about four gradients' worth of activations)."""
    per_minimum = 8 * (3 * n_params**2 if dense else 0) + 8 * 2 * n_lanczos * n_params
    return max(1, min(int(memory_budget_mb * 2**20 // per_minimum), network_chunk // 4))


def _hessian_measures(hvp, theta, *, n_top, n_lanczos, n_hutchinson, n_slq, dense, generator):
    """Top eigenvalues, Hutchinson trace, spectral nodes and weights, and the eigenvalues the
    index counts, for one chunk of minima."""
    n_params = theta.shape[1]
    ritz, _ = lanczos(hvp, theta, max(n_lanczos, n_top), generator=generator)
    top = ritz.flip(1)[:, :n_top].cpu().numpy()
    trace, trace_se = (t.cpu().numpy() for t in hutchinson_trace(hvp, theta, n_hutchinson, generator=generator))
    if dense:
        spectrum = torch.linalg.eigvalsh(dense_hessians(hvp, theta)).cpu().numpy()
        return top, trace, trace_se, spectrum, np.full(spectrum.shape, 1.0 / n_params), spectrum
    runs = [lanczos(hvp, theta, n_lanczos, generator=generator) for _ in range(n_slq)]
    nodes = torch.cat([values for values, _ in runs], 1).cpu().numpy()
    weights = torch.cat([w for _, w in runs], 1).cpu().numpy() / n_slq
    # Ritz values converge to the extreme eigenvalues first, so without the dense spectrum
    # the count of negative ones is a lower bound on the index.
    return top, trace, trace_se, nodes, weights, ritz.cpu().numpy()


