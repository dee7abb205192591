"""The step loop's quick test of whether any member stops never hides one that does."""

import math

import numpy as np
import torch

from basins.engine.descent import _classify, _none_stops


def test_the_quick_test_says_none_stops_only_where_the_classification_agrees():
    """Members drawn around every stopping condition's boundary: gradient norms at and around
    grad_tol, losses and gradients infinite or nan, parameters at and beyond the divergence
    threshold, a stepper that has finished. Wherever the quick test answers "none stops", the
    full classification finds every member still running."""
    rng = np.random.default_rng(0)
    grad_tol, threshold = 1e-3, 1e6
    specials = [0.0, grad_tol, np.nextafter(grad_tol, 1), np.nextafter(grad_tol, 0), math.inf, math.nan, 1e308]
    for trial in range(2000):
        n = int(rng.integers(1, 4))
        grad = torch.as_tensor(rng.standard_normal((n, 3)) * 10.0 ** rng.uniform(-5, 1, (n, 1)))
        loss = torch.as_tensor(rng.standard_normal(n))
        theta = torch.as_tensor(rng.standard_normal((n, 3)))
        for row in range(n):
            kind = rng.integers(0, 5)
            if kind == 1:  # a gradient norm exactly at, or one ulp around, grad_tol (or special)
                value = specials[rng.integers(0, len(specials))]
                grad[row] = torch.tensor([value, 0.0, 0.0], dtype=torch.float64)
            elif kind == 2:
                loss[row] = specials[rng.integers(0, len(specials))]
            elif kind == 3:
                theta[row, 0] = [threshold, np.nextafter(threshold, math.inf), math.nan, -math.inf][rng.integers(0, 4)]
        finished = torch.as_tensor(rng.random(n) < 0.1)
        tol = grad_tol if trial % 4 else -math.inf  # still annealing: no convergence by the gradient
        if _none_stops(theta, loss, grad, tol, threshold, finished):
            status, _ = _classify(
                theta, loss, grad, None, grad_tol=tol, divergence_threshold=threshold, over=finished
            )
            assert (status == -1).all(), (theta, loss, grad, status)


def test_the_quick_test_lets_running_members_run():
    theta, grad = torch.zeros(4, 3), torch.ones(4, 3)
    assert _none_stops(theta, torch.zeros(4), grad, 1e-3, 1e6, False)
    assert not _none_stops(theta, torch.zeros(4), grad, 1e-3, 1e6, True)
