import numpy as np
import pytest
import torch
import xarray as xr

from basins.labels import AT_SADDLE, BUDGET, CONVERGED, SADDLE, UNDECIDED_LABEL
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.networks import forward
from basins.landscapes.symmetry import nearest_image
from basins.minima import (
    assign_to_catalog,
    canonicalize,
    deduplicate_minima,
    group_endpoints,
    tolerance_plateau,
)


def apply_symmetry(theta, arch, rng):
    """A random element of the network's symmetry group applied to one parameter vector."""
    theta = theta.copy()
    layers = list(zip(arch.layer_shapes, arch.layer_slices))
    for ((fan_in, width), (w_in, b_in)), ((_, fan_out), (w_out, _)) in zip(layers[:-1], layers[1:]):
        incoming = theta[w_in].reshape(width, fan_in)
        bias = theta[b_in]
        outgoing = theta[w_out].reshape(fan_out, width)
        if arch.activation == "tanh":
            factor = rng.choice([-1.0, 1.0], size=width)
            incoming, bias, outgoing = incoming * factor[:, None], bias * factor, outgoing * factor
        else:
            factor = rng.uniform(0.3, 3.0, size=width)
            incoming, bias, outgoing = incoming * factor[:, None], bias * factor, outgoing / factor
        order = rng.permutation(width)
        theta[w_in], theta[b_in] = incoming[order].ravel(), bias[order]
        theta[w_out] = outgoing[:, order].ravel()
    return theta


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_canonical_form_is_invariant_under_the_symmetries(activation):
    arch = Architecture(n_inputs=3, n_outputs=2, depth=2, width=4, activation=activation)
    theta = initial_parameters(arch, np.arange(5), seed=0, init="torch_default")
    rng = np.random.default_rng(1)
    images = np.array([apply_symmetry(t, arch, rng) for t in theta])
    x = torch.randn(6, 3, dtype=torch.float64)
    # The images are the same functions ...
    torch.testing.assert_close(forward(torch.as_tensor(images), x, arch), forward(torch.as_tensor(theta), x, arch))
    # ... and have the same canonical form; distinct members keep distinct forms.
    np.testing.assert_allclose(canonicalize(images, arch), canonicalize(theta, arch), atol=1e-12)
    assert np.linalg.norm(canonicalize(theta, arch)[0] - canonicalize(theta, arch)[1]) > 0.1
    torch.testing.assert_close(
        forward(torch.as_tensor(canonicalize(theta, arch)), x, arch), forward(torch.as_tensor(theta), x, arch)
    )


def brute_force_groups(fingerprints, loss, loss_tol, function_tol):
    """All-pairs single linkage: the reference the fast grouping must agree with."""
    n = len(loss)
    labels = np.arange(n)
    for i in range(n):
        for j in range(n):
            close = np.linalg.norm(fingerprints[i] - fingerprints[j]) <= function_tol
            if close and abs(loss[i] - loss[j]) <= loss_tol:
                labels[labels == labels[j]] = labels[i]
    return labels


def same_partition(a, b):
    return all(len(np.unique(b[a == value])) == 1 for value in np.unique(a)) and len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("seed, dims", [(0, 4), (1, 40), (2, 40)])
def test_grouping_agrees_with_all_pairs_brute_force(seed, dims):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dims)) * 2
    which = rng.integers(0, 8, size=150)
    points = centres[which] + rng.normal(scale=0.02, size=(150, dims))
    loss = which * 0.1 + rng.normal(scale=1e-4, size=150)
    # Two minima at one place but of different loss: the loss window keeps them apart.
    points[which == 7] = centres[0] + rng.normal(scale=0.02, size=((which == 7).sum(), dims))
    fast = group_endpoints(points, loss, loss_tol=1e-2, function_tol=0.5, max_pairs=50)
    assert same_partition(fast, brute_force_groups(points, loss, 1e-2, 0.5))
    assert len(np.unique(fast)) == 8


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouping_is_exact_single_linkage_on_chains(seed):
    """Chains of points each within tolerance of the next only, at random spacing, and a
    parameter check that refuses a random half of the pairs: exact single linkage of the
    confirmed pairs, which a neighbour-limited search or a cell leader can split."""
    rng = np.random.default_rng(seed)
    n = 120
    points = np.cumsum(rng.uniform(0.05, 0.12, size=(n, 3)), axis=0) * rng.choice([-1, 1], size=3)
    points = points[rng.permutation(n)]
    loss = np.zeros(n)
    refused = {tuple(sorted(pair)) for pair in rng.integers(0, n, size=(3 * n, 2))}

    def same_parameters(i, j):
        return np.array([(min(a, b), max(a, b)) not in refused for a, b in zip(i, j)], dtype=bool)

    labels = group_endpoints(points, loss, loss_tol=1.0, function_tol=0.25, same_parameters=same_parameters)
    expected = np.arange(n)
    for a in range(n):
        for b in range(a + 1, n):
            if np.linalg.norm(points[a] - points[b]) <= 0.25 and (a, b) not in refused:
                expected[expected == expected[b]] = expected[a]
    assert same_partition(labels, expected)


def test_a_dense_minimum_is_one_group_with_few_exact_checks():
    rng = np.random.default_rng(3)
    points = rng.normal(scale=1e-3, size=(2000, 6))
    checked = []

    def same_parameters(i, j):
        checked.append(len(i))
        return np.ones(len(i), dtype=bool)

    labels = group_endpoints(points, np.zeros(2000), loss_tol=1e-6, function_tol=0.1,
                             same_parameters=same_parameters)
    assert len(np.unique(labels)) == 1
    assert sum(checked) < 2000 * 12  # O(m log m), where all pairs would be ~2e6


def test_grouping_starts_from_a_joined_partition():
    points = np.array([[0.0], [10.0], [20.0]])
    labels = group_endpoints(points, np.zeros(3), loss_tol=1.0, function_tol=1.0, joined=np.array([0, 0, 1]))
    assert labels[0] == labels[1] != labels[2]


def training_dataset(final_theta, loss, status, member=None):
    n, p = final_theta.shape
    zeros = np.zeros(n)
    return xr.Dataset(
        {
            "final_theta": (("member", "param"), final_theta),
            "loss": ("member", loss),
            "train_error": ("member", zeros),
            "test_error": ("member", loss * 2),
            "grad_norm": ("member", zeros),
            "status": ("member", status),
        },
        coords={"member": np.arange(n) if member is None else member, "param": np.arange(p)},
    )


PROBES = np.random.default_rng(9).normal(size=(20, 2))
TOLERANCES = dict(loss_tol=1e-6, function_tol=1e-6, dist_tol=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_planted_copies_collapse_and_distinct_minima_stay_apart(activation):
    arch = Architecture(n_inputs=2, n_outputs=1, depth=2, width=3, activation=activation)
    base = initial_parameters(arch, np.arange(3), seed=4, init="gaussian")
    rng = np.random.default_rng(0)
    which = rng.integers(0, 3, size=40)
    images = np.array([apply_symmetry(base[k], arch, rng) for k in which])
    loss = np.array([0.3, 0.2, 0.1])[which]
    minima = deduplicate_minima(
        training_dataset(images, loss, np.full(40, CONVERGED)), arch, PROBES, **TOLERANCES
    )
    assert minima.sizes["minimum"] == 3
    assert same_partition(minima["minimum_of_member"].values, which)
    np.testing.assert_array_equal(np.sort(minima["n_members"].values)[::-1], minima["n_members"].values)


def test_catalog_is_ordered_by_basin_size_and_skips_unconverged_members():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2, activation="tanh")
    base = initial_parameters(arch, np.arange(2), seed=4, init="gaussian")
    rng = np.random.default_rng(0)
    which = np.array([0, 1, 1, 0, 1])
    images = np.array([apply_symmetry(base[k], arch, rng) for k in which])
    loss = np.where(which == 0, 0.2, 0.1)
    status = np.array([CONVERGED] * 4 + [BUDGET])
    minima = deduplicate_minima(training_dataset(images, loss, status), arch, PROBES, **TOLERANCES)
    np.testing.assert_array_equal(minima["minimum_of_member"].values, [1, 0, 0, 1, UNDECIDED_LABEL])
    np.testing.assert_array_equal(minima["n_members"].values, [2, 2])
    assert float(minima["undecided_fraction"]) == pytest.approx(0.2)
    assert float(minima["assigned_fraction"]) == pytest.approx(0.8)
    # Equal basin sizes are ordered by loss.
    np.testing.assert_allclose(minima["loss"].values, [0.1, 0.2])
    assert (np.diff(minima["n_minima_at_tolerance"].values) <= 0).all()


def test_the_tolerance_sweep_scales_the_loss_window_too():
    """Copies of one network whose recorded losses lie 0.8 loss windows apart: one minimum at
    the chosen tolerances (a chain), four once the loss window is halved, as the sweep must
    show; with the function and parameter tolerances alone scaled it would count one throughout."""
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2, activation="tanh")
    theta = np.repeat(initial_parameters(arch, [0], seed=4, init="gaussian"), 4, axis=0)
    loss = 0.1 + np.arange(4) * 8e-7
    options = dict(loss_tol=1e-6, function_tol=1e-6, dist_tol=1e-6)
    minima = deduplicate_minima(training_dataset(theta, loss, np.full(4, CONVERGED)), arch, PROBES, **options)
    assert minima.sizes["minimum"] == 1
    counts = dict(zip(minima["tolerance"].values, minima["n_minima_at_tolerance"].values))
    assert [counts[f] for f in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)] == [4, 4, 4, 1, 1, 1, 1]


def test_assignment_does_not_depend_on_shard_order():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=3, activation="tanh")
    theta = initial_parameters(arch, np.arange(30), seed=1, init="gaussian")
    loss = np.round(np.random.default_rng(2).uniform(size=30), 1)
    shards = [training_dataset(theta[s], loss[s], np.full(10, CONVERGED), member=np.arange(30)[s])
              for s in (slice(0, 10), slice(10, 20), slice(20, 30))]
    options = dict(loss_tol=0.05, function_tol=5.0, dist_tol=50.0)
    forward_order = deduplicate_minima(xr.concat(shards, "member"), arch, PROBES, **options)
    reverse_order = deduplicate_minima(xr.concat(shards[::-1], "member"), arch, PROBES, **options)
    xr.testing.assert_identical(forward_order, reverse_order)


def test_alignment_undoes_a_permutation_the_canonical_sort_cannot():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=3, activation="tanh")
    theta = canonicalize(initial_parameters(arch, [0], seed=5, init="gaussian"), arch)[0]
    swapped = apply_symmetry(theta, arch, np.random.default_rng(1))
    np.testing.assert_allclose(nearest_image(theta, canonicalize(swapped[None], arch)[0], arch)[0], theta, atol=1e-12)
    # A copy whose units were permuted after canonicalization is matched back exactly.
    w_in, b_in = arch.layer_slices[0]
    w_out = arch.layer_slices[1][0]
    permuted = theta.copy()
    order = [2, 0, 1]
    permuted[w_in] = theta[w_in].reshape(3, 2)[order].ravel()
    permuted[b_in] = theta[b_in][order]
    permuted[w_out] = theta[w_out].reshape(1, 3)[:, order].ravel()
    np.testing.assert_allclose(nearest_image(theta, permuted, arch)[0], theta, atol=1e-12)


def test_without_parameters_solution_classes_are_grouped_by_function():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2, activation="tanh")
    theta = initial_parameters(arch, np.arange(2), seed=6, init="gaussian")
    # A dead hidden unit (zero outgoing weight) makes its incoming weights free: a manifold.
    w_out = arch.layer_slices[1][0]
    theta[:, w_out] = [[1.0, 0.0], [1.0, 0.0]]
    theta[1, : arch.layer_slices[0][0].stop] = theta[0, : arch.layer_slices[0][0].stop]
    theta[1, 2:4] = [5.0, -3.0]  # the dead unit's incoming weights differ
    data = training_dataset(theta, np.zeros(2), np.full(2, CONVERGED))
    by_function = deduplicate_minima(data, arch, PROBES, criterion="function", **TOLERANCES)
    by_both = deduplicate_minima(data, arch, PROBES, **TOLERANCES)
    assert by_function.sizes["minimum"] == 1 and by_both.sizes["minimum"] == 2
    assert "solution classes" in by_function.attrs["minima_are"]


@pytest.mark.parametrize("bad", [dict(function_tol=0), dict(criterion="nearest")])
def test_bad_options_are_rejected(bad):
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2)
    with pytest.raises(ValueError, match=next(iter(bad))):
        deduplicate_minima(training_dataset(np.zeros((1, 9)), np.zeros(1), np.zeros(1)), arch, PROBES,
                           **{**TOLERANCES, **bad})


def test_parameter_check_falls_back_to_unit_matching():
    from basins.minima import _parameter_check, _unit_separation

    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=3, activation="tanh")
    theta = canonicalize(initial_parameters(arch, [0], seed=5, init="gaussian"), arch)[0]
    w_in, b_in = arch.layer_slices[0]
    w_out = arch.layer_slices[1][0]
    permuted = theta.copy()
    permuted[w_in] = theta[w_in].reshape(3, 2)[[1, 0, 2]].ravel()
    permuted[b_in] = theta[b_in][[1, 0, 2]]
    permuted[w_out] = theta[w_out][[1, 0, 2]]
    other = theta + 0.5
    points = np.array([theta, permuted, other])
    check = _parameter_check(points, _unit_separation(points, arch), arch, dist_tol=1e-9)
    np.testing.assert_array_equal(check(np.array([0, 0]), np.array([1, 2])), [True, False])


def test_alignment_matches_sign_flips_of_odd_units():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=3, activation="tanh")
    theta = initial_parameters(arch, [0], seed=8, init="gaussian")[0]
    flipped = theta.copy()
    w_in, b_in = arch.layer_slices[0]
    w_out = arch.layer_slices[1][0]
    flipped[w_in] = (theta[w_in].reshape(3, 2) * np.array([[-1.0], [1.0], [-1.0]])).ravel()
    flipped[b_in] = theta[b_in] * [-1, 1, -1]
    flipped[w_out] = theta[w_out] * [-1, 1, -1]
    np.testing.assert_allclose(nearest_image(theta, flipped, arch)[0], theta, atol=1e-12)


def test_no_converged_member_gives_an_empty_catalog():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2)
    data = training_dataset(np.ones((3, 9)), np.zeros(3), np.full(3, BUDGET))
    minima = deduplicate_minima(data, arch, PROBES, **TOLERANCES)
    assert minima.sizes["minimum"] == 0 and (minima["minimum_of_member"] == UNDECIDED_LABEL).all()


def test_saddles_are_labelled_not_catalogued():
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2)
    theta = initial_parameters(arch, np.arange(3), seed=1, init="gaussian")
    data = training_dataset(theta, np.zeros(3), np.array([CONVERGED, SADDLE, BUDGET]))
    minima = deduplicate_minima(data, arch, PROBES, **TOLERANCES)
    np.testing.assert_array_equal(minima["minimum_of_member"].values, [0, AT_SADDLE, UNDECIDED_LABEL])
    assert minima.sizes["minimum"] == 1
    assert float(minima["saddle_fraction"]) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "counts, on_plateau, widest",
    [([131, 36, 30, 23, 17, 17, 17], False, (2.0, 10.0)), ([9, 5, 4, 4, 4, 3, 1], True, (0.5, 2.0)),
     ([42, 12, 4, 3, 3, 3, 3], True, (1.0, 10.0)), ([9, 8, 4, 4, 3, 1, 1], False, (0.5, 1.0)),
     ([4] * 7, True, (0.1, 10.0))],
)
def test_tolerance_plateau(counts, on_plateau, widest):
    assert tolerance_plateau(np.array(counts)) == (on_plateau, *widest)


def test_rerunning_catalogued_starts_reproduces_their_labels():
    """The identity rule: an endpoint a member already reached is assigned that member's
    minimum, even where single linkage chained the minimum's members far apart."""
    arch = Architecture(n_inputs=2, n_outputs=1, depth=1, width=2, activation="tanh")
    base = initial_parameters(arch, np.arange(2), seed=4, init="gaussian")
    rng = np.random.default_rng(0)
    which = np.repeat([0, 1], 10)
    images = np.array([apply_symmetry(base[k], arch, rng) for k in which])
    # A chain within minimum 0: each link below the tolerances, its ends beyond them.
    images[:10] += np.linspace(0, 0.25, 10)[:, None] * rng.standard_normal(arch.n_params) / 5
    loss = np.where(which == 0, 0.2, 0.1)
    minima = deduplicate_minima(training_dataset(images, loss, np.full(20, CONVERGED)), arch, PROBES,
                                loss_tol=1.0, function_tol=10.0, dist_tol=0.02)
    labels = minima["minimum_of_member"].values
    again = assign_to_catalog(images, loss, images, loss, arch, PROBES, catalog_labels=labels,
                              loss_tol=1.0, function_tol=10.0, dist_tol=0.02)
    np.testing.assert_array_equal(again, labels)


def test_the_representative_is_the_first_member_within_round_off_of_the_lowest_loss():
    from basins.minima import _lowest_loss_members

    groups = np.array([1, 0, 1, 0, 1])
    ulp = np.spacing(0.25)
    loss = np.array([0.25 + 2 * ulp, 0.5, 0.25, 0.5 - 1e-3, 0.3])
    # group 0: 0.5 - 1e-3 is lower by far more than round-off; group 1: members 0 and 2 tie
    # within round-off, and the first of them is chosen, whichever is lower by two ulps
    np.testing.assert_array_equal(_lowest_loss_members(groups, loss), [3, 0])
    np.testing.assert_array_equal(_lowest_loss_members(groups[:0], loss[:0]), [])


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_the_catalogue_records_which_test_points_each_minimum_misclassifies(n_outputs):
    """Each minimum's test points as the training stage counts them (torch's margins): their mean
    is its test error, and a test set other than the members' is refused."""
    from basins.landscapes.losses import margins

    arch = Architecture(n_inputs=2, n_outputs=n_outputs, depth=1, width=4, activation="tanh")
    base = initial_parameters(arch, np.arange(3), seed=5, init="gaussian")
    rng = np.random.default_rng(1)
    which = rng.integers(0, 3, size=12)
    images = np.array([apply_symmetry(base[k], arch, rng) for k in which])
    x_test = rng.normal(size=(300, 2))
    y_test = rng.choice([-1.0, 1.0], size=300) if n_outputs == 1 else rng.integers(0, n_outputs, size=300)
    labels = torch.as_tensor(y_test, dtype=torch.float64 if n_outputs == 1 else torch.long)
    wrong = (margins(forward(torch.as_tensor(images), torch.as_tensor(x_test), arch), labels) <= 0).numpy()
    training = training_dataset(images, np.array([0.3, 0.2, 0.1])[which], np.full(12, CONVERGED))
    training["test_error"] = ("member", wrong.mean(1))
    minima = deduplicate_minima(training, arch, PROBES, test_set=(x_test, y_test), **TOLERANCES)
    recorded = minima["test_misclassified"].values
    assert recorded.shape == (3, 300) and recorded.dtype == np.int8
    np.testing.assert_array_equal(recorded, wrong[minima["representative"].values])
    np.testing.assert_array_equal(recorded.mean(1), minima["test_error"].values)
    assert 0 < recorded.sum() < recorded.size
    other = y_test.copy()
    other[:40] = -other[:40] if n_outputs == 1 else (other[:40] + 1) % n_outputs
    with pytest.raises(ValueError, match="misclassify another number of test points"):
        deduplicate_minima(training, arch, PROBES, test_set=(x_test, other), **TOLERANCES)
    assert "test_misclassified" not in deduplicate_minima(training, arch, PROBES, **TOLERANCES)
