"""The softplus-smoothing homotopy: softplus_beta tends to relu, and its end points as the kink
certificate judges them (a jammed minimum displaced off its kinks carried back; non-minima refused)."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from basins.data import prepare_dataset, train_test_arrays
from basins.landscapes.architecture import Architecture
from basins.landscapes.relu_kinks import _KinkedLoss, certify_kink_minimum
from basins.landscapes.softplus_homotopy import (
    _GaugeFixed,
    _incoming_norms,
    _predicted,
    _value_and_gradient,
    follow_softplus_homotopy,
    smooth_loss,
    softplus_relu,
)

DEEP = Architecture(9, 1, 2, 9, "relu", True)


@pytest.fixture(scope="module")
def jammed():
    """The depth-2 jammed minimum of tests/test_relu_kinks.py (N = 190, P = 520, 55 kinks in two
    layers), its training set and its certificate."""
    data = prepare_dataset(kind="random_patterns", n_train=520, n_test=10, seed=1, n_features=9, normalize=True)
    x, y, _, _ = train_test_arrays(data)
    theta = np.load(Path(__file__).parent / "data" / "depth2_jammed_on_two_layers_of_kinks.npy")
    found = certify_kink_minimum(theta, x, y, DEEP, loss="quadratic_hinge", grad_tol=1e-10)
    assert found.certified and found.n_active == 55
    return x, y, found


def active_kinks_at(theta, x, y):
    x, y = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float64)
    objective = _KinkedLoss(DEEP, x, y, "quadratic_hinge", 1.0, 0.0)
    return objective.felt_distances(torch.as_tensor(theta)) < 1e-6


def test_softplus_tends_to_relu():
    """Within log(2) / beta everywhere (the bound met at z = 0), exponentially close off |z| ~ 1 / beta."""
    z = torch.linspace(-2, 2, 4001, dtype=torch.float64)
    round_off = 2 * torch.finfo(torch.float64).eps * z.abs()
    for beta in (1e2, 1e4, 1e6):
        gap = softplus_relu(z, beta) - torch.relu(z)
        assert (gap >= -round_off).all() and gap.max() == pytest.approx(np.log(2) / beta, rel=1e-12)
        far = z.abs() > 40 / beta
        assert (gap[far].abs() <= round_off[far] + 1e-17 / beta).all()


def test_the_smooth_loss_and_its_gradient_tend_to_the_relu_ones_away_from_kinks():
    """A random depth-2 network on random points: no pre-activation within 1e-4 of 0, so the
    smoothed loss and gradient meet the ReLU ones to round-off once 1 / beta is far below that."""
    data = prepare_dataset(kind="random_patterns", n_train=40, n_test=4, seed=2, n_features=9, normalize=True)
    x, y, _, _ = train_test_arrays(data)
    x, y = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float64)
    theta = torch.as_tensor(np.random.default_rng(2).normal(size=DEEP.n_params) / 3)
    objective = _KinkedLoss(DEEP, x, y, "quadratic_hinge", 1.0, 0.0)
    assert objective.felt_distances(theta).min() > 1e-4
    relu_loss = float(objective(theta))
    relu_gradient = objective.gradient(theta, None)

    def smooth(beta):
        variable = theta.clone().requires_grad_(True)
        value = smooth_loss(variable, x, y, DEEP, beta=beta, loss="quadratic_hinge")
        return float(value.detach()), torch.autograd.grad(value, variable)[0]

    errors = [(abs(value - relu_loss), float((gradient - relu_gradient).norm()))
              for value, gradient in map(smooth, (1e2, 1e3, 1e6))]
    assert errors[0][0] > errors[1][0] > 1e-6 and errors[0][1] > errors[1][1] > 1e-6
    assert errors[2][0] < 1e-14 and errors[2][1] < 1e-13
    assert smooth(np.inf)[0] == pytest.approx(relu_loss, rel=1e-14)


def test_a_jammed_minimum_displaced_off_its_kinks_is_carried_back(jammed):
    """The known answer: the certified minimum displaced by 1e-6 at random (a BFGS-like end
    point, refused: near and far kinks no longer stand apart) is carried by the homotopy back
    to a point the certificate certifies, on the same 55 kinks, at the same loss."""
    x, y, minimum = jammed
    start = minimum.theta + 1e-6 * np.random.default_rng(0).normal(size=DEEP.n_params)
    assert not certify_kink_minimum(start, x, y, DEEP, loss="quadratic_hinge", grad_tol=1e-10).certified
    end = follow_softplus_homotopy(start, x, y, DEEP, loss="quadratic_hinge", betas=(1e5, 1e6, 1e7, 1e8),
                                   newton_steps=30)
    assert (end.iterations < 30).all() and end.end_loss < end.start_loss
    found = certify_kink_minimum(end.theta, x, y, DEEP, loss="quadratic_hinge", grad_tol=1e-10,
                                 no_higher_than=end.start_loss)
    assert found.certified and found.n_active == 55
    assert found.loss == pytest.approx(minimum.loss, abs=1e-8)
    assert torch.equal(active_kinks_at(found.theta, x, y), active_kinks_at(minimum.theta, x, y))


def test_the_tangent_predictor_lands_next_to_the_next_minimum(jammed):
    """From the smoothed minimum at beta = 1e6 next to the jammed minimum, the tangent predictor
    in u = 1 / beta (each active kink's z is logit(s) u to first order) lands where the
    gradient at beta = 1e7 is a thousand times smaller than where it started."""
    x, y, minimum = jammed
    at_1e6 = torch.as_tensor(follow_softplus_homotopy(minimum.theta, x, y, DEEP, loss="quadratic_hinge", betas=(1e6,),
                                                      newton_steps=30).theta)
    smoothed = functools.partial(smooth_loss, x=torch.as_tensor(x), y=torch.as_tensor(y, dtype=torch.float64),
                                 arch=DEEP, loss="quadratic_hinge")
    gauge = _GaugeFixed(DEEP, _incoming_norms(at_1e6, DEEP))
    predicted = _predicted(smoothed, at_1e6, gauge, 1e6, 1e7)
    norms = [float(_value_and_gradient(functools.partial(smoothed, beta=1e7), point)[1].norm())
             for point in (at_1e6, predicted)]
    assert norms[1] < 1e-3 * norms[0]


def test_the_gauge_leaves_the_relu_network_unchanged(jammed):
    """Rescaling each hidden unit to given incoming norms (layer by layer) is a ReLU symmetry:
    the norms are met and the ReLU loss is the same to round-off."""
    x, y, minimum = jammed
    theta = torch.as_tensor(minimum.theta)
    generator = np.random.default_rng(5)
    norms = [norm * torch.as_tensor(generator.uniform(0.5, 2, size=norm.shape))
             for norm in _incoming_norms(theta, DEEP)]
    moved = _GaugeFixed(DEEP, norms)(theta)
    for found, wanted in zip(_incoming_norms(moved, DEEP), norms):
        torch.testing.assert_close(found, wanted, rtol=1e-14, atol=0)
    relu = functools.partial(smooth_loss, x=torch.as_tensor(x), y=torch.as_tensor(y, dtype=torch.float64), arch=DEEP,
                             beta=np.inf, loss="quadratic_hinge")
    assert float(relu(moved)) == pytest.approx(float(relu(theta)), rel=1e-13)
    assert float((moved - theta).norm()) > 1.0


def test_an_unconverged_homotopy_end_is_refused(jammed):
    """Displaced by 0.05 and given two Newton steps a beta, the homotopy ends far from any
    minimum: the certificate refuses it (it judges the end point, whatever proposed it)."""
    x, y, minimum = jammed
    start = minimum.theta + 0.05 * np.random.default_rng(1).normal(size=DEEP.n_params)
    end = follow_softplus_homotopy(start, x, y, DEEP, loss="quadratic_hinge", betas=(1e3, 1e8), newton_steps=2)
    assert end.grad_norm[-1] > 1e-6
    # The first beta spent its steps off its minimum: the path is lost, the larger beta not run.
    assert end.betas.tolist() == [1e3] and end.iterations.tolist() == [2]
    assert not certify_kink_minimum(end.theta, x, y, DEEP, loss="quadratic_hinge", grad_tol=1e-10).certified


def test_a_satisfiable_training_set_ends_off_every_kink(jammed):
    """P = 100 points for N = 190 weights (SAT: zero loss reachable): the homotopy from the
    P = 520 minimum fits them all, and no minimum on kinks is certified there."""
    x, y, minimum = jammed
    end = follow_softplus_homotopy(minimum.theta, x[:100], y[:100], DEEP, loss="quadratic_hinge", betas=(1e3, 1e5),
                                   newton_steps=20)
    found = certify_kink_minimum(end.theta, x[:100], y[:100], DEEP, loss="quadratic_hinge", grad_tol=1e-10)
    assert not found.certified and found.reason == "on no kink"


def test_a_candidate_above_the_loss_it_is_held_to_is_refused(jammed):
    """The certificate holds a candidate to ``no_higher_than`` (the finish's end point's loss
    in the jamming sweep): the certified minimum itself, held below its own loss, is refused."""
    x, y, minimum = jammed
    found = certify_kink_minimum(minimum.theta, x, y, DEEP, loss="quadratic_hinge", grad_tol=1e-10,
                                 no_higher_than=minimum.loss - 1e-9)
    assert not found.certified and "higher loss" in found.reason


def test_a_schedule_that_does_not_increase_is_refused():
    with pytest.raises(ValueError, match="increasing"):
        follow_softplus_homotopy(np.zeros(DEEP.n_params), np.zeros((3, 9)), np.ones(3), DEEP, loss="quadratic_hinge",
                                 betas=(1e4, 1e3))
