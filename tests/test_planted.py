"""Planted landscapes: the basins they claim by construction are those the engine finds."""

import numpy as np
import pytest
import torch

from basins.engine.descent import descend_until_decided
from basins.engine.dynamics import energy_and_gradient
from basins.labels import CONVERGED
from basins.landscapes.planted import ball_and_ring, double_well, narrow_and_wide_wells

LANDSCAPES = [ball_and_ring(2), ball_and_ring(12), double_well(2), double_well(12), narrow_and_wide_wells(1),
              narrow_and_wide_wells(3)]


def gradient_flow(landscape, starts):
    """The engine's gradient flow from ``starts``: the minimum each run reached (-1: none) and its status."""
    out = descend_until_decided(
        lambda theta, batch: energy_and_gradient(landscape.energy, theta), starts, np.arange(len(starts)),
        budget_factors=(1, 4), dynamics="gradient_flow", lr=0.05, max_steps=500, grad_tol=1e-6,
        device=torch.device("cpu"), dtype=torch.float64, chunk=4096, run_id=(landscape.name,), progress_every_s=1e9,
    )
    return landscape.minimum_reached(out.final_theta, dist_tol=1e-3), out.status


@pytest.mark.parametrize("landscape", LANDSCAPES, ids=lambda landscape: landscape.name)
def test_the_membership_by_construction_is_the_gradient_flows(landscape):
    starts = landscape.sample_starts(300, seed=7)
    reached, status = gradient_flow(landscape, starts)
    assert (status == CONVERGED).mean() >= 0.99
    assert (reached == landscape.basin_of(starts)).mean() >= 0.99


@pytest.mark.parametrize("landscape", LANDSCAPES, ids=lambda landscape: landscape.name)
def test_minima_are_minima(landscape):
    """Zero gradient at every minimum, and a small step away in any direction raises the energy."""
    minima = torch.as_tensor(landscape.minima)
    energy, grad = energy_and_gradient(landscape.energy, minima)
    assert grad.norm(dim=1).max() < 1e-12
    steps = 1e-3 * torch.as_tensor(np.random.default_rng(0).standard_normal((16, landscape.n_params)))
    nudged = landscape.energy((minima[:, None, :] + steps[None]).reshape(-1, landscape.n_params)).reshape(len(minima), -1)
    assert (nudged > energy[:, None]).all()
    np.testing.assert_array_equal(landscape.basin_of(landscape.minima), np.arange(len(minima)))


@pytest.mark.parametrize("n_params", [2, 12])
def test_ball_and_ring_have_equal_exact_fractions_that_sampling_reproduces(n_params):
    landscape = ball_and_ring(n_params)
    ball, ring = landscape.index("ball"), landscape.index("ring")
    assert landscape.basin_fraction[ball] == pytest.approx(landscape.basin_fraction[ring], abs=1e-12)
    assert landscape.basin_fraction.sum() == pytest.approx(1.0)
    n_starts = 40_000
    fraction = np.bincount(landscape.basin_of(landscape.sample_starts(n_starts, seed=3)), minlength=4) / n_starts
    se = np.sqrt(landscape.basin_fraction * (1 - landscape.basin_fraction) / n_starts)
    assert (np.abs(fraction - landscape.basin_fraction) < 4 * se).all()
    # the two basins of interest are equal within sampling error (their difference's SE)
    assert abs(fraction[ball] - fraction[ring]) < 4 * np.sqrt(2 * 0.2 / n_starts)


def test_the_ring_is_thin_and_reaches_around_the_ball():
    """The geometry the docstring states: ring 0.375 wide at radius 1.36, ball radius 0.668."""
    landscape = ball_and_ring(2)
    angle = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    circle = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    ring = landscape.index("ring")
    assert (landscape.basin_of(1.364 * circle) == ring).all()
    assert not (landscape.basin_of(1.17 * circle) == ring).any() and not (landscape.basin_of(1.56 * circle) == ring).any()
    assert (landscape.basin_of(0.66 * circle) == landscape.index("ball")).all()


def test_energy_is_smooth_at_the_origin():
    """The angular term vanishes at the ball's minimum; no nan gradient there or next to it."""
    landscape = ball_and_ring(2)
    points = torch.tensor([[0.0, 0.0], [1e-9, 0.0], [-1e-9, 1e-9], [0.3, -0.2]], dtype=torch.float64)
    energy, grad = energy_and_gradient(landscape.energy, points)
    assert torch.isfinite(energy).all() and torch.isfinite(grad).all()
    assert grad[:3].norm(dim=1).max() < 1e-6


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="fraction"):
        ball_and_ring(2, fraction=0.3, gap_until=0.5)
    with pytest.raises(ValueError, match="n_params"):
        ball_and_ring(1)
