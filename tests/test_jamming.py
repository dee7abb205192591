import numpy as np
import pytest
import torch
import xarray as xr

from basins.data import prepare_dataset, train_test_arrays
from basins.jamming import (
    PrefixObjective,
    classify_phase,
    sweep_jamming,
    train_size_grid,
)
from basins.jamming_analysis import (
    analyze_jamming,
    fit_small_argument_exponent,
    transition_bracket,
    transition_size,
)
from basins.labels import BUDGET, CONVERGED, DIVERGED, SAT, UNDECIDED_PHASE, UNSAT
from basins.landscapes.losses import sample_losses
from basins.landscapes.networks import Architecture, forward, initial_parameters


@pytest.fixture(scope="module")
def random_pool():
    """Random +-1 labels on inputs of norm sqrt(d), d = 6: a perceptron fits about 2 d points."""
    data = prepare_dataset(kind="random_patterns", n_train=80, n_test=5, seed=3, n_features=6, normalize=True)
    return train_test_arrays(data)


def run_sweep(arch, pool, n_train, *, seed=1, **options):
    theta0 = initial_parameters(arch, np.arange(len(n_train)), seed=seed, init="orthogonal")
    defaults = dict(lr=0.02, max_steps=3000, grad_tol=1e-10, device="cpu", progress_every_s=1e9)
    return sweep_jamming(arch, *pool, theta0, np.asarray(n_train), seed=seed, **{**defaults, **options})


def test_train_size_grid_is_log_spaced_distinct_integers():
    grid = train_size_grid(3, 300, 12)
    assert grid[0] == 3 and grid[-1] == 300
    assert np.all(np.diff(grid) > 0)
    np.testing.assert_allclose(np.diff(np.log(grid)), np.log(100) / 11, rtol=0.25)
    assert len(train_size_grid(1, 4, 10)) == 4  # duplicates after rounding are merged
    with pytest.raises(ValueError, match="smallest=5, largest=5"):
        train_size_grid(5, 5, 3)


def test_the_prefix_objective_is_each_members_own_mean_loss(random_pool):
    arch = Architecture(6, 1, 1, 4, "relu")
    x, y = (torch.as_tensor(a, dtype=torch.float64) for a in random_pool[:2])
    theta = torch.as_tensor(initial_parameters(arch, np.arange(3), seed=0, init="kaiming"))
    sizes = torch.tensor([5, 80, 17])
    objective = PrefixObjective(arch, x, y, sizes, "quadratic_hinge", 1.0)
    loss, grad = objective(theta, None)
    for row, size in enumerate(sizes.tolist()):
        alone = theta[row : row + 1].clone().requires_grad_(True)
        expected = sample_losses(forward(alone, x[:size], arch), y[:size], loss="quadratic_hinge").mean()
        expected.backward()
        torch.testing.assert_close(loss[row], expected.detach())
        torch.testing.assert_close(grad[row], alone.grad[0])
    # Restricted to some members, the pool is cut to their largest prefix.
    subset = objective.restricted_to(torch.tensor([2, 0]))
    assert len(subset.y) == 17
    torch.testing.assert_close(subset(theta[[2, 0]], None)[0], loss[[2, 0]])


def test_far_below_the_transition_every_point_is_fitted_and_far_above_some_stay_unsatisfied(random_pool):
    perceptron = Architecture(6, 1, 0, 0, "relu")
    result = run_sweep(perceptron, random_pool, [3, 80])  # P / N = 0.5 and 13
    assert result.attrs["n_weights"] == 6
    np.testing.assert_array_equal(result["phase"].values, [SAT, UNSAT])
    assert result["n_unsatisfied"].values[0] == 0 and result["n_unsatisfied"].values[1] > 6
    assert result["status"].values[0] == CONVERGED
    delta = result["delta"].values
    assert np.isnan(delta[0, 3:]).all() and np.isfinite(delta[0, :3]).all()  # only its 3 points
    assert (delta[0, :3] <= 1e-6).all()
    np.testing.assert_array_equal(result["ratio"].values, [0.5, 80 / 6])


def test_an_over_parametrized_network_fits_what_the_perceptron_cannot(random_pool):
    network = Architecture(6, 1, 1, 16, "relu")  # N = 6 * 16 + 16 = 112 weights > P = 40
    assert network.n_weights == 112
    result = run_sweep(network, random_pool, [40])
    assert result["phase"].values[0] == SAT and result["train_error"].values[0] == 0


def test_a_member_trains_as_if_alone(random_pool):
    arch = Architecture(6, 1, 1, 3, "tanh")
    theta0 = initial_parameters(arch, np.arange(3), seed=2, init="orthogonal")
    options = dict(lr=0.02, max_steps=300, grad_tol=1e-10, device="cpu", progress_every_s=1e9)
    together = sweep_jamming(arch, *random_pool, theta0, np.array([4, 60, 20]), **options)
    alone = sweep_jamming(arch, *random_pool, theta0[2:], np.array([20]), **options)
    np.testing.assert_allclose(together["final_theta"].values[2], alone["final_theta"].values[0], rtol=1e-9, atol=1e-12)
    assert together["n_unsatisfied"].values[2] == alone["n_unsatisfied"].values[0]


def test_an_interrupted_sweep_resumes_from_its_checkpoint(random_pool, tmp_path, preempted_at):
    arch = Architecture(6, 1, 1, 3, "relu")
    options = dict(max_steps=500, checkpoint_every_s=0.0)
    uninterrupted = run_sweep(arch, random_pool, [3, 10, 60], **options)
    steps = uninterrupted["steps"].values
    assert steps[0] < 300 < steps[2]  # the cut comes after the smallest set is fitted
    checkpoint = tmp_path / "sweep.pt"
    with pytest.raises(KeyboardInterrupt), preempted_at(300):
        run_sweep(arch, random_pool, [3, 10, 60], checkpoint_path=checkpoint, **options)
    assert checkpoint.exists()
    resumed = run_sweep(arch, random_pool, [3, 10, 60], checkpoint_path=checkpoint, **options)
    xr.testing.assert_equal(resumed.drop_vars("wall_time"), uninterrupted.drop_vars("wall_time"))


def test_same_seed_same_sweep_and_other_seed_other_start(random_pool):
    arch = Architecture(6, 1, 1, 3, "relu")
    first, again = (run_sweep(arch, random_pool, [10, 30], max_steps=50) for _ in range(2))
    np.testing.assert_array_equal(first["final_theta"].values, again["final_theta"].values)
    other = run_sweep(arch, random_pool, [10, 30], max_steps=50, seed=2)
    assert not np.array_equal(first["initial_theta"].values, other["initial_theta"].values)


def test_bad_sweeps_are_rejected(random_pool):
    arch = Architecture(6, 1, 0, 0, "relu")
    with pytest.raises(ValueError, match="each size must be in 1..80"):
        run_sweep(arch, random_pool, [3, 81])
    with pytest.raises(ValueError, match="uses 'quadratic_hinge' or 'hinge'"):
        run_sweep(arch, random_pool, [3], loss="mse")
    with pytest.raises(ValueError, match="loss='l1'"):
        run_sweep(arch, random_pool, [3], loss="l1")


def test_budget_runs_near_zero_are_undecided_not_unsat():
    status = np.array([CONVERGED, CONVERGED, BUDGET, BUDGET, DIVERGED])
    n_unsatisfied = np.array([0, 7, 2, 40, -1])
    phase = classify_phase(status, n_unsatisfied, n_weights=100, undecided_fraction=0.05)
    np.testing.assert_array_equal(phase, [SAT, UNSAT, UNDECIDED_PHASE, UNSAT, UNDECIDED_PHASE])


@pytest.mark.parametrize(
    "phases, expected, bracket",
    [
        ([SAT, SAT, UNSAT, UNSAT], np.sqrt(2 * 4), (2, 4)),
        # one misfit: two cuts tie (between 1 and 2, between 4 and 8); P* is their middle and
        # only known to lie between 1 and 8
        ([SAT, UNSAT, SAT, UNSAT], np.sqrt(2 * 4), (1, 8)),
        ([SAT, UNDECIDED_PHASE, UNSAT, UNSAT], np.sqrt(1 * 4), (1, 4)),  # undecided runs are ignored
        ([SAT, SAT, SAT, SAT], np.nan, (np.nan, np.nan)),  # the transition lies beyond the grid
        ([UNSAT, UNSAT, UNSAT, UNSAT], np.nan, (np.nan, np.nan)),
    ],
)
def test_transition_size_separates_the_phases(phases, expected, bracket):
    sizes, phases = np.array([1, 2, 4, 8]), np.array(phases)
    np.testing.assert_allclose(transition_size(sizes, phases), expected)
    np.testing.assert_allclose(transition_bracket(sizes, phases), bracket)


def test_small_argument_exponent_of_a_known_power_law():
    rng = np.random.default_rng(0)
    exponent = -0.4  # p(v) = 0.6 v^-0.4 on (0, 1): v = U^(1 / 0.6)
    values = rng.uniform(size=20000) ** (1 / (1 + exponent))
    edges = np.geomspace(values.min(), values.max() * 1.0001, 31)
    fit = fit_small_argument_exponent(values, edges, fit_quantile=0.3, min_count=5)
    assert abs(fit.exponent - exponent) < max(3 * fit.stderr, 0.05)
    assert fit.n_bins >= 4 and fit.upper < 1
    np.testing.assert_allclose(fit.prefactor, 1 + exponent, rtol=0.2)
    assert np.isnan(fit_small_argument_exponent(values[:5], edges, fit_quantile=0.3, min_count=5).exponent)


def fake_run(depth, width, n_weights, seed, phases, sizes=(2, 4, 8, 16)):
    """A sweep_jamming output with chosen phases; Delta on SAT runs in (-1, 0), on UNSAT runs
    half the points positive."""
    sizes = np.asarray(sizes)
    rng = np.random.default_rng(seed)
    delta = np.full((len(sizes), sizes.max()), np.nan)
    for row, (size, phase) in enumerate(zip(sizes, phases)):
        delta[row, :size] = -rng.uniform(size=size)
        if phase == UNSAT:
            delta[row, : size // 2] = rng.uniform(size=size // 2)
    n_unsatisfied = (delta > 1e-6).sum(1)
    member = ("member", np.arange(len(sizes)))
    return xr.Dataset(
        {
            "n_train": ("member", sizes),
            "n_unsatisfied": ("member", n_unsatisfied),
            "loss": ("member", n_unsatisfied / 10),
            "steps": ("member", np.full(len(sizes), 10)),
            "status": ("member", np.where(np.array(phases) == UNDECIDED_PHASE, BUDGET, CONVERGED)),
            "phase": ("member", np.array(phases, dtype=np.int8)),
            "test_error": ("member", np.full(len(sizes), 0.5)),
            "train_error": ("member", n_unsatisfied / sizes),
            "delta": (("member", "sample"), delta),
        },
        coords={"member": member[1]},
        attrs=dict(depth=depth, width=width, n_weights=n_weights, seed=seed, loss_function="quadratic_hinge", margin=1.0, delta_tol=1e-6),
    )


def test_analysis_puts_runs_on_one_grid_and_estimates_r_star_per_depth():
    runs = [
        fake_run(0, 0, 4, 1, [SAT, SAT, UNSAT, UNSAT]),
        fake_run(0, 0, 4, 2, [SAT, SAT, SAT, UNSAT]),
        fake_run(1, 3, 8, 1, [SAT, SAT, SAT, UNSAT]),
        fake_run(1, 3, 8, 2, [SAT, UNDECIDED_PHASE, SAT, SAT]),
    ]
    result = analyze_jamming(runs, n_bins=8, fit_quantile=1.0, min_count=1)
    assert dict(result["phase"].sizes) == {"network": 2, "train_size": 4, "seed": 2}
    np.testing.assert_allclose(result["transition_size"].values, [[np.sqrt(32), np.sqrt(128)], [np.sqrt(128), np.nan]])
    np.testing.assert_allclose(result["transition_ratio"].values, result["transition_size"].values / [[4], [8]])
    lower, upper = result["transition_ratio_lower"].values, result["transition_ratio_upper"].values
    ratio, found = result["transition_ratio"].values, np.isfinite(result["transition_ratio"].values)
    assert (lower[found] < ratio[found]).all() and (ratio[found] < upper[found]).all()
    assert np.isnan(lower[~found]).all() and np.isnan(upper[~found]).all()
    np.testing.assert_allclose(result["transition_ratio_mean"].sel(depth=0), np.mean([np.sqrt(32), np.sqrt(128)]) / 4)
    assert int(result["n_transitions"].sel(depth=1)) == 1 and np.isnan(result["transition_ratio_std"].sel(depth=1))
    np.testing.assert_array_equal(result["n_undecided"].values, [0, 1])
    # Next to the transition: network 0 pools the SAT runs P = 4 and 8 (12 gaps) and the UNSAT
    # runs P = 8 and 16 (half their points overlapping).
    counts = result["n_delta_points"].sel(network=0)
    assert int(counts.sel(side="sat", constraint="satisfied")) == 12
    assert int(counts.sel(side="sat", constraint="unsatisfied")) == 0
    assert int(counts.sel(side="unsat", constraint="unsatisfied")) == 4 + 8
    density = result["delta_density"].sel(network=0, side="sat", constraint="satisfied")
    widths = result["bin_upper"] - result["bin_lower"]
    np.testing.assert_allclose(float((density * widths).sum()), 1.0)


def test_analysis_needs_runs():
    with pytest.raises(ValueError, match="at least one"):
        analyze_jamming([])
