import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment, minimize_scalar
from scipy.special import erf

from basins.landscapes.architecture import Architecture
from basins.landscapes.symmetry import (
    image, nearest_image, nearest_image_distance, nearest_image_elements, nearest_images,
)


def forward(theta, arch, x):
    """Plain numpy forward pass of one network, ``(sample, output)``."""
    activate = {"tanh": np.tanh, "erf": erf, "relu": lambda z: np.maximum(z, 0), "linear": lambda z: z}
    hidden = x
    layers = zip(arch.layer_shapes, arch.layer_slices)
    for index, ((fan_in, fan_out), (w_slice, b_slice)) in enumerate(layers):
        hidden = hidden @ theta[w_slice].reshape(fan_out, fan_in).T
        if b_slice is not None:
            hidden = hidden + theta[b_slice]
        if index < arch.depth:
            hidden = activate[arch.activation](hidden)
    return hidden


def random_element(arch, rng):
    """A random group element: permutations and signs (odd) or scales in [0.3, 3] (ReLU)."""
    orders = [rng.permutation(arch.width) for _ in range(arch.depth)]
    if arch.activation == "relu":
        factors = [rng.uniform(0.3, 3.0, arch.width) for _ in range(arch.depth)]
    else:
        factors = [rng.choice([-1.0, 1.0], arch.width) for _ in range(arch.depth)]
    return orders, factors


def pair(arch, rng, related):
    """A reference and a point: a perturbed random image of the reference, or an unrelated point."""
    reference = rng.standard_normal(arch.n_params)
    if not related:
        return reference, rng.standard_normal(arch.n_params)
    perturbed = reference + 0.1 * rng.standard_normal(arch.n_params)
    orders, factors = random_element(arch, rng)
    while arch.depth and (orders[0] == np.arange(arch.width)).all():  # so theta is not the nearest
        orders[0] = rng.permutation(arch.width)
    return reference, image(perturbed, arch, orders, factors)


def signed_permutations(width):
    return [
        (np.array(order), np.array(signs))
        for order in itertools.permutations(range(width))
        for signs in itertools.product([1.0, -1.0], repeat=width)
    ]


def brute_force_odd(reference, theta, arch):
    """Smallest distance over every image, all hidden layers' groups enumerated."""
    elements = list(itertools.product(signed_permutations(arch.width), repeat=arch.depth))
    orders = [np.array([element[layer][0] for element in elements]) for layer in range(arch.depth)]
    signs = [np.array([element[layer][1] for element in elements]) for layer in range(arch.depth)]
    images = image(np.broadcast_to(theta, (len(elements), arch.n_params)), arch, orders, signs)
    return np.linalg.norm(images - reference, axis=1).min()


def best_scale(a_in, a_out, b_in, b_out):
    """Pair cost minimized over c > 0 by a grid on log c, then bounded Brent around the best point."""

    def cost(log_c):
        c = np.exp(np.asarray(log_c))[..., None]
        return ((a_in - c * b_in) ** 2).sum(-1) + ((a_out - b_out / c) ** 2).sum(-1)

    grid = np.linspace(-12, 12, 2401)
    start = grid[np.argmin(cost(grid))]
    bounds = (start - 0.02, start + 0.02)
    result = minimize_scalar(cost, bounds=bounds, method="bounded", options={"xatol": 1e-12})
    return min(result.fun, cost(start))


def brute_force_relu(reference, theta, arch):
    """Depth 1: every permutation, each matched pair's scale minimized numerically."""
    (fan_in, width), (w_in, b_in) = arch.layer_shapes[0], arch.layer_slices[0]
    (_, n_out), (w_out, b_out) = arch.layer_shapes[1], arch.layer_slices[1]

    def units(v):
        bias = v[b_in][:, None] if arch.bias else np.zeros((width, 0))
        return np.concatenate([v[w_in].reshape(width, fan_in), bias], axis=1), v[w_out].reshape(n_out, width).T

    (a_in, a_out), (t_in, t_out) = units(reference), units(theta)
    table = np.array(
        [[best_scale(a_in[i], a_out[i], t_in[j], t_out[j]) for j in range(width)] for i in range(width)]
    )
    best = min(table[np.arange(width), list(order)].sum() for order in itertools.permutations(range(width)))
    output_bias = ((reference[b_out] - theta[b_out]) ** 2).sum() if arch.bias else 0.0
    return np.sqrt(best + output_bias)


@pytest.mark.parametrize("activation", ["tanh", "erf", "relu"])
@pytest.mark.parametrize("width", [2, 3, 4, 5])
@pytest.mark.parametrize("n_outputs, bias", [(1, True), (2, True), (2, False)])
def test_one_hidden_layer_matches_brute_force_over_every_image(activation, width, n_outputs, bias):
    arch = Architecture(n_inputs=3, n_outputs=n_outputs, depth=1, width=width, activation=activation, bias=bias)
    rng = np.random.default_rng([width, n_outputs, len(activation), bias])
    brute_force = brute_force_relu if activation == "relu" else brute_force_odd
    for related in (True, False):
        reference, theta = pair(arch, rng, related)
        nearest, exact = nearest_image(reference, theta, arch)
        assert exact
        expected = brute_force(reference, theta, arch)
        np.testing.assert_allclose(np.linalg.norm(reference - nearest), expected, rtol=1e-9)
        if related:  # the nearest image is not the identity here
            assert expected < 0.5 * np.linalg.norm(reference - theta)


@pytest.mark.parametrize("width, bias", [(2, True), (3, True), (3, False)])
def test_two_hidden_layers_tanh_match_brute_force_over_both_groups(width, bias):
    arch = Architecture(n_inputs=2, n_outputs=2, depth=2, width=width, activation="tanh", bias=bias)
    rng = np.random.default_rng([width, bias])
    for related in (True, False, False):
        reference, theta = pair(arch, rng, related)
        nearest, exact = nearest_image(reference, theta, arch)
        assert exact
        expected = brute_force_odd(reference, theta, arch)
        np.testing.assert_allclose(np.linalg.norm(reference - nearest), expected, rtol=1e-9)


def test_relu_units_without_inputs_or_outputs_reach_their_infimum():
    arch = Architecture(n_inputs=2, n_outputs=2, depth=1, width=3, activation="relu")
    rng = np.random.default_rng(7)
    reference, theta = pair(arch, rng, related=False)
    (w_in, b_in), (w_out, _) = arch.layer_slices[0], arch.layer_slices[1]
    theta[w_in.start : w_in.start + 2] = 0.0  # unit 0 of theta: no incoming weights ...
    theta[b_in.start] = 0.0  # ... nor bias
    outgoing = theta[w_out].reshape(2, 3)
    outgoing[:, 1] = 0.0  # unit 1 of theta: no outgoing weights
    theta[w_out] = outgoing.ravel()
    nearest, exact = nearest_image(reference, theta, arch)
    assert exact and np.isfinite(nearest).all()
    # The numerical brute force reaches c = e^(+-12) only, so it cannot beat the exact infimum.
    distance = np.linalg.norm(reference - nearest)
    expected = brute_force_relu(reference, theta, arch)
    assert distance <= expected * (1 + 1e-9)
    np.testing.assert_allclose(distance, expected, rtol=1e-6)
    x = rng.standard_normal((20, 2))
    np.testing.assert_allclose(forward(nearest, arch, x), forward(theta, arch, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "outgoing, incoming, expected",
    [
        # Every pair's infimum is reached only as c -> infinity (unit 0) or c -> 0 (unit 1).
        (2.0, -1.0, 2 * (1 + 0.25 + 1)),
        # Now attained at finite c: unit 0 at c = C / D, unit 1 at c = B / A.
        (-2.0, 1.0, (1.25 + 1 - 1) + (1.25 - 1.5**2 / 2 + 1)),
    ],
)
def test_relu_degenerate_units_known_infimum(outgoing, incoming, expected):
    arch = Architecture(n_inputs=1, n_outputs=1, depth=1, width=2, activation="relu")
    # layout: w1 (2, 1), b1 (2,), w2 (1, 2), b2 (1,); both reference units are (1, 0.5 | -1).
    reference = np.array([1.0, 1.0, 0.5, 0.5, -1.0, -1.0, 0.0])
    # theta's unit 0 has no incoming weights nor bias, unit 1 no outgoing weight.
    theta = np.array([0.0, incoming, 0.0, incoming, outgoing, 0.0, 0.0])
    nearest, exact = nearest_image(reference, theta, arch)
    assert exact and np.isfinite(nearest).all()
    np.testing.assert_allclose(((reference - nearest) ** 2).sum(), expected, rtol=1e-12)
    x = np.linspace(-3, 3, 13)[:, None]
    np.testing.assert_allclose(forward(nearest, arch, x), forward(theta, arch, x), rtol=1e-10, atol=1e-10)


CASES = [
    (activation, depth, width)
    for activation in ("tanh", "erf", "linear", "relu")
    for depth, width in ((1, 3), (1, 7), (2, 3), (3, 2), (3, 4))
]


@pytest.mark.parametrize("activation, depth, width", CASES)
def test_images_are_never_farther_than_theta_or_its_random_images(activation, depth, width):
    arch = Architecture(n_inputs=3, n_outputs=2, depth=depth, width=width, activation=activation)
    rng = np.random.default_rng([depth, width, len(activation)])
    x = rng.standard_normal((16, 3))
    for related in (True, False, False):
        reference, theta = pair(arch, rng, related)
        nearest, exact = nearest_image(reference, theta, arch)
        # Depth 3 at width 4 is too large to enumerate (384^2 lower elements): coordinate descent.
        assert exact == (depth == 1 or (activation != "relu" and (depth, width) != (3, 4)))
        distance = np.linalg.norm(reference - nearest)
        assert distance <= np.linalg.norm(reference - theta) + 1e-12
        for _ in range(5):
            other = image(theta, arch, *random_element(arch, rng))
            assert distance <= np.linalg.norm(reference - other) + 1e-12
        np.testing.assert_allclose(forward(nearest, arch, x), forward(theta, arch, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("activation, depth", [(a, d) for a in ("tanh", "relu") for d in (1, 2, 3)])
def test_an_exact_image_is_found_back(activation, depth):
    arch = Architecture(n_inputs=3, n_outputs=2, depth=depth, width=4, activation=activation)
    rng = np.random.default_rng(depth)
    theta = rng.standard_normal((4, arch.n_params))
    references = np.array([image(t, arch, *random_element(arch, rng)) for t in theta])
    references[0] = theta[0]
    images, _ = nearest_images(references, theta, arch)
    np.testing.assert_allclose(images, references, atol=1e-12)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_nearest_image_s_group_element_moves_other_points_as_it_moves_theta(activation):
    arch = Architecture(n_inputs=3, n_outputs=2, depth=1, width=4, activation=activation)
    rng = np.random.default_rng(5)
    pairs = [pair(arch, rng, related) for related in (True, False, True)]
    references, thetas = (np.array(column) for column in zip(*pairs))
    element = nearest_image_elements(references, thetas, arch)
    np.testing.assert_allclose(image(thetas, arch, *element), nearest_images(references, thetas, arch)[0], atol=1e-12)
    # A second point moved by each row's element: the element is known, so is its image.
    known = [random_element(arch, rng) for _ in range(3)]
    others = rng.standard_normal(thetas.shape)
    found = nearest_image_elements(np.array([image(r, arch, *e) for r, e in zip(thetas, known)]), thetas, arch)
    np.testing.assert_allclose(image(others, arch, *found),
                               np.array([image(o, arch, *e) for o, e in zip(others, known)]), atol=1e-9)


def test_group_elements_are_refused_beyond_one_hidden_layer():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=2, width=3, activation="tanh")
    theta = np.zeros((1, arch.n_params))
    with pytest.raises(ValueError, match="at most one hidden layer"):
        nearest_image_elements(theta, theta, arch)


def test_coordinate_descent_runs_where_the_group_is_too_large():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=2, width=3, activation="tanh")
    reference, theta = pair(arch, np.random.default_rng(3), related=True)
    nearest, exact = nearest_image(reference, theta, arch, max_exhaustive=10)
    assert not exact
    exhaustive, _ = nearest_image(reference, theta, arch)
    # The perturbed image is found back by the descent too.
    distance, expected = (np.linalg.norm(reference - point) for point in (nearest, exhaustive))
    np.testing.assert_allclose(distance, expected, rtol=1e-12)


@pytest.mark.parametrize("activation, depth", [("tanh", 1), ("relu", 1), ("erf", 2), ("relu", 2)])
def test_rows_match_single_pairs_and_non_finite_rows_give_nan(activation, depth):
    arch = Architecture(n_inputs=2, n_outputs=1, depth=depth, width=3, activation=activation)
    rng = np.random.default_rng(11)
    pairs = [pair(arch, rng, related) for related in (True, False, True, False)]
    references, thetas = (np.array(column) for column in zip(*pairs))
    thetas[2, 0] = np.nan
    images, exact = nearest_images(references, thetas, arch)
    assert np.isnan(images[2]).all() and not exact[2]
    for row in (0, 1, 3):
        single, single_exact = nearest_image(references[row], thetas[row], arch)
        np.testing.assert_allclose(images[row], single, rtol=1e-12, atol=1e-12)
        assert exact[row] == single_exact
    distance = nearest_image_distance(references, thetas, arch)
    assert np.isnan(distance[2])
    np.testing.assert_allclose(distance[[0, 1, 3]], np.linalg.norm(references - images, axis=1)[[0, 1, 3]])


def test_depth_zero_has_no_symmetry():
    arch = Architecture(n_inputs=3, n_outputs=2, depth=0, width=0)
    reference, theta = pair(arch, np.random.default_rng(0), related=False)
    nearest, exact = nearest_image(reference, theta, arch)
    assert exact
    np.testing.assert_array_equal(nearest, theta)


def align_incoming_only(reference, theta, arch):
    """The alignment the study used before (Hungarian matching on incoming weights and bias only),
    kept here to show the defect it had."""
    w_in, b_in = arch.layer_slices[0]
    width, fan_in = arch.width, arch.n_inputs
    units = lambda t: np.c_[t[w_in].reshape(width, fan_in), t[b_in]]  # noqa: E731
    cost = ((units(reference)[:, None] - units(theta)[None]) ** 2).sum(-1)
    flipped = ((units(reference)[:, None] + units(theta)[None]) ** 2).sum(-1)
    sign = np.where(flipped < cost, -1.0, 1.0)
    _, order = linear_sum_assignment(np.minimum(cost, flipped))
    sign = sign[np.arange(width), order]
    return image(theta, arch, [order], [sign])


def test_input_side_alignment_of_minima_is_not_the_nearest_image():
    # Two tanh units with near-equal incoming weights but opposite outgoing weights: matching
    # on incoming weights alone swaps them and pays for the outgoing ones.
    arch = Architecture(n_inputs=1, n_outputs=1, depth=1, width=2, activation="tanh")
    # layout: w1 (2, 1), b1 (2,), w2 (1, 2), b2 (1,)
    reference = np.array([1.0, 1.1, 0.0, 0.0, 10.0, -10.0, 0.0])
    theta = np.array([1.1, 1.0, 0.0, 0.0, 10.0, -10.0, 0.0])
    aligned = np.linalg.norm(reference - align_incoming_only(reference, theta, arch))
    nearest, _ = nearest_image(reference, theta, arch)
    assert np.linalg.norm(reference - nearest) == pytest.approx(np.sqrt(0.02))
    assert aligned > 100 * np.linalg.norm(reference - nearest)


def test_bad_shapes_are_rejected_with_the_fix():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=3)
    with pytest.raises(ValueError, match="arch.n_params = 13"):
        nearest_image(np.zeros(13), np.zeros(12), arch)
    with pytest.raises(ValueError, match=r"\(member, param\)"):
        nearest_images(np.zeros(13), np.zeros(13), arch)
    with pytest.raises(ValueError, match="nearest_images"):
        nearest_image(np.zeros(13), np.full(13, np.nan), arch)
    with pytest.raises(ValueError, match="per hidden layer"):
        image(np.zeros(13), arch, [], [])


def _brute_force_orbit(theta, arch, decimals=8):
    """Distinct images of theta under every element of the one-layer group, enumerated."""
    from basins.landscapes.symmetry import _signed_permutations, image

    orders, signs = _signed_permutations(arch.width)
    if arch.activation not in ("tanh", "erf", "linear"):
        orders, signs = np.unique(orders, axis=0), np.ones((len(np.unique(orders, axis=0)), arch.width))
    images = image(np.broadcast_to(theta, (len(orders), len(theta))), arch, [orders], [signs])
    return len(np.unique(np.round(images, decimals), axis=0))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_orbit_size_matches_enumerating_the_group(activation):
    from basins.landscapes.symmetry import group_order, orbit_size

    arch = Architecture(n_inputs=3, n_outputs=1, depth=1, width=4, activation=activation)
    rng = np.random.default_rng(0)
    generic = rng.standard_normal(arch.n_params)
    assert orbit_size(generic, arch) == group_order(arch) == _brute_force_orbit(generic, arch)
    # Coinciding units: units 1 and 2 equal (up to sign for tanh), unit 3 dead (all zero).
    incoming, outgoing = arch.layer_slices[0], arch.layer_slices[1][0]
    special = generic.copy()
    w = special[incoming[0]].reshape(4, 3)
    b = special[incoming[1]]
    v = special[outgoing].reshape(1, 4)
    sign = -1.0 if activation == "tanh" else 1.0
    w[2], b[2], v[0, 2] = sign * w[1], sign * b[1], sign * v[0, 1]
    w[3], b[3], v[0, 3] = 0.0, 0.0, 0.0
    special[incoming[0]], special[incoming[1]], special[outgoing] = w.ravel(), b, v.ravel()
    assert orbit_size(special, arch) == _brute_force_orbit(special, arch) < group_order(arch)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_orbit_size_counts_the_elements_within_the_tolerance_as_a_brute_force_does(activation):
    # Near-coincident units (pairs 0.02-0.3 apart, up to sign for tanh; a small unit whose flip
    # moves it 2|u| = 0.32): the group's order over the elements that move the point by at most
    # atol in Euclidean distance over all parameters, the rule a re-run's endpoint is told by,
    # checked against all 384 (tanh) or 24 (ReLU) elements. Per-coordinate tolerances called
    # the small unit (coordinates 0.05) its own flip at atol = 0.1 (the session-46 referee).
    from basins.landscapes.symmetry import _permutations, _signed_permutations, group_order, orbit_size

    arch = Architecture(n_inputs=3, n_outputs=1, depth=1, width=4, activation=activation)
    odd = activation == "tanh"
    orders, signs = _signed_permutations(4) if odd else (_permutations(4), np.ones((24, 4)))
    rng = np.random.default_rng(3)
    incoming, outgoing = arch.layer_slices[0], arch.layer_slices[1][0]
    for trial in range(40):
        theta = rng.standard_normal(arch.n_params)
        w, b, v = theta[incoming[0]].reshape(4, 3), theta[incoming[1]], theta[outgoing].reshape(1, 4)
        sign = -1.0 if odd and trial % 2 else 1.0
        gap = rng.choice([0.02, 0.05, 0.1, 0.3])
        w[1], b[1], v[0, 1] = sign * (w[0] + gap * rng.standard_normal(3) / 2), sign * b[0], sign * v[0, 0]
        if trial % 3 == 0:
            w[3], b[3], v[0, 3] = 0.05, 0.05, 0.05
        theta[incoming[0]], theta[incoming[1]], theta[outgoing] = w.ravel(), b, v.ravel()
        images = image(np.broadcast_to(theta, (len(orders), arch.n_params)), arch, [orders], [signs])
        for atol in (1e-8, 0.05, 0.1, 0.35):
            within = int(np.sum(np.linalg.norm(images - theta, axis=1) <= atol))
            assert orbit_size(theta, arch, atol=atol) == group_order(arch) / within, (trial, atol)
    with pytest.raises(ValueError, match="not enumerated"):
        orbit_size(np.zeros(Architecture(n_inputs=1, n_outputs=1, depth=1, width=8).n_params),
                   Architecture(n_inputs=1, n_outputs=1, depth=1, width=8), atol=0.1)

