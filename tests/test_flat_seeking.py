"""Entropy-SGD and replicated GD (basins.engine.flat_seeking) against plain reference loops,
and their schedule: scoping, then plain gradient descent to a minimum of the loss itself."""

import math

import numpy as np
import pytest
import torch

from basins.engine.descent import descend_until_decided
from basins.engine.dynamics import energy_and_gradient, make_stepper, member_normal
from basins.labels import CONVERGED, DIVERGED


def _wells(x):
    """A narrow deep well at -1 and a wide shallow one at 1.2 (plus a weak confinement), in every
    coordinate."""
    return (-0.8 * torch.exp(-((x + 1) ** 2) / 0.02) - 0.6 * torch.exp(-((x - 1.2) ** 2) / 1.28) + 0.02 * x**2).sum(1)


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


def test_replicated_gd_is_replicas_coupled_to_their_centre():
    theta0 = torch.tensor([[-0.7, 0.3], [0.1, -1.4]], dtype=torch.float64)
    ids = torch.tensor([0, 5])
    engine = _run(make_stepper("replicated_gd", lr=0.05, seed=2, **REPLICATED), theta0, ids, 60)
    o = REPLICATED
    for row, member in enumerate(ids):
        spread = member_normal(2, member.view(1), torch.zeros(1, dtype=torch.long), (4, 2), theta0.dtype)[0]
        replicas = theta0[row] + o["replica_spread"] * spread
        x = replicas.mean(0, keepdim=True)
        for t in range(60):
            if t < o["scoping_steps"]:
                gamma = o["coupling"] * (1 + o["coupling_growth"]) ** t
                centre = replicas.mean(0, keepdim=True)
                replicas = replicas - 0.05 * (_objective(replicas, None)[1] + gamma * (replicas - centre))
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
    assert (long["status"] == CONVERGED).all() and (long["steps"] >= options["scoping_steps"]).all()
    ends = long["final_theta"][:, 0]
    assert np.all(np.isclose(ends, -1, atol=0.05) | np.isclose(ends, 1.18, atol=0.05)), ends
    staged = descend_until_decided(_objective, starts, np.arange(6), max_steps=1000, budget_factors=(1, 4), **engine)
    np.testing.assert_allclose(staged["final_theta"], long["final_theta"], rtol=0, atol=1e-12)
    # A budget that ends inside the scoping: the continuation still holds convergence back and
    # resumes the coupling schedule. Replicas restart around the centre (state restarts, as
    # Adam's moments do), so replicated runs end at the same minima, not bit for bit.
    early = descend_until_decided(_objective, starts, np.arange(6), max_steps=25, budget_factors=(1, 2, 40, 160),
                                  **engine)
    assert (early["status"] == CONVERGED).all() and (early["steps"] >= options["scoping_steps"]).all()
    if dynamics == "entropy_gd":  # no state beyond the point: the same run
        np.testing.assert_allclose(early["final_theta"], long["final_theta"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(early["steps"], long["steps"])
    else:
        np.testing.assert_allclose(early["final_theta"], long["final_theta"], rtol=0, atol=1e-6)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="entropy_gd"):
        make_stepper("entropy_gd", lr=0.1, coupling=1.0)
    with pytest.raises(ValueError, match="apply to entropy_gd and replicated_gd"):
        make_stepper("gd", lr=0.1, coupling=1.0)
    with pytest.raises(ValueError, match="coupling=-1"):
        make_stepper("replicated_gd", lr=0.1, **dict(REPLICATED, coupling=-1))


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
