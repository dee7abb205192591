"""Minima, not saddles: the engine's saddle check on landscapes whose critical points are known."""

import numpy as np
import pytest
import torch

from basins.engine.descent import descend
from basins.engine.dynamics import energy_and_gradient
from basins.labels import CONVERGED, SADDLE
from basins.training import escape_saddles


def double_well(theta):
    """V = (x^2 - 1)^2 + y^2: minima at (+-1, 0), an index-1 saddle at the origin."""
    x, y = theta[:, 0], theta[:, 1]
    return (x**2 - 1) ** 2 + y**2


def monkey_saddle_bowl(theta):
    """V = x^3 - 3 x y^2 + (x^2 + y^2)^2: a degenerate (monkey) saddle at the origin, whose
    Hessian vanishes there, and three minima on the circle r = 3/4 at angles pi/3, pi, 5 pi/3."""
    x, y = theta[:, 0], theta[:, 1]
    return x**3 - 3 * x * y**2 + (x**2 + y**2) ** 2


def true_lowest_eigenvalues(energy, points):
    """The lowest Hessian eigenvalue at each point, by autograd's dense Hessian of one point."""
    single = lambda point: energy(point.unsqueeze(0))[0]  # noqa: E731
    return np.array([torch.linalg.eigvalsh(torch.autograd.functional.hessian(single, torch.as_tensor(point)))[0].item()
                     for point in points])


def objective_of(energy):
    return lambda theta, batch: energy_and_gradient(energy, theta)


def settle(energy, starts, *, dynamics="gd", max_saddle_escapes=3, curvature_tol=1e-6, **options):
    ids = np.arange(len(starts))
    engine = dict(
        dynamics=dynamics, lr=0.05, max_steps=20_000, grad_tol=1e-8, device=torch.device("cpu"),
        dtype=torch.float64, chunk=64, run_id=("test",), progress_every_s=1e9, **options,
    )
    """The engine's run from ``starts`` through the saddle check: the run, the lowest Hessian
    eigenvalue at each end and the escapes."""
    out = descend(objective_of(energy), starts, ids, **engine)
    return escape_saddles(
        out, ids, continue_from=lambda theta, members, tol: descend(objective_of(energy), theta, members,
                                                          **dict(engine, grad_tol=tol)),
        energy=energy, curvature_tol=curvature_tol, saddle_kick=1e-2, grad_tol=1e-8,
        max_saddle_escapes=max_saddle_escapes, max_dense_params=10, n_lanczos=2, seed=0,
        device=torch.device("cpu"), dtype=torch.float64,
    )


def test_flows_started_on_the_ridge_stop_at_the_saddle_without_the_check():
    ridge = np.c_[np.zeros(8), np.linspace(-2, 2, 8)]
    out, lowest_eigenvalue, _ = settle(double_well, ridge, max_saddle_escapes=0)
    np.testing.assert_allclose(out.final_theta, 0.0, atol=1e-6)
    assert (out.status == SADDLE).all()
    np.testing.assert_allclose(lowest_eigenvalue, -4.0, rtol=1e-6)  # V_xx(0) = -4


@pytest.mark.parametrize("dynamics", ["gd", "gradient_flow", "adam"])
def test_the_double_well_catalogues_only_its_two_minima(dynamics):
    starts = np.r_[np.c_[np.zeros(8), np.linspace(-2, 2, 8)], np.random.default_rng(1).uniform(-2, 2, (24, 2))]
    out, lowest_eigenvalue, n_escapes = settle(double_well, starts, dynamics=dynamics)
    assert (out.status == CONVERGED).all()
    np.testing.assert_allclose(np.abs(out.final_theta[:, 0]), 1.0, atol=1e-6)
    np.testing.assert_allclose(out.final_theta[:, 1], 0.0, atol=1e-6)
    # At the minima a Cholesky factor of H + curvature_tol I shows every eigenvalue above
    # -curvature_tol: no eigenpair is computed there (nan; the polish computes the value).
    assert np.isnan(lowest_eigenvalue).all()
    np.testing.assert_allclose(true_lowest_eigenvalues(double_well, out.final_theta), 2.0, rtol=1e-5)  # V_yy = 2
    on_ridge = np.arange(8)
    assert (n_escapes[on_ridge] == 1).all() and (n_escapes[8:] == 0).all()
    # The kick's sign is seeded per member: the ridge starts split between the two wells.
    assert 0 < (out.final_theta[on_ridge, 0] > 0).sum() < 8


def test_a_degenerate_saddle_is_not_catalogued_as_a_minimum():
    """The monkey saddle's Hessian is zero at the origin: no eigenvalue test can see it there,
    but the flow from the symmetric start along -x passes no saddle, and starts on the
    separatrices (angles 0, 2pi/3, 4pi/3) stop near the origin only where the gradient test
    lets them; whatever the engine reports converged must be one of the three minima."""
    angles = np.r_[(np.arange(36) + 0.5) * 2 * np.pi / 36, [0.0, 2 * np.pi / 3, 4 * np.pi / 3]]
    starts = 0.5 * np.c_[np.cos(angles), np.sin(angles)]
    out, lowest_eigenvalue, _ = settle(monkey_saddle_bowl, starts)
    converged = out.status == CONVERGED
    radius = np.linalg.norm(out.final_theta[converged], axis=1)
    np.testing.assert_allclose(radius, 0.75, atol=1e-6)
    assert np.isnan(lowest_eigenvalue[converged]).all()  # shown above -curvature_tol by a Cholesky factor
    assert (true_lowest_eigenvalues(monkey_saddle_bowl, out.final_theta[converged]) > 0).all()
    assert converged[:36].all()  # every off-separatrix start reaches a minimum


def test_bad_settings_are_refused():
    bad = dict(curvature_tol=1e-6, saddle_kick=0.0, grad_tol=1e-8, max_saddle_escapes=1, max_dense_params=2,
               n_lanczos=2, seed=0, device=torch.device("cpu"), dtype=torch.float64)
    with pytest.raises(ValueError, match="saddle_kick"):
        escape_saddles(None, np.arange(1), continue_from=None, energy=double_well, **bad)


def test_a_member_beside_the_ridge_is_kicked_to_its_own_side_whatever_its_id():
    """Stopped 1e-10 off the double well's ridge (its gradient below grad_tol), a member goes on
    to the well on its side, as its flow was heading; the member id does not decide it."""
    starts = np.c_[np.tile([1e-10, -1e-10], 8), np.zeros(16)]
    out, _, n_escapes = settle(double_well, starts)
    assert (n_escapes == 1).all()
    np.testing.assert_array_equal(np.sign(out.final_theta[:, 0]), np.sign(starts[:, 0]))


def test_members_kicked_off_a_saddle_are_carried_by_the_escape_run_and_refined_ones_by_the_other():
    """check_minima: ``escape_from`` (training: the run's own integrator) carries the members
    kicked off the ridge; ``continue_from`` (training: the stiff one) only those the polish left
    short of a stationary point."""
    from basins.training import check_minima

    engine = dict(dynamics="gd", lr=0.05, max_steps=20_000, device=torch.device("cpu"), dtype=torch.float64,
                  chunk=64, run_id=("test",), progress_every_s=1e9)
    calls = {"escape": [], "continue": []}

    def recorded(kind):
        def run(theta, members, tol):
            calls[kind].append(list(members))
            return descend(objective_of(double_well), theta, members, grad_tol=tol, **engine)
        return run

    starts = np.r_[np.c_[np.zeros(4), np.linspace(-1, 1, 4)], [[0.5, 0.5], [-0.7, 0.2]]]
    ids = np.arange(len(starts))
    out = descend(objective_of(double_well), starts, ids, grad_tol=1e-8, **engine)
    checked, checks = check_minima(
        out, ids, energy=double_well, continue_from=recorded("continue"), escape_from=recorded("escape"),
        n_params=2, grad_tol=1e-8, curvature_tol=1e-6, saddle_kick=1e-2, max_saddle_escapes=3, max_dense_params=10,
        n_lanczos=2, newton_steps=8, stationary_tol=1e-12, max_refinements=2, seed=0, device=torch.device("cpu"),
        dtype=torch.float64, memory_budget_mb=64.0,
    )
    assert calls["escape"] == [[0, 1, 2, 3]] and calls["continue"] == []  # the polish lands on both minima
    assert (checked.status == CONVERGED).all() and (checks.n_escapes == [1, 1, 1, 1, 0, 0]).all()
    np.testing.assert_allclose(np.abs(checked.final_theta), [[1.0, 0.0]] * 6, atol=1e-12)
    np.testing.assert_allclose(checks.lowest_eigenvalue, 2.0, rtol=1e-9)  # computed by the polish



def test_a_member_stopped_again_on_a_wide_slow_ridge_is_carried_off_by_a_tighter_gradient_test(monkeypatch):
    """V = 1e-2 cos(x / 10): the gradient is below grad_tol = 2e-3 everywhere and the curvature
    negative for |x| < 5 pi, so a flow stops at once on the ridge, and each kick (capped at 1)
    moves it by 1. At a fixed gradient test it is still on the ridge after three kicks: a
    saddle, undecided. With the test tightened tenfold per kick the flow itself carries it, from
    x = 3 (gradient 3e-4 > 2e-4), down toward the minimum at 10 pi, stopping once its gradient
    falls below the last test (sin(x / 10) = 0.2)."""
    from basins import training

    def wide_ridge(theta):
        return 1e-2 * torch.cos(theta[:, 0] / 10)

    engine = dict(dynamics="gd", lr=1000.0, max_steps=20_000, device=torch.device("cpu"), dtype=torch.float64,
                  chunk=8, run_id=("wide ridge",), progress_every_s=1e9)
    starts, ids = np.array([[1.0], [-1.0]]), np.arange(2)

    def checked():
        out = descend(objective_of(wide_ridge), starts, ids, grad_tol=2e-3, **engine)
        assert (out.status == CONVERGED).all() and np.array_equal(out.final_theta, starts)  # stopped at once
        return escape_saddles(
            out, ids, energy=wide_ridge, curvature_tol=1e-6, saddle_kick=1e-2, grad_tol=2e-3, max_saddle_escapes=3,
            continue_from=lambda theta, members, tol: descend(objective_of(wide_ridge), theta, members,
                                                              **dict(engine, grad_tol=tol)),
            max_dense_params=10, n_lanczos=1, seed=0, device=torch.device("cpu"), dtype=torch.float64,
        )

    out, _, n_escapes = checked()
    assert (out.status == CONVERGED).all() and (n_escapes == 2).all()
    reached = out.final_theta[:, 0] * np.sign(starts[:, 0])  # past the test's threshold, short of the minimum
    assert ((10 * (np.pi - np.arcsin(0.2)) <= reached) & (reached < 10 * np.pi)).all()
    monkeypatch.setattr(training, "ESCAPE_TIGHTENING", 1.0)
    out, _, n_escapes = checked()
    assert (out.status == SADDLE).all() and (n_escapes == 3).all()
    np.testing.assert_allclose(out.final_theta[:, 0], 4 * np.sign(starts[:, 0]), atol=1e-12)
