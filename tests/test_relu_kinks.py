"""Minima on ReLU kinks: the Clarke stationarity measure, its multipliers, and runs certified by it."""

from pathlib import Path

import numpy as np
import pytest
import torch

from basins.data import prepare_dataset, train_test_arrays
from basins.jamming import sweep_jamming
from basins.labels import CONVERGED, UNSAT
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.losses import sample_losses
from basins.landscapes.networks import forward
from basins.landscapes.relu_kinks import (
    _KinkedLoss,
    _once,
    _preactivation_jacobian,
    _same_kinks,
    active_kinks,
    balancing_factors,
    certify_kink_minimum,
    clarke_stationarity,
    kinked_forward,
    rescaled,
    unit_norms,
)

KINKS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # two kink normals in three parameters


@pytest.mark.parametrize(
    "gradient, convexity, norm, multipliers, certified",
    [
        ([-0.3, -0.6, 0.0], [1.0, 1.0], 0.0, [0.3, 0.6], True),  # 0 inside the subdifferential
        ([0.3, -0.6, 0.0], [1.0, 1.0], 0.3, [-0.3, 0.6], False),  # the first kink would need s < 0
        ([-1.5, -0.6, 0.0], [1.0, 1.0], 0.5, [1.5, 0.6], False),  # ... s > 1
        ([0.3, -0.6, 0.0], [-1.0, 1.0], 0.0, [0.3, 0.6], False),  # stationary, but a concave kink
        ([-0.3, -0.6, 0.2], [1.0, 1.0], 0.2, [0.3, 0.6], False),  # a slope along the kinks
    ],
)
def test_clarke_stationarity_of_hand_made_subgradients(gradient, convexity, norm, multipliers, certified):
    found_norm, found_multipliers, margin = clarke_stationarity(np.array(gradient), KINKS, np.array(convexity))
    assert found_norm == pytest.approx(norm, abs=1e-12)
    np.testing.assert_allclose(found_multipliers, multipliers, atol=1e-12)
    assert (margin > 0 and found_norm <= 1e-10) == certified


def test_a_multiplier_within_round_off_of_the_boundary_is_no_margin():
    _, _, margin = clarke_stationarity(np.array([-1e-17, -0.6, 0.0]), KINKS, np.ones(2))
    assert margin == 0.0


def test_an_active_set_needs_a_gap():
    distances = torch.tensor([[1e-14, 3e-7], [2e-12, 1.0]])
    np.testing.assert_array_equal(active_kinks(distances, reach=1e-10, gap=100), [[True, False], [True, False]])
    assert active_kinks(distances, reach=1e-8, gap=100) is None  # 3e-7 lies within 100 x 1e-8
    np.testing.assert_array_equal(active_kinks(distances, reach=1e-6, gap=100), [[True, True], [True, False]])
    with pytest.raises(ValueError):
        active_kinks(distances, reach=1e-6, gap=1.0)


ARCH = Architecture(4, 1, 1, 4, "relu", True)


@pytest.fixture(scope="module")
def kinked_runs():
    """Two UNSAT sizes of a d = h = 4 ReLU network on random labels, which BFGS leaves on kinks."""
    data = prepare_dataset(kind="random_patterns", n_train=80, n_test=5, seed=3, n_features=4, normalize=True)
    pool = train_test_arrays(data)
    n_train = np.array([60, 80])
    theta0 = initial_parameters(ARCH, np.arange(2), seed=3, init="orthogonal")
    sweep = sweep_jamming(ARCH, *pool, theta0, n_train, seed=3, lr=0.01, lr_decay_every=500, lr_decay_factor=0.5,
                          max_steps=1000, grad_tol=1e-10, finish_iterations=300, device="cpu", progress_every_s=1e9)
    return sweep, pool


def member_loss(theta, x, y):
    """The real network's mean quadratic hinge loss ``(point,)`` at points ``(point, param)``."""
    return sample_losses(forward(torch.as_tensor(theta), torch.as_tensor(x), ARCH), torch.as_tensor(y, dtype=torch.float64),
                         loss="quadratic_hinge").mean(1)


def test_runs_left_on_kinks_are_certified_minima_and_brute_force_agrees(kinked_runs):
    sweep, (x_pool, y_pool, _, _) = kinked_runs
    assert (sweep["status"].values == CONVERGED).all() and (sweep["phase"].values == UNSAT).all()
    assert (sweep["n_active_kinks"].values > 0).all() and (sweep["kink_multiplier_margin"].values > 0).all()
    assert (sweep["grad_norm"].values <= 1e-10).all()  # the Clarke measure; the gradient itself jumps there
    assert (sweep["kink_reduced_lowest_eigenvalue"].values > 0).all()
    generator = np.random.default_rng(0)
    for member, n_train in enumerate(sweep["n_train"].values):
        x, y = x_pool[:n_train], y_pool[:n_train]
        point = sweep["final_theta"].values[member]
        at_point = float(member_loss(point[None], x, y)[0])
        directions = generator.normal(size=(4000, ARCH.n_params))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        median_rise = []
        for radius in (1e-7, 1e-5, 1e-3):
            rise = member_loss(point + radius * directions, x, y).numpy() - at_point
            assert rise.min() > 64 * np.finfo(float).eps * (1 + at_point)  # no direction descends
            median_rise.append(np.median(rise))
        # It rises linearly (x 100 per factor 100 in radius), as off kinks only: a smooth minimum rises as r^2.
        assert 50 < median_rise[2] / median_rise[1] < 200 and 50 < median_rise[1] / median_rise[0] < 200


def test_a_point_moved_along_its_kinks_is_refused_unpolished_and_polished_back(kinked_runs):
    sweep, (x_pool, y_pool, _, _) = kinked_runs
    n_train = int(sweep["n_train"].values[0])
    x, y = x_pool[:n_train], y_pool[:n_train]
    minimum = sweep["final_theta"].values[0]
    objective = _KinkedLoss(ARCH, torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float64), "quadratic_hinge", 1.0, 0.0)
    active = active_kinks(objective.felt_distances(torch.as_tensor(minimum)), reach=1e-10, gap=100)
    tangent = objective.along_kinks(torch.as_tensor(minimum), active)[-1].numpy()
    moved = minimum + 1e-3 * tangent[:, 0]  # still on the same kinks, no longer at the minimum
    options = dict(loss="quadratic_hinge", grad_tol=1e-10)
    refused = certify_kink_minimum(moved, x, y, ARCH, newton_steps=0, **options)
    assert not refused.certified and refused.subgradient_norm > 1e-6
    back = certify_kink_minimum(moved, x, y, ARCH, **options)
    assert back.certified
    np.testing.assert_allclose(back.loss, float(member_loss(minimum[None], x, y)[0]), rtol=1e-12)


def test_a_point_off_every_kink_is_left_to_the_gradient_test(kinked_runs):
    _, (x_pool, y_pool, _, _) = kinked_runs
    start = initial_parameters(ARCH, np.arange(1), seed=5, init="orthogonal")[0]
    found = certify_kink_minimum(start, x_pool[:60], y_pool[:60], ARCH, loss="quadratic_hinge", grad_tol=1e-10)
    assert not found.certified and found.n_active == 0 and found.reason == "on no kink"
    with pytest.raises(ValueError):
        certify_kink_minimum(start, x_pool[:60], y_pool[:60], ARCH, loss="hinge", grad_tol=1e-10)
    with pytest.raises(ValueError):
        certify_kink_minimum(start, x_pool[:60], y_pool[:60], Architecture(4, 1, 1, 4, "tanh", True),
                             loss="quadratic_hinge", grad_tol=1e-10)
    wide = Architecture(4, 1, 1, 200, "relu", True)  # 1201 parameters: dense Hessians too large
    with pytest.raises(ValueError):
        certify_kink_minimum(np.zeros(wide.n_params), x_pool[:60], y_pool[:60], wide, loss="quadratic_hinge",
                             grad_tol=1e-10)


def test_a_saddle_along_the_kinks_is_refused(kinked_runs):
    """A referee's construction: a certified minimum with one more hidden unit, on at every
    point, output weight 0, incoming weights orthogonal to sum_s l'_s x_s. The loss, its
    subgradients and the multipliers are unchanged, but the Hessian block (v, w) of that unit is
    [[+, g], [g, 0]] with g != 0: a saddle, which only the second-order test along the kinks sees."""
    sweep, (x_pool, y_pool, _, _) = kinked_runs
    n_train = int(sweep["n_train"].values[0])
    x, y = x_pool[:n_train], y_pool[:n_train]
    point = sweep["final_theta"].values[0]
    (w_in, b_in), (w_out, b_out) = ARCH.layer_slices
    weights, biases = point[w_in].reshape(ARCH.width, ARCH.n_inputs), point[b_in]
    output = np.maximum(x @ weights.T + biases, 0) @ point[w_out] + point[b_out]
    force = -y * np.maximum(1 - y * output, 0) / n_train  # dL/df per point
    pull = force @ x
    extra = np.random.default_rng(1).normal(size=ARCH.n_inputs)
    extra -= pull * (extra @ pull) / (pull @ pull)
    extra /= np.linalg.norm(extra)
    wider = Architecture(4, 1, 1, ARCH.width + 1, "relu", True)
    saddle = np.concatenate([np.vstack([weights, extra]).ravel(), np.append(biases, np.abs(x @ extra).max() + 1.0),
                             np.append(point[w_out], 0.0), point[b_out]])
    found = certify_kink_minimum(saddle, x, y, wider, loss="quadratic_hinge", grad_tol=1e-10)
    assert found.multiplier_margin > 0 and found.subgradient_norm <= 1e-10  # first order: as the minimum
    assert found.reduced_lowest_eigenvalue < 0 and not found.certified and "saddle" in found.reason
    # The same network with another unit rescaled (the session-32 referee: at a = 1e4 its
    # Hessian's largest eigenvalue grew by a^2 and the saddle passed as flat, and certified).
    for scale in (1e4, 1e5):
        factor = torch.ones(wider.width, dtype=torch.float64)
        factor[1] = 1 / scale
        same = rescaled(torch.as_tensor(saddle), wider, [factor]).numpy()
        assert float(member_loss_of(wider, same[None], x, y)[0]) == pytest.approx(found.loss, rel=1e-12)
        again = certify_kink_minimum(same, x, y, wider, loss="quadratic_hinge", grad_tol=1e-10)
        assert not again.certified and "saddle" in again.reason
        assert again.reduced_lowest_eigenvalue == pytest.approx(found.reduced_lowest_eigenvalue, rel=1e-6)


def test_balancing_gives_the_same_network_with_equal_norms_in_and_out():
    rng = np.random.default_rng(5)
    theta = torch.as_tensor(rng.normal(size=DEEP.n_params))
    factors = balancing_factors(theta, DEEP)
    balanced = rescaled(theta, DEEP, factors)
    x = torch.as_tensor(rng.normal(size=(20, DEEP.n_inputs)))
    torch.testing.assert_close(forward(balanced[None], x, DEEP), forward(theta[None], x, DEEP), rtol=1e-12, atol=1e-12)
    for layer in range(DEEP.depth):
        incoming, outgoing = unit_norms(balanced, DEEP, layer)
        torch.testing.assert_close(incoming, outgoing, rtol=1e-10, atol=0.0)
    torch.testing.assert_close(rescaled(balanced, DEEP, [1 / f for f in factors]), theta, rtol=1e-12, atol=1e-12)


DEEP = Architecture(4, 1, 2, 4, "relu", True)


def member_loss_of(arch, theta, x, y):
    return sample_losses(forward(torch.as_tensor(theta), torch.as_tensor(x), arch),
                         torch.as_tensor(y, dtype=torch.float64), loss="quadratic_hinge").mean(1)


def test_a_minimum_carried_into_two_hidden_layers_is_certified_and_brute_force_agrees(kinked_runs):
    """A certified one-layer minimum passed through a second layer that is on at every point
    (identity weights, bias 10, the output's bias shifted back): the same function, now with
    the extra layer's weights free. The certificate must handle two layers' Jacobians,
    rescalings and felt kinks; the brute force is the known answer."""
    sweep, (x_pool, y_pool, _, _) = kinked_runs
    (w_in, b_in), (w_out, b_out) = ARCH.layer_slices
    generator = np.random.default_rng(2)
    for member, n_train in enumerate(sweep["n_train"].values):
        x, y = x_pool[:n_train], y_pool[:n_train]
        shallow = sweep["final_theta"].values[member]
        deep = np.concatenate([shallow[w_in], shallow[b_in], np.eye(4).ravel(), np.full(4, 10.0), shallow[w_out],
                               shallow[b_out] - 10.0 * shallow[w_out].sum(keepdims=True)])
        at_point = float(member_loss_of(DEEP, deep[None], x, y)[0])
        assert at_point == pytest.approx(float(member_loss(shallow[None], x, y)[0]), rel=1e-13)
        found = certify_kink_minimum(deep, x, y, DEEP, loss="quadratic_hinge", grad_tol=1e-10)
        assert found.certified and found.n_active == sweep["n_active_kinks"].values[member]
        directions = generator.normal(size=(4000, DEEP.n_params))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        rises = [member_loss_of(DEEP, found.theta + radius * directions, x, y).numpy() - found.loss
                 for radius in (1e-7, 1e-5)]
        assert min(rise.min() for rise in rises) > 64 * np.finfo(float).eps * (1 + at_point)
        assert 50 < np.median(rises[1]) / np.median(rises[0]) < 200  # linear: off kinks only


@pytest.fixture(scope="module")
def on_curved_kinks():
    """A random two-layer network moved onto three second-layer kinks (curved: z = W2 relu(W1 x
    + b1) + b2 is bilinear in the weights) and two first-layer kinks, on five points."""
    data = prepare_dataset(kind="random_patterns", n_train=30, n_test=5, seed=4, n_features=4, normalize=True)
    x, y, _, _ = train_test_arrays(data)
    theta = torch.as_tensor(initial_parameters(DEEP, np.arange(1), seed=4, init="orthogonal")[0])
    theta = theta + 0.2 * torch.as_tensor(np.random.default_rng(4).normal(size=DEEP.n_params))  # biases off 0
    objective = _KinkedLoss(DEEP, torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float64), "quadratic_hinge", 1.0, 0.0)
    distances = objective.felt_distances(theta)
    # Points whose first layer is off share their second-layer kinks (z = b2 on all of them): left out.
    first_layer_off = (kinked_forward(theta, objective.x, DEEP)[0][0] <= 0).all(1)
    active, taken = torch.zeros_like(distances, dtype=torch.bool), set(torch.nonzero(first_layer_off)[:, 0].tolist())
    n_off = len(taken)
    for layer, count in ((1, 3), (0, 2)):  # the nearest kinks, each on a point of its own
        for flat in torch.argsort(distances[layer].flatten()).tolist():
            sample, unit = divmod(flat, DEEP.width)
            if sample not in taken and len(taken) < n_off + count + (3 if layer == 0 else 0):
                active[layer, sample, unit] = True
                taken.add(sample)
    return objective, objective.onto_kinks(theta, active), active


def test_onto_kinks_reaches_curved_kinks(on_curved_kinks):
    objective, point, active = on_curved_kinks
    distances = objective.felt_distances(point)
    assert active.sum() == 5 and active[1].sum() == 3
    assert distances[active].max() < 1e-14 and distances[~active].min() > 1e-3


def test_the_hessian_along_curved_kinks_is_the_second_difference_along_them(on_curved_kinks):
    """The loss along curves on M (each point moved back onto the kinks) bends as the tangent
    projection of the Hessian of L^s, s the multipliers; L_0's Hessian misses M's curvature."""
    objective, point, active = on_curved_kinks
    _, gradient, constraints, _, tangent = objective.along_kinks(point, active)
    groups = _same_kinks(constraints, active)
    _, multipliers = objective.convexities_and_multipliers(point, active, groups, gradient, _once(constraints, groups))
    reduced = tangent.T @ objective.hessian(point, active, multipliers[groups]) @ tangent
    without_curvature = tangent.T @ objective.hessian(point, active) @ tangent
    step = 1e-4
    for direction in tangent.T[:12]:
        ahead, behind = (objective.onto_kinks(point + sign * step * direction, active) for sign in (1, -1))
        second_difference = (float(objective(ahead)) - 2 * float(objective(point)) + float(objective(behind))) / step**2
        coordinates = tangent.T @ direction
        assert second_difference == pytest.approx(float(coordinates @ reduced @ coordinates), abs=1e-5)
    assert (without_curvature - reduced).abs().max() > 1e-3


def test_a_jammed_minimum_with_kinks_in_two_layers_is_certified_and_brute_force_agrees():
    """Depth 2 (d = h = 9, N = 190), random labels, P = 520: the run of the default sweep (seed 1)
    that Adam and BFGS left undecided (gradient 0.10), carried by a softplus-smoothing homotopy
    (beta 1e3 -> 1e7, session 30's probe) onto 55 kinks, three of its points with kinks in both
    layers: certified with each lower kink's convexity taken through the active units above it.
    The brute force is the known answer: the loss rises along every random direction, linearly."""
    data = prepare_dataset(kind="random_patterns", n_train=520, n_test=10, seed=1, n_features=9, normalize=True)
    x, y, _, _ = train_test_arrays(data)
    arch = Architecture(9, 1, 2, 9, "relu", True)
    theta = np.load(Path(__file__).parent / "data" / "depth2_jammed_on_two_layers_of_kinks.npy")
    found = certify_kink_minimum(theta, x, y, arch, loss="quadratic_hinge", grad_tol=1e-10)
    assert found.certified and found.n_active == 55 and found.subgradient_norm < 1e-12
    objective = _KinkedLoss(arch, torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float64), "quadratic_hinge", 1.0, 0.0)
    active = objective.felt_distances(torch.as_tensor(found.theta)) < 1e-9
    assert int((active.any(2).sum(0) > 1).sum()) == 3  # points with kinks in both layers
    directions = np.random.default_rng(3).normal(size=(3000, arch.n_params))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    rises = [member_loss_of(arch, found.theta + radius * directions, x, y).numpy() - found.loss for radius in (1e-7, 1e-5)]
    assert min(rise.min() for rise in rises) > 64 * np.finfo(float).eps
    assert 50 < np.median(rises[1]) / np.median(rises[0]) < 200  # linear: off kinks only
    # Held to a gradient test below its round-off, the same point is refused for that alone:
    # the reason names the failing test, not a margin it still resolves.
    strict = certify_kink_minimum(theta, x, y, arch, loss="quadratic_hinge", grad_tol=1e-20)
    assert not strict.certified and strict.multiplier_margin > 0
    assert strict.reason.startswith("not a minimum: Clarke stationarity measure") and "margin" not in strict.reason


def test_a_kink_surface_shared_with_a_point_on_a_lower_kink_is_not_merged():
    """The session-30 referee's counterexample (2-2-2-1 ReLU network, MSE, 42 points): a
    layer-2 unit's kink z = b on two points, one of them also on a layer-1 kink, where z = b +
    w relu(q_1). Merged into one surface their convexities summed hid the one point's negative
    part and a non-minimum was certified; the loss falls linearly along the layer-1 kink's
    normal (the known answer, brute force). Kept apart, the set is refused."""
    stored = np.load(Path(__file__).parent / "data" / "merged_kink_surface_not_a_minimum.npz")
    arch = Architecture(2, 1, 2, 2, "relu", True)
    theta, x, y = stored["theta"], stored["x"], stored["y"]
    found = certify_kink_minimum(theta, x, y, arch, loss="mse", grad_tol=1e-10)
    assert not found.certified and "linearly dependent" in found.reason
    w_in, b_in = arch.layer_slices[0]
    normal = np.zeros(arch.n_params)
    normal[w_in.start : w_in.start + 2], normal[b_in.start] = x[0], 1.0  # grad z of layer 1, unit 0, point 0

    def loss(point):
        output = forward(torch.as_tensor(point)[None], torch.as_tensor(x), arch)[0, :, 0].numpy()
        return 0.5 * np.mean((output - y) ** 2)

    falls = [loss(theta + step * normal / normal.dot(normal)) - loss(theta) for step in (1e-8, 1e-7, 1e-6)]
    assert max(falls) < 0 and falls[2] / falls[0] == pytest.approx(100, rel=1e-2)  # linearly


def test_the_preactivation_jacobian_is_forward_mode_differentiation():
    """The chain-rule Jacobian of every hidden pre-activation against torch's forward-mode
    autodiff of the same network, three hidden layers, with and without active units."""
    arch = Architecture(3, 1, 3, 5, "relu", True)
    generator = np.random.default_rng(8)
    theta = torch.as_tensor(generator.normal(size=arch.n_params))
    x = torch.as_tensor(generator.normal(size=(7, 3)))
    active = torch.as_tensor(generator.random((3, 7, 5)) < 0.2)
    for mask in (None, active):
        expected = torch.func.jacfwd(lambda t: kinked_forward(t, x, arch, mask)[0])(theta)
        torch.testing.assert_close(_preactivation_jacobian(theta, x, arch, mask), expected, rtol=1e-12, atol=1e-12)


def test_kinks_shared_by_points_whose_first_layer_is_off_count_once(on_curved_kinks):
    """On every point whose first layer is off, a second-layer unit's pre-activation is its bias:
    with that bias at 0 all those points sit on one kink surface (identical gradients, the
    referee's "linearly dependent" refusals). They are merged into one kink of summed
    convexity: the certificate reaches a verdict on them instead of refusing the set."""
    objective, point, _ = on_curved_kinks
    (_, _), (_, b_2), _ = DEEP.layer_slices
    shared = point + 1e-3 * torch.as_tensor(np.random.default_rng(9).normal(size=DEEP.n_params))  # off its kinks
    shared[b_2.start] = 0.0  # unit 0 of the second layer: z = 0 on every silenced point
    silenced = (kinked_forward(shared, objective.x, DEEP)[0][0] < -1e-3).all(1)
    assert silenced.sum() >= 2
    active = torch.zeros(DEEP.depth, len(objective.x), DEEP.width, dtype=torch.bool)
    active[1, silenced, 0] = True
    groups = _same_kinks(objective.kink_gradients(shared, active), active)
    assert groups.max() == 0  # one surface
    found = certify_kink_minimum(shared.numpy(), objective.x.numpy(), objective.y.numpy(), DEEP,
                                 loss="quadratic_hinge", grad_tol=1e-10, reaches=(1e-12,))
    assert found.n_active == int(silenced.sum()) and "linearly dependent" not in found.reason


class _QuarticAlongFirstAxis:
    """A stand-in for the kinked loss on its manifold: ``sign * theta_0^4``, already on its kinks."""

    def __init__(self, sign):
        self.sign = sign

    def __call__(self, theta):
        return self.sign * theta[0] ** 4

    def onto_kinks(self, theta, active):
        return theta


@pytest.mark.parametrize("sign, descends", [(-1.0, True), (1.0, False)])
def test_a_flat_direction_is_probed_beyond_the_second_order(sign, descends):
    """Flat to second order at 0 either way; the probes find the quartic's fall, and none where
    it rises (the known answer)."""
    from basins.landscapes.relu_kinks import _descends_along

    flat = torch.eye(3, dtype=torch.float64)[:, :2]  # the first axis and a truly flat one
    assert _descends_along(_QuarticAlongFirstAxis(sign), torch.zeros(3, dtype=torch.float64), None, flat, 0.0) is descends
