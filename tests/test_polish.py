"""Newton polish: endpoints land on their minimum, whatever gradient tolerance stopped them."""

import numpy as np
import torch

from basins.engine.polish import polish_minima
from basins.labels import BUDGET, CONVERGED

CURVATURES = torch.tensor([1e-4, 1.0, 30.0, 0.0], dtype=torch.float64)  # a soft, two stiff, one flat


def quadratic(theta):
    """V = sum_k c_k (x_k - 1)^2 / 2: the minimum is x = 1 on the curved axes, any x on the flat one."""
    return 0.5 * (CURVATURES * (theta - 1) ** 2).sum(1)


def converged_near_minimum(grad_tol, n=5, seed=0):
    """Points where the gradient norm is below ``grad_tol``: along the soft axis half of
    grad_tol / 1e-4 from the minimum, along the stiff ones much closer."""
    rng = np.random.default_rng(seed)
    gradient_share = np.array([0.5, 0.3, 0.3]) * rng.choice([-1.0, 1.0], size=(n, 3))
    theta = np.empty((n, 4))
    theta[:, :3] = 1 + grad_tol * gradient_share / CURVATURES[:3].numpy()
    theta[:, 3] = rng.normal(size=n)  # anywhere along the flat axis
    return {"final_theta": theta, "status": np.full(n, CONVERGED, dtype=np.int8), "grad_norm": np.full(n, grad_tol)}


def polish(out, **options):
    options = dict(curvature_tol=1e-6, newton_steps=8, max_dense_params=100, device=torch.device("cpu"),
                   dtype=torch.float64, chunk=3) | options
    polish_minima(out, quadratic, **options)
    return out


def test_polish_lands_on_the_minimum_and_leaves_flat_directions_alone():
    for grad_tol in (1e-3, 1e-5):
        out = converged_near_minimum(grad_tol)
        flat_before = out["final_theta"][:, 3].copy()
        polish(out)
        np.testing.assert_allclose(out["final_theta"][:, :3], 1.0, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(out["final_theta"][:, 3], flat_before)
        assert (out["grad_norm"] < 1e-12).all()
        assert (out["polish_shift"] > 0).all()
        np.testing.assert_array_equal(out["grad_norm_before_polish"], grad_tol)


def test_members_of_one_minimum_agree_whatever_grad_tol_was():
    loose, tight = polish(converged_near_minimum(1e-3, seed=1)), polish(converged_near_minimum(1e-7, seed=2))
    np.testing.assert_allclose(loose["final_theta"][:, :3], tight["final_theta"][:, :3], rtol=0, atol=1e-10)


def test_below_the_curvature_tolerance_a_direction_is_not_polished():
    out = polish(converged_near_minimum(1e-3), curvature_tol=1e-3)  # the soft axis now counts as flat
    np.testing.assert_allclose(np.abs(out["final_theta"][:, 0] - 1), 0.5 * 1e-3 / 1e-4)
    np.testing.assert_allclose(out["final_theta"][:, 1:3], 1.0, rtol=0, atol=1e-10)


def test_only_converged_members_of_small_networks_are_polished():
    out = converged_near_minimum(1e-3)
    out["status"][0] = BUDGET
    before = out["final_theta"].copy()
    polish(out)
    np.testing.assert_array_equal(out["final_theta"][0], before[0])
    assert np.isnan(out["polish_shift"][0]) and not np.isnan(out["polish_shift"][1:]).any()
    big = polish(converged_near_minimum(1e-3), max_dense_params=3)
    assert np.isnan(big["polish_shift"]).all()
    none = polish(converged_near_minimum(1e-3), newton_steps=0)
    assert np.isnan(none["polish_shift"]).all()


SLOPE = 5e-5  # below grad_tol: a run on this slope "converges" where there is no minimum


def slow_slope(theta):
    """V = a log cosh(x - 3) + y^2 / 2: far left of x = 3 a slope of gradient a and curvature
    ~ a e^-6 (below curvature_tol: the polish cannot see where it leads); the minimum is (3, 0)."""
    return SLOPE * torch.log(torch.cosh(theta[:, 0] - 3)) + 0.5 * theta[:, 1] ** 2


def settled_on_slow_slope(max_refinements):
    from basins.training import confirm_minima
    from basins.engine.descent import descend_until_decided
    from basins.engine.dynamics import energy_and_gradient

    engine = dict(dynamics="gradient_flow", lr=1.0, max_steps=2000, device=torch.device("cpu"), dtype=torch.float64,
                  chunk=16, run_id=("slow slope",), progress_every_s=1e9)

    def run(points, ids, tol):
        out = descend_until_decided(lambda theta, batch: energy_and_gradient(slow_slope, theta), points, ids,
                                    grad_tol=tol, **engine)
        out["lowest_eigenvalue"], out["n_escapes"] = np.full(len(ids), np.nan), np.zeros(len(ids), dtype=int)
        return _polish_on(out, slow_slope)

    starts = np.array([[-4.0, 0.0], [3.0 + 1e-3, 1e-3]])  # on the slope; next to the minimum
    ids = np.arange(2)
    out = run(starts, ids, 1e-4)
    first_stop = out["final_theta"].copy()
    confirm_minima(out, ids, refine=run, grad_tol=1e-4, stationary_tol=1e-9, max_refinements=max_refinements)
    return first_stop, out


def _polish_on(out, energy):
    polish_minima(out, energy, curvature_tol=1e-6, newton_steps=16, max_dense_params=100,
                  device=torch.device("cpu"), dtype=torch.float64, chunk=16)
    return out


def test_a_run_stopped_on_a_slow_slope_is_continued_to_the_minimum_not_catalogued():
    first_stop, out = settled_on_slow_slope(max_refinements=2)
    assert first_stop[0, 0] < 0  # the gradient test stopped it far from any stationary point
    np.testing.assert_allclose(out["final_theta"], [[3.0, 0.0], [3.0, 0.0]], atol=1e-8)
    np.testing.assert_array_equal(out["status"], [CONVERGED, CONVERGED])
    np.testing.assert_array_equal(out["n_refinements"], [1, 0])  # the true minimum needs none
    assert (out["grad_norm"] <= 1e-9).all()


def test_a_run_never_shown_on_a_stationary_point_is_undecided():
    _, out = settled_on_slow_slope(max_refinements=0)
    np.testing.assert_array_equal(out["status"], [BUDGET, CONVERGED])
