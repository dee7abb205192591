"""Basin volumes too small to count: thermodynamic integration inside the basin.

As the number of parameters grows, most minima are reached by one member of an ensemble, and
membership counts can no longer rank basins. The measure of a basin under the distribution
the initial conditions are drawn from is then estimated as Xu, Frenkel and Liu (2011) and
Martiniani et al. (2016) measured basins of jammed packings: a random walk confined to the
basin (every proposed point is checked by running the dynamics from it) samples

    Z(k) = integral over B of mu(z) exp(-k s(z)) dz,   s(z) = |z - z0|^2 / 2,

a spring of strength k pulling toward a point z0 of the basin (a member's start). At a strong
spring the walk stays near z0 and Z(k) is a Gaussian integral times the fraction of its mass
that lies in the basin (counted directly from independent draws); d ln Z / dk = -<s>_k, so

    ln mu(B) = ln Z(0) = ln Z(k_max) + integral from 0 to k_max of <s>_k dk.

The same identity for the whole space (Z = 1 at k = 0) removes the Gaussian integral: with
<s>_k,free the spring energy without the basin (known in closed form),

    ln mu(B) = ln p(k_max) + integral from 0 to k_max of (<s>_k - <s>_k,free) dk,

where p(k_max) is the fraction of the strongest spring's mass in the basin (counted from
``n_reference`` draws before the walk and the strongest spring's fresh draws during it, below);
the integrand vanishes where the basin holds the spring's whole mass, so no large cancellation
is left.

The walk works in whitened coordinates z, where the initial measure ``mu`` is the standard
normal (:class:`GaussianMeasure`) or uniform on the torus [-pi, pi)^n (:class:`UniformTorus`,
Kuramoto phases). The integral runs over t = ln(1 + k) by Simpson's rule; its error is taken
as the difference from the trapezoid rule.

The walk mixes two proposals: a random walk's step (Metropolis' test, then the dynamics) and,
for a fifth of them (:data:`INDEPENDENT_SHARE`), a fresh draw of the spring's target without
the basin, mu(z) exp(-k s(z)), taken wherever the dynamics put it inside (an independence
Metropolis-Hastings move whose ratio is 1). The fresh draws reach every part of the basin the
spring weighs, at the rate of its mass there; a random walk from z0 alone misses the parts it
does not reach in its steps (thin slabs of the torus: 1.9 and 14 nats low, now within 0.2).

The fresh draws also check the integration spring by spring: the share of spring k's draws
inside estimates the fraction of its target in the basin, which the integration gives as the
reference fraction times exp(integral from k to the strongest spring; the strongest spring's
own draws are in the reference fraction, so not compared); a disagreement beyond
the interval's level (Bonferroni over the springs compared) flags the basin
(``draws_check_failed``). It flagged 2 of 24 walks on boxes in pieces 1.7 nats low and none of
24 on boxes in d = 30 0.7 low: the draws see only what the walk sees too (docs/method.md).

With ``replica_exchange`` the chains of neighbouring springs offer to swap their states after
every step (Swendsen and Wang 1986; Hukushima and Nemoto 1996): both states lie inside the
basin, so a swap costs no run of the dynamics, and it is taken by Metropolis' test of the two
springs' energies. Strong springs, whose fresh draws land inside often, so hand new states down
to the weak ones, whose fresh draws seldom do (a ball with a tentacle of 4x its mass, 2400
steps: 0.39-0.48 nats low against 0.75-0.95 by independent walks; the tests). Chain c of every
spring is then ladder c, correlated across springs, and the integral's standard error is the
spread of the ladders' own integrals, on n_chains - 1 degrees of freedom, instead of the
springs' errors in quadrature; where members' starts are given each ladder owns one, and its
rungs start there or at the anchor, so that ladders share no drawn start. On the study's N = 41
network (36 whitened weights) the anchored walks of 8000 steps came within 0.09-0.68 nats of six
counted basins, every interval holding its count, where independent walks were 0.9 nats off
(rms) and missed 2 of 6; with 8 ladders instead of 4 (the stages' default) every interval held its
count again, 0.8-2.1 nats wide instead of 1.6-5.7 (docs/method.md, *The walk against counts on a
network*).

An exchange between springs k < k' is taken about erfc(dL / 2) of the times it is offered, dL
the free spring's thermodynamic length between them (the integral of the energy's spread over
k; :func:`predicted_swap_acceptance`, beside what the walk took). Uniform in ln(1 + k) the
ladder's weakest gaps are the longest where the dimension is high: 4 spreads on the torus of 83
phases, where 0.4-1.3 % of the offers were taken (0.4 % predicted), so the free spring, whose
energy carries a small basin's far parts, barely receives the states the stronger springs hold.
``equal_length_schedule`` spaces the springs at equal lengths instead (8 % at every gap there).

Whether the walks are long enough is checked over the stage's basins (``plateau_score``): a
walk at equilibrium has halves that agree up to the chains' own spread, and Stouffer's sum of
the basins' normal scores of that difference is standard normal (measured: spread 0.96 over 100
stages of 20 walks on a ball, 4 flagged at 5 %; a referee's other cases 1.00-1.10); walks of a
stage too short to spread share a positive drift and the sum grows with the square root of
their number (a half-space in the tail 4.4 nats low: score 15 over 10 walks; the torus slab by
random walk alone 1.95 low: 8.7 over 24, where the fresh draws' check flagged none; no flag on
the same sets sampled without bias). A weak flag at a few basins: the score follows the
basin's shape more than the bias (a box in d = 20: about +1 a basin at 2 and at 9.6 nats low),
so stages of 3-6 such basins are flagged in 30-83 % of the biased cases. The stages therefore
measure their basins a second time with independent walks half as long (``half_length_walk``)
and pool each basin's difference of the two estimates instead: the plateau check proper, about
+2 a basin on that box at 2 and 9.5 nats low (3-basin stages flagged 29 of 30), standard normal
on the ball (spread 1.02 over 60 stages of 20). Neither sees walks stuck in part of a basin
for longer than they run (a tentacle, 1.3 nats low: 0.3 by the halves).

With ladders and members' starts the half-length walk comes from the other side (hysteresis,
as thermodynamic integration is checked by integrating both ways): each ladder's rungs start
in turn down the springs from its draw (:func:`_descend_ladders`), so a rung not at its target
sits too far out, where the main walk's middle rungs, started at the anchor, sit too close in.
Both short of equilibrium, they disagree beyond their errors. On four slabs of the 40-torus
(session 53) the ladders stay on the anchor's sheet of the torus at the middle springs and come
out 1.3-2.5 nats low at 8000 steps, which walks half as long from the same starts repeated
(scores +0.7 and +1.7: unflagged); from above the half-length walk came 11 and 20 nats high
(scores -3.3 and -2.8: both flagged; every stage of 8 and of 4 basins, at 8000 and 4000 steps).
Where the walks are at equilibrium the two agree (a box in d = 20 and the slab of the 8-torus,
16 stages at 2000 and 8000 steps: scores' mean -0.47 to +0.53, none flagged; the session-53
referee: a ball, a half-space in the tail, the box and a tentacled ball, 1 of 10-30 stages
each). Each rung's descent is a burn-in long (a sixteenth of that left the walk from above 2.2
nats high on the box at 1000 steps, and flagged walks at equilibrium): a quarter more runs of
the dynamics for the half-length walk, in five times its batches (the rungs one at a time; the
box at 2000 steps: 5 002 calls of ``inside`` against 1 002). The price (the referee): where
the main walk itself reads high, its weak rungs started at far draws, the walk from above errs
the same way and the check flags less often than the old one did (same starts, half length): a
tentacled ball at 600 steps (+1.06 nats) in 12 of 30 stages against 19, a box in d = 20 at 1200
(+0.65) 11 of 20 against 17; a large bias it still flags (the box at 600 steps, +1.59: 30 of 30
against 20).

Uncertainty: each coupling has independent chains, and <s>_k's standard error is the spread
of their means (autocorrelation included). Chains that all start at z0 share the bias of walks
too short to spread through the basin, and their spread does not show it. Where draws of mu
inside the basin are at hand (members' starts that reached it: the walk's own target at k = 0),
each spring's chains start among them, resampled by the spring's weight exp(-k s(z))
(``basin_samples``): weak springs' chains begin spread over the basin, where a long walk would
be, strong springs' near z0. Chains that start at the same draw are one cluster: <s>_k's
standard error is cluster-robust (the spread of the clusters' sums, which is the importance
sampling error of the few draws that carry a spring's weight), with one degree of freedom fewer
than its clusters, and the interval of ln mu uses Student's t at the degrees of freedom of the
sum over springs (Welch-Satterthwaite). The reference fraction is binomial; the quadrature
difference is added to the interval. A
walk confined to a basin explores a thin tentacle only as well as a random walk finds it: the
known-answer tests (``tests/test_basin_volume.py``) include a ball with a tentacle to show how
much of such a basin the estimate sees.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import xarray as xr
from scipy import integrate, special, stats

from basins.io import variable_attrs
from basins.labels import RETURNED, UNDECIDED
from basins.rays import run_outcomes
from basins.stats import wilson_interval

log = logging.getLogger(__name__)

#: ``inside(points (n, dim), basins (n,)) -> outcome (n,)``: run the dynamics from each whitened
#: point and say whether it ends in basin ``basins[k]``: ``RETURNED``, ``LEFT`` or ``UNDECIDED``
#: (:mod:`basins.labels`).
Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Target acceptance of the random walk's proposals during burn-in (Gelman et al. 1996 give
#: 0.23 for Gaussian targets in high dimension; a confined walk accepts less at equal step).
TARGET_ACCEPTANCE = 0.25
#: Share of the walk's proposals drawn afresh from the spring's own target without the basin
#: (mu(z) exp(-k s(z)), exactly; taken wherever it falls inside): the moves that reach the parts
#: of a basin a random walk from the anchor does not (planted slabs: see the module). A
#: compromise: the slabs' bias falls with it (2000 steps, anchored, diagonal and weighted slab:
#: 0.05 -> -0.37 and -2.77 nats, 0.1 -> -0.22 and -0.52, 0.2 -> -0.07 and -0.15, 0.4 -> 0.00
#: and -0.02, 0.6 -> +0.10 and +0.06), while each fresh draw is a step the random walk does not
#: take (a box in d = 30: -0.50 nats at 0 and -0.82 at 0.2 with 2000 steps, both unbiased at
#: 8000; session-42 referee) and is run wherever it falls, inside or not.
INDEPENDENT_SHARE = 0.2
#: Fewest fresh draws inside a basin at a coupling for their share to be compared with the
#: integration there (below it ln of the share is far from normal: the delta method fails).
MIN_CHECK_HITS = 10


class GaussianMeasure:
    """The standard normal in ``dim`` whitened coordinates (a Gaussian initialization)."""

    def __init__(self, dim: int):
        self.dim = int(dim)

    def log_density(self, z):
        return -0.5 * np.sum(z**2, axis=-1)

    def displacement(self, z, centre):
        return z - centre

    def wrap(self, z):
        return z

    def free_spring_energy(self, centre, couplings):
        """<s>_k without the basin ``(basin, coupling)``: under N(k z0 / (1 + k), 1 / (1 + k)),
        (d / (1 + k) + |z0|^2 / (1 + k)^2) / 2."""
        scale = 1.0 / (1.0 + np.asarray(couplings))
        return 0.5 * (self.dim * scale + np.sum(centre**2, axis=-1)[:, None] * scale**2)

    def sample_spring(self, centres, couplings, rng):
        """One draw a row from mu(z) exp(-k |z - z0|^2 / 2), normalized, at its own centre
        ``(point, dim)`` and coupling ``(point,)``: N(k z0 / (1 + k), 1 / (1 + k))."""
        k = np.asarray(couplings, dtype=np.float64)[:, None]
        return k * centres / (1 + k) + rng.standard_normal(np.shape(centres)) / np.sqrt(1 + k)

    def sample_reference(self, centre, coupling, n, rng):
        """``n`` draws ``(draw, basin, dim)`` of the spring at ``coupling`` about each ``centre``."""
        return _reference_draws(self, centre, coupling, n, rng)


class UniformTorus:
    """The uniform measure on the torus [-pi, pi)^dim (oscillator phases)."""

    def __init__(self, dim: int):
        self.dim = int(dim)

    def log_density(self, z):
        return np.zeros(np.shape(z)[:-1])

    def displacement(self, z, centre):
        return self.wrap(z - centre)

    def wrap(self, z):
        return np.mod(z + np.pi, 2 * np.pi) - np.pi

    def free_spring_energy(self, centre, couplings):
        """<s>_k without the basin ``(basin, coupling)``: dim / 2 times the variance of N(0, 1 / k)
        truncated to [-pi, pi) (pi^2 / 3 at k = 0, the uniform's)."""
        k = np.asarray(couplings, dtype=np.float64)
        b = np.pi * np.sqrt(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            truncated = (1 - 2 * b * stats.norm.pdf(b) / special.erf(b / np.sqrt(2))) / k
        variance = np.where(k < 1e-6, np.pi**2 / 3 * (1 - 2 * np.pi**2 * k / 15), truncated)  # series near k = 0
        return np.broadcast_to(0.5 * self.dim * variance, (len(centre), len(k)))

    def sample_spring(self, centres, couplings, rng):
        """One draw a row from the wrapped spring exp(-k s(z)) at its own centre ``(point, dim)``
        and coupling ``(point,)``: N(0, 1 / k) truncated to [-pi, pi) per coordinate about z0
        (by its inverse distribution function), the uniform at k = 0."""
        k = np.broadcast_to(np.asarray(couplings, dtype=np.float64)[:, None], np.shape(centres))
        uniform = rng.uniform(size=np.shape(centres))
        bound = np.pi * np.sqrt(k)
        low, high = special.ndtr(-bound), special.ndtr(bound)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(k > 0, special.ndtri(low + uniform * (high - low)) / np.sqrt(k), np.pi * (2 * uniform - 1))
        return self.wrap(centres + step)

    def sample_reference(self, centre, coupling, n, rng):
        """``n`` draws ``(draw, basin, dim)`` of the spring at ``coupling`` about each ``centre``."""
        return _reference_draws(self, centre, coupling, n, rng)


def _reference_draws(measure, centre, coupling, n, rng):
    """``n`` draws ``(draw, basin, dim)`` of ``measure``'s spring at one ``coupling`` about each
    ``centre (basin, dim)`` (:meth:`GaussianMeasure.sample_spring`)."""
    centres = np.broadcast_to(np.asarray(centre, dtype=np.float64), (n, *np.shape(centre)))
    flat = centres.reshape(-1, centres.shape[-1])
    return measure.sample_spring(flat, np.full(len(flat), float(coupling)), rng).reshape(centres.shape)


def coupling_schedule(largest: float, n_couplings: int) -> np.ndarray:
    """Couplings k from 0 to ``largest``, uniform in ln(1 + k); an odd count (Simpson's rule)."""
    if largest <= 0 or n_couplings < 3 or n_couplings % 2 == 0:
        raise ValueError(f"largest={largest}, n_couplings={n_couplings}: give largest > 0 and an odd count >= 3")
    return np.expm1(np.linspace(0.0, np.log1p(largest), n_couplings))


#: The ladders' spacings (``BasinWalk.spacing``): uniform in ln(1 + k) (:func:`coupling_schedule`)
#: or at equal thermodynamic length of the free spring (:func:`equal_length_schedule`).
SPACINGS = ("log1p", "thermodynamic_length")


def thermodynamic_length(measure, centres: np.ndarray, couplings: np.ndarray) -> np.ndarray:
    """Per basin, the free spring's thermodynamic length from k = 0 to each coupling ``(basin,
    coupling)``: the integral of sd(s)_k,free dk, where Var(s)_k = -d<s>_k / dk (an exponential
    family in k; :meth:`GaussianMeasure.free_spring_energy` and the torus's, differentiated on a
    fine grid uniform in ln(1 + k)).

    Replica exchange between springs k and k' of length L apart takes about erfc(|L' - L| / 2)
    of its offers where the energies are near Gaussian (:func:`predicted_swap_acceptance`): the
    length is the number of the energy's spreads the ladder crosses."""
    couplings = np.asarray(couplings, dtype=np.float64)
    t, length = _length_on_grid(measure, centres, couplings.max())
    return np.stack([np.interp(np.log1p(couplings), t, own) for own in length])


def _length_on_grid(measure, centres, largest):
    """The fine grid t = ln(1 + k) from 0 to ``largest`` and, per basin, the free spring's
    thermodynamic length on it ``(basin, grid)`` (:func:`thermodynamic_length`)."""
    t = np.linspace(0.0, np.log1p(largest), 8193)
    k = np.expm1(t)
    variance = -np.gradient(measure.free_spring_energy(np.atleast_2d(centres), k), k, axis=1)
    speed = np.sqrt(np.maximum(variance, 0.0)) * (1 + k)  # dL / dt
    return t, integrate.cumulative_trapezoid(speed, t, axis=1, initial=0.0)


def equal_length_schedule(measure, centres: np.ndarray, largest: float, n_couplings: int) -> np.ndarray:
    """Couplings from 0 to ``largest`` at equal steps of the free spring's thermodynamic length
    (:func:`thermodynamic_length`, its median over the basins' ``centres``: on the torus every
    centre's; for the Gaussian it grows with |z0|, and one far centre would stretch a mean for
    the others, the session-52 referee); an odd count.

    Uniform spacing in ln(1 + k) crosses the weak springs' wide energy distributions in a few
    long steps: on the torus of n = 83 phases the first two gaps are 4 spreads long, and replica
    exchange took 0.4-1.3 % of its offers there, the strongest gaps' 19 % (the ring of n = 83,
    every state), so the weakest springs, which weigh a small basin's far parts, barely receive
    the states the stronger springs' fresh draws bring in. Equal lengths share the ladder's
    spreads among its gaps (2.4 a gap there: ~8 % each with 17 springs)."""
    coupling_schedule(largest, n_couplings)  # the same checks
    t, length = _length_on_grid(measure, centres, largest)
    length = np.median(length, axis=0)
    couplings = np.interp(np.linspace(0.0, length[-1], n_couplings), length, np.expm1(t))
    couplings[0], couplings[-1] = 0.0, largest
    return couplings


def predicted_swap_acceptance(measure, centres: np.ndarray, couplings: np.ndarray) -> np.ndarray:
    """Per basin and coupling, the share of exchanges with the next stronger spring that the free
    springs would take, erfc(dL / 2) for a gap dL of thermodynamic length ``(basin, coupling)``;
    nan at the strongest. For Gaussian energies whose mean moves by k's step times their variance
    the exchange's log ratio is N(-dL^2, 2 dL^2), and the mean of min(1, exp) of it is that
    (free springs in 20 dimensions take 0.00-0.03 more, in 2 up to 0.08: their energies'
    skew). A basin's own walk takes about as many (the n = 83 ring, uniform in ln(1 + k):
    0.004-0.18 predicted at every state, 0.004-0.20 taken; the n = 16 ring at equal lengths:
    0.448 predicted, 0.38-0.52 taken). Fewer, at the gap where a ladder's rungs stop starting at
    its draw (:func:`_chain_starts`), marks rungs started out of equilibrium: on four slabs of the
    40-torus, 0.16-0.17 taken against 0.23 where the walk came out 2.3-2.5 nats low (the
    session-52 referee); the n = 83 ring's q = 6 took 0.061-0.063 against 0.084 there."""
    gaps = np.diff(thermodynamic_length(measure, centres, couplings), axis=1)
    return np.concatenate([special.erfc(gaps / 2), np.full((len(gaps), 1), np.nan)], axis=1)


def estimate_basin_measures(
    inside: Inside,
    measure: GaussianMeasure | UniformTorus,
    centres: np.ndarray,
    *,
    couplings: np.ndarray,
    n_chains: int,
    n_steps: int,
    n_burn: int,
    n_reference: int,
    seed: int,
    basin_ids: np.ndarray | None = None,
    confidence_z: float = 1.96,
    basin_samples: list[np.ndarray] | None = None,
    independent_share: float = INDEPENDENT_SHARE,
    half_length_walk: bool = False,
    replica_exchange: bool = False,
    descend_ladders: bool = False,
) -> xr.Dataset:
    """ln of each basin's measure under ``measure``, by thermodynamic integration.

    Parameters
    ----------
    inside : callable
        :data:`Inside`; called once per step of the walk with every proposal of every basin,
        coupling and chain that passed the Metropolis test, and once with the reference draws.
    measure : GaussianMeasure or UniformTorus
        The initial measure in whitened coordinates.
    centres : ndarray, shape (basin, dim)
        A point of each basin (whitened): the spring's anchor and every chain's start.
    couplings : ndarray, shape (coupling,)
        Spring strengths, from 0, increasing; an odd count (:func:`coupling_schedule`).
    n_chains : int
        Independent chains per basin and coupling (>= 2): <s>_k's standard error is the spread
        of their means.
    n_steps, n_burn : int
        Steps per chain, of which the first ``n_burn`` adapt the step size and are discarded.
    n_reference : int
        Independent draws of the strongest spring's Gaussian counted for the reference fraction,
        before the walk; the strongest spring's fresh draws during it are counted with them.
    seed : int
        Seed of the walk and the reference draws.
    basin_ids : ndarray, shape (basin,), optional
        The basins' labels in the output (default 0, 1, ...).
    confidence_z : float
        Standard errors in the interval's half-width (beside the quadrature error).
    basin_samples : list of ndarray, shapes (sample, dim), optional
        Per basin, draws of ``measure`` inside it (whitened). Each is checked by ``inside``
        first (one that does not return is dropped); the chains of coupling k start at draws
        among them and the centre, drawn with weights exp(-k s(z)) (sampling-importance
        resampling of the spring's target); chains that share a draw count as one in the
        standard error. Default: every chain at its basin's centre.
    independent_share : float
        Share of each chain's proposals drawn from its spring's target without the basin
        (independence Metropolis-Hastings: such a draw is taken wherever it lies inside), the
        others a random walk's; 0 for the random walk alone.
    half_length_walk : bool
        Check the walks' length by a second, independent estimate with walks half as long
        (``n_steps // 2``, burn-in ``max(n_burn // 2, 1)``, from the same ``basin_samples``;
        about half the cost again), with ladders whose rungs start the other way
        (``descend_ladders`` negated): the stage's plateau score then pools each basin's
        difference between the two (:func:`_plateau_check`), about twice as sensitive as the
        halves of one walk and able to see rungs the main walk holds away from equilibrium;
        else it pools the halves.
    replica_exchange : bool
        Swap states between neighbouring couplings' chains after every step (no run of the
        dynamics: both lie inside); chain c of every coupling is then ladder c, each started
        at a member's start of its own or the centre, and the integral's standard error is the
        ladders' spread (n_chains - 1 degrees of freedom) instead of the couplings' errors added
        in quadrature.
    descend_ladders : bool
        With ``replica_exchange`` and ``basin_samples``: each ladder's rungs start in turn down
        the springs from its own draw (:func:`_descend_ladders`, ``n_burn`` steps a rung:
        about n_burn / n_steps more runs of the dynamics, in (couplings - 1) * n_burn more
        calls of ``inside``) instead of each at the draw or the centre; the half-length walk's,
        from the other side of equilibrium than the main walk's.

    Returns
    -------
    xarray.Dataset
        Per ``basin``: ``log_measure`` with ``log_measure_se``, its ``log_measure_dof``,
        ``log_measure_low`` / ``_high`` (the interval: Student's t at ``log_measure_dof`` with
        the two-sided level of ``confidence_z``, quadrature error included), ``quadrature_error``,
        ``reference_inside_fraction``, ``undecided_fraction`` (of all runs; an undecided run
        was rejected as a move, so a non-zero value biases the estimate low), ``reason`` (why a
        basin has no estimate: nan), ``basin_samples`` (draws used; 0 where none were given);
        per ``basin`` and
        ``coupling``: ``mean_spring_energy`` <s>_k with ``_se``, ``start_clusters`` (distinct
        starts of its chains), ``acceptance``, ``step_size``, ``fresh_draws`` and
        ``fresh_inside_fraction``; per ``basin`` ``log_measure_by_draws`` with its Wilson
        interval (``_low``, ``_high``): the basin counted by the free spring's fresh draws,
        which are draws of ``measure`` itself; the check of the integration by the fresh draws
        (:func:`_check_by_fresh_draws`): per ``basin`` and ``coupling`` ``log_inside_by_walk``
        and ``draws_disagreement``, per ``basin`` ``draws_check``, ``draws_check_threshold``,
        ``draws_check_couplings`` and ``draws_check_failed``; the walks' length
        (:func:`_plateau_check`): per ``basin`` ``log_measure_half_drift`` with ``_se`` and
        ``half_drift_score``, with ``half_length_walk`` ``log_measure_half_walk`` with ``_se``
        and ``half_walk_score``; per stage ``plateau_score``, ``plateau_basins``,
        ``plateau_check_failed`` and ``plateau_method``.
    """
    couplings = _checked_couplings(couplings)
    centres = np.atleast_2d(np.asarray(centres, dtype=np.float64))
    if centres.shape[1] != measure.dim:
        raise ValueError(f"centres have {centres.shape[1]} coordinates, the measure {measure.dim}")
    if n_chains < 2 or n_burn < 1 or n_steps <= n_burn or n_reference < 1 or not 0 <= independent_share < 1:
        raise ValueError(f"n_chains={n_chains} (>= 2), n_burn={n_burn} (>= 1), n_steps={n_steps} (> n_burn), "
                         f"n_reference={n_reference} (>= 1), independent_share={independent_share} (in [0, 1))")
    half_steps, half_burn = n_steps // 2, max(n_burn // 2, 1)  # the half-length walk's
    if half_length_walk and half_steps <= half_burn:
        raise ValueError(f"n_steps={n_steps}, n_burn={n_burn}: the half-length walk needs n_steps // 2 > "
                         "max(n_burn // 2, 1), its burn-in")
    rng = np.random.default_rng(seed)
    samples = _checked_samples(inside, measure, centres, basin_samples)  # not runs of the walk: uncounted
    given_inside, inside = inside, _counted(inside, len(centres))
    reference = _reference_fraction(inside, measure, centres, couplings[-1], n_reference, rng)
    descend = replica_exchange and descend_ladders
    starts = _chain_starts(measure, centres, samples, couplings, n_chains, rng, ladders=replica_exchange,
                           descended=descend)
    if descend:  # each rung a burn-in of its own, in turn
        starts = _descend_ladders(inside, measure, centres, starts, couplings, rng=rng, steps_per_rung=n_burn,
                                  independent_share=independent_share)
    walk = _walk(inside, measure, centres, starts, couplings, n_steps=n_steps, n_burn=n_burn, rng=rng,
                 independent_share=independent_share, exchange=replica_exchange)
    free = measure.free_spring_energy(centres, couplings)
    excess = walk["chain_means"] - free[..., None]
    integral, integral_se, integral_dof, quadrature_error = _integrate(
        couplings, excess, walk["se"], walk["dof"], walk["ladders"])
    # ln mu from the second half of the kept steps minus from the first: the integral is linear in <s>_k
    half_drift, half_drift_se, half_drift_dof, _ = _integrate(
        couplings, walk["half_changes"], walk["half_change_se"], walk["half_change_dof"], walk["ladders"])
    # The strongest spring's fresh draws are draws of the reference's Gaussian too, independent of
    # the walk's states: pooled with the reference draws (6 334 beside 256 on the N = 41 network).
    reference = reference + walk["fresh_inside"][:, -1]
    reference_draws = n_reference + walk["fresh_draws"][:, -1]
    inside_fraction = reference / reference_draws
    with np.errstate(divide="ignore", invalid="ignore"):
        log_reference_fraction = np.log(inside_fraction)
        reference_se = np.sqrt((1 - inside_fraction) / (reference_draws * inside_fraction))
    log_measure = log_reference_fraction + integral
    se = np.sqrt(integral_se**2 + reference_se**2)
    with np.errstate(divide="ignore", invalid="ignore"):  # the reference's binomial error: infinite dof
        dof = se**4 / (integral_se**4 / integral_dof)
    partials = _partial_integrals(couplings, excess, walk["se"], walk["dof"], walk["ladders"])
    check = _check_by_fresh_draws(log_reference_fraction, reference_se, partials, quadrature_error,
                                  walk["fresh_inside"], walk["fresh_draws"], confidence_z)
    reason = np.where(reference == 0, f"no draw of the strongest spring (k = {couplings[-1]:g}) fell in the basin: "
                      "raise largest_coupling", "").astype(object)
    log_measure[reference == 0] = np.nan
    ids = np.arange(len(centres)) if basin_ids is None else np.asarray(basin_ids)
    halves = _halves_plateau(half_drift, half_drift_se, half_drift_dof, integral_se, np.isfinite(log_measure),
                             confidence_z)
    if half_length_walk:
        log.info("basin walk: again with walks of %d steps, the plateau check of their length", half_steps)
        half = estimate_basin_measures(
            given_inside, measure, centres, couplings=couplings, n_chains=n_chains, n_steps=half_steps,
            n_burn=half_burn, n_reference=n_reference, seed=np.random.SeedSequence([seed, 2]),
            confidence_z=confidence_z, basin_samples=basin_samples, independent_share=independent_share,
            replica_exchange=replica_exchange, descend_ladders=not descend_ladders)
        plateau = _half_walk_plateau(log_measure, se, dof, half, confidence_z)
    else:
        plateau = {}
    return _as_dataset(
        ids, couplings, walk, log_measure, se, dof, quadrature_error, inside_fraction, inside.undecided_fraction(),
        confidence_z,
    ).assign(
        reference_draws=(("minimum",), reference_draws, variable_attrs(
            "draws of the strongest spring's Gaussian behind reference_inside_fraction",
            note="n_reference drawn before the walk and the strongest spring's fresh draws")),
        **_check_variables(check),
        reason=(("minimum",), reason, variable_attrs("why the basin has no estimate (empty: it has one)")),
        predicted_swap_acceptance=_per_coupling(
            predicted_swap_acceptance(measure, centres, couplings), "share of exchanges with the next stronger "
            "spring that the free springs would take (erfc of half the gap's thermodynamic length)",
            note="compare swap_acceptance: far below it, the walk is not sampling its springs; nan at the strongest"),
        basin_samples=(("minimum",), np.array([len(own) - 1 for own in samples]), variable_attrs(
            "draws of the initial measure inside the basin, away from its centre, that the chains started among")),
        log_measure_half_drift=(("minimum",), half_drift, variable_attrs(
            "log_measure from the second half of the kept steps minus from the first half", "nats",
            note="a walk still spreading through its basin gives a positive value, and log_measure is then low; "
                 "noise alone spreads it by about 2 log_measure_se")),
        **_plateau_variables(halves, plateau),
    )


def _checked_couplings(couplings):
    couplings = np.asarray(couplings, dtype=np.float64)
    if couplings.ndim != 1 or len(couplings) < 3 or len(couplings) % 2 == 0:
        raise ValueError(f"couplings {couplings}: give an odd number >= 3 (coupling_schedule)")
    if couplings[0] != 0 or (np.diff(couplings) <= 0).any():
        raise ValueError(f"couplings {couplings}: start at 0 and increase")
    return couplings


class _counted:
    """``inside`` that refuses malformed answers and counts runs and undecided ones per basin."""

    def __init__(self, inside, n_basins):
        self.inside, self.runs, self.undecided = inside, np.zeros(n_basins), np.zeros(n_basins)

    def __call__(self, points, basins):
        if len(points) == 0:
            return np.zeros(0, dtype=np.int8)
        outcome = run_outcomes(self.inside, points, basins)
        self.runs += np.bincount(basins, minlength=len(self.runs))
        self.undecided += np.bincount(basins[outcome == UNDECIDED], minlength=len(self.runs))
        return outcome

    def undecided_fraction(self):
        return self.undecided / np.maximum(self.runs, 1)


def _reference_fraction(inside, measure, centres, coupling, n_reference, rng):
    """Per basin: how many of ``n_reference`` draws of the strongest spring's Gaussian lie in it.
    An undecided draw counts as outside (the estimate is then low; ``undecided_fraction`` says);
    a basin none of whose draws lies in it gets no estimate (``reason``), the others keep theirs."""
    draws = measure.sample_reference(centres, coupling, n_reference, rng)  # (draw, basin, dim)
    basins = np.broadcast_to(np.arange(len(centres)), draws.shape[:2])
    outcome = inside(draws.reshape(-1, measure.dim), basins.reshape(-1)).reshape(basins.shape)
    return (outcome == RETURNED).sum(axis=0)


def _checked_samples(inside, measure, centres, basin_samples):
    """Per basin, its centre and the given draws whose runs return to it ``(sample, dim)``; a draw
    at the centre itself (the anchor member's own start) is the centre, not a second start: two
    indices of one point would count as two clusters of the chains' standard error."""
    if basin_samples is None:
        return [centre[None] for centre in centres]
    if len(basin_samples) != len(centres):
        raise ValueError(f"basin_samples has {len(basin_samples)} entries for {len(centres)} basins")
    samples = [measure.wrap(np.asarray(own, dtype=np.float64).reshape(-1, measure.dim)) for own in basin_samples]
    samples = [own[_off_centre(measure, own, centre)] for own, centre in zip(samples, centres)]  # before their runs
    points, basins = np.concatenate(samples), np.repeat(np.arange(len(centres)), [len(own) for own in samples])
    returns = run_outcomes(inside, points, basins) == RETURNED if len(points) else np.ones(0, dtype=bool)
    if not returns.all():
        log.warning("%d of %d basin samples did not return to their basin: dropped", (~returns).sum(), returns.size)
    kept = np.split(returns, np.cumsum([len(own) for own in samples])[:-1])
    return [np.concatenate([centre[None], own[keep]]) for centre, own, keep in zip(centres, samples, kept)]


def _off_centre(measure, points, centre):
    """Which of ``points (sample, dim)`` lie away from ``centre``."""
    return np.abs(measure.displacement(points, centre)).max(axis=-1, initial=0.0) > 0


def _chain_starts(measure, centres, samples, couplings, n_chains, rng, *, ladders=False, descended=False):
    """Each chain's start ``(basin, coupling, chain, dim)``, drawn among the basin's samples (its
    centre first) with weights exp(-k s(z)), the spring's density relative to mu, and which
    sample it is ``(basin, coupling, chain)`` (0: the centre).

    With ``ladders`` (replica exchange) each ladder owns one sample, distinct from the other
    ladders' (drawn without replacement; ladders beyond the samples own none), and each of its
    rungs starts at it or at the centre, whichever has the spring energy nearer the free spring's
    mean there (the energy a draw of the spring's target has where the basin holds its mass):
    ladders share no drawn start, so their spread is the standard error on n_chains - 1 degrees
    of freedom (per-rung draws from the whole pool shared samples across rungs, which joined
    every ladder into one cluster in most pooled walks: the session-47 referee). Weak springs'
    rungs so begin spread over the basin, strong springs' at the centre. Drawn between the two
    by the spring's weight (sessions 47-51), half the free spring's rungs began at the centre,
    whose energy 0 no draw of the free spring comes near in high dimension (the n = 83 ring: the
    spring energy of members' starts about their state's anchor averages 134.5-138.7 with a
    spread of 13.5, the free spring's mean 136.5). With ``descended`` every rung starts at its
    ladder's draw, for :func:`_descend_ladders` to walk down the springs."""
    which = np.zeros((len(centres), len(couplings), n_chains), dtype=np.int64)
    for basin, (centre, own) in enumerate(zip(centres, samples)):
        if len(own) == 1:  # the centre alone (no random draw: the walk's stream stays as it was)
            continue
        if ladders:
            owned = 1 + rng.permutation(len(own) - 1)[:n_chains]
            typical = measure.free_spring_energy(centre[None], couplings)[0][:, None]  # (coupling, 1)
            at_owned = descended | (np.abs(_spring(measure, own[owned], centre)[None] - typical) < typical)
            which[basin, :, :len(owned)] = np.where(at_owned, owned, 0)  # the draw where nearer than the centre's 0
            continue
        energy = _spring(measure, own, centre)
        for index, k in enumerate(couplings):
            weight = np.exp(-k * (energy - energy.min()))
            which[basin, index] = rng.choice(len(own), size=n_chains, p=weight / weight.sum())
    starts = np.stack([own[chosen] for own, chosen in zip(samples, which)])
    return starts, which


def _descend_ladders(inside, measure, centres, starts, couplings, *, steps_per_rung, rng, independent_share):
    """Each ladder's rungs started in turn down its springs from its own draw: the rung of spring
    k_i starts where ``steps_per_rung`` steps of the confined walk under k_i took the state the
    rung of k_(i-1) started at (the walk's own moves, step size adapted per basin as in its
    burn-in). ``starts`` as from :func:`_chain_starts`; ladders that own no draw keep the centre.

    The draw, a member's start, is a draw of the free spring's confined target; walked down the
    springs, each rung starts from the far side of its own spring's target, where the main
    walk's rungs from k ~ 0.7 on start at the anchor (:func:`_chain_starts`): short of
    equilibrium the two err in opposite directions, which the half-length walk's plateau check
    compares. Neither is a fix where the walk cannot reach its target: on four slabs of the
    40-torus, from above 14-30 nats high at 8000 steps (every rung at the draw, without the
    descent, 79 high at 4000: the strong springs stranded far out), from the anchor 2.3 low.
    With fewer steps a rung the states lag behind their springs (a box in d = 20, walks of 1000
    steps from above: +2.2 nats with n_burn / 16 steps a rung, +1.3 with n_burn / 4, +0.3 with
    n_burn)."""
    starts, start_ids = starts
    drawn = start_ids[:, 0] > 0  # (basin, chain): ladders that own a draw
    basin = np.nonzero(drawn)[0]
    z, anchor = starts[:, 0][drawn], centres[basin]
    descended = starts.copy()
    for index in range(1, len(couplings) if len(z) else 0):
        coupling = np.full(len(z), couplings[index])
        log_target = measure.log_density(z) - coupling * _spring(measure, z, anchor)
        step = np.full(len(centres), _first_step(measure.dim, couplings[index]))
        for t in range(steps_per_rung):
            moved, fresh = _move(inside, measure, z, log_target, anchor, coupling, step[basin], basin, rng,
                                 independent_share)
            walked = np.bincount(basin, ~fresh, minlength=len(centres))
            rate = np.bincount(basin, moved & ~fresh, minlength=len(centres)) / np.maximum(walked, 1)
            step *= _step_factor(rate, t)
        descended[:, index][drawn] = z
    return descended, start_ids


def _walk(inside, measure, centres, starts, couplings, *, n_steps, n_burn, rng, independent_share, exchange):
    """Walks confined to each basin under each spring, from ``starts (basin, coupling, chain,
    dim)`` and which sample each is ``(basin, coupling, chain)``; <s>_k per chain after burn-in.

    Each proposal is, with probability ``independent_share``, a fresh draw of the spring's
    target without the basin, mu(z) exp(-k s(z)): its Metropolis-Hastings ratio is 1, so it is
    taken wherever the dynamics put it inside; else a random walk's step, taken by Metropolis'
    test and the dynamics. Each kernel leaves the confined target invariant, so their mixture
    does. The random walk explores near where a chain is; the fresh draws reach every part of
    the basin the spring weighs, at the rate of its mass there (from mu(B) at k = 0 to the
    reference fraction at the strongest spring).

    With ``exchange``, chain c of every coupling of a basin is one rung of ladder c: after each
    step, neighbouring rungs (even pairs, then odd pairs on alternate steps) offer to swap their
    states, taken with probability min(1, exp((k_j - k_i)(s_j - s_i))), k_j > k_i (replica
    exchange, Swendsen and Wang 1986, Hukushima and Nemoto 1996). Both states lie inside the
    basin, so a swap needs no run of the dynamics; it leaves the product of the confined targets
    invariant, and hands the states the strong springs' frequent fresh draws bring in down to
    the weak springs, whose own fresh draws rarely land inside."""
    starts, start_ids = starts
    n_basins, _, n_chains, dim = starts.shape
    shape = (n_basins, len(couplings), n_chains)
    k = couplings[None, :, None]
    anchor = np.broadcast_to(centres[:, None, None, :], (*shape, dim))
    basin = np.broadcast_to(np.arange(n_basins)[:, None, None], shape)
    z = starts.copy()
    log_target = measure.log_density(z) - k * _spring(measure, z, anchor)
    step = np.broadcast_to(_first_step(dim, couplings)[None, :], shape[:2]).copy()
    kept = n_steps - n_burn
    energy_sum, accepted_sum = np.zeros((2, *shape)), np.zeros(shape)  # first and second half of the kept steps
    # Fresh draws are independent of the chains' states: every one, burn-in's too, is a draw of
    # the spring's target, and the share inside estimates that target's mass in the basin.
    fresh_draws, fresh_inside = np.zeros(shape[:2]), np.zeros(shape[:2])
    swaps_offered, swaps_taken = np.zeros(shape[:2]), np.zeros(shape[:2])  # with the next stronger spring
    every_coupling = np.broadcast_to(k, shape)
    for t in range(n_steps):
        moved, fresh = _move(inside, measure, z, log_target, anchor, every_coupling, step[..., None], basin, rng,
                             independent_share)
        fresh_draws += fresh.sum(axis=2)
        fresh_inside += (fresh & moved).sum(axis=2)
        if exchange:
            lower = np.arange(t % 2, len(couplings) - 1, 2)
            taken = _exchange(measure, z, anchor, couplings, lower, rng)
            log_target = measure.log_density(z) - k * _spring(measure, z, anchor)
            swaps_offered[:, lower] += n_chains
            swaps_taken[:, lower] += taken.sum(axis=2)
        if t < n_burn:  # Robbins-Monro on ln(step) from the random walk's moves, per basin and coupling
            walked = ~fresh
            rate = (moved & walked).sum(axis=2) / np.maximum(walked.sum(axis=2), 1)
            step *= _step_factor(rate, t)
        else:
            energy_sum[int(t - n_burn >= kept // 2)] += _spring(measure, z, anchor)
            accepted_sum += moved
        if (t + 1) % max(n_steps // 10, 1) == 0:
            log.info("basin walk: step %d of %d", t + 1, n_steps)
    chain_means = energy_sum.sum(axis=0) / kept
    halves = energy_sum / np.array([kept // 2, kept - kept // 2])[:, None, None, None]
    se, dof, clusters = _clustered_se(chain_means, start_ids)
    change = halves[1] - halves[0]  # (basin, coupling, chain)
    half_change_se, half_change_dof, _ = _clustered_se(change, start_ids)
    return {
        "chain_means": chain_means,
        "half_changes": change,
        "ladders": _ladder_clusters(start_ids) if exchange else None,
        "swap_acceptance": np.where(swaps_offered > 0, swaps_taken / np.maximum(swaps_offered, 1), np.nan),
        "mean": chain_means.mean(axis=2),
        "se": se,
        "dof": dof,
        "clusters": clusters,
        "drift": _drift(change),
        "half_change_se": half_change_se,
        "half_change_dof": half_change_dof,
        "acceptance": accepted_sum.mean(axis=2) / kept,
        "step": step,
        "fresh_draws": fresh_draws,
        "fresh_inside": fresh_inside,
    }


def _first_step(dim, coupling):
    """The random walk's step before adaptation: 2.38 / sqrt(d) of the spring's own width."""
    return 2.38 / np.sqrt(dim * (1 + coupling))


def _step_factor(rate, t):
    """Robbins-Monro on ln(step) at burn-in step ``t``: the factor that moves the walk's
    acceptance ``rate`` toward :data:`TARGET_ACCEPTANCE`."""
    return np.exp((rate - TARGET_ACCEPTANCE) / np.sqrt(1 + t) * 2)


def _move(inside, measure, z, log_target, anchor, coupling, step, basin, rng, independent_share):
    """One step of every chain, in place: ``z (..., dim)`` and its ``log_target (...)`` under the
    spring of strength ``coupling (...)`` toward ``anchor (..., dim)``, random walk steps of size
    ``step`` (broadcast to ``z.shape[:-1]``) or, with probability ``independent_share``, fresh
    draws of the spring's target; which chains moved and which proposals were fresh draws."""
    shape = z.shape[:-1]
    proposal = measure.wrap(z + step[..., None] * rng.standard_normal(z.shape))
    fresh = rng.uniform(size=shape) < independent_share
    proposal[fresh] = measure.sample_spring(anchor[fresh], coupling[fresh], rng)
    proposed_log_target = measure.log_density(proposal) - coupling * _spring(measure, proposal, anchor)
    passes = fresh | (np.log(rng.uniform(size=shape)) < proposed_log_target - log_target)
    moved = np.zeros(shape, dtype=bool)
    moved[passes] = inside(proposal[passes], basin[passes]) == RETURNED
    z[moved], log_target[moved] = proposal[moved], proposed_log_target[moved]
    return moved, fresh


def _exchange(measure, z, anchor, couplings, lower, rng):
    """Swap, in place, the states of couplings ``lower`` and ``lower + 1`` of each basin and chain
    of ``z (basin, coupling, chain, dim)`` by Metropolis' test of the exchange; which were swapped
    ``(basin, pair, chain)``."""
    upper = lower + 1
    energy = _spring(measure, z, anchor)
    log_ratio = (couplings[upper] - couplings[lower])[None, :, None] * (energy[:, upper] - energy[:, lower])
    taken = np.log(rng.uniform(size=log_ratio.shape)) < log_ratio
    basin, pair, chain = np.nonzero(taken)
    z[basin, lower[pair], chain], z[basin, upper[pair], chain] = z[basin, upper[pair], chain], z[basin, lower[pair], chain]
    return taken


def _ladder_clusters(start_ids):
    """Per basin, each ladder's cluster of the ladders' standard error ``(basin, chain)``: its own.
    Ladders (chain c at every coupling, states swapped among them) that started at a common drawn
    sample would share its offset, which their spread does not show; :func:`_chain_starts` gives
    each ladder a sample of its own, and ladders that share one are refused here. Starts at the
    centre (id 0, a fixed point, no draw) are shared freely: a basin of anchored ladders keeps
    the ladders' own spread, as :func:`_clustered_se` does for chains all at the anchor."""
    n_basins, _, n_chains = start_ids.shape
    for basin in range(n_basins):
        drawn = [set(start_ids[basin, :, chain].tolist()) - {0} for chain in range(n_chains)]
        if sum(map(len, drawn)) != len(set().union(*drawn)):
            raise ValueError(f"basin {basin}: ladders share a drawn start, so their spread would understate the "
                             "standard error")
    return np.broadcast_to(np.arange(n_chains), (n_basins, n_chains))


def _measure_by_draws(inside, draws, z):
    """ln of each basin's measure from the fresh draws of the free spring (the initial measure
    itself) that fell inside, ``inside`` of ``draws`` per basin, with its Wilson interval: a check
    of the integration by plain counting, where the basin is large enough to be hit (no hit:
    the low end is -inf and the high end an upper bound)."""
    fraction, low, high = (np.full(len(draws), np.nan) for _ in range(3))
    drawn = draws > 0
    fraction[drawn] = inside[drawn] / draws[drawn]
    low[drawn], high[drawn] = wilson_interval(inside[drawn], draws[drawn], z)
    with np.errstate(divide="ignore"):
        logs = [np.log(values) for values in (fraction, low, high)]
    return {
        "log_measure_by_draws": _per_basin(logs[0], "ln of the share of the free spring's fresh draws inside the basin",
                                          note="a count of draws of the initial measure, beside log_measure"),
        "log_measure_by_draws_low": _per_basin(logs[1], "lower end of the Wilson interval of log_measure_by_draws"),
        "log_measure_by_draws_high": _per_basin(logs[2], "upper end of the Wilson interval of log_measure_by_draws"),
    }


def _partial_integrals(couplings, excess, se, dof, ladders):
    """Per basin and coupling k_i, the integral of the excess from k_i to the strongest spring
    (:func:`_integrate`'s integrand, by cumulative Simpson from the top), its standard error and
    degrees of freedom (nan at the strongest spring, where it is 0)."""
    t = np.log1p(couplings)
    weights = np.stack([integrate.cumulative_simpson(node[::-1], x=-t[::-1], initial=0)[::-1]
                        for node in np.eye(len(t))], axis=1)  # (coupling i, node j): node j's weight from k_i up
    value, value_se, value_dof = _weighted_sum(weights * (1 + couplings), excess, se, dof, ladders)
    return value, value_se, np.where(value_se > 0, value_dof, np.nan)


def _weighted_sum(weights, excess, se, dof, ladders):
    """Sums over the couplings of ``weights (sum, coupling)`` times the chains' mean of ``excess
    (basin, coupling, chain)``, per basin and sum, with standard errors and degrees of freedom.

    Without exchange (``ladders`` None) the couplings' chains are independent: the couplings'
    standard errors ``se`` (basin, coupling) add in quadrature, degrees of freedom by
    Welch-Satterthwaite from their ``dof``. With it each ladder's chains are correlated across
    couplings: each ladder's own weighted sum is one draw, and their spread (clusters ``ladders
    (basin, chain)``, :func:`_ladder_clusters`) is the standard error."""
    value = np.einsum("oj,bjc->bo", weights, excess) / excess.shape[2]
    if ladders is not None:
        per_ladder = np.einsum("oj,bjc->boc", weights, excess)
        value_se, value_dof, _ = _clustered_se(per_ladder, np.broadcast_to(ladders[:, None, :], per_ladder.shape))
        return value, value_se, value_dof
    variances = se[:, None, :] ** 2 * weights[None] ** 2  # (basin, sum, node)
    total = variances.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):  # every spring's chains without spread
        total_dof = total**2 / np.sum(variances**2 / dof[:, None, :], axis=-1)
    return value, np.sqrt(total), total_dof


def _check_by_fresh_draws(log_reference, reference_se, partials, quadrature_error, fresh_inside, fresh_draws, z):
    """The integration against the fresh draws, coupling by coupling.

    A fresh draw of spring k is a draw of mu(z) exp(-k s(z)) without the basin, so the share of
    them inside estimates Z_k(basin) / Z_k(free), whose ln the integration gives too: ln of the
    reference fraction plus the integral from k to the strongest spring. At every coupling with
    at least :data:`MIN_CHECK_HITS` draws inside their difference in combined standard errors
    (the walk's widened to Student's t as its interval is, the quadrature error added as in it,
    the share's binomial by the delta method) is about standard normal where the walk has
    sampled its basin, or narrower: the walk takes the draws that land inside, which correlates
    the two positively (a draw in a far part raises both), and the combined error, which
    ignores that, makes the test conservative. Its largest size over the couplings compared is
    held to the interval's two-sided level
    split between them (Bonferroni): a walk that has not spread through its basin, or has missed
    a piece of it the draws hit, fails the check. The check flags, it does not refuse: it sees
    only basins the draws hit, and there the walk takes the same draws (see the module for what
    it caught on the planted basins), while the walk's own spread, slightly narrow at short
    walks, makes it fail on a few well-sampled basins too."""
    partial, partial_se, partial_dof = partials
    walk = log_reference[:, None] + partial
    walk_se = np.sqrt((partial_se * interval_quantile(z, partial_dof) / z) ** 2 + reference_se[:, None] ** 2
                      + (quadrature_error[:, None] / z) ** 2)
    compared = fresh_inside >= MIN_CHECK_HITS
    compared[:, -1] = False  # the strongest spring's draws are in the reference fraction
    with np.errstate(divide="ignore", invalid="ignore"):
        share = fresh_inside / fresh_draws
        draws, draws_se = np.log(share), np.sqrt((1 - share) / fresh_inside)
        disagreement = np.where(compared, (walk - draws) / np.sqrt(walk_se**2 + draws_se**2), np.nan)
    n_compared = compared.sum(axis=1)
    threshold = stats.norm.isf(stats.norm.sf(z) / np.maximum(n_compared, 1))
    worst = np.where(n_compared > 0, np.nanmax(np.abs(np.where(compared, disagreement, 0.0)), axis=1), np.nan)
    return {
        "log_inside_by_walk": walk, "draws_disagreement": disagreement, "draws_check": worst,
        "draws_check_threshold": threshold, "draws_check_couplings": n_compared,
    }


def _check_variables(check):
    return {
        "log_inside_by_walk": _per_coupling(
            check["log_inside_by_walk"], "ln of the spring's target mass inside the basin, by the integration",
            note="ln reference fraction + the integral from the coupling to the strongest spring; "
                 "compare ln fresh_inside_fraction"),
        "draws_disagreement": _per_coupling(
            check["draws_disagreement"], "log_inside_by_walk - ln fresh_inside_fraction in combined standard errors",
            note=f"nan where fewer than {MIN_CHECK_HITS} fresh draws fell inside"),
        "draws_check": _per_basin(check["draws_check"], "largest |draws_disagreement| over the couplings compared",
                                 note="above draws_check_threshold: draws_check_failed"),
        "draws_check_failed": _per_basin(
            (check["draws_check"] > check["draws_check_threshold"]).astype(np.int8),
            "whether the integration disagrees with the fresh draws beyond draws_check_threshold",
            flag_values="0 1", flag_meanings="agrees disagrees",
            note="a flag beside the estimate, not a refusal: about one well-sampled basin in 20 is flagged too"),
        "draws_check_threshold": _per_basin(
            check["draws_check_threshold"], "the interval's two-sided level split between the couplings compared "
            "(Bonferroni), as a standard normal quantile"),
        "draws_check_couplings": _per_basin(check["draws_check_couplings"], "couplings compared with the fresh draws"),
    }


def _clustered_se(chain_means, start_ids):
    """Per basin and coupling: the standard error of the mean of ``chain_means (basin, coupling,
    chain)`` counting chains that share a start (``start_ids``) as one cluster (CR1: the spread of
    the clusters' summed deviations, times G / (G - 1)), its degrees of freedom G - 1, and G.
    Chains that share a start share its offset from the spring's target, which their own spread
    does not show; with distinct starts this is the chains' spread, ddof 1. One cluster (every
    chain at the anchor) leaves only the chains' spread: the shared bias of limit 1."""
    n_chains = chain_means.shape[-1]
    se, dof, clusters = (np.empty(chain_means.shape[:-1]) for _ in range(3))
    for index in np.ndindex(se.shape):
        means = chain_means[index]
        cluster = np.unique(start_ids[index], return_inverse=True)[1]
        g = clusters[index] = cluster.max() + 1
        if g == 1:
            se[index], dof[index] = means.std(ddof=1) / np.sqrt(n_chains), n_chains - 1
        else:
            sums = np.bincount(cluster, weights=means - means.mean())
            se[index], dof[index] = np.sqrt(g / (g - 1) * np.sum(sums**2)) / n_chains, g - 1
    return se, dof, clusters


def _drift(change):
    """Per basin and coupling: the change of <s>_k from the first to the second half of the kept
    steps (``change``, per chain), in units of its standard error over chains (Geweke 1992's check
    of a burn-in that was too short: the walk still drifting away from its anchor)."""
    se = change.std(axis=2, ddof=1) / np.sqrt(change.shape[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, change.mean(axis=2) / se, 0.0)


def _plateau_check(difference, difference_se, difference_dof, scored, z):
    """Whether the walks are long enough, pooled over the basins measured together.

    ``difference`` is, per basin, what a walk at equilibrium leaves at 0 up to its standard
    error: the half drift (ln mu from the second half of the kept steps minus from the first:
    :func:`_halves_plateau`) or the estimate minus an independent one from walks half as long
    (:func:`_half_walk_plateau`). Each of the basins ``scored`` is turned into a normal score
    (its Student-t tail probability at ``difference_dof``, as a standard normal quantile), and
    Stouffer's sum over them, over the square root of their number, is standard normal where
    every walk is at equilibrium and grows as the square root of the basins where the walks
    share a bias (walks too short to spread drift up and come out low; walks half as long lower
    still). Its two-sided level is the interval's (``z``); a stage without a scored basin is
    unchecked.

    A flag, not a refusal, and with the halves a weak one at a stage's few basins: their score
    follows the basin's shape more than the bias (an independent referee, session 44: a box in
    d = 20 scored +0.9 to +1.2 a basin whether its walks were 2 or 9.6 nats low; a half-space in
    the tail 4.7 at 4.4 low), so stages of 3-6 such basins were flagged in 30-83 % of the cases
    biased by 2-10 nats; the half-length walk's difference scored about 2 a basin on that box
    (+1.8 at 600 steps, +2.4 at 60: 3-basin stages flagged in 29 of 30; docs/method.md). One
    biased basin among many is diluted by the square root of their number (the n = 40 Kuramoto
    ring, session 49: q = 4's score +2.97 beside -0.36 and -1.25 pooled to +0.79), so each
    basin's score is also held to the stage's level shared among its scored basins (Sidak:
    :func:`_per_basin_level`), which flags such a basin alone; each of the two checks keeps the
    interval's level where every walk is at equilibrium. Neither sees a walk stuck in part of
    its basin for longer than the walk."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = difference / difference_se
    scored = scored & np.isfinite(t) & (difference_dof > 0)
    score = np.full(len(difference), np.nan)
    # The tail probability's normal quantile, each sign from its own tail (no 1 - p round-off).
    tail = stats.t.sf(np.abs(t[scored]), difference_dof[scored])
    score[scored] = -np.sign(t[scored]) * special.ndtri(tail)
    n_scored = int(scored.sum())
    pooled = float(score[scored].sum() / np.sqrt(n_scored)) if n_scored else float("nan")
    verdict = PLATEAU_UNCHECKED if not n_scored else PLATEAU_DRIFTING if abs(pooled) > z else PLATEAU_REACHED
    level = _per_basin_level(z, n_scored)
    basin_verdict = np.where(~scored, PLATEAU_UNCHECKED, np.where(np.abs(score) > level, PLATEAU_DRIFTING,
                                                                  PLATEAU_REACHED)).astype(np.int8)
    return {"score": score, "pooled": pooled, "basins": n_scored, "verdict": verdict, "basin_level": level,
            "basin_verdict": basin_verdict}


def plateau_basin_scores(result: xr.Dataset) -> xr.DataArray:
    """Each basin's score in its stage's plateau check (``plateau_method``): the half-length
    walk's ``half_walk_score`` where the stage ran it, else the halves' ``half_drift_score``."""
    by_half_walk = result["plateau_method"].item() == "half-length walk"
    return result["half_walk_score" if by_half_walk else "half_drift_score"]


def _per_basin_level(z: float, n_basins: int) -> float:
    """The two-sided normal level at which each of ``n_basins`` independent scores is held so
    that any of them passes it, at equilibrium, with the probability that one score passes ``z``
    (Sidak 1967): ``z`` itself for one basin, 2.39 for three at z = 1.96, 3.02 for twenty."""
    if n_basins < 1:
        return float("nan")
    level = 2 * special.ndtr(-z)  # the chance of one score beyond +-z
    share = -np.expm1(np.log1p(-level) / n_basins)  # 1 - (1 - level)^(1 / n)
    return float(-special.ndtri(share / 2))


def _halves_plateau(half_drift, half_drift_se, half_drift_dof, integral_se, estimated, z):
    """:func:`_plateau_check` of the walks' halves, whose difference's standard error is the
    spread of the chains' own differences (cluster-robust as <s>_k's) integrated over the
    springs as ln mu is. Scored: the basins with an estimate (``estimated``) whose drift has a
    standard error above round-off of the estimate's (``integral_se``): chains that never
    move have halves equal to round-off (an independent referee found them scored as noise)."""
    moved = half_drift_se > _UNMOVED_SE_RATIO * np.nan_to_num(integral_se)
    return dict(_plateau_check(half_drift, half_drift_se, half_drift_dof, estimated & moved, z), se=half_drift_se)


def _half_walk_plateau(log_measure, se, dof, half, z):
    """:func:`_plateau_check` of the estimate against ``half``'s, the same basins measured
    independently with walks half as long: their difference's standard error combines both
    (chains and reference draws), its dof by Welch-Satterthwaite. The quadrature error, nearly
    the same for both (the same springs), is left out."""
    half_log, half_se, half_dof = (half[name].values for name in ("log_measure", "log_measure_se", "log_measure_dof"))
    combined = np.sqrt(se**2 + half_se**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        combined_dof = combined**4 / (se**4 / dof + half_se**4 / half_dof)
    check = _plateau_check(log_measure - half_log, combined, combined_dof,
                           np.isfinite(log_measure) & np.isfinite(half_log) & (combined > 0), z)
    return dict(check, log_measure=half_log, se=half_se, dof=half_dof)


#: A drift whose standard error is below this share of the estimate's is round-off: chains that never moved.
_UNMOVED_SE_RATIO = 1e-8
#: ``plateau_check_failed``: the walks agree with equilibrium, drift beyond the level, or no basin was scored.
PLATEAU_REACHED, PLATEAU_DRIFTING, PLATEAU_UNCHECKED = 0, 1, 2
#: What each value of ``plateau_check_failed`` tells the user (the stages' logs).
PLATEAU_READINGS = {
    PLATEAU_REACHED: "no drift beyond the level",
    PLATEAU_DRIFTING: "the walks are too short: raise n_steps",
    PLATEAU_UNCHECKED: "unchecked: no basin with an estimate and chains that moved",
}


def _plateau_variables(halves, half_walk):
    """The halves' check per basin and, where the half-length walk ran (``half_walk``), its
    per basin; the stage's plateau from the half-length walk where it ran, else from the halves."""
    stage = half_walk or halves
    variables = {
        "log_measure_half_drift_se": _per_basin(
            halves["se"], "standard error of log_measure_half_drift (the chains' differences between their halves)",
            units="nats"),
        "half_drift_score": _per_basin(
            halves["score"], "log_measure_half_drift / its standard error, as a standard normal quantile",
            note="from Student's t at the drift's Welch-Satterthwaite degrees of freedom; nan: not scored "
                 "(no estimate, or chains that never moved)"),
        "plateau_method": ((), "half-length walk" if half_walk else "halves", variable_attrs(
            "what plateau_score compares: the estimate with one from walks half as long, or each walk's halves")),
        "plateau_score": ((), stage["pooled"], variable_attrs(
            "Stouffer's sum of the basins' normal scores (plateau_method) over the square root of their number",
            note="standard normal where every walk is at equilibrium; > 0: the walks still spreading "
                 "(log_measure low)")),
        "plateau_basins": ((), stage["basins"], variable_attrs("basins in plateau_score")),
        "plateau_check_failed": ((), np.int8(stage["verdict"]), variable_attrs(
            "whether |plateau_score| exceeds the interval's two-sided level: walks not long enough",
            flag_values=f"{PLATEAU_REACHED} {PLATEAU_DRIFTING} {PLATEAU_UNCHECKED}",
            flag_meanings="plateau drifting unchecked",
            note="a flag beside the estimates, not a refusal; weak at a few basins by the halves "
                 "(docs/method.md); drifting: raise n_steps; unchecked: no basin could be scored")),
        "plateau_basin_level": ((), stage["basin_level"], variable_attrs(
            "the level each basin's score (plateau_method) is held to: the interval's two-sided level shared "
            "among the plateau_basins scored (Sidak)", note="nan: no basin scored")),
        "plateau_basin_failed": _per_basin(
            stage["basin_verdict"], "whether this basin's score (plateau_method) exceeds plateau_basin_level: "
            "its walks not long enough", flag_values=f"{PLATEAU_REACHED} {PLATEAU_DRIFTING} {PLATEAU_UNCHECKED}",
            flag_meanings="plateau drifting unchecked",
            note="a flag beside the estimate, not a refusal: one drifting basin among others at equilibrium, "
                 "which plateau_score dilutes"),
    }
    if half_walk:
        variables.update(
            log_measure_half_walk=_per_basin(
                half_walk["log_measure"], "log_measure from independent walks half as long (n_steps // 2, burn-in "
                "max(n_burn // 2, 1))", note="compare log_measure"),
            log_measure_half_walk_se=_per_basin(half_walk["se"], "standard error of log_measure_half_walk",
                                                units="nats"),
            log_measure_half_walk_dof=_per_basin(half_walk["dof"], "degrees of freedom of log_measure_half_walk_se"),
            half_walk_score=_per_basin(
                half_walk["score"], "log_measure - log_measure_half_walk over their combined standard error, "
                "as a standard normal quantile", note="> 0: the estimate still rises with the walks' length"),
        )
    return variables


def _spring(measure, z, anchor):
    return 0.5 * np.sum(measure.displacement(z, anchor) ** 2, axis=-1)


def _integrate(couplings, excess, se, dof, ladders):
    """Simpson's rule of the excess <s>_k - <s>_k,free dk over t = ln(1 + k) (``excess`` per chain,
    ``(basin, coupling, chain)``), its standard error with its degrees of freedom
    (:func:`_weighted_sum`), and its difference from the trapezoid rule (the quadrature error;
    conservative, the trapezoid's error being the larger by far on a smooth integrand)."""
    t = np.log1p(couplings)
    rules = np.stack([integrate.simpson(np.eye(len(t)), x=t, axis=1), integrate.trapezoid(np.eye(len(t)), x=t, axis=1)])
    (value, trapezoid), (value_se, _), (value_dof, _) = (
        part.T for part in _weighted_sum(rules * (1 + couplings), excess, se, dof, ladders))
    return value, value_se, value_dof, np.abs(value - trapezoid)


def interval_quantile(confidence_z, dof):
    """Student's t quantile at ``dof`` with the two-sided level that ``confidence_z`` has for a
    normal (infinite or undefined dof: ``confidence_z`` itself)."""
    dof = np.asarray(dof, dtype=np.float64)
    quantile = stats.t.ppf(stats.norm.cdf(confidence_z), np.where(np.isfinite(dof) & (dof > 0), dof, 1.0))
    return np.where(np.isfinite(dof) & (dof > 0), quantile, confidence_z)


def _per_basin(values, name, **extra):
    """An output variable with one value per basin."""
    return ("minimum",), values, variable_attrs(name, **extra)


def _per_coupling(values, name, **extra):
    """An output variable with one value per basin and coupling."""
    return ("minimum", "coupling"), values, variable_attrs(name, **extra)


def _as_dataset(ids, couplings, walk, log_measure, se, dof, quadrature_error, inside_fraction, undecided, z):
    half_width = interval_quantile(z, dof) * se + quadrature_error
    return xr.Dataset(
        {
            "log_measure": _per_basin(log_measure, "ln of the basin's measure under the initial distribution"),
            "log_measure_se": _per_basin(se, "standard error of log_measure (chains and reference draws)"),
            "log_measure_dof": _per_basin(
                dof, "degrees of freedom of log_measure_se", note="Welch-Satterthwaite over the couplings' "
                "clusters, or with replica exchange the ladders' clusters less one"),
            "log_measure_low": _per_basin(log_measure - half_width, "lower end of the interval of log_measure",
                                         note="t(log_measure_dof) * se + quadrature_error below"),
            "log_measure_high": _per_basin(log_measure + half_width, "upper end of the interval of log_measure"),
            "quadrature_error": _per_basin(
                quadrature_error, "difference of Simpson's rule from the trapezoid rule over the couplings"),
            "reference_inside_fraction": _per_basin(
                inside_fraction, "fraction of the strongest spring's Gaussian draws that lie in the basin",
                note="the reference draws and the strongest spring's fresh draws together (reference_draws)"),
            "undecided_fraction": _per_basin(
                undecided, "fraction of the runs of the dynamics that were undecided",
                note="undecided moves are rejected: a non-zero value biases log_measure low where the runs lie "
                     "inside the basin (fresh draws of the springs, run wherever they fall, count too)"),
            "mean_spring_energy": _per_coupling(walk["mean"], "<|z - z0|^2 / 2> under the spring, within the basin"),
            "mean_spring_energy_se": _per_coupling(
                walk["se"], "standard error of mean_spring_energy over chains",
                note="cluster-robust: chains that start at the same draw count as one"),
            "start_clusters": _per_coupling(walk["clusters"], "distinct starts of the coupling's chains"),
            "burn_in_drift": _per_coupling(
                walk["drift"], "change of mean_spring_energy from the first to the second half of the kept steps, "
                "in standard errors", note="|value| well above 2: burn-in too short (the walk still spreading)"),
            "acceptance": _per_coupling(walk["acceptance"], "fraction of the walk's steps that moved after burn-in",
                                       note="random-walk steps and fresh draws of the spring together"),
            "step_size": _per_coupling(walk["step"], "proposal step of the walk after burn-in (whitened units)"),
            "swap_acceptance": _per_coupling(
                walk["swap_acceptance"], "fraction of the offered exchanges of states with the next stronger "
                "spring's chains that were taken", note="nan: no exchange (replica_exchange off, strongest spring)"),
            "fresh_draws": _per_coupling(walk["fresh_draws"], "fresh draws of the spring's target proposed"),
            "fresh_inside_fraction": _per_coupling(
                np.where(walk["fresh_draws"] > 0, walk["fresh_inside"] / np.maximum(walk["fresh_draws"], 1), np.nan),
                "fraction of the fresh draws of the spring's target that lie in the basin",
                note="at coupling 0 an estimate of the basin's measure independent of the integration"),
            **_measure_by_draws(walk["fresh_inside"][:, 0], walk["fresh_draws"][:, 0], z),
        },
        coords={
            "minimum": ("minimum", ids, variable_attrs("basin (catalog index)")),
            "coupling": ("coupling", couplings, variable_attrs("spring strength k (whitened units)")),
        },
    )
