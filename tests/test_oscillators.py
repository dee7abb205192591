import os

import numpy as np
import pytest
import torch

from basins.basin_geometry import analyze_basins
from basins.engine.descent import descend
from basins.labels import CONVERGED
from basins.landscapes import native_mlp
from basins.oscillators import (
    KuramotoRing,
    NativeRingObjective,
    attractor_distance,
    classify_twisted_states,
    distance_to_twisted_state,
    fit_winding_distribution,
    relax_ring,
    torus_distance,
    twisted_state,
    uniform_phases,
    winding_number,
)

# BASINS_TEST_DEVICE=cuda relaxes the rings on a GPU, as in test_training.
DEVICE = os.environ.get("BASINS_TEST_DEVICE", "cpu")


@pytest.mark.parametrize("k", [1, 2])
def test_gradient_is_the_derivative_of_the_energy(k):
    ring = KuramotoRing(9, k)
    theta = torch.tensor(np.random.default_rng(0).uniform(-4, 4, (5, 9)), requires_grad=True)
    energy, grad = ring.energy_and_gradient(theta)
    (expected,) = torch.autograd.grad(energy.sum(), theta)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)


def test_the_integrator_s_gradient_only_stages_change_nothing():
    # The ring offers gradient() for the inner stages of Dormand-Prince (no cosines); its
    # bound objective does not. Both relaxations must agree bit for bit.
    ring, ids = KuramotoRing(12, 2), np.arange(16)
    starts = uniform_phases(12, ids, seed=2)
    options = dict(dynamics="gradient_flow", lr=0.1, max_steps=400, grad_tol=1e-6, rtol=1e-6, atol=1e-8, seed=0,
                   device=torch.device("cpu"), dtype=torch.float64, chunk=16, run_id=("ring",), progress_every_s=1e9)
    fast, plain = (descend(objective, starts, ids, **options) for objective in (ring, ring.objective))
    np.testing.assert_array_equal(fast.final_theta, plain.final_theta)
    np.testing.assert_array_equal(fast.steps, plain.steps)
    torch.testing.assert_close(ring.gradient(torch.as_tensor(starts)), ring(torch.as_tensor(starts))[1], rtol=0, atol=0)


def test_the_flow_is_the_kuramoto_equation():
    ring, n = KuramotoRing(7, 2), 7
    theta = np.random.default_rng(1).uniform(-np.pi, np.pi, n)
    coupled = [(i, (i + m) % n) for i in range(n) for m in (1, 2)]
    velocity = np.zeros(n)
    for i, j in coupled:  # d theta_i / dt = sum over neighbours j of sin(theta_j - theta_i)
        velocity[i] += np.sin(theta[j] - theta[i])
        velocity[j] += np.sin(theta[i] - theta[j])
    _, grad = ring.energy_and_gradient(torch.tensor(theta[None]))
    np.testing.assert_allclose(-grad[0].numpy(), velocity, atol=1e-12)


@pytest.mark.parametrize("n", [6, 8, 9, 40, 83])
def test_stable_twisted_states_are_those_below_a_quarter_turn(n):
    # For k = 1 the q-twisted state is stable iff |q| < n / 4 (Wiley, Strogatz, Girvan 2006).
    expected = [q for q in range(-n, n + 1) if abs(q) < n / 4]
    np.testing.assert_array_equal(KuramotoRing(n, 1).stable_winding_numbers(), expected)


def test_twisted_states_are_equilibria_with_the_stated_energy_and_winding():
    ring = KuramotoRing(10, 2)
    q = np.arange(-4, 5)
    states = twisted_state(10, q) + 0.3  # any global phase
    energy, grad = ring.energy_and_gradient(torch.tensor(states))
    assert grad.abs().max() < 1e-12
    np.testing.assert_allclose(energy.numpy(), ring.twisted_state_energy(q), atol=1e-12)
    np.testing.assert_array_equal(winding_number(states), q)
    # Winding counts turns around the ring, so 2 pi jumps of single phases do not change it.
    jumped = states + 2 * np.pi * np.random.default_rng(2).integers(-3, 4, states.shape)
    np.testing.assert_array_equal(winding_number(jumped), q)


def test_torus_distance_wraps_and_is_minimized_over_the_global_phase():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(-np.pi, np.pi, (20, 6)), rng.uniform(-np.pi, np.pi, (20, 6))
    shifts = np.linspace(-np.pi, np.pi, 200001)
    brute = []
    for row_a, row_b in zip(a, b):
        delta = row_a - row_b
        residual = delta[None, :] - shifts[:, None]
        brute.append(np.sqrt((((residual + np.pi) % (2 * np.pi) - np.pi) ** 2).sum(1).min()))
    np.testing.assert_allclose(torus_distance(a, b), brute, atol=1e-4)
    moved = b + 1.234 + 2 * np.pi * rng.integers(-2, 3, b.shape)
    np.testing.assert_allclose(torus_distance(a, moved), torus_distance(a, b), atol=1e-12)
    np.testing.assert_allclose(torus_distance(a, b), torus_distance(b, a), atol=1e-12)
    assert torus_distance(a, a + 0.5).max() < 1e-12


def test_attractor_distance_is_the_distance_to_the_reached_twisted_circle():
    start = twisted_state(8, 1) + np.array([0.1, -0.1, 0, 0, 0, 0, 0, 0]) + 2.0
    end = twisted_state(8, 1) + 0.7
    assert attractor_distance(start[None], end[None])[0] == pytest.approx(np.sqrt(0.02), rel=1e-12)


@pytest.fixture(scope="module")
def small_ring_ensemble():
    ring = KuramotoRing(8, 1)
    ids = np.arange(300)
    start = uniform_phases(8, ids, seed=5)
    result = relax_ring(
        ring, start, ids, dynamics="gradient_flow", lr=0.1, max_steps=3000, grad_tol=1e-6,
        rtol=1e-8, atol=1e-10, device=DEVICE, progress_every_s=1e9,
    )
    return ring, start, result


def test_every_member_of_a_small_ring_reaches_a_stable_twisted_state(small_ring_ensemble):
    ring, start, result = small_ring_ensemble
    assert (result["status"].values == CONVERGED).all()
    catalog = classify_twisted_states(result["final_theta"].values, result["status"].values, ring, tolerance=1e-3)
    assert (catalog["minimum_of_member"].values >= 0).all()
    assert set(catalog["winding_number"].values) == {-1, 0, 1}  # |q| < 8 / 4
    assert catalog["stable"].values.all()
    assert int(catalog["winding_number"][0]) == 0  # the synchronous state has the largest basin
    basins = analyze_basins(
        catalog["minimum_of_member"].values, start, result["final_theta"].values,
        n_minima=catalog.sizes["minimum"], distance=attractor_distance,
        end_offset=distance_to_twisted_state(result["final_theta"].values, winding_number(result["final_theta"].values)),
    )
    assert float(basins["basin_fraction"].sum()) == pytest.approx(1.0)
    assert "test_error" not in basins
    # No start lies farther from an attractor than the torus allows: pi sqrt(n).
    assert np.nanmax(basins["start_distance"].values) <= np.pi * np.sqrt(8)


def test_a_state_away_from_every_twisted_state_is_unassigned():
    ring = KuramotoRing(8, 1)
    far = twisted_state(8, 0) + np.array([0, 0, 0, 0, np.pi, np.pi, np.pi, np.pi])  # an unstable equilibrium
    catalog = classify_twisted_states(far[None], np.array([CONVERGED]), ring, tolerance=1e-3)
    assert catalog.sizes["minimum"] == 0 and catalog["minimum_of_member"].values[0] == -1


def test_relaxation_results_do_not_depend_on_shards():
    ring, ids = KuramotoRing(6, 1), np.arange(12)
    start = uniform_phases(6, ids, seed=9)
    options = dict(dynamics="gradient_flow", lr=0.1, max_steps=500, grad_tol=1e-6, device=DEVICE, progress_every_s=1e9)
    whole = relax_ring(ring, start, ids, **options)
    halves = [relax_ring(ring, start[part], ids[part], **options) for part in (slice(0, 5), slice(5, 12))]
    joined = np.concatenate([h["final_theta"].values for h in halves])
    np.testing.assert_array_equal(whole["final_theta"].values, joined)
    np.testing.assert_array_equal(uniform_phases(6, ids[5:], seed=9), start[5:])


@pytest.mark.parametrize("truth", ["gaussian", "exponential"])
def test_the_winding_fit_recovers_the_rate_and_prefers_the_true_law(truth):
    support = np.arange(-6, 7)
    feature = support**2 if truth == "gaussian" else np.abs(support)
    probability = np.exp(-0.4 * feature)
    probability /= probability.sum()
    counts = np.random.default_rng(11).multinomial(200000, probability)
    reached = counts > 0
    fit = fit_winding_distribution(support[reached], counts[reached], support)
    rate = fit["rate"].sel(fit=truth)
    assert abs(float(rate) - 0.4) < 4 * float(fit["rate_se"].sel(fit=truth))
    other = "exponential" if truth == "gaussian" else "gaussian"
    assert float(fit["log_likelihood"].sel(fit=truth)) > float(fit["log_likelihood"].sel(fit=other))
    assert float(fit["p_value"].sel(fit=truth)) > 1e-3 > float(fit["p_value"].sel(fit=other))
    np.testing.assert_allclose(fit["fitted_probability"].sum("winding").values, 1.0)


@pytest.mark.parametrize(
    "n, k, named", [(2, 1, "n_oscillators"), (8, 4, "coupling_range"), (8, 0, "coupling_range")]
)
def test_bad_rings_are_rejected(n, k, named):
    with pytest.raises(ValueError, match=named):
        KuramotoRing(n, k)


def test_minibatches_are_refused():
    with pytest.raises(ValueError, match="minibatch"):
        KuramotoRing(5).objective(torch.zeros(1, 5), torch.zeros(1, 2, dtype=torch.long))


needs_kernel = pytest.mark.skipif(native_mlp.library() is None, reason="no C compiler: the torch ring runs instead")


@needs_kernel
@pytest.mark.parametrize("n, k", [(3, 1), (9, 2), (40, 1), (7, 3)])
def test_the_kernel_s_ring_is_the_torch_ring_to_round_off(n, k):
    ring = KuramotoRing(n, k)
    scales = np.array([1, 4, 300, 1e5, 1e6, 1e9, 1e300]).repeat(3)[:, None]
    theta = np.random.default_rng(n).uniform(-np.pi, np.pi, (21, n)) * scales
    kernel = ring.objective_on(torch.device("cpu"), torch.float64)
    assert isinstance(kernel, NativeRingObjective)
    energy, grad = kernel(torch.as_tensor(theta))
    expected_energy, expected_grad = ring.energy_and_gradient(torch.as_tensor(theta))
    # Differences beyond 2^19 pi / 2 (1e9 and 1e300 here) take libm's sine; both are within an
    # ulp or so of the exact one, so the gradients agree to a few 1e-16 at every size.
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-15)
    torch.testing.assert_close(kernel.native.gradient(torch.as_tensor(theta)), expected_grad, rtol=0, atol=1e-15)
    torch.testing.assert_close(energy, expected_energy, rtol=1e-14, atol=1e-14)
    odd = torch.tensor([[np.nan] + [0.0] * (n - 1), [np.inf] + [0.0] * (n - 1)], dtype=torch.float64)
    assert not torch.isfinite(kernel(odd)[1][:, 0]).any()


def test_the_kernel_runs_float64_rings_on_the_cpu_only():
    ring = KuramotoRing(8)
    assert ring.objective_on(torch.device("cpu"), torch.float32) is ring
    assert ring.objective_on(torch.device("meta"), torch.float64) is ring


@needs_kernel
def test_the_kernel_s_relaxation_ends_where_torch_s_does(monkeypatch):
    # The C loop steps the flow with its own sine (round-off apart from torch's): the same
    # statuses and twisted states, end points within the flow's stopping tolerance.
    ring, ids = KuramotoRing(16, 1), np.arange(96)
    start = uniform_phases(16, ids, seed=4)
    options = dict(dynamics="gradient_flow", lr=0.1, max_steps=3000, grad_tol=1e-4, rtol=1e-6, atol=1e-8,
                   device="cpu", progress_every_s=1e9)
    native = relax_ring(ring, start, ids, **options)
    monkeypatch.setattr(native_mlp, "ring_kernel_for", lambda *args: None)
    plain = relax_ring(ring, start, ids, **options)
    np.testing.assert_array_equal(native["status"].values, plain["status"].values)
    assert (native["status"].values == CONVERGED).all()
    np.testing.assert_array_equal(*(winding_number(run["final_theta"].values) for run in (native, plain)))
    np.testing.assert_allclose(native["final_theta"].values, plain["final_theta"].values, atol=1e-5)
    assert np.abs(native["steps"].values - plain["steps"].values).max() <= 5
    np.testing.assert_allclose(native["loss"].values, plain["loss"].values, rtol=1e-12)
