import numpy as np
import pytest
import torch

from basins.engine.quasi_newton import finish_by_quasi_newton

CPU = dict(device=torch.device("cpu"), dtype=torch.float64, max_dense_params=100)


def rosenbrock(theta):
    """Smooth, with its one minimum at (1, 1) at the end of a long curved valley."""
    return 100 * (theta[:, 1] - theta[:, 0] ** 2) ** 2 + (1 - theta[:, 0]) ** 2


def kinked(theta):
    """|theta_0| + theta_1^2: its minimum (0, 0) sits on a kink, where no gradient vanishes."""
    return theta[:, 0].abs() + theta[:, 1] ** 2


def test_the_finish_lands_on_a_smooth_minimum_to_round_off():
    starts = np.array([[-1.2, 1.0], [0.5, 0.1], [2.0, 3.5]])
    finished = finish_by_quasi_newton(starts, lambda row: rosenbrock, max_iterations=500, grad_tol=1e-10, **CPU)
    np.testing.assert_allclose(finished.final_theta, 1.0, atol=1e-10)
    assert (finished.grad_norm <= 1e-10).all() and (finished.loss <= 1e-20).all()
    assert (finished.iterations > 0).all()


def test_each_member_is_finished_on_its_own_landscape():
    # member i: (theta - c_i)^2 summed, minimum at c_i
    centres = torch.tensor([[1.0, -2.0], [3.0, 0.5]], dtype=torch.float64)
    finished = finish_by_quasi_newton(
        np.zeros((2, 2)), lambda row: (lambda t: ((t - centres[row]) ** 2).sum(1)), max_iterations=50, grad_tol=1e-12,
        **CPU,
    )
    np.testing.assert_allclose(finished.final_theta, centres.numpy(), atol=1e-12)


def test_on_a_kink_the_finish_lowers_the_loss_but_never_passes_the_gradient_test():
    starts = np.array([[0.3, 0.5], [-1.0, -0.2]])
    finished = finish_by_quasi_newton(starts, lambda row: kinked, max_iterations=200, grad_tol=1e-10, **CPU)
    assert (finished.grad_norm >= 1.0 - 1e-12).all()  # |d/dtheta_0| = 1 everywhere off the kink
    assert (finished.loss <= kinked(torch.as_tensor(starts)).numpy()).all()


def test_bad_finishes_are_refused():
    with pytest.raises(ValueError, match="max_iterations=0"):
        finish_by_quasi_newton(np.zeros((1, 2)), lambda row: kinked, max_iterations=0, grad_tol=1e-10, **CPU)


def kinked_valley(theta):
    """A valley whose floor is a kink (theta_1.. = 0 while theta_0 > 0, strength 100 theta_0)
    running down to the smooth minimum (-1, 0, ...): strong-Wolfe L-BFGS stalls on the floor
    (2 of 20 random starts reach the minimum in 500 iterations), BFGS with the weak-Wolfe line
    search crosses the kinks and reaches it from every one."""
    x, y = theta[:, 0], theta[:, 1:]
    return 100 * torch.relu(x) * y.abs().sum(1) + (x + 1) ** 2 + (y**2).sum(1)


def test_the_finish_follows_a_kinked_valley_down_to_its_smooth_minimum():
    rng = np.random.default_rng(0)
    starts = np.column_stack([rng.uniform(1, 20, 10), rng.normal(size=(10, 5))])
    finished = finish_by_quasi_newton(starts, lambda row: kinked_valley, max_iterations=500, grad_tol=1e-10, **CPU)
    assert (finished.grad_norm <= 1e-10).all()
    np.testing.assert_allclose(finished.final_theta, np.tile([-1.0, 0, 0, 0, 0, 0], (10, 1)), atol=1e-10)
