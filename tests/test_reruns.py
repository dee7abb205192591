"""Three outcomes of a re-run: a budget never decides a basin."""

import numpy as np
import pytest
import torch

from basins.engine.descent import descend_until_decided
from basins.engine.dynamics import energy_and_gradient
from basins.labels import (
    AT_SADDLE,
    BUDGET,
    CONVERGED,
    DIVERGED,
    LEFT,
    RETURNED,
    SADDLE,
    UNDECIDED,
    UNDECIDED_LABEL,
)
from basins.rays import probe_rays
from basins.reruns import labels_of, outcomes_of


def double_well(theta):
    """V = (x^2 - 1)^2 + y^2: the basin of (1, 0) is x > 0, so its exit radius along +-x is 1."""
    return (theta[:, 0] ** 2 - 1) ** 2 + theta[:, 1] ** 2


def gradient_descent(max_steps):
    def run(starts, budget_factors):
        out = descend_until_decided(
            lambda theta, batch: energy_and_gradient(double_well, theta), starts, np.arange(len(starts)),
            budget_factors=budget_factors, dynamics="gd", lr=0.05, max_steps=max_steps, grad_tol=1e-8,
            device=torch.device("cpu"), dtype=torch.float64, chunk=256, run_id=("test",), progress_every_s=1e9,
        )
        with torch.no_grad():
            loss = double_well(torch.as_tensor(out.final_theta)).numpy()
        return out.final_theta, loss, out.status, out.steps

    return run


def which_well(final_theta):
    return np.where(final_theta[:, 0] > 0, 0, 1)


def test_a_start_near_the_exit_that_runs_out_of_budget_is_undecided_not_an_exit():
    """0.5 % inside the exit radius the flow needs hundreds of steps to leave the ridge."""
    start = np.array([[1.0 - 0.995, 0.0]])  # distance 0.995 from the minimum (1, 0) along -x
    final, loss, status, steps = gradient_descent(5)(start, (1,))
    assert status[0] == BUDGET
    assert outcomes_of(which_well(final), status, np.array([0]))[0] == UNDECIDED
    final, loss, status, steps = gradient_descent(5)(start, (1, 10, 100, 1000))
    assert status[0] == CONVERGED
    assert outcomes_of(which_well(final), status, np.array([0]))[0] == RETURNED
    assert 50 < steps[0] <= 5000  # the continuations' steps add up, within the cap


def test_continuing_gradient_descent_is_the_longer_run():
    """GD carries no state: a run continued after its budget is the run with the larger one."""
    starts = np.array([[0.02, 0.3], [-0.5, 1.0], [1e-3, 0.0]])
    continued, _, status, steps = gradient_descent(10)(starts, (1, 3, 30))
    once, _, status_once, steps_once = gradient_descent(300)(starts, (1,))
    np.testing.assert_allclose(continued, once, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(status, status_once)
    np.testing.assert_array_equal(steps, steps_once)


def test_rays_with_a_tiny_budget_are_censored_not_exits():
    """Along +-x from (1, 0) the exit radius is 1 (the ridge x = 0) on one side and beyond
    any radius on the other; with a budget too small to decide the points near the ridge
    they come back undecided and the ray is censored there, never an exit below 1."""
    def outcomes(budget):
        run = gradient_descent(budget)

        def call(starts, targets):
            final, _, status, _ = run(starts, (1,))
            return outcomes_of(which_well(final), status, targets)

        return call

    centre = np.array([[1.0, 0.0]])
    radii = np.array([0.5, 0.9, 0.99, 1.01, 1.5])
    rays = probe_rays(centre, outcomes(40), radii=radii, n_directions=64, n_bisection=6, seed=0)
    observed = rays["exit_observed"].values[0].astype(bool)
    exits = rays["exit_radius"].values[0]
    assert (exits[observed] >= 0.99).all()  # no exit inside the basin
    assert float(rays["run_undecided_fraction"][0]) > 0
    generous = probe_rays(centre, outcomes(20_000), radii=radii, n_directions=64, n_bisection=6, seed=0)
    assert float(generous["run_undecided_fraction"][0]) == 0


def test_outcomes_and_labels_cover_every_status():
    status = np.array([CONVERGED, CONVERGED, BUDGET, SADDLE, DIVERGED])
    reached = np.array([3, 1, 3, 3, -1])
    np.testing.assert_array_equal(outcomes_of(reached, status, np.full(5, 3)), [RETURNED, LEFT, UNDECIDED, UNDECIDED, LEFT])
    np.testing.assert_array_equal(labels_of(reached, status), [3, 1, UNDECIDED_LABEL, AT_SADDLE, -1])


@pytest.mark.parametrize("factors", [(4, 1), (1, 1), (2, 4), ()])
def test_budget_factors_must_start_at_one_and_increase(factors):
    with pytest.raises(ValueError, match="budget_factors"):
        gradient_descent(5)(np.zeros((1, 2)), factors)
