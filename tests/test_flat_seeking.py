"""Entropy-SGD and replicated GD (basins.engine.flat_seeking) against plain reference loops,
and their schedule: scoping, then plain gradient descent to a minimum of the loss itself."""

import functools
import math

import numpy as np
import pytest
import scipy.special
import torch

from basins.engine.descent import descend_until_decided
from basins.engine.dynamics import energy_and_gradient, make_stepper, member_normal
from basins.labels import CONVERGED, DIVERGED
from basins.landscapes.planted import WellsProfile, narrow_and_wide_wells

PROFILE = WellsProfile()  # a narrow deep well at -1, a wide shallow one at 1.2, weakly confined
WELLS = narrow_and_wide_wells(profile=PROFILE)  # the same profile along one coordinate
NARROW, BARRIER, WIDE = PROFILE.critical_points()


def _wells(x):
    """The profile in every coordinate (two wells each)."""
    return PROFILE(x, exp=torch.exp).sum(1)


def _objective(theta, batch):
    return energy_and_gradient(_wells, theta)


# Step sizes keep gradient descent stable in the narrow well (curvature 80).
ENTROPY = dict(inner_lr=0.01, inner_steps=5, coupling=0.5, coupling_growth=0.01, noise=0.3, scoping_steps=40,
               final_lr=0.01, averaging=0.75)
REPLICATED = dict(n_replicas=4, coupling=0.1, coupling_growth=0.01, replica_spread=0.3, scoping_steps=40,
                  final_lr=0.01)


def _run(stepper, theta, ids, steps):
    loss, grad = _objective(theta, None)
    state = stepper.init_state(theta, grad, ids)
    for _ in range(steps):
        theta, state, loss, grad = stepper.step(theta, state, loss, grad, _objective)
    return theta


def test_entropy_gd_is_the_plain_algorithm_of_chaudhari_et_al():
    """One member at a time, written as Algorithm 1 reads, with the same noise draws."""
    theta0 = torch.tensor([[-0.7, 0.3], [0.1, -1.4], [0.5, 0.9]], dtype=torch.float64)
    ids = torch.tensor([3, 8, 11])
    engine = _run(make_stepper("entropy_gd", lr=0.4, seed=7, **ENTROPY), theta0, ids, 60)
    o = ENTROPY
    for row, member in enumerate(ids):
        x = theta0[row : row + 1].clone()
        for t in range(60):
            if t < o["scoping_steps"]:
                gamma = o["coupling"] * (1 + o["coupling_growth"]) ** t
                inner, mu = x.clone(), x.clone()
                for k in range(o["inner_steps"]):
                    inner = inner - o["inner_lr"] * (_objective(inner, None)[1] + gamma * (inner - x))
                    eps = member_normal(7, member.view(1), torch.tensor([t * o["inner_steps"] + k]), (2,), x.dtype)
                    inner = inner + math.sqrt(o["inner_lr"]) * o["noise"] * eps
                    mu = (1 - o["averaging"]) * mu + o["averaging"] * inner
                x = x - 0.4 * gamma * (x - mu)
            else:
                x = x - o["final_lr"] * _objective(x, None)[1]
        torch.testing.assert_close(engine[row : row + 1], x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("noise, lr", [(0.0, 0.05), (0.3, 0.01)])
def test_replicated_gd_is_replicas_coupled_to_their_centre(noise, lr):
    """One member at a time: each replica takes a Langevin step at T = noise^2 / 2 on its loss plus
    the coupling to the replicas' mean, with the same noise draws (counter t + 1; 0 drew the spread).
    With noise, lr = 0.01 keeps the step stable in the narrow well (lr 80 < 2); at 0.05 it is not, and
    it amplifies the rounding of sqrt(2 T lr) against the engine's noise sqrt(lr) to 5e-7."""
    theta0 = torch.tensor([[-0.7, 0.3], [0.1, -1.4]], dtype=torch.float64)
    ids = torch.tensor([0, 5])
    options = dict(REPLICATED, noise=noise) if noise else REPLICATED  # noise 0: the default, unset
    engine = _run(make_stepper("replicated_gd", lr=lr, seed=2, **options), theta0, ids, 60)
    o, temperature = REPLICATED, noise**2 / 2
    for row, member in enumerate(ids):
        spread = member_normal(2, member.view(1), torch.zeros(1, dtype=torch.long), (4, 2), theta0.dtype)[0]
        replicas = theta0[row] + o["replica_spread"] * spread
        x = replicas.mean(0, keepdim=True)
        for t in range(60):
            if t < o["scoping_steps"]:
                gamma = o["coupling"] * (1 + o["coupling_growth"]) ** t
                centre = replicas.mean(0, keepdim=True)
                replicas = replicas - lr * (_objective(replicas, None)[1] + gamma * (replicas - centre))
                xi = member_normal(2, member.view(1), torch.tensor([t + 1]), (4, 2), x.dtype)[0]
                replicas = replicas + math.sqrt(2 * temperature * lr) * xi
                x = replicas.mean(0, keepdim=True)
            else:
                x = x - o["final_lr"] * _objective(x, None)[1]
        torch.testing.assert_close(engine[row : row + 1], x, rtol=1e-12, atol=1e-12)


def test_noise_is_standard_normal_and_a_members_own():
    ids = torch.arange(4000)
    draws = member_normal(1, ids, torch.zeros_like(ids), (5,), torch.float64)
    assert abs(draws.mean().item()) < 0.01 and abs(draws.std().item() - 1) < 0.01
    alone = member_normal(1, ids[17:18], torch.zeros(1, dtype=torch.long), (5,), torch.float64)
    torch.testing.assert_close(alone, draws[17:18], rtol=0, atol=0)


@pytest.mark.parametrize("dynamics, options", [("entropy_gd", ENTROPY), ("replicated_gd", REPLICATED)])
def test_runs_end_at_a_minimum_of_the_loss_and_continue_their_schedule(dynamics, options):
    """After scoping the members descend the loss itself: they converge to its minima (|grad| <=
    grad_tol, one of the two wells). A run continued from a spent budget resumes the schedule
    where it was: the same end as one long run."""
    starts = np.random.default_rng(0).uniform(-1.5, 1.5, size=(6, 1))
    engine = dict(dynamics=dynamics, lr=0.4 if dynamics == "entropy_gd" else 0.01, grad_tol=1e-8, seed=3,
                  device=torch.device("cpu"), dtype=torch.float64, chunk=6, run_id=("wells",),
                  dynamics_options=dict(options), anneal_steps=options["scoping_steps"], progress_every_s=1e9)
    long = descend_until_decided(_objective, starts, np.arange(6), max_steps=4000, **engine)
    assert (long.status == CONVERGED).all() and (long.steps >= options["scoping_steps"]).all()
    ends = long.final_theta[:, 0]
    assert np.all(np.isclose(ends, -1, atol=0.05) | np.isclose(ends, 1.18, atol=0.05)), ends
    staged = descend_until_decided(_objective, starts, np.arange(6), max_steps=1000, budget_factors=(1, 4), **engine)
    np.testing.assert_allclose(staged.final_theta, long.final_theta, rtol=0, atol=1e-12)
    # A budget that ends inside the scoping: the continuation still holds convergence back and
    # resumes the coupling schedule. Replicas restart around the centre (state restarts, as
    # Adam's moments do), so replicated runs end at the same minima, not bit for bit.
    early = descend_until_decided(_objective, starts, np.arange(6), max_steps=25, budget_factors=(1, 2, 40, 160),
                                  **engine)
    assert (early.status == CONVERGED).all() and (early.steps >= options["scoping_steps"]).all()
    if dynamics == "entropy_gd":  # no state beyond the point: the same run
        np.testing.assert_allclose(early.final_theta, long.final_theta, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(early.steps, long.steps)
    else:
        np.testing.assert_allclose(early.final_theta, long.final_theta, rtol=0, atol=1e-6)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="entropy_gd"):
        make_stepper("entropy_gd", lr=0.1, coupling=1.0)
    with pytest.raises(ValueError, match="apply to entropy_gd and replicated_gd"):
        make_stepper("gd", lr=0.1, coupling=1.0)
    with pytest.raises(ValueError, match="coupling=-1"):
        make_stepper("replicated_gd", lr=0.1, **dict(REPLICATED, coupling=-1))
    with pytest.raises(ValueError, match="noise=-0.1"):
        make_stepper("replicated_gd", lr=0.1, **dict(REPLICATED, noise=-0.1))


@pytest.mark.parametrize(
    "dynamics, options",
    [
        ("entropy_gd", dict(inner_lr=0.05, inner_steps=3, coupling=1.0, coupling_growth=0.01, noise=0.05,
                            scoping_steps=50, final_lr=0.5)),
        ("replicated_gd", dict(n_replicas=3, coupling=0.5, coupling_growth=0.01, replica_spread=0.1,
                               scoping_steps=50, final_lr=0.5)),
    ],
)
def test_networks_train_to_confirmed_minima_with_flat_seeking_dynamics(teacher_data, tiny_arch, tiny_start,
                                                                        dynamics, options):
    from basins.training import train_ensemble

    theta0, ids = tiny_start
    result = train_ensemble(tiny_arch, *teacher_data, theta0[:3], ids[:3], loss="mse", l2=1e-2, dynamics=dynamics,
                            lr=0.2 if dynamics == "entropy_gd" else 0.1, max_steps=2000, grad_tol=1e-4,
                            flat_seeking=options, budget_factors=(1, 4), device="cpu", progress_every_s=1e9)
    status = result["status"].values
    assert (status != DIVERGED).all() and (status == CONVERGED).sum() >= 2
    assert (result["steps"].values >= options["scoping_steps"]).all()
    converged = status == CONVERGED
    assert (result["lowest_eigenvalue"].values[converged] > 0).all()  # checked and polished like any minimum


# --- The known answer: a narrow deep well and a wide shallow one (issue #26) -----------------
# Local entropy (Baldassi et al. 2020; Chaudhari et al. 2017): Entropy-GD descends the local free
# energy F(x) = -T log integral exp(-(L(x') + gamma/2 (x - x')^2) / T) dx', whose gradient is
# gamma (x - <x'>), <x'> the mean under that weight: the engine's outer step with mu = <x'>. In 1-D
# both are quadratures, independent of the engine: they predict where each start ends.

# x', spacing 0.002: 40 points per width sqrt(T / 80) of the narrow well at T = 0.5; for couplings
# gamma >= 0.4 the weight at the ends is below e^-14 of its peak.
GRID = np.linspace(-8.0, 8.0, 8001)


def _log_weights(x, gamma, temperature, energy):
    return -(energy[None] + gamma / 2 * (GRID[None] - np.asarray(x, dtype=float)[:, None]) ** 2) / temperature


def local_free_energy(x, gamma, temperature, energy=PROFILE(GRID)):
    """F(x) by the rectangle rule on GRID (spectrally accurate: the integrand is smooth and
    vanishes at the ends); ``energy`` is L on GRID."""
    log_weights = _log_weights(x, gamma, temperature, energy)
    return -temperature * (scipy.special.logsumexp(log_weights, axis=1) + np.log(GRID[1] - GRID[0]))


def mean_coupled_point(x, gamma, temperature, energy=PROFILE(GRID)):
    """<x'> under exp(-(L(x') + gamma/2 (x - x')^2) / T): x - F'(x) / gamma."""
    weights = scipy.special.softmax(_log_weights(x, gamma, temperature, energy), axis=1)
    return weights @ GRID


def local_entropy_descent(starts, *, lr, coupling, coupling_growth, scoping_steps, temperature):
    """The engine's scoping phase with the exact gradient of F: x <- x - lr gamma_t (x - <x'>)."""
    x = np.asarray(starts, dtype=float)
    for t in range(scoping_steps):
        gamma = coupling * (1 + coupling_growth) ** t
        x = x - lr * gamma * (x - mean_coupled_point(x, gamma, temperature))
    return x


def free_energy_minima(gamma, temperature):
    """The local minima of F on [-2.5, 3] (spacing 0.005): where F' = gamma (x - <x'>) turns from
    negative to positive."""
    x = np.linspace(-2.5, 3.0, 1101)
    slope = x - mean_coupled_point(x, gamma, temperature)
    return x[1:][(slope[:-1] < 0) & (slope[1:] >= 0)]


@functools.cache
def critical_coupling(temperature, low=0.01, high=100.0):
    """The coupling gamma_c(T) below which F has one minimum, above it two (bisection in log gamma)."""
    if len(free_energy_minima(low, temperature)) != 1 or len(free_energy_minima(high, temperature)) != 2:
        raise ValueError(f"no critical coupling in [{low}, {high}] at T = {temperature}")
    for _ in range(20):  # to a factor 1 + 1e-5
        middle = math.sqrt(low * high)
        low, high = (low, middle) if len(free_energy_minima(middle, temperature)) == 2 else (middle, high)
    return math.sqrt(low * high)


def test_the_quadrature_is_exact_on_a_harmonic_well():
    """L = k/2 x^2: F = k gamma / (2 (k + gamma)) x^2 + T/2 log((k + gamma) / (2 pi T)), <x'> =
    gamma x / (k + gamma), at the narrow well's curvature and at the wide one's."""
    x = np.linspace(-2.0, 2.0, 9)
    for k, gamma, temperature in [(80.0, 0.5, 0.3), (1.0, 3.0, 0.3), (80.0, 20.0, 0.05)]:
        exact = k * gamma / (2 * (k + gamma)) * x**2 + temperature / 2 * np.log((k + gamma) / (2 * np.pi * temperature))
        np.testing.assert_allclose(local_free_energy(x, gamma, temperature, k / 2 * GRID**2), exact, rtol=0, atol=1e-10)
        np.testing.assert_allclose(mean_coupled_point(x, gamma, temperature, k / 2 * GRID**2), gamma * x / (k + gamma),
                                   rtol=0, atol=1e-10)


def _wells_objective(theta, batch):
    """L and L' along the one coordinate, the gradient written out (a third of autograd's time)."""
    return PROFILE(theta[:, 0], exp=torch.exp), PROFILE.slope(theta, exp=torch.exp)


def test_the_written_out_gradient_is_autograds():
    theta = torch.linspace(-3, 3, 601, dtype=torch.float64)[:, None]
    for mine, autograd in zip(_wells_objective(theta, None), energy_and_gradient(WELLS.energy, theta)):
        torch.testing.assert_close(mine, autograd, rtol=1e-13, atol=1e-14)


def _wells_reached(dynamics, starts, *, lr, max_steps, options=None, seed=0):
    """The engine from each start (one coordinate): the minimum it converged to, 0 narrow, 1 wide."""
    anneal_steps = (options or {}).get("scoping_steps", 0)
    out = descend_until_decided(_wells_objective, starts[:, None], np.arange(len(starts)), dynamics=dynamics, lr=lr,
                                max_steps=max_steps, grad_tol=1e-8, seed=seed, device=torch.device("cpu"),
                                dtype=torch.float64, chunk=len(starts), run_id=("wells_1d",), dynamics_options=options,
                                anneal_steps=anneal_steps, progress_every_s=1e9)
    assert (out.status == CONVERGED).all()
    return WELLS.minimum_reached(out.final_theta, dist_tol=1e-4)


# The regime of the known answer. At T = 0.5 the narrow well (width sqrt(T / 80) = 0.08) holds
# exp(0.79 / T) sqrt(2 pi T / 80) of Boltzmann weight, less than a coupling of width sqrt(T / gamma)
# spreads over the shallow ground beside it once gamma < gamma_c(0.5) = 1.61 (by quadrature): below
# it F has one minimum, in the wide basin; above it F has a second, which moves into gradient
# descent's narrow basin and on to the narrow well as gamma grows.
TEMPERATURE = 0.5
STARTS = np.linspace(-1.6, -0.7, 37)  # gradient descent's narrow basin is x < x_b = -0.677
# gamma_t grows by 1.49 over the scoping; lr gamma_0 = 0.5. The outer step is stable: lr F'' <=
# lr gamma_t k / (k + gamma_t) < 0.8 (k = 80). The exact descent at gamma_0 = gamma_c / 2 carries
# every start to x >= 1.08 by the end.
SCOPING = dict(coupling_growth=0.01, scoping_steps=40)
# The sampled gradient needs an inner chain near equilibrium in exp(-(L(x') + gamma/2 (x - x')^2) / T):
# started at x in the narrow well, the chain leaves it after ~1.6 time units (Kramers: barrier 0.78,
# curvatures 80 and -4.3) and relaxes over the rest in 1 / gamma <= 1.3, so 600 steps of 0.01 (6
# units) per outer step, averaged over the last ~250 (averaging 0.004: weight e^-2.4 on the start).
# Its step widens the narrow well's variance by 1 / (1 - inner_lr k / 2) = 1.7, which moves mu by
# 0.025 at most here (against the 2000 finer steps of the test below).
INNER = dict(inner_lr=0.01, inner_steps=600, averaging=0.004, noise=math.sqrt(2 * TEMPERATURE), final_lr=0.02)


def test_local_free_energy_has_one_minimum_below_the_critical_coupling():
    """Below gamma_c F has one minimum, in the wide basin; a second appears at gamma_c beside the
    barrier and moves into the narrow basin and on to the narrow well as gamma grows."""
    gamma_c = critical_coupling(TEMPERATURE)
    assert gamma_c == pytest.approx(1.61, abs=0.01)
    for gamma in (0.4, 0.8, 0.99 * gamma_c):
        (minimum,) = free_energy_minima(gamma, TEMPERATURE)
        assert minimum > BARRIER
    sides = [(1.01 * gamma_c, (-0.7, -0.6)), (2 * gamma_c, (-0.96, -0.92)), (5 * gamma_c, (-1.0, -0.97))]
    for gamma, narrow_side in sides:
        second, wide = free_energy_minima(gamma, TEMPERATURE)
        assert narrow_side[0] < second < narrow_side[1] and wide > BARRIER
    # the same minima from F itself, by its values on a grid
    x = np.linspace(-2.5, 3.0, 1101)
    for gamma in (0.8, 3.2):
        f = local_free_energy(x, gamma, TEMPERATURE)
        np.testing.assert_allclose(x[1:-1][(f[1:-1] < f[:-2]) & (f[1:-1] < f[2:])],
                                   free_energy_minima(gamma, TEMPERATURE), atol=0.006)


def _entropy_gd_mean(points, gamma, *, n_members=1000, **inner):
    """The engine's mu from each point, ``n_members`` draws: one outer step of lr = 1 / gamma lands on mu."""
    stepper = make_stepper("entropy_gd", lr=1 / gamma, coupling=gamma, coupling_growth=0, scoping_steps=1,
                           noise=math.sqrt(2 * TEMPERATURE), final_lr=0.01, seed=2, **inner)
    theta = torch.tensor(np.repeat(points, n_members)[:, None])
    loss, grad = _wells_objective(theta, None)
    state = stepper.init_state(theta, grad, torch.arange(len(theta)))
    return stepper.step(theta, state, loss, grad, _wells_objective)[0][:, 0].numpy().reshape(len(points), n_members)


@pytest.mark.parametrize("gamma", [0.8, 3.2])
def test_entropy_gd_steps_along_the_gradient_of_the_local_free_energy(gamma):
    """A chain long and fine enough (2000 steps of 0.005: 10 time units; the Euler-Maruyama chain
    widens the narrow well's variance by 1 / (1 - inner_lr k / 2) = 1.25) gives mu = <x'> within 4
    standard errors over 1000 members (0.02 at gamma_c / 2, 0.005 at 2 gamma_c), from points in the
    narrow well, on its flank and between the wells. At gamma_c / 2, 30 steps of 0.01 averaged with
    weight 0.75 (the settings tried first) do not: the chain stays in the well where it began, 8
    standard errors or more off (at 2 gamma_c the coupling holds the chain near x anyway)."""
    points = np.array([-1.0, -0.6, 0.3])
    exact = mean_coupled_point(points, gamma, TEMPERATURE)
    mu = _entropy_gd_mean(points, gamma, inner_lr=0.005, inner_steps=2000, averaging=0.0025)
    z = (mu.mean(1) - exact) / (mu.std(1) / math.sqrt(mu.shape[1]))
    assert (np.abs(z) < 4).all(), z
    if gamma < critical_coupling(TEMPERATURE):
        short = _entropy_gd_mean(points, gamma, inner_lr=0.01, inner_steps=30, averaging=0.75)
        z_short = (short.mean(1) - exact) / (short.std(1) / math.sqrt(short.shape[1]))
        assert np.abs(z_short).max() > 8, z_short


def test_gradient_descent_ends_in_the_narrow_well_from_every_start():
    assert (WELLS.basin_of(STARTS[:, None]) == WELLS.index("narrow")).all()
    reached = _wells_reached("gd", STARTS, lr=0.01, max_steps=20_000)
    assert (reached == WELLS.index("narrow")).all()


def _entropy_gd_reached(coupling):
    options = dict(INNER, coupling=coupling, **SCOPING)
    return _wells_reached("entropy_gd", STARTS, lr=0.5 / coupling, max_steps=2000, options=options, seed=11)


@pytest.mark.parametrize("coupling, well", [(0.8, "wide"), (3.2, "narrow")])
def test_entropy_gd_ends_in_the_well_the_local_free_energy_predicts(coupling, well):
    """gamma_0 = 0.8 = gamma_c / 2: F has one minimum, in the wide basin, during the whole scoping
    (gamma_t <= 1.19 < 1.61), and its exact descent carries every start of gradient descent's
    narrow basin to the wide well. gamma_0 = 3.2 = 2 gamma_c: F keeps a minimum at the narrow well
    throughout (x = -0.94 at gamma_0), and every start stays there. The engine agrees for at least
    33 of the 37 starts (90 %) at gamma_c / 2 and for all at 2 gamma_c. Its gradient is sampled: the
    outer walk is a noisy descent of F, and a member whose chains stay in the narrow well for a few
    outer steps running can end the scoping short of x_b. Over five seeds 34-35 of 37 reached the
    wide well (33-37 in a numpy copy of the dynamics), none at 2 gamma_c; with the 30-step chain
    of the first settings 17 did, and this test fails."""
    exact_end = local_entropy_descent(STARTS, lr=0.5 / coupling, coupling=coupling, temperature=TEMPERATURE,
                                      **SCOPING)
    predicted = WELLS.basin_of(exact_end[:, None])
    assert (predicted == WELLS.index(well)).all()
    reached = _entropy_gd_reached(coupling)
    assert (reached == predicted).sum() >= (33 if well == "wide" else 37), reached


# --- Noiseless replicated GD: a tug of war, not an entropy -----------------------------------
# The coupling terms sum to zero over replicas (sum_a (w_a - c) = 0), so the centre moves by
# -lr mean_a L'(w_a), and the whole step is gradient descent on the replicated energy
# E(w) = sum_a L(w_a) + gamma/2 sum_a |w_a - mean(w)|^2 (its gradient in w_a is L'(w_a) +
# gamma (w_a - c), the mean's own derivative summing to zero). The robust ensemble's local-entropy
# term comes from integrating the replicas at temperature T > 0 (Baldassi et al. 2016: the centre's
# weight is exp(-y F(c) / T)); without noise there is none. What noiseless replicas do instead: each
# falls into its gradient-descent well while gamma is small; as gamma grows slowly (quasi-static),
# with a fraction p of replicas in the narrow well at u and 1 - p in the wide well at v, force
# balance gives L'(u) = gamma (1 - p)(v - u) and -L'(v) = gamma p (v - u). Both forces grow with
# gamma until one reaches the largest slope its well's flank has (G_n on the narrow well's, G_w on
# the wide well's): that group is pulled out and joins the other. The wide group gives way first
# when p / G_w > (1 - p) / G_n, i.e. p > p* = G_w / (G_w + G_n): a steep well holds the ensemble.


def tug_of_war_fraction():
    """p* = G_w / (G_w + G_n), the largest restoring slopes of the two wells' inner flanks."""
    narrow_flank, wide_flank = np.linspace(NARROW, BARRIER, 20_001), np.linspace(BARRIER, WIDE, 20_001)
    g_narrow, g_wide = PROFILE.slope(narrow_flank).max(), (-PROFILE.slope(wide_flank)).max()
    return g_wide / (g_wide + g_narrow)


def test_replicated_gd_is_gradient_descent_on_the_replicated_energy():
    replicas = torch.tensor(np.random.default_rng(4).uniform(-1.5, 1.5, size=(3, 5, 2)))
    gamma, lr = 0.7, 0.05

    def replicated_energy(w):
        return _wells(w.reshape(-1, 2)).sum() + gamma / 2 * ((w - w.mean(1, keepdim=True)) ** 2).sum()

    with torch.enable_grad():
        w = replicas.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(replicated_energy(w), w)
    stepper = make_stepper("replicated_gd", lr=lr, **dict(REPLICATED, n_replicas=5, coupling=gamma, coupling_growth=0))
    state = {"replicas": replicas.clone(), "steps": torch.zeros(3, dtype=torch.long), "member_id": torch.arange(3)}
    centre, state, _, _ = stepper.step(replicas.mean(1), state, None, None, _objective)
    torch.testing.assert_close(state["replicas"], replicas - lr * grad, rtol=0, atol=1e-13)
    torch.testing.assert_close(centre, replicas.mean(1) - lr * grad.mean(1), rtol=0, atol=1e-13)


# gamma grows from 0.01 (a pull of <= 0.03, below every flank's slope: replicas settle in their
# wells first) by 0.1 % a step, slowly against the wide well's relaxation (1 / (lr 0.97) ~ 100
# steps: 10 % a relaxation time), to 10.9 after 7000 steps: past the largest coupling at which a
# split ensemble of 16 still balances (3.0, one replica in the narrow well; 2.65 for two), with
# time for the losing group to cross (6000 steps, gamma_end = 4, left two members mid-way); the
# replicas' gradient descent is stable, lr (80 + gamma) < 2.
TUG = dict(n_replicas=16, coupling=0.01, coupling_growth=0.001, replica_spread=0.7, scoping_steps=7000,
           final_lr=0.01)


def test_noiseless_replicated_gd_ends_where_the_tug_of_war_predicts():
    """p* = 0.085 lies between 1 and 2 replicas of 16: a member with 2 of its 16 replicas in the narrow
    basin ends in the narrow well, though most of its replicas started in the wide one."""
    p_star = tug_of_war_fraction()
    assert p_star == pytest.approx(0.0846, abs=5e-4) and 1 / 16 < p_star < 2 / 16
    starts, ids, seed = np.linspace(-0.8, 1.2, 41), np.arange(41), 5
    spread = member_normal(seed, torch.as_tensor(ids), torch.zeros(41, dtype=torch.long), (16, 1), torch.float64)
    replica_starts = starts[:, None] + TUG["replica_spread"] * spread[:, :, 0].numpy()
    in_narrow = (replica_starts < BARRIER).mean(1)
    predicted = np.where(in_narrow > p_star, WELLS.index("narrow"), WELLS.index("wide"))
    reached = _wells_reached("replicated_gd", starts, lr=0.01, max_steps=10_000, options=TUG, seed=seed)
    np.testing.assert_array_equal(reached, predicted)
    # The grid covers both sides of p*: members held by a minority of 2-7 replicas in the narrow
    # well, and members with a single replica there, which the wide majority pulls out.
    assert ((in_narrow >= 2 / 16) & (in_narrow < 0.5)).sum() >= 5 and (in_narrow == 1 / 16).sum() >= 2


# --- Noisy replicated GD: the robust ensemble's local entropy (issue #26) ----------------------
# y replicas at temperature T, each coupled to a centre c by gamma/2 |w_a - c|^2: integrating them
# out gives c the weight prod_a integral exp(-(L(w_a) + gamma/2 (w_a - c)^2) / T) dw_a =
# exp(-y F(c) / T) (Baldassi et al. 2016), F the local free energy of Entropy-GD above. The engine's
# centre is the replicas' mean: a free centre integrated out leaves the replicas the replicated
# energy (sum_a (w_a - c)^2 = sum_a (w_a - mean)^2 + y (mean - c)^2), whose Langevin step moves the
# mean by -lr mean_a L'(w_a) plus noise at temperature T / y. With the replicas equilibrated around
# the centre (each as if coupled to a fixed c, up to 1 / y), mean_a L'(w_a) = <L'(x')> =
# gamma (c - <x'>) = F'(c) (at equilibrium <L'(x') + gamma (x' - c)> = 0): the centre descends F
# with step lr, Entropy-GD's outer step, at temperature T / y. The prediction is the exact descent
# of F over the same schedule (sampled every 10 steps: the same flow, lr F'' <= 0.1 gamma_t < 0.5).
# Replicas start within replica_spread of the start, in the narrow well, which holds them ~1.6 time
# units (Kramers; 160 steps of 0.01, against 3000); at c = -1 and gamma = gamma_c / 2 a third of
# the coupled weight lies beyond x_b (21 of 64 replicas). The centre, at T / y = 0.008, crosses F's
# barrier at 2 gamma_c (0.087; y dF / T = 11) rarely. lr = 0.01 keeps the replicas' step stable in
# the narrow well (lr (80 + gamma) < 2) and, as Entropy-GD's inner step, widens its variance by 1.7.
NOISY = dict(n_replicas=64, replica_spread=0.3, noise=math.sqrt(2 * TEMPERATURE), final_lr=0.02,
             coupling_growth=1.33e-4, scoping_steps=3000)  # gamma_t grows by 1.49, as in SCOPING



@pytest.mark.parametrize("coupling, well", [(0.8, "wide"), (3.2, "narrow")])
def test_noisy_replicated_gd_ends_in_the_well_the_local_free_energy_predicts(coupling, well):
    """gamma_0 = gamma_c / 2: the descent of F over the schedule (30 time units) carries every start
    of gradient descent's narrow basin to the wide well; gamma_0 = 2 gamma_c: F's minimum at the
    narrow well keeps every start. The engine (64 replicas at T = 0.5) agrees for at least 36 of 37
    at gamma_c / 2 and for all at 2 gamma_c; over five more seeds it ended 37 of 37 and 0 of 37 in
    the wide well. The replicas carry the entropy: with noise 0 the same run is a tug of war won by
    the narrow well, 0 of 37 reach the wide well at gamma_c / 2, and this test fails. The centre's
    temperature is T / y: with 16 replicas 5-12 of 37 cross F's barrier at 2 gamma_c, with 32 0-1."""
    growth = (1 + NOISY["coupling_growth"]) ** 10 - 1
    exact_end = local_entropy_descent(STARTS, lr=0.1, coupling=coupling, coupling_growth=growth, scoping_steps=300,
                                      temperature=TEMPERATURE)
    predicted = WELLS.basin_of(exact_end[:, None])
    assert (predicted == WELLS.index(well)).all()
    reached = _wells_reached("replicated_gd", STARTS, lr=0.01, max_steps=6000, options=dict(NOISY, coupling=coupling),
                             seed=11)
    assert (reached == predicted).sum() >= (36 if well == "wide" else 37), reached
