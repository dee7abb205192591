"""Minimum-energy paths and transition states between minima, batched over pairs.

- :func:`nudged_elastic_band`: the climbing-image nudged elastic band (Henkelman, Uberuaga and
  Jónsson 2000) with the improved tangent (Henkelman and Jónsson 2000). The bands of all
  pairs are the members of the training engine (:func:`basins.engine.descent.descend`): one member
  is one band, its parameters the flattened images, so bands get the engine's chunking,
  per-band stopping, checkpoints and progress output.
- :func:`refine_transition_states`: eigenvector following (Cerjan and Miller 1981; the step
  of Wales, *Energy Landscapes*, 2003, sec. 6.2) from each band's highest image to a stationary
  point with exactly one negative Hessian eigenvalue, on dense Hessians.
- :func:`stationary_point_index`: a point's Morse index from its dense Hessian (0 at a minimum).
- :func:`end_segment_peaks`: the maxima a band's end segments must hold where the image next to
  an end lies below it (a barrier closer to a minimum than the image spacing).

Every function sees the landscape only through ``energy(points (n, param)) -> (n,)``, a
differentiable torch function, so networks and analytic test potentials share the code.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
import torch

from basins.engine.curvature import dense_hessians, make_hvp
from basins.engine.descent import descend
from basins.engine.dynamics import energy_and_gradient
from basins.labels import BUDGET, DIVERGED

log = logging.getLogger(__name__)

#: How a band relaxes: FIRE, gradient steps, or FIRE with the bands it leaves at the budget
#: relaxed again from their straight line by gradient steps.
BAND_DYNAMICS = ("fire", "gd", "fire_then_gd")

Energy = Callable[[torch.Tensor], torch.Tensor]


def interpolate_bands(start: np.ndarray, end: np.ndarray, n_images: int) -> np.ndarray:
    """Straight-line bands ``(pair, image, param)`` with ``n_images`` interior images."""
    if n_images < 1:
        raise ValueError(f"n_images={n_images}: a band needs at least one interior image")
    fraction = np.linspace(0.0, 1.0, n_images + 2)[None, :, None]
    return start[:, None, :] + fraction * (end - start)[:, None, :]


def band_forces(
    energy: Energy, bands: torch.Tensor, *, spring: float, climbing: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nudged-elastic-band forces ``(pair, image, param)`` (zero on the fixed end images) and
    the energies ``(pair, image)`` of every image.

    Interior images feel the true force perpendicular to the tangent and the spring force along
    it; the highest interior image, when ``climbing``, feels the true force with its component
    along the tangent inverted and no spring, so it climbs to the saddle.
    """
    n_pairs, n_images, n_params = bands.shape
    energies, grad = energy_and_gradient(energy, bands.reshape(-1, n_params))
    energies, grad = energies.view(n_pairs, n_images), grad.view(n_pairs, n_images, n_params)
    ahead, behind = bands[:, 2:] - bands[:, 1:-1], bands[:, 1:-1] - bands[:, :-2]
    e_prev, e_here, e_next = energies[:, :-2], energies[:, 1:-1], energies[:, 2:]
    # Improved tangent: toward the higher neighbour; at extrema, a blend weighted by the
    # energy differences, so the tangent turns smoothly and no kinks form.
    up, down = (e_next > e_here) & (e_here > e_prev), (e_next < e_here) & (e_here < e_prev)
    d_ahead, d_behind = (e_next - e_here).abs(), (e_here - e_prev).abs()
    big, small = torch.maximum(d_ahead, d_behind)[..., None], torch.minimum(d_ahead, d_behind)[..., None]
    blended = torch.where(
        (e_next > e_prev)[..., None], ahead * big + behind * small, ahead * small + behind * big
    )
    tangent = torch.where(up[..., None], ahead, torch.where(down[..., None], behind, blended))
    tangent = tangent / tangent.norm(dim=2, keepdim=True).clamp_min(torch.finfo(bands.dtype).tiny)
    g = grad[:, 1:-1]
    along = (g * tangent).sum(2, keepdim=True)
    stretch = ahead.norm(dim=2, keepdim=True) - behind.norm(dim=2, keepdim=True)
    force = -(g - along * tangent) + spring * stretch * tangent
    if climbing:
        # Only a band with a barrier has a saddle to climb to; on a path that rises to an end,
        # the highest image would climb without bound.
        highest = e_here.argmax(1)
        barrier = e_here.amax(1) > torch.maximum(energies[:, 0], energies[:, -1])
        climber = torch.nn.functional.one_hot(highest, n_images - 2).to(torch.bool) & barrier[:, None]
        climber = climber[..., None]
        force = torch.where(climber, -g + 2 * along * tangent, force)
    zeros = torch.zeros_like(bands[:, :1])
    return torch.cat([zeros, force, zeros], dim=1), energies


def nudged_elastic_band(
    energy: Energy,
    start: np.ndarray,
    end: np.ndarray,
    *,
    n_images: int = 16,
    spring: float = 1.0,
    dynamics: str = "fire",
    lr: float = 0.01,
    max_steps: int = 5000,
    force_tol: float = 1e-3,
    climb_tol: float = 1e-2,
    max_move: float = 0.1,
    device: str = "cpu",
    chunk: int = 4096,
    checkpoint_path=None,
    data_fingerprint: str = "",
    progress_every_s: float = 30.0,
) -> dict[str, np.ndarray]:
    """Relax straight-line bands from ``start`` to ``end`` (both ``(pair, param)``) into
    minimum-energy paths.

    Parameters
    ----------
    n_images : int
        Interior images per band; more resolve the path (and its intermediate minima) better.
    spring : float
        Spring constant along the band (energy / distance^2). It sets the image spacing, not
        the converged path; stiffer springs need smaller steps.
    dynamics, lr, max_steps : str, float, int
        The engine's optimizer on the band forces (:data:`BAND_DYNAMICS`: FIRE, the usual
        choice for NEB, ``gd``, or ``fire_then_gd``: FIRE, and the bands it leaves at the
        budget relaxed again from their straight line by gradient steps, FIRE's speed where it
        converges and gradient steps' robustness where it does not) with its step size and
        budget (each, where one falls back to the other).
    force_tol : float
        A band has converged when the norm of its force, over all images, is at most this.
    climb_tol : float
        The plain band is relaxed to this force first, then the highest image climbs (the
        budget ``max_steps`` applies to each phase).
    max_move : float
        Longest FIRE step of a band (norm over all its images). FIRE's velocity can build up
        on the band's non-conservative forces; the cap keeps a band from running away.
    checkpoint_path, data_fingerprint : path, str
        Checkpoint of the relaxation (:func:`basins.engine.descent.descend`); ``energy`` is not
        part of its name, so pass a hash of the data it reads
        (:func:`basins.engine.checkpoints.fingerprint_arrays`) with a checkpoint.

    Returns
    -------
    dict
        ``bands (pair, image, param)`` including the end images, ``energies (pair, image)``,
        ``status`` (0 converged, 1 budget, 2 diverged), ``steps`` (summed over the two
        dynamics where one fell back), ``force_norm`` and ``fell_back`` (relaxed again by
        gradient steps) per pair.
    """
    if dynamics not in BAND_DYNAMICS:
        raise ValueError(f"dynamics={dynamics!r}: a band is relaxed with one of {BAND_DYNAMICS}")
    if spring <= 0:
        raise ValueError(f"spring={spring} must be positive")
    if dynamics == "fire_then_gd":
        band = functools.partial(
            nudged_elastic_band, energy, n_images=n_images, spring=spring, lr=lr, max_steps=max_steps,
            force_tol=force_tol, climb_tol=climb_tol, max_move=max_move, device=device, chunk=chunk,
            data_fingerprint=data_fingerprint, progress_every_s=progress_every_s,
        )
        out = band(start, end, dynamics="fire", checkpoint_path=checkpoint_path)
        again = np.flatnonzero(out["status"] == BUDGET)
        if len(again):
            log.info("%d of %d bands left at the budget by FIRE: relaxed again by gradient steps",
                     len(again), len(start))
            slow = band(np.asarray(start)[again], np.asarray(end)[again], dynamics="gd",
                        checkpoint_path=None if checkpoint_path is None else f"{checkpoint_path}.gd")
            for key in ("bands", "energies", "status", "force_norm"):
                out[key][again] = slow[key]
            out["steps"][again] += slow["steps"]
            out["fell_back"][again] = True
        return out
    initial = interpolate_bands(np.asarray(start, float), np.asarray(end, float), n_images)
    relax = functools.partial(
        _relax_bands, energy, band_shape=initial.shape, spring=spring, n_images=n_images,
        descent_options=dict(
            dynamics=dynamics, lr=lr, max_steps=max_steps, device=torch.device(device), chunk=chunk,
            max_move=max_move, checkpoint_path=checkpoint_path, data_fingerprint=data_fingerprint,
            progress_every_s=progress_every_s,
        ),
    )
    # The image climbs only once the plain band is near its path: climbing from a straight
    # line can run up a slope that the relaxed band would have bent away from.
    settled = relax(initial, climbing=False, tol=climb_tol)
    climbed = relax(settled.final_theta, climbing=True, tol=force_tol)
    bands = climbed.final_theta.reshape(initial.shape)
    return {
        "bands": bands,
        "energies": _band_energies(energy, bands, device),
        "status": np.where(settled.status == DIVERGED, DIVERGED, climbed.status),
        "steps": climbed.steps + settled.steps,
        "force_norm": climbed.grad_norm,
        "fell_back": np.zeros(len(bands), dtype=bool),
    }


def _relax_bands(energy, bands, *, band_shape, climbing, tol, spring, n_images, descent_options):
    """One run of the descent engine on the band forces; a band is one member, its images flattened."""
    n_pairs, n_total, n_params = band_shape

    def objective(flat_bands, batch):
        force, energies = band_forces(energy, flat_bands.view(-1, n_total, n_params), spring=spring, climbing=climbing)
        return energies[:, 1:-1].amax(1), -force.reshape(flat_bands.shape)

    return descend(
        objective,
        bands.reshape(n_pairs, n_total * n_params),
        np.arange(n_pairs),
        grad_tol=tol,
        dtype=torch.float64,
        run_id=("nudged_elastic_band", n_images, spring, climbing),
        **descent_options,
    )


def _band_energies(energy, bands, device):
    n_pairs, n_total, n_params = bands.shape
    if not n_pairs:
        return np.zeros((0, n_total))
    with torch.no_grad():
        energies = energy(torch.as_tensor(bands.reshape(-1, n_params), device=device)).view(n_pairs, n_total)
        return energies.cpu().numpy()


def band_maxima(energies: np.ndarray) -> np.ndarray:
    """Which images of each band's energy profile ``(pair, image)`` are interior local maxima
    (higher than the image before, at least as high as the one after); the end images never are."""
    here = energies[:, 1:-1]
    interior = (here > energies[:, :-2]) & (here >= energies[:, 2:])
    edge = np.zeros((len(energies), 1), dtype=bool)
    return np.concatenate([edge, interior, edge], axis=1)


def count_band_maxima(energies: np.ndarray) -> np.ndarray:
    """Interior local maxima of each band's energy profile ``(pair, image)``; more than one
    means the path passes intermediate minima, none that it has no barrier."""
    return band_maxima(energies).sum(1)


def end_segment_peaks(
    energy: Energy, images: list[np.ndarray], energies: list[np.ndarray], n_points: int, device: str = "cpu"
) -> list[tuple[int, float, np.ndarray, np.ndarray]]:
    """Maxima that a band's end segment must hold but its images miss.

    Energy rises away from a minimum in every direction, so where the image next to an end
    lies below that end, the straight segment between them rises and falls again: it holds a
    maximum (the barrier of a basin narrower than the image spacing). For each such segment of
    each band (``images[b] (image, param)`` with its ``energies[b]``, end images included) the
    highest of ``n_points`` evenly spaced interior points is returned as ``(band, position,
    point, tangent)``: ``position`` in units of the band's images (between 0 and 1, or between
    the last two images), ``tangent`` the segment's direction toward the band's second end.
    """
    segments = []
    for band, (path, profile) in enumerate(zip(images, energies)):
        last = len(profile) - 1
        if profile[1] < profile[0]:
            segments.append((band, 0, path[0], path[1]))
        if profile[last - 1] < profile[last]:
            segments.append((band, last - 1, path[last - 1], path[last]))
    if not segments or n_points < 1:
        return []
    fraction = np.arange(1, n_points + 1) / (n_points + 1)
    points = np.stack([start + fraction[:, None] * (end - start) for _, _, start, end in segments])
    highest = _band_energies(energy, points, device).argmax(1)
    return [(band, first + fraction[k], points[row, k], end - start)
            for row, ((band, first, start, end), k) in enumerate(zip(segments, highest))]


def refine_transition_states(
    energy: Energy,
    theta: np.ndarray,
    *,
    grad_tol: float = 1e-6,
    max_steps: int = 200,
    trust_radius: float = 0.1,
    index_tolerance: float = 1e-6,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Converge each point of ``theta (point, param)`` to a nearby first-order saddle.

    Eigenvector following on the dense Hessian: along the lowest eigenvector the step goes
    uphill, along all others downhill, each of size 2 g_i / (|b_i| + sqrt(b_i^2 + 4 g_i^2)) for
    gradient component g_i and eigenvalue b_i (Newton's step near the saddle, bounded far from
    it); the whole step is capped at ``trust_radius``.

    Parameters
    ----------
    grad_tol : float
        Converged when the gradient norm is at most this; the saddle's energy is then exact to
        about grad_tol^2 / curvature.
    max_steps : int
        Iterations per point; each costs one Hessian (``param`` Hessian-vector products).
    trust_radius : float
        Longest step; smaller is safer far from the saddle and slower.
    index_tolerance : float
        An eigenvalue counts as negative below ``-index_tolerance * max |eigenvalue|``.

    Returns
    -------
    dict
        ``theta``, ``energy``, ``grad_norm``, ``index`` (negative eigenvalues at the end),
        ``converged``, ``steps``, ``lowest_eigenvalue`` and ``mode`` (its unit eigenvector,
        the direction that leads down to the two minima the saddle connects).
    """
    if grad_tol <= 0 or trust_radius <= 0:
        raise ValueError(f"grad_tol={grad_tol} and trust_radius={trust_radius} must be positive")
    points = torch.as_tensor(np.array(theta, dtype=np.float64), device=device)
    n_points, n_params = points.shape
    if n_points == 0:
        return _no_transition_states(n_params)
    hvp = make_hvp(energy)
    steps = np.zeros(n_points, dtype=np.int64)
    converged = np.zeros(n_points, dtype=bool)
    active = torch.arange(n_points, device=device)
    for iteration in range(max_steps + 1):
        if not active.numel():
            break
        _, grad = energy_and_gradient(energy, points[active])
        done = grad.norm(dim=1) <= grad_tol
        converged[active[done].cpu().numpy()] = True
        active, grad = active[~done], grad[~done]
        if not active.numel() or iteration == max_steps:
            break
        points[active] = points[active] + _eigenvector_following_step(hvp, points[active], grad, trust_radius)
        steps[active.cpu().numpy()] += 1
    refined = stationary_point_index(energy, points, index_tolerance=index_tolerance, device=device)
    return {**refined, "converged": converged, "steps": steps}


def _no_transition_states(n_params):
    empty = np.zeros(0)
    return dict(theta=np.zeros((0, n_params)), energy=empty, grad_norm=empty, index=empty.astype(np.int64),
                converged=empty.astype(bool), steps=empty.astype(np.int64), mode=np.zeros((0, n_params)),
                lowest_eigenvalue=empty)


def _eigenvector_following_step(hvp, points, grad, trust_radius):
    """Uphill along the lowest Hessian eigenvector, downhill along the rest, capped at ``trust_radius``."""
    eigenvalues, eigenvectors = torch.linalg.eigh(dense_hessians(hvp, points))
    g = torch.einsum("npk,np->nk", eigenvectors, grad)
    size = 2 * g / (eigenvalues.abs() + torch.sqrt(eigenvalues**2 + 4 * g**2)).clamp_min(1e-300)
    direction = torch.ones_like(size)
    direction[:, 1:] = -1.0
    step = torch.einsum("npk,nk->np", eigenvectors, direction * size)
    length = step.norm(dim=1, keepdim=True)
    return step * (trust_radius / length.clamp_min(trust_radius))


def stationary_point_index(
    energy: Energy, theta: np.ndarray | torch.Tensor, *, index_tolerance: float = 1e-6, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """Each point of ``theta (point, param)`` with its energy, gradient norm, Morse index
    (Hessian eigenvalues below ``-index_tolerance * max |eigenvalue|``), lowest eigenvalue and
    its unit eigenvector (``mode``), from dense Hessians: a minimum has index 0, a transition
    state 1."""
    points = torch.as_tensor(theta, dtype=torch.float64, device=device)
    if not len(points):
        return {key: value for key, value in _no_transition_states(points.shape[1]).items()
                if key not in ("converged", "steps")}
    values, grad = energy_and_gradient(energy, points)
    eigenvalues, eigenvectors = torch.linalg.eigh(dense_hessians(make_hvp(energy), points))
    scale = eigenvalues.abs().amax(1, keepdim=True)
    return {
        "theta": points.cpu().numpy(),
        "energy": values.cpu().numpy(),
        "grad_norm": grad.norm(dim=1).cpu().numpy(),
        "index": (eigenvalues < -index_tolerance * scale).sum(1).cpu().numpy(),
        "mode": eigenvectors[:, :, 0].cpu().numpy(),
        "lowest_eigenvalue": eigenvalues[:, 0].cpu().numpy(),
    }
