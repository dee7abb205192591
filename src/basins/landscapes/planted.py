"""Planted landscapes: potentials whose gradient-flow basins are known by construction.

Basin shape statistics (:mod:`basins.basin_shape`) first meet these landscapes, where the
answer is known exactly, before they are applied to networks. Starts are drawn from an
isotropic Gaussian N(0, sigma^2 I), whose mass in high dimension sits on a thin shell of radius
sigma sqrt(d), as a network's initialization does; basin fractions are exact under it.

**Ball and ring** (:func:`ball_and_ring`). In the plane of the first two coordinates, with
polar coordinates (r, phi) of (x_1, x_2),

    V(x) = G(r) + kappa_phi s(r) (1 - cos phi) + (kappa_rest / 2) sum_{i > 2} x_i^2.

The radial profile G has ridges (maxima) at r_1 < r_2 < r_3 and one minimum inside each of the
four zones they cut: the disc r < r_1 (minimum at the origin), the annuli r_1 < r < r_2 and
r_2 < r < r_3, and r > r_3. The angular term pulls phi to 0; ``s`` is a quintic smoothstep in
r / r_1 that vanishes at the origin (keeping V twice differentiable there) and equals 1 for
r >= r_1. Why the zones are the basins, exactly:

- the flow never crosses a ridge circle r = r_k: there G'(r_k) = 0 and s'(r_k) = 0, so
  dr/dt = -G'(r) - kappa_phi s'(r) (1 - cos phi) = 0 on it (the circle is invariant and, by
  uniqueness of solutions, no trajectory reaches it from either side);
- in the three outer zones s = 1, the radial motion does not depend on phi and phi decreases
  monotonically to 0 (d phi/dt = -kappa_phi sin(phi) / r^2); the only critical points are the
  zone's minimum (r_k^*, 0), where G' = 0, and a saddle at phi = pi, whose stable manifold
  (the ray phi = pi) has measure zero;
- in the disc, G' > 0 and s' >= 0 give dr/dt < 0 for r > 0: every point flows to the origin;
- the remaining d - 2 coordinates relax independently to 0 and do not affect membership.

So the basin of each minimum is its zone (times R^{d-2}): the **ball** is the disc
r < r_1 (in d dimensions a convex cylinder, star-shaped about its minimum at the origin); the
**ring** is the thin annulus r_2 < r < r_3, whose minimum lies at (r_B^*, 0) and which reaches
around the disc, up to a distance r_3 + r_B^* from its minimum: a thin curved tentacle, not
star-shaped. The zones are placed by the 2-D Gaussian radial law u(r) = 1 - exp(-r^2 / 2
sigma^2), the law of (x_1, x_2) under N(0, sigma^2 I_d) for every d: ridges at
u = f, u_gap, u_gap + f give basin fractions exactly f (ball), f (ring), u_gap - f (gap, the
annulus between them) and 1 - u_gap - f (outside). Defaults f = 0.2, u_gap = 0.5, sigma = 1:
r_1 = 0.668, r_2 = 1.177, r_3 = 1.552; the ring is 0.375 wide at radius 1.36.

In d >= 10 the start's distance to any minimum is dominated by the d - 2 coordinates that do
not decide membership (|x_rest| ~ sigma sqrt(d - 2)), as on a network's initialization shell:
there the old tentacle index (fraction of members beyond the median ray exit radius) scores
the ball and the ring alike.

**Double well** (:func:`double_well`): V = kappa (x_1^2 - a^2)^2 / (4 a^2) + (1/2) sum_{i > 1}
x_i^2. The hyperplane x_1 = 0 is invariant by symmetry; the basins are the half-spaces
x_1 > 0 and x_1 < 0 (convex, star-shaped about their minima +-a e_1), fractions exactly 1/2.

**Narrow and wide wells** (:func:`narrow_and_wide_wells`): along x_1 the profile

    L(x) = -a_n exp(-(x - c_n)^2 / w_n) - a_w exp(-(x - c_w)^2 / w_w) + kappa x^2

(the other coordinates harmonic, curvature 1). Defaults: a narrow deep well at x = -0.999
(a_n = 0.8, c_n = -1, w_n = 0.02: curvature 79.9, L = -0.794) and a wide shallow one at x = 1.151
(a_w = 0.6, c_w = 1.2, w_w = 1.28: curvature 0.97, L = -0.572), confined by kappa = 0.02. In 1-D
the basins are the two sides of the one maximum between the wells, x_b = -0.677 (roots of L'
by Brent's method, to round-off; the flow cannot cross a critical point): x_1 < x_b flows to the
narrow well, fraction 0.249 under N(0, 1). The known answer for dynamics that seek wide minima
(``tests/test_flat_seeking.py``).

All three run on the engine as ``objective = lambda theta, batch: energy_and_gradient(landscape.energy,
theta)`` (:func:`basins.engine.dynamics.energy_and_gradient`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch


@dataclass(frozen=True)
class PlantedLandscape:
    """A landscape with its minima and, by construction, the basin of every point."""

    name: str
    n_params: int
    sigma: float  #: standard deviation of the Gaussian starts
    minima: np.ndarray  #: (minimum, param)
    minimum_names: tuple[str, ...]
    basin_fraction: np.ndarray  #: (minimum,) exact, under starts N(0, sigma^2 I)
    energy: Callable[[torch.Tensor], torch.Tensor]  #: theta (point, param) -> (point,)
    basin_of: Callable[[np.ndarray], np.ndarray]  #: points (point, param) -> minimum index (point,)

    def index(self, name: str) -> int:
        """Row of the minimum called ``name``."""
        return self.minimum_names.index(name)

    def sample_starts(self, n_starts: int, *, seed: int) -> np.ndarray:
        """``n_starts`` points ``(member, param)`` from N(0, sigma^2 I)."""
        return self.sigma * np.random.default_rng(seed).standard_normal((n_starts, self.n_params))

    def minimum_reached(self, final_theta: np.ndarray, *, dist_tol: float) -> np.ndarray:
        """Index of the minimum within ``dist_tol`` of each end point, -1 where there is none."""
        distance = np.linalg.norm(final_theta[:, None, :] - self.minima[None], axis=2)
        nearest = distance.argmin(axis=1)
        return np.where(distance[np.arange(len(final_theta)), nearest] <= dist_tol, nearest, -1)


# --- ball and ring ------------------------------------------------------------------------


def ball_and_ring(
    n_params: int = 2,
    *,
    fraction: float = 0.2,
    gap_until: float = 0.5,
    sigma: float = 1.0,
    radial_curvature: float = 10.0,
    angular_stiffness: float = 1.0,
    rest_stiffness: float = 1.0,
    outer_width: float = 0.8,
) -> PlantedLandscape:
    """A ball-like basin and a thin ring-shaped basin of equal volume (module docstring).

    Parameters
    ----------
    n_params : int
        Dimension d >= 2; coordinates beyond the first two are harmonic and decide nothing.
    fraction : float
        Basin fraction of the ball and of the ring, each (exact under N(0, sigma^2 I)).
    gap_until : float
        Where the ring starts, as the 2-D Gaussian radial probability u = 1 - exp(-r^2 / 2
        sigma^2); the gap between ball and ring has fraction ``gap_until - fraction``.
    sigma : float
        Standard deviation of the starts; all radii scale with it.
    radial_curvature : float
        |G''| at every ridge and minimum of the radial profile.
    angular_stiffness : float
        kappa_phi, the depth of the angular well; its curvature at a minimum at radius r is
        kappa_phi / r^2.
    rest_stiffness : float
        Curvature of the d - 2 harmonic coordinates.
    outer_width : float
        Width (in units of sigma) of the radial well of the outside zone; beyond it G grows
        linearly, so far starts feel a bounded force.
    """
    if n_params < 2:
        raise ValueError(f"n_params={n_params}: the ball and ring live in the plane of two coordinates; give >= 2")
    if not (0 < fraction < gap_until - fraction and gap_until + fraction < 1):
        raise ValueError(f"fraction={fraction}, gap_until={gap_until}: need 0 < fraction < gap_until - fraction "
                         "and gap_until + fraction < 1 (each zone a positive probability)")
    ridges = tuple(sigma * math.sqrt(-2.0 * math.log1p(-u)) for u in (fraction, gap_until, gap_until + fraction))
    widths = (ridges[1] - ridges[0], ridges[2] - ridges[1], outer_width * sigma)
    profile = _RadialProfile(ridges, widths, radial_curvature)
    minima = np.zeros((4, n_params))
    minima[1:, 0] = [r + w / 2 for r, w in zip(ridges, widths)]  # gap, ring, outside, at phi = 0
    zone_fraction = np.diff([0.0, fraction, gap_until, gap_until + fraction, 1.0])
    order = [0, 2, 1, 3]  # rows: ball, ring, gap, outside; zones: ball, gap, ring, outside
    energy = functools.partial(
        _ball_and_ring_energy, profile=profile, inner_ridge=ridges[0],
        angular_stiffness=angular_stiffness, rest_stiffness=rest_stiffness,
    )
    return PlantedLandscape(
        name=f"ball_and_ring_d{n_params}",
        n_params=n_params,
        sigma=sigma,
        minima=minima[order],
        minimum_names=("ball", "ring", "gap", "outside"),
        basin_fraction=zone_fraction[order],
        energy=energy,
        basin_of=functools.partial(_zone_basin, ridges=np.array(ridges), row_of_zone=np.argsort(order)),
    )


@dataclass(frozen=True)
class _RadialProfile:
    """G(r): ridges at ``ridges``, a minimum in the middle of each zone (the disc's at 0).

    Sinusoidal pieces, amplitudes chosen so that G'' = -curvature at every ridge and
    +curvature at every minimum (G is twice differentiable); beyond the outer minimum G'
    rises to a constant.
    """

    ridges: tuple[float, float, float]
    widths: tuple[float, float, float]  #: gap, ring and the outer well
    curvature: float

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        r1, r2, r3 = self.ridges
        c = self.curvature
        top = 2 * c * r1**2 / math.pi**2  # G at every ridge
        disc = c * r1**2 / math.pi**2 * (1 - torch.cos(math.pi * r / r1))

        def well(start, width):  # one period of -cos: G(start) = top, minimum at start + width / 2
            return top + c * width**2 / (4 * math.pi**2) * (torch.cos(2 * math.pi * (r - start) / width) - 1)

        w_out = self.widths[2]
        amplitude = c * w_out / (2 * math.pi)  # the constant slope beyond 3/4 of the outer well
        knee = r3 + 0.75 * w_out
        outer = torch.where(r < knee, well(r3, w_out), top - amplitude * w_out / (2 * math.pi) + amplitude * (r - knee))
        return torch.where(r < r1, disc, torch.where(r < r2, well(r1, r2 - r1), torch.where(r < r3, well(r2, r3 - r2), outer)))


def _ball_and_ring_energy(theta, *, profile, inner_ridge, angular_stiffness, rest_stiffness):
    # clamp: r's gradient at the origin is 0/0; the clamped branch has gradient 0, as V has there.
    r = torch.sqrt((theta[:, 0] ** 2 + theta[:, 1] ** 2).clamp_min(1e-200))
    t = (r / inner_ridge).clamp(max=1.0)
    smoothstep = t**3 * (10 - 15 * t + 6 * t**2)
    angular = angular_stiffness * smoothstep * (1 - theta[:, 0] / r)
    return profile(r) + angular + 0.5 * rest_stiffness * (theta[:, 2:] ** 2).sum(1)


def _zone_basin(points, *, ridges, row_of_zone):
    r = np.hypot(points[:, 0], points[:, 1])
    return row_of_zone[np.searchsorted(ridges, r)]


# --- double well --------------------------------------------------------------------------


def double_well(n_params: int = 2, *, separation: float = 1.0, stiffness: float = 1.0, sigma: float = 1.0) -> PlantedLandscape:
    """Two half-space basins x_1 > 0 and x_1 < 0 (minima at +-``separation`` e_1), fractions 1/2.

    ``stiffness`` is kappa: the curvature along x_1 at a minimum is 2 kappa; the other
    coordinates are harmonic with curvature 1.
    """
    if n_params < 1:
        raise ValueError(f"n_params={n_params}: give >= 1")
    minima = np.zeros((2, n_params))
    minima[:, 0] = [separation, -separation]
    return PlantedLandscape(
        name=f"double_well_d{n_params}",
        n_params=n_params,
        sigma=sigma,
        minima=minima,
        minimum_names=("right", "left"),
        basin_fraction=np.array([0.5, 0.5]),
        energy=functools.partial(_double_well_energy, separation=separation, stiffness=stiffness),
        basin_of=_half_space_basin,
    )


def _double_well_energy(theta, *, separation, stiffness):
    well = stiffness * (theta[:, 0] ** 2 - separation**2) ** 2 / (4 * separation**2)
    return well + 0.5 * (theta[:, 1:] ** 2).sum(1)


def _half_space_basin(points):
    return np.where(points[:, 0] > 0, 0, 1)


# --- narrow and wide wells ----------------------------------------------------------------


@dataclass(frozen=True)
class WellsProfile:
    """The 1-D profile L(x) of :func:`narrow_and_wide_wells` (module docstring), for numpy or torch."""

    narrow: tuple[float, float, float] = (0.8, -1.0, 0.02)  #: depth a_n, centre c_n, width w_n
    wide: tuple[float, float, float] = (0.6, 1.2, 1.28)  #: a_w, c_w, w_w
    confinement: float = 0.02  #: kappa

    def __call__(self, x, exp=np.exp):
        """L(x), elementwise; ``exp=torch.exp`` for tensors."""
        return sum(-a * exp(-((x - c) ** 2) / w) for a, c, w in (self.narrow, self.wide)) + self.confinement * x**2

    def slope(self, x, exp=np.exp):
        """L'(x), elementwise; ``exp=torch.exp`` for tensors."""
        wells = sum(2 * a * (x - c) / w * exp(-((x - c) ** 2) / w) for a, c, w in (self.narrow, self.wide))
        return wells + 2 * self.confinement * x

    def critical_points(self) -> tuple[float, float, float]:
        """The narrow minimum, the maximum x_b and the wide minimum: the roots of L' (to round-off).

        Raises ``ValueError`` unless L' has exactly these three roots.
        """
        (_, c_n, w_n), (_, c_w, _) = self.narrow, self.wide
        if not c_n + math.sqrt(w_n) < c_w:
            raise ValueError(f"{self}: the narrow well (centre, width) must lie left of the wide one")
        # Left of the narrow well and right of the wide one every term of L' has one sign.
        x = np.linspace(c_n - 3 * math.sqrt(w_n), c_w + 3, 200_001)
        slope = self.slope(x)
        roots = [scipy.optimize.brentq(self.slope, x[i], x[i + 1], xtol=1e-16)
                 for i in np.flatnonzero(np.sign(slope[:-1]) != np.sign(slope[1:]))]
        if len(roots) != 3:
            raise ValueError(f"{self}: L' has roots {roots}, not a minimum, a maximum and a minimum")
        return tuple(roots)


def narrow_and_wide_wells(
    n_params: int = 1, *, profile: WellsProfile = WellsProfile(), sigma: float = 1.0
) -> PlantedLandscape:
    """A narrow deep well and a wide shallow one along x_1 (module docstring); basins x_1 < x_b
    (narrow) and x_1 > x_b (wide), x_b the maximum between them, fractions exact under N(0, sigma^2 I).

    Raises ``ValueError`` when ``profile`` has not exactly one maximum between its two minima.
    """
    if n_params < 1:
        raise ValueError(f"n_params={n_params}: give >= 1")
    narrow, barrier, wide = profile.critical_points()
    minima = np.zeros((2, n_params))
    minima[:, 0] = [narrow, wide]
    below = 0.5 * math.erfc(-barrier / (sigma * math.sqrt(2)))  # P(x_1 < x_b), x_1 ~ N(0, sigma^2)
    return PlantedLandscape(
        name=f"narrow_and_wide_wells_d{n_params}",
        n_params=n_params,
        sigma=sigma,
        minima=minima,
        minimum_names=("narrow", "wide"),
        basin_fraction=np.array([below, 1 - below]),
        energy=functools.partial(_wells_energy, profile=profile),
        basin_of=functools.partial(_side_of, barrier=barrier),
    )


def _wells_energy(theta, *, profile):
    return profile(theta[:, 0], exp=torch.exp) + 0.5 * (theta[:, 1:] ** 2).sum(1)


def _side_of(points, *, barrier):
    return np.where(points[:, 0] < barrier, 0, 1)
