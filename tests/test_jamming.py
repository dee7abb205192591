import numpy as np
import pytest
import torch
import xarray as xr

from basins.data import prepare_dataset, train_test_arrays
from basins.io import DIMS
from basins.jamming import (
    PrefixObjective,
    PrefixSatisfied,
    check_nested_phases,
    fine_scan_size,
    fine_train_sizes,
    sweep_jamming,
    train_size_grid,
)
from basins.jamming_analysis import (
    analyze_jamming,
    binomial_agreement,
    cover_free_parameters,
    cover_sat_probability,
    fit_small_argument_exponent,
    mean_transition_interval,
    power_law_on_range,
    seed_agreement_p_value,
    seed_jackknife_stderr,
)
from basins.jamming_transition import classify_phase, transition_bracket, transition_size
from basins.labels import BUDGET, CONVERGED, DIVERGED, SAT, STUCK, UNDECIDED_PHASE, UNSAT
from basins.landscapes.losses import sample_losses
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.networks import forward


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


@pytest.mark.parametrize("loss", ["quadratic_hinge", "hinge", "cross_entropy", "mse"])
def test_the_prefix_objective_is_each_members_own_mean_loss(random_pool, loss):
    arch = Architecture(6, 1, 1, 4, "relu")
    x, y = (torch.as_tensor(a, dtype=torch.float64) for a in random_pool[:2])
    theta = torch.as_tensor(initial_parameters(arch, np.arange(3), seed=0, init="kaiming"))
    sizes = torch.tensor([5, 80, 17])
    objective = PrefixObjective(arch, x, y, sizes, loss, 1.0, l2=0.01)
    loss_values, grad = objective(theta, None)
    for row, size in enumerate(sizes.tolist()):
        alone = theta[row : row + 1].clone().requires_grad_(True)
        expected = sample_losses(forward(alone, x[:size], arch), y[:size], loss=loss).mean()
        expected = expected + 0.005 * (alone * alone).sum()
        expected.backward()
        torch.testing.assert_close(loss_values[row], expected.detach(), rtol=1e-12, atol=0)
        torch.testing.assert_close(grad[row], alone.grad[0], rtol=1e-10, atol=1e-14)
    # Restricted to some members, the pool is cut to their largest prefix.
    subset = objective.restricted_to(torch.tensor([2, 0]))
    assert len(subset.y) == 17
    torch.testing.assert_close(subset(theta[[2, 0]], None)[0], loss_values[[2, 0]], rtol=1e-12, atol=0)


@pytest.mark.parametrize("loss", ["quadratic_hinge", "cross_entropy"])
def test_the_prefix_objective_with_a_pool_per_member_and_several_classes_equals_autograd(loss):
    """Each member its own pool (Cover's calibration) and three outputs (class indices): the
    hand-derived pass equals autograd of member_losses."""
    arch = Architecture(5, 3, 2, 3, "tanh")
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(4, 30, 5, dtype=torch.float64, generator=generator)
    y = torch.randint(0, 3, (4, 30), generator=generator)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(4), seed=2, init="gaussian"))
    objective = PrefixObjective(arch, x, y, torch.tensor([30, 4, 11, 19]), loss, 1.0, l2=0.003)
    loss_values, grad = objective(theta, None)
    for row in range(4):
        alone = theta[row : row + 1].clone().requires_grad_(True)
        expected = objective.restricted_to(torch.tensor([row])).member_losses(alone)[0]
        expected.backward()
        torch.testing.assert_close(loss_values[row], expected.detach(), rtol=1e-12, atol=0)
        torch.testing.assert_close(grad[row], alone.grad[0], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("loss", ["quadratic_hinge", "hinge"])
def test_the_satisfied_test_rules_members_out_by_their_loss_exactly(random_pool, loss):
    """Members whose loss exceeds what every Delta <= delta_tol allows skip the forward pass;
    the outcome is the one of reading every Delta, member by member (here with members on
    both sides, and some just inside the loss bound yet not satisfied)."""
    arch = Architecture(6, 1, 1, 4, "relu")
    x, y = (torch.as_tensor(a, dtype=torch.float64) for a in random_pool[:2])
    scales = torch.tensor([1e-3, 0.05, 0.3, 1.0, 3.0, 10.0], dtype=torch.float64).repeat_interleave(4)
    theta = torch.as_tensor(initial_parameters(arch, np.arange(24), seed=1, init="kaiming")) * scales[:, None]
    objective = PrefixObjective(arch, x, y, torch.arange(24) % 7 + 3, loss, 1.0, l2=0.002)
    satisfied = PrefixSatisfied(objective, delta_tol=1.2)
    every_delta = (objective.margin - objective.per_sample(theta) <= 1.2).all(1)
    met = satisfied(theta, objective(theta, None)[0])
    torch.testing.assert_close(met, every_delta)
    torch.testing.assert_close(satisfied.every_member(theta, objective(theta, None)[0]), every_delta)
    assert every_delta.any() and not every_delta.all()
    data_loss = objective(theta, None)[0] - 0.001 * (theta * theta).sum(1)
    assert (data_loss[~every_delta] <= satisfied._loss_bound()).any()  # the forward pass decided these


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
    # its distance from the loss's kinks, read from the stored point by brute force
    theta = torch.as_tensor(result["final_theta"].values)
    x = torch.as_tensor(random_pool[0][:40])
    w, b = network.layer_slices[0]
    pre = x @ theta[0, w].view(16, 6).T + theta[0, b]
    assert float(result["kink_distance"].values[0]) == pytest.approx(float(pre.abs().min()), rel=1e-12)


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
    with pytest.raises(ValueError, match="increasing positive inverse smoothing scales"):
        run_sweep(arch, random_pool, [3], homotopy_betas=[1e4, 1e3])
    with pytest.raises(ValueError, match="newton_steps=0"):
        run_sweep(arch, random_pool, [3], homotopy_betas=[1e3], homotopy_newton_steps=0)


def test_a_member_the_certificate_refuses_is_judged_again_at_the_homotopy_end():
    """The sweep's judgement of one undecided member on kinks (``_judged_on_kinks``): the
    depth-2 jammed minimum of tests/data displaced by 1e-7 (off its kinks' clean set, as BFGS
    leaves such runs) is refused where it stands, and certified at the homotopy's end, no
    higher in loss; without a schedule it stays refused."""
    from pathlib import Path

    from basins.jamming import _judged_on_kinks

    data = prepare_dataset(kind="random_patterns", n_train=520, n_test=10, seed=1, n_features=9, normalize=True)
    x, y, _, _ = train_test_arrays(data)
    arch = Architecture(9, 1, 2, 9, "relu", True)
    theta = np.load(Path(__file__).parent / "data" / "depth2_jammed_on_two_layers_of_kinks.npy")
    start = theta + 1e-7 * np.random.default_rng(0).normal(size=arch.n_params)
    judge = dict(loss="quadratic_hinge", margin=1.0, l2=0.0, grad_tol=1e-10, homotopy_newton_steps=30)
    refused, homotopy, verdict = _judged_on_kinks(start, x, y, arch, homotopy_betas=(), **judge)
    assert not refused.certified and homotopy is None and verdict == f"finish's end point: {refused.reason}"
    found, homotopy, verdict = _judged_on_kinks(start, x, y, arch, homotopy_betas=(1e6, 1e7, 1e8), **judge)
    assert found.certified and found.n_active == 55 and homotopy.iterations.sum() > 0
    assert found.loss <= homotopy.start_loss and verdict == "certified at the softplus homotopy's end point"
    _, _, verdict = _judged_on_kinks(start, x, y, arch, homotopy_betas=(1e6,), **judge | {"homotopy_newton_steps": 1})
    assert verdict.startswith("finish's end point: ") and "; homotopy's end point: " in verdict


def test_only_converged_runs_decide_a_phase_and_a_few_unsatisfied_points_are_stuck():
    status = np.array([CONVERGED, CONVERGED, CONVERGED, CONVERGED, BUDGET, BUDGET, DIVERGED])
    n_unsatisfied = np.array([0, 9, 10, 40, 2, 40, -1])
    phase = classify_phase(status, n_unsatisfied, n_weights=100, stuck_fraction=0.1)
    # a budget never decides: even 40 unsatisfied points at the end of the budget are undecided
    np.testing.assert_array_equal(phase, [SAT, STUCK, UNSAT, UNSAT, UNDECIDED_PHASE, UNDECIDED_PHASE, UNDECIDED_PHASE])
    # 40 unsatisfied points of which 35 are silenced leave 5 the network sees: a failure, not jamming
    silenced = np.array([0, 0, 0, 35, 35, 0, -1])
    phase = classify_phase(status, n_unsatisfied, n_weights=100, stuck_fraction=0.1, n_silenced=silenced)
    np.testing.assert_array_equal(phase, [SAT, STUCK, UNSAT, STUCK, UNDECIDED_PHASE, UNDECIDED_PHASE, UNDECIDED_PHASE])


def test_an_input_is_silenced_where_a_hidden_layer_is_off_on_it():
    from basins.landscapes.networks import silenced_inputs

    arch = Architecture(n_inputs=1, n_outputs=1, depth=2, width=2, activation="relu")
    # layer 1: units relu(x) and relu(x - 1); layer 2: units relu(h1 - h2 - 0.5) and relu(-h1)
    theta = torch.tensor([[1.0, 1.0, 0.0, -1.0, 1.0, -1.0, -1.0, 0.0, -0.5, 0.0, 1.0, 1.0, 0.0]])
    x = torch.tensor([[-1.0], [0.25], [0.75], [2.0], [torch.nan]])
    # x = -1: layer 1 off; 0.25: layer 2 off (h1 - h2 - 0.5 < 0, -h1 < 0); 0.75: alive; 2: h1 - h2 = 1, alive
    np.testing.assert_array_equal(silenced_inputs(theta, x, arch).numpy(), [[True, True, False, False, False]])
    # Brute force: a silenced input's output is the output bias, and no weight moves it.
    for row, is_silenced in zip(x[:4], [True, True, False, False]):
        point = theta.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(forward(point, row.unsqueeze(0), arch).sum(), point)
        assert (gradient[0, :-1].abs().sum() == 0) == is_silenced


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


def test_a_size_fitted_twice_is_one_place_not_a_cut():
    """The referee's case (session 35): two decided runs at P = 398 must not offer a threshold
    between them; P* lies between 348 and 398."""
    sizes, phases = np.array([204, 348, 398, 398, 455]), np.array([SAT, SAT, UNSAT, UNSAT, UNSAT])
    assert transition_size(sizes, phases) == pytest.approx(np.sqrt(348 * 398))
    assert transition_bracket(sizes, phases) == (348, 398)
    # the same size SAT once and UNSAT once: the cut misclassifies one of them, on either side
    assert transition_bracket(np.array([300, 398, 398, 455]), np.array([SAT, SAT, UNSAT, UNSAT])) == (300, 455)
    assert np.isnan(transition_size(np.array([398, 398]), np.array([SAT, UNSAT])))


def test_small_argument_exponent_of_a_known_power_law():
    rng = np.random.default_rng(0)
    exponent = -0.4  # p(v) = 0.6 v^-0.4 on (0, 1): v = U^(1 / 0.6)
    values = rng.uniform(size=20000) ** (1 / (1 + exponent))
    edges = np.geomspace(values.min(), values.max() * 1.0001, 31)
    fit = fit_small_argument_exponent(values, edges, fit_quantile=0.3, min_count=5)
    assert abs(fit.exponent - exponent) < max(3 * fit.stderr, 0.05)
    assert fit.n_bins >= 4 and fit.upper < 1
    np.testing.assert_allclose(fit.prefactor, 1 + exponent, rtol=0.2)
    assert fit.p_value > 1e-3  # a power law over the whole range: the goodness of fit passes
    assert np.isnan(fit_small_argument_exponent(values[:5], edges, fit_quantile=0.3, min_count=5).exponent)
    # Two regimes inside the fitted range (density v^-0.4 below 1e-2, v^-1 above): one slope
    # fits neither, and the goodness of fit says so.
    low = rng.uniform(size=20000) ** (1 / 0.6) * 1e-2
    broken = np.concatenate([low, np.exp(rng.uniform(np.log(1e-2), 0, 60000))])
    edges = np.geomspace(broken.min(), broken.max() * 1.0001, 31)
    curved = fit_small_argument_exponent(broken, edges, fit_quantile=1.0, min_count=5)
    assert curved.p_value < 1e-6


def test_the_exponent_is_unbiased_and_its_interval_covers_at_the_nominal_rate():
    # Known answer at the sweep's sample sizes (~300 values in the fit range): power laws
    # v^a on (0, 1) for a = -0.8 ... 0, 200 draws each. The least squares this replaced were
    # biased by -0.05 to -0.12 and covered in 51-79 % (session-35 referee).
    rng = np.random.default_rng(7)
    edges = np.geomspace(1e-6, 10, 31)
    for exponent in (-0.8, -0.5, -0.2, 0.0):
        fits = [fit_small_argument_exponent(rng.uniform(size=1000) ** (1 / (1 + exponent)), edges, fit_quantile=0.3,
                                            min_count=3, floor=1e-6) for _ in range(200)]
        estimates = np.array([fit.exponent for fit in fits])
        errors = np.array([fit.stderr for fit in fits])
        assert abs(estimates.mean() - exponent) < 0.03
        assert 0.9 <= np.mean(np.abs(estimates - exponent) <= 2 * errors)
        assert 0.8 < estimates.std() / errors.mean() < 1.25
        assert 0.88 <= np.mean([fit.p_value >= 0.05 for fit in fits]) <= 0.99  # the goodness of fit's own rate
    # ~90 values in range, where choosing the range's first bin by its count steepened the fit by
    # 0.03-0.3 (session-36 referee) until the range started one bin above it.
    for exponent in (-0.8, -0.3, 0.0):
        fits = [fit_small_argument_exponent(rng.uniform(size=300) ** (1 / (1 + exponent)), edges, fit_quantile=0.3,
                                            min_count=3, floor=1e-6) for _ in range(300)]
        estimates = np.array([fit.exponent for fit in fits])
        assert abs(np.nanmean(estimates) - exponent) < 0.04


def test_the_fit_floor_cuts_off_a_pile_up_below_the_resolution():
    """A power law above 1e-6 plus values piled up below it (a stopping rule's, or round-off):
    fitted from the smallest value the pile-up bends the range; from the floor up the
    exponent is recovered, and raising the floor tenfold leaves it within errors."""
    rng = np.random.default_rng(1)
    exponent = -0.4
    law = 1e-6 + rng.uniform(size=40000) ** (1 / (1 + exponent))
    pile_up = rng.uniform(1e-9, 1e-6, size=4000)
    values = np.concatenate([law, pile_up])
    edges = np.geomspace(1e-9, values.max() * 1.0001, 46)
    options = dict(fit_quantile=0.3, min_count=5)
    bent = fit_small_argument_exponent(values, edges, **options)
    assert bent.p_value < 1e-6 and abs(bent.exponent - exponent) > 0.1
    fit = fit_small_argument_exponent(values, edges, floor=1e-6, **options)
    # The range starts one bin above the first populated bin above the floor.
    assert fit.lower == pytest.approx(edges[edges >= 1e-6][1]) and fit.n_bins >= 4
    assert abs(fit.exponent - exponent) < max(3 * fit.stderr, 0.05) and fit.p_value > 1e-3
    raised = fit_small_argument_exponent(values, edges, floor=10 * fit.lower, **options)
    assert raised.n_bins < fit.n_bins
    assert abs(raised.exponent - fit.exponent) < 3 * np.hypot(raised.stderr, fit.stderr)


def test_delta_statistics_do_not_follow_round_off_below_the_margin():
    """Delta below the margin tolerance is at the margin: moving it by round-off (as two fresh
    runs of one sweep do, by ~1e-8) changes no bin, density or fit."""
    phases = [SAT, SAT, UNSAT, UNSAT]
    plain = [fake_run(0, 0, 4, seed, phases, sizes=(8, 16, 32, 64)) for seed in (1, 2, 3)]

    def with_margin_point(run, value):  # one point per member at the margin, satisfied side
        delta = run["delta"].values.copy()
        delta[:, 0] = value
        return run.assign(delta=(("member", "sample"), delta))

    runs = [with_margin_point(run, -7e-9) for run in plain]
    moved = [with_margin_point(run, -3e-9) for run in plain]
    options = dict(n_bins=8, fit_quantile=1.0, min_count=1)
    first, second = analyze_jamming(runs, **options), analyze_jamming(moved, **options)
    np.testing.assert_array_equal(first["bin_lower"], second["bin_lower"])
    assert float(first["bin_lower"][0]) == 1e-6  # the runs' delta_tol
    for name in ("delta_density", "delta_exponent", "delta_exponent_raised_floor", "n_delta_points", "n_at_margin"):
        np.testing.assert_array_equal(first[name], second[name])
    assert (first["n_at_margin"].sel(network=0) > 0).all()


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
            "kink_distance": ("member", np.where(np.array(phases) == UNDECIDED_PHASE, 1e-9, 0.1)),
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
    # depth 0: both seeds' brackets in the interval; depth 1: one estimate, one seed open above
    assert result["transition_ratio_low"].sel(depth=0) < 1 < 4 < result["transition_ratio_high"].sel(depth=0)
    assert np.isnan(result["transition_ratio_low"].sel(depth=1)) and int(result["n_transitions_missing"].sel(depth=1)) == 1
    # a network that did not run a seed has no missing transition there, and no bound
    third = analyze_jamming([*runs, fake_run(0, 0, 4, 3, [SAT, SAT, SAT, UNSAT])], n_bins=8, fit_quantile=1.0,
                            min_count=1)
    assert int(third["n_transitions_missing"].sel(depth=0)) == 0 and np.isfinite(third["transition_ratio_high"].sel(depth=0))
    assert int(third["n_transitions_missing"].sel(depth=1)) == 1  # depth 1 ran no seed 3
    counts = sum(result[f"{name}_count"] for name in ("sat", "unsat", "stuck", "undecided"))
    np.testing.assert_array_equal(counts, 2)  # every seed in one phase
    np.testing.assert_allclose(result["sat_fraction"].sel(network=0), [1, 1, 0.5, 0])
    np.testing.assert_allclose(result["sat_fraction"].sel(network=1), [1, 1, 1, 0.5])  # undecided left out
    assert np.isnan(result["cover_probability"]).all()  # no perceptron on random patterns here
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


def test_covers_count_at_known_points():
    # Points on a line (d = 1 and a bias: N = 2): 6 of the 8 labelings of 3 points are monotone,
    # hence separable.
    np.testing.assert_allclose(cover_sat_probability(np.array([3]), 2), [0.75])
    # 1 up to P = N, 1/2 at P = 2N, and 1/2 - C(20, 10) / 2^21 one point later
    expected = [1, 1, 0.5, 0.5 - 0.5 * 0.1762]
    np.testing.assert_allclose(cover_sat_probability(np.array([1, 10, 20, 21]), 10), expected, atol=1e-4)
    sizes = np.arange(1, 80)
    assert np.all(np.diff(cover_sat_probability(sizes, 21)) <= 0)
    with pytest.raises(ValueError, match="n_free=0"):
        cover_sat_probability(sizes, 0)


def simulated_capacity_brackets(rng, n_free, sizes, n_seeds):
    """Each seed's largest SAT and smallest UNSAT size on ``sizes`` for nested random pattern
    sets: the first P at which a pool stops being separable is drawn from Cover's curve
    (P(SAT at P) = P(that P is larger))."""
    sizes = np.asarray(sizes, dtype=float)
    trial = np.arange(1, 10 * int(sizes.max()))
    sat_probability = cover_sat_probability(trial, n_free)
    largest_sat, smallest_unsat = [], []
    for u in rng.random(n_seeds):
        capacity = trial[np.argmax(sat_probability < u)]
        largest_sat.append(sizes[sizes < capacity].max(initial=0))
        smallest_unsat.append(sizes[sizes >= capacity].min(initial=np.inf))
    return np.array(largest_sat, float), np.array(smallest_unsat, float)


def test_the_fitted_free_parameters_cover_the_true_count_at_their_level():
    """Known answer: 200 simulated studies of 3 seeds on a 15 % grid, as the default sweep's
    perceptron is run, N = 30: the 95 % interval holds 30 in about 95 % of them (seed 0: 96 %
    over 300), about 8 parameters wide; 60 seeds narrow it."""
    rng = np.random.default_rng(0)
    grid = np.unique(np.round(16 * 1.15 ** np.arange(14)).astype(int))
    fits = np.array([cover_free_parameters(*simulated_capacity_brackets(rng, 30, grid, 3)) for _ in range(200)])
    assert ((fits[:, 1] <= 30) & (30 <= fits[:, 2])).mean() >= 0.9
    wide = np.median(fits[:, 2] - fits[:, 1])
    many = cover_free_parameters(*simulated_capacity_brackets(rng, 30, grid, 60))
    assert many[1] <= 30 <= many[2] and many[2] - many[1] < wide / 2
    # all SAT: nothing bounds N from above
    assert np.isinf(cover_free_parameters(np.array([98.0]), np.array([np.inf]))[2])
    with pytest.raises(ValueError, match="below its smallest UNSAT"):
        cover_free_parameters(np.array([40.0]), np.array([30.0]))


COVER_SIZES = np.array([31, 34, 37, 40, 44, 47, 50, 53])  # around P = 2N = 42, within 2.5 sqrt(N)
COVER_SEEDS = 60


@pytest.fixture(scope="module")
def cover_analysis():
    """A perceptron with d = 20 inputs and a bias (N = 21 free parameters) on 60 independent
    random pattern sets, 8 sizes each: all 480 runs as members of one sweep (a pool per member),
    analyzed as one run per seed."""
    arch = Architecture(20, 1, 0, 0, "relu")
    pools = [
        train_test_arrays(prepare_dataset(
            kind="random_patterns", n_train=COVER_SIZES.max(), n_test=1, seed=seed, n_features=20, normalize=True))
        for seed in range(COVER_SEEDS)
    ]
    x_pool, y_pool = (np.repeat(np.stack([pool[k] for pool in pools]), len(COVER_SIZES), axis=0) for k in (0, 1))
    n_train = np.tile(COVER_SIZES, COVER_SEEDS)
    theta0 = initial_parameters(arch, np.arange(len(n_train)), seed=0, init="orthogonal")
    # The perceptron's quadratic hinge is convex, so the dynamics that reaches its minimum does
    # not change the phase: FIRE decides every member in < 1000 steps, where full-batch Adam
    # with a decaying step leaves some members near P = 2N undecided after 32000 steps.
    sweep = sweep_jamming(
        arch, x_pool, y_pool, *pools[0][2:], theta0, n_train, dynamics="fire", lr=0.1, max_steps=4000,
        grad_tol=1e-10, budget_factors=(1, 4), device="cpu", progress_every_s=1e9,
    )
    per_seed = np.arange(len(n_train)) // len(COVER_SIZES)
    runs = [
        sweep.isel(member=per_seed == seed).assign_attrs(seed=seed, dataset_kind="random_patterns")
        for seed in range(COVER_SEEDS)
    ]
    return sweep, analyze_jamming(runs)


def test_the_perceptron_is_sat_as_often_as_covers_count_says(cover_analysis):
    """Calibration against Cover (1965): the SAT fraction of a perceptron on random patterns
    agrees with P(SAT) = 2^(1-P) sum_{k<N} C(P-1, k) at every P, within binomial sampling error
    (Bonferroni family false-alarm rate 1e-3), and the same test rejects the curves of two
    parameters more or fewer (it has the power to fail)."""
    sweep, analysis = cover_analysis
    perceptron = analysis.isel(network=0)
    assert int(perceptron["n_free"]) == 21  # 20 weights and the bias
    assert int(perceptron["undecided_count"].sum()) == 0  # every run decided...
    assert int(perceptron["stuck_count"].sum()) == 0  # ...and none stuck (a convex loss)
    np.testing.assert_allclose(perceptron["cover_probability"], cover_sat_probability(COVER_SIZES, 21))
    assert float(perceptron["cover_family_p_value"]) > 1e-3
    n_sat = perceptron["sat_count"].values
    n_decided = n_sat + perceptron["unsat_count"].values
    for wrong in (19, 23):
        assert binomial_agreement(n_sat, n_decided, cover_sat_probability(COVER_SIZES, wrong))[1] < 1e-3
    # The seeds' SAT/UNSAT brackets fix N by maximum likelihood: the interval holds 21, and
    # not the curves rejected above.
    low, high = (float(perceptron[f"cover_fitted_free_parameters_{end}"]) for end in ("low", "high"))
    assert 19 < low <= 21 <= high < 23
    # A minimum of positive loss of a convex perceptron balances the forces of its unsatisfied
    # points, sum_mu Delta_mu y_mu x_mu = 0 (x with a 1 for the bias): in general position that
    # takes at least N + 1 of them (isostaticity).
    unsat = sweep["phase"].values == UNSAT
    assert unsat.sum() > 100 and sweep["n_unsatisfied"].values[unsat].min() >= 22


def test_the_cover_figure_draws_every_seeds_capacity_bracket(cover_analysis):
    """Each seed's bracket (largest SAT, smallest UNSAT size, from all its runs) is one segment
    of the figure, at heights spread evenly over (0, 1)."""
    from matplotlib.collections import LineCollection

    from basins.jamming_figures import figure_jamming_cover

    sweep, analysis = cover_analysis
    perceptron = analysis.isel(network=0)
    lower, upper = perceptron["largest_sat_size"].values, perceptron["smallest_unsat_size"].values
    per_seed = np.arange(sweep.sizes["member"]) // len(COVER_SIZES)
    for seed in (0, 7, 59):
        run = sweep.isel(member=per_seed == seed)
        sizes, phase = run["n_train"].values, run["phase"].values
        assert lower[seed] == sizes[phase == SAT].max(initial=0)
        assert upper[seed] == sizes[phase == UNSAT].astype(float).min(initial=np.inf)
    figure = figure_jamming_cover(analysis, title="Cover")
    (brackets,) = [c for c in figure.axes[0].collections
                   if isinstance(c, LineCollection) and c.get_label() == "each seed's capacity bracket"]
    segments = brackets.get_segments()
    assert len(segments) == COVER_SEEDS
    heights = np.sort([segment[0, 1] for segment in segments])
    np.testing.assert_allclose(heights, (np.arange(COVER_SEEDS) + 0.5) / COVER_SEEDS)


def test_a_member_with_its_own_pool_trains_as_if_alone(random_pool):
    arch = Architecture(6, 1, 1, 3, "relu")
    x, y = random_pool[:2]
    rng = np.random.default_rng(0)
    other = rng.permutation(len(y))
    theta0 = initial_parameters(arch, np.arange(2), seed=2, init="orthogonal")
    options = dict(lr=0.02, max_steps=200, grad_tol=1e-10, device="cpu", progress_every_s=1e9)
    pools = np.stack([x, x[other]]), np.stack([y, y[other]])
    together = sweep_jamming(arch, *pools, *random_pool[2:], theta0, np.array([20, 30]), **options)
    alone = sweep_jamming(arch, x[other], y[other], *random_pool[2:], theta0[1:], np.array([30]), **options)
    np.testing.assert_allclose(together["final_theta"].values[1], alone["final_theta"].values[0], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="one per member"):
        sweep_jamming(arch, np.stack([x]), np.stack([y]), *random_pool[2:], theta0, np.array([20, 30]), **options)


def test_fine_sizes_split_a_bracket_to_the_resolution_asked():
    sizes = fine_train_sizes(100, 153, 0.02, at_most=100)
    assert sizes[0] > 100 and sizes[-1] < 153
    assert np.all(np.diff(np.log(np.concatenate([[100], sizes, [153]]))) <= np.log(1.02) + 1 / 100)
    np.testing.assert_array_equal(fine_train_sizes(14, 22, 0.02, at_most=100), np.arange(15, 22))  # every integer
    assert len(fine_train_sizes(100, 153, 0.02, at_most=5)) == 5
    grid = np.array([4, 6, 9, 14, 22, 34, 52])
    assert fine_scan_size(grid, 0.02, intervals=1) == len(fine_train_sizes(34, 52, 0.02, at_most=99))
    assert fine_scan_size(grid, 0.02) == len(fine_train_sizes(22, 52, 0.02, at_most=99))
    with pytest.raises(ValueError, match="resolution=0"):
        fine_train_sizes(1, 2, 0, at_most=3)


def test_a_fine_scan_places_the_transition_to_its_resolution(random_pool):
    perceptron = Architecture(6, 1, 0, 0, "relu")  # 7 free parameters: P* near 14
    grid = np.array([4, 8, 16, 32, 64])
    n_fine = fine_scan_size(grid, 0.1)
    fine_theta = initial_parameters(perceptron, len(grid) + np.arange(n_fine), seed=1, init="orthogonal")
    result = run_sweep(
        perceptron, random_pool, grid, dynamics="fire", lr=0.1, fine_resolution=0.1, fine_initial_theta=fine_theta
    )
    on_grid, fine = (result.isel(member=result["scan"].values == scan) for scan in (0, 1))
    np.testing.assert_array_equal(on_grid["n_train"], grid)
    lower, upper = transition_bracket(grid, on_grid["phase"].values)
    assert upper / lower == 2 and fine.sizes["member"] > 0
    assert (fine["n_train"] > lower).all() and (fine["n_train"] < upper).all()
    np.testing.assert_array_equal(fine["member"], len(grid) + np.arange(fine.sizes["member"]))
    assert ((result["phase"] == SAT) | (result["phase"] == UNSAT)).all()
    analysis = analyze_jamming([result.assign_attrs(seed=1)], n_bins=8, min_count=1)
    assert int(analysis["n_fine"].squeeze()) == fine.sizes["member"]
    assert analysis.sizes["train_size"] == len(grid)  # the grid holds the grid's members
    # ... and the fine scan's members are kept beside it, member by member, for the figure
    for name in ("n_train", "n_unsatisfied", "phase"):
        np.testing.assert_array_equal(analysis[f"fine_{name}"].squeeze(), fine[name].values.astype(float))
    assert set(analysis.dims) <= DIMS and set(analysis.dims) <= set(analysis.coords)  # the stages' contract
    assert 0 < float(analysis["transition_resolution"].squeeze()) <= 0.1 + 1 / lower  # the grid alone: 1
    with pytest.raises(ValueError, match="fine_initial_theta"):
        run_sweep(perceptron, random_pool, grid, fine_resolution=0.1)


def test_fine_passes_narrow_the_bracket_until_the_resolution_is_met(random_pool):
    """Known answer: a perceptron's phases on nested training sets are monotone (convex loss), so
    each pass must land strictly inside the bracket every member before it leaves, and the passes
    stop at the first bracket within the resolution (or at the last pass)."""
    perceptron = Architecture(6, 1, 0, 0, "relu")
    grid, per_pass, passes = np.array([4, 8, 16, 32, 64]), 2, 4
    fine_theta = initial_parameters(perceptron, len(grid) + np.arange(passes * per_pass), seed=1, init="orthogonal")
    result = run_sweep(perceptron, random_pool, grid, dynamics="fire", lr=0.1, fine_resolution=0.1,
                       fine_initial_theta=fine_theta, fine_passes=passes)
    scan, sizes, phase = result["scan"].values, result["n_train"].values, result["phase"].values
    ran = int(scan.max())
    assert ran >= 2  # two sizes a pass cannot split 8..16 to 10 % at once
    for k in range(1, ran + 1):
        lower, upper = transition_bracket(sizes[scan < k], phase[scan < k])
        assert upper / lower - 1 > 0.1  # a pass runs only while the resolution is not met
        inside = sizes[scan == k]
        assert 0 < inside.size <= per_pass and (inside > lower).all() and (inside < upper).all()
        # pass k starts from its own rows of fine_initial_theta
        assert set(result["member"].values[scan == k]) <= set(len(grid) + (k - 1) * per_pass + np.arange(per_pass))
    lower, upper = transition_bracket(sizes, phase)
    met = upper / lower - 1 <= 0.1 or upper - lower <= 1
    assert result.attrs["fine_resolution_met"] == int(met)
    assert met or ran == passes  # stopped short of the resolution only by spending the passes
    analysis = analyze_jamming([result.assign_attrs(seed=1)], n_bins=8, min_count=1)
    assert int(analysis["fine_resolution_met"].squeeze()) == int(met)
    np.testing.assert_array_equal(analysis["fine_scan"].squeeze()[: int(analysis["n_fine"].squeeze())], scan[scan > 0])
    with pytest.raises(ValueError, match="fine_passes"):
        run_sweep(perceptron, random_pool, grid, fine_resolution=0.1, fine_initial_theta=fine_theta[:3], fine_passes=2)


def test_a_fine_pass_left_undecided_is_fitted_again_from_other_starting_points(monkeypatch):
    """The second pass refits the sizes whose members all came out undecided, from the next
    rows of the starting points, and the third splits the bracket they leave to the resolution."""
    import basins.jamming as jamming

    calls = []

    def fake_fit(n_train, initial_theta, member_ids, **_):
        calls.append((np.asarray(n_train).copy(), np.asarray(member_ids).copy()))
        phase = np.where(n_train < 13.5, SAT, UNSAT) if len(calls) > 1 else np.full(len(n_train), UNDECIDED_PHASE)
        return xr.Dataset({"phase": ("member", phase), "n_train": ("member", n_train)},
                          coords={"member": member_ids})

    monkeypatch.setattr(jamming, "_fit_sizes", fake_fit)
    grid = np.array([4, 8, 16, 32])
    scans = jamming._fine_scans(grid, np.array([SAT, SAT, UNSAT, UNSAT]), 0.1, np.zeros((9, 7)), 3, None, {})
    assert len(scans) == 3  # pass 1 undecided; pass 2 refits; pass 3 splits what pass 2 left
    np.testing.assert_array_equal(calls[0][0], calls[1][0])  # the same sizes ...
    np.testing.assert_array_equal(calls[1][1], len(grid) + 3 + np.arange(len(calls[1][1])))  # ... new starts
    np.testing.assert_array_equal([s["scan"].values[0] for s in scans], [1, 2, 3])
    sizes = np.concatenate([grid, *(c[0] for c in calls)])
    phases = np.concatenate([[SAT, SAT, UNSAT, UNSAT], *(s["phase"].values for s in scans)])
    assert transition_bracket(sizes, phases) == (13, 14) and jamming._resolution_met(13, 14, 0.1)


def test_a_stuck_grid_size_inside_the_bracket_is_fitted_again_and_a_decided_one_is_not(monkeypatch):
    """The referee's case (session 35): a bracket whose only splitting size is a stuck grid size
    must not end the passes unresolved; the fine scan refits it, never a decided size."""
    import basins.jamming as jamming

    calls = []

    def fake_fit(n_train, initial_theta, member_ids, **_):
        calls.append(np.asarray(n_train).copy())
        phase = np.where(n_train < 11.5, SAT, UNSAT)
        return xr.Dataset({"phase": ("member", phase), "n_train": ("member", n_train)}, coords={"member": member_ids})

    monkeypatch.setattr(jamming, "_fit_sizes", fake_fit)
    grid, phases = np.array([4, 10, 11, 12, 32]), np.array([SAT, SAT, STUCK, UNSAT, UNSAT])
    scans = jamming._fine_scans(grid, phases, 0.1, np.zeros((4, 7)), 2, None, {})
    assert len(calls) == 1 and calls[0].tolist() == [11]  # 10..12's only split, stuck on the grid
    sizes = np.concatenate([grid, calls[0]])
    assert jamming._resolution_met(
        *transition_bracket(sizes, np.concatenate([phases, scans[0]["phase"].values])), 0.1)


def test_silenced_unsatisfied_points_count_and_the_analysis_shows_r_star_without_them():
    """Geiger et al.'s rule counts every unsatisfied point; the analysis also gives r* with UNSAT
    runs that the network sees fewer than stuck_fraction N of their points set apart."""
    status = np.array([CONVERGED] * 3)
    # 40 unsatisfied points of 100 weights, 35 of them silenced: UNSAT under Geiger's rule
    np.testing.assert_array_equal(classify_phase(status, np.array([0, 9, 40]), n_weights=100, stuck_fraction=0.1),
                                  [SAT, STUCK, UNSAT])
    run = fake_run(0, 0, 4, 1, [SAT, SAT, UNSAT, UNSAT])
    silenced = np.where(run["phase"].values == UNSAT, run["n_unsatisfied"].values, 0)
    silenced[3] = 0  # P = 16: every point seen, jammed; P = 8: every unsatisfied point silenced
    run = run.assign(n_silenced_unsatisfied=("member", silenced)).assign_attrs(stuck_fraction=0.1)
    # A second seed with nothing silenced: its transition is the same on both readings.
    other = fake_run(0, 0, 4, 2, [SAT, SAT, UNSAT, UNSAT])
    other = other.assign(n_silenced_unsatisfied=("member", np.zeros(4, dtype=int))).assign_attrs(stuck_fraction=0.1)
    result = analyze_jamming([run, other], n_bins=8, fit_quantile=1.0, min_count=1)
    np.testing.assert_allclose(result["transition_size"].squeeze(), [np.sqrt(4 * 8)] * 2)
    np.testing.assert_allclose(result["transition_ratio_silenced_apart"].squeeze(), [np.sqrt(4 * 16) / 4,
                                                                                     np.sqrt(4 * 8) / 4])
    assert int(result["n_unsat_silenced"].squeeze()) == 1
    # The set-apart reading's interval is the counted one's rule on its own brackets: seed 1
    # between P = 4 and 16 (P = 8 set apart), seed 2 between 4 and 8; N = 4.
    expected = mean_transition_interval(np.array([2.0, np.sqrt(32) / 4]), np.array([1.0, 1.0]), np.array([4.0, 2.0]))
    np.testing.assert_allclose([float(result["transition_ratio_silenced_apart_low"].squeeze()),
                                float(result["transition_ratio_silenced_apart_high"].squeeze())], expected)


def test_a_member_that_spends_its_budget_is_continued_on_its_own_training_set(random_pool):
    arch = Architecture(6, 1, 1, 3, "relu")
    theta0 = initial_parameters(arch, np.arange(3), seed=2, init="orthogonal")
    sizes = np.array([4, 60, 20])
    options = dict(lr=0.02, max_steps=100, grad_tol=1e-10, device="cpu", progress_every_s=1e9)
    once = sweep_jamming(arch, *random_pool, theta0, sizes, **options)
    spent = once["status"].values == BUDGET
    assert spent[1] and (once["phase"].values[spent] == UNDECIDED_PHASE).all()
    continued = sweep_jamming(arch, *random_pool, theta0, sizes, budget_factors=(1, 3), **options)
    assert (continued["steps"].values[spent] > 100).all() and continued["steps"].values.max() <= 300
    alone = sweep_jamming(arch, *random_pool, theta0[1:2], sizes[1:2], budget_factors=(1, 3), **options)
    np.testing.assert_allclose(
        continued["final_theta"].values[1], alone["final_theta"].values[0], rtol=1e-9, atol=1e-12
    )
    with pytest.raises(ValueError, match="budget_factors"):
        sweep_jamming(arch, *random_pool, theta0, sizes, budget_factors=(2, 3), **options)


def test_overlaps_are_measured_in_units_of_the_square_root_of_the_loss():
    """Geiger et al. scale the overlaps of a run by sqrt(L): overlaps ten times larger (a loss
    a hundred times larger) give the same distribution; the gaps are left as they are."""
    phases = [SAT, SAT, UNSAT, UNSAT]
    runs = [fake_run(0, 0, 4, seed, phases) for seed in (1, 2)]
    scaled = []
    for run in runs:
        delta = run["delta"].values.copy()
        delta[delta > 0] *= 10
        scaled.append(run.assign(delta=(("member", "sample"), delta)))
    options = dict(n_bins=8, fit_quantile=1.0, min_count=1)
    plain, larger = analyze_jamming(runs, **options), analyze_jamming(scaled, **options)
    np.testing.assert_allclose(plain["bin"], larger["bin"])
    overlaps = dict(side="unsat", constraint="unsatisfied")
    np.testing.assert_allclose(plain["delta_density"].sel(**overlaps), larger["delta_density"].sel(**overlaps))
    # UNSAT runs with half their points at Delta = 1: L = 1 / 4, every overlap is 1 / sqrt(L) = 2
    unit = []
    for run in runs:
        delta = run["delta"].values.copy()
        delta[delta > 0] = 1.0
        unit.append(run.assign(delta=(("member", "sample"), delta)))
    result = analyze_jamming(unit, **options).sel(network=0, **overlaps)
    filled = result["delta_density"].values > 0
    assert filled.sum() == 1
    assert float(result["bin_lower"][filled][0]) <= 2 <= float(result["bin_upper"][filled][0])


def test_the_quasi_newton_finish_decides_what_a_frozen_adam_left_and_as_a_converged_descent_would(random_pool):
    """Known answer: the perceptron's quadratic hinge is convex, so its phase at each P does not
    depend on the dynamics that reaches the minimum. Adam with a step that halves every 100
    steps freezes short of it (members end on their budget, undecided); the finish decides them,
    each as FIRE run to convergence decides it."""
    arch = Architecture(6, 1, 0, 0, "relu")
    sizes = np.array([6, 10, 12, 14, 16, 20, 30, 60])
    frozen = dict(dynamics="adam", lr=0.01, lr_decay_every=100, lr_decay_factor=0.5, max_steps=1000)
    unfinished = run_sweep(arch, random_pool, sizes, **frozen)
    spent = unfinished["status"].values == BUDGET
    open_ = spent & (unfinished["output_scale"].values == 1)  # not already SAT by a rescaled output
    assert open_.sum() >= 2 and (unfinished["phase"].values[open_] == UNDECIDED_PHASE).all()
    assert (unfinished["finish_iterations"].values == 0).all()
    finished = run_sweep(arch, random_pool, sizes, finish_iterations=500, **frozen)
    reference = run_sweep(arch, random_pool, sizes, dynamics="fire", lr=0.1, max_steps=20000)
    assert (reference["status"].values == CONVERGED).all()
    assert (finished["status"].values == CONVERGED).all()
    np.testing.assert_array_equal(finished["phase"].values, reference["phase"].values)
    assert {SAT, UNSAT} <= set(finished["phase"].values.tolist())
    assert ((finished["finish_iterations"].values > 0) == spent).all()
    # the members that converged within the budget are untouched
    np.testing.assert_array_equal(finished["final_theta"].values[~spent], unfinished["final_theta"].values[~spent])
    with pytest.raises(ValueError, match="finish_iterations=-1"):
        run_sweep(arch, random_pool, sizes, finish_iterations=-1)


def test_a_perceptron_unsat_below_a_size_it_fits_is_refused():
    sizes = np.array([10, 20, 30, 40, 25])
    check_nested_phases(sizes, np.array([SAT, SAT, UNSAT, UNSAT, SAT]))  # consistent, fine scan last
    check_nested_phases(sizes, np.array([SAT, UNDECIDED_PHASE, SAT, UNSAT, UNDECIDED_PHASE]))
    with pytest.raises(RuntimeError, match=r"UNSAT at P = \[20, 25\] below SAT at P = 30"):
        check_nested_phases(sizes, np.array([SAT, UNSAT, SAT, UNSAT, UNSAT]))


def test_gaps_come_from_sat_runs_the_dynamics_decided_not_the_finish():
    """The SAT side's gaps are where a run's own dynamics stopped: a SAT run next to P* that the
    quasi-Newton finish decided is skipped for the next one below it; on the UNSAT side a
    finished run is a minimum like any other and counts."""
    phases = [SAT, SAT, SAT, UNSAT]
    runs = [fake_run(0, 0, 4, seed, phases, sizes=(8, 16, 32, 64)) for seed in (1, 2)]
    finished = [run.assign(finish_iterations=("member", np.array([0, 0, 7, 9]))) for run in runs]
    options = dict(n_bins=8, fit_quantile=1.0, min_count=1)
    plain, skipped = analyze_jamming(runs, **options), analyze_jamming(finished, **options)
    gaps = dict(side="sat", constraint="satisfied", network=0)
    assert int(plain["n_delta_points"].sel(**gaps)) == 2 * 32  # both seeds' P = 32 runs
    assert int(skipped["n_delta_points"].sel(**gaps)) == 2 * 16  # their P = 16 runs instead
    overlaps = dict(side="unsat", network=0)
    np.testing.assert_array_equal(plain["n_delta_points"].sel(**overlaps), skipped["n_delta_points"].sel(**overlaps))


def test_a_run_crawling_to_the_margins_is_sat_by_its_rescaled_output_layer(random_pool):
    """Known answer: a network that classifies every training point right (y f > 0) fits them
    all once its output layer is scaled up (the output is linear in it). A run stopped by a
    tiny budget short of the margins, with every point classified right, is SAT by that witness,
    which replaces its end point; the perceptron far above P = 2N (convex, converged to a minimum
    of positive loss with misclassified points) stays UNSAT, and nothing is witnessed where some
    point is misclassified."""
    arch = Architecture(6, 1, 1, 8, "relu")
    options = dict(lr=0.02, max_steps=200)
    short = run_sweep(arch, random_pool, [10], **options)
    scale = float(short["output_scale"].values[0])
    assert short["status"].values[0] == BUDGET and 1 < scale < 2 and short["phase"].values[0] == SAT
    assert short["n_unsatisfied"].values[0] == 0 and np.nanmax(short["delta"].values[0]) <= 1e-6
    assert float(short["loss"].values[0]) == 0.0
    end = short["final_theta"].values[0].copy()  # the run's own end point, as the attribute says
    for part in arch.layer_slices[-1]:
        end[part] /= scale
    theta0 = initial_parameters(arch, np.arange(1), seed=1, init="orthogonal")
    plain = sweep_jamming(arch, *random_pool, theta0, np.array([10]), grad_tol=1e-10, device="cpu",
                          progress_every_s=1e9, seed=1, l2=1e-12, **options)  # a penalty: no witness
    np.testing.assert_allclose(end, plain["final_theta"].values[0], rtol=1e-6, atol=1e-9)
    assert plain["output_scale"].values[0] == 1 and plain["phase"].values[0] == UNDECIDED_PHASE
    perceptron = run_sweep(Architecture(6, 1, 0, 0, "relu"), random_pool, [60], dynamics="fire", lr=0.1,
                           max_steps=20000)
    assert perceptron["phase"].values[0] == UNSAT and perceptron["output_scale"].values[0] == 1
    assert np.nanmax(perceptron["delta"].values[0]) >= 1  # a misclassified point: no witness
    early = run_sweep(arch, random_pool, [60], lr=0.02, max_steps=5)
    assert np.nanmax(early["delta"].values[0]) >= 1 and early["output_scale"].values[0] == 1


def test_the_raised_floor_refit_starts_above_the_fits_own_range():
    """Gaps uniform in (0, 1) populate no bin near the floor delta_tol = 1e-6, so a refit from
    ten times that floor would repeat the fit; the check refits from ten times the lower end of
    the fit's own range, a shorter range with an exponent of its own (flat density: both near 0)."""
    phases = [SAT, SAT, UNSAT, UNSAT]
    runs = [fake_run(0, 0, 4, seed, phases, sizes=(256, 512, 1024, 2048)) for seed in (1, 2, 3)]
    result = analyze_jamming(runs, n_bins=30, fit_quantile=1.0, min_count=3)
    fitted = result["delta_exponent"].sel(network=0, side="sat", constraint="satisfied")
    lower = float(result["delta_fit_lower"].sel(network=0, side="sat", constraint="satisfied"))
    raised = result["delta_exponent_raised_floor"].sel(network=0, side="sat", constraint="satisfied")
    assert lower > 100 * float(result["bin_lower"][0])  # the fit starts far above the floor
    assert np.isfinite(raised) and float(raised) != float(fitted)
    assert abs(float(fitted)) < 0.3 and abs(float(raised)) < 0.3


def test_the_power_law_verdict_passes_a_power_law_and_fails_a_bent_one():
    """Known answers: densities v^(-1/2) (v = u^2) pass in about 1 - alpha of draws; the same
    with a floor spread below 1e-4 (flat there, bent above: a stopping rule's pile-up) always
    fails; 200 points in (0.5, 1) leave too few bins for the refit: not checkable (failed instead
    where the goodness of fit alone rejects the line, as a referee of session 35 asked)."""
    from basins.jamming_analysis import FLOOR_CHECK_FACTOR, power_law_verdict

    edges = np.geomspace(1e-6, 1, 31)

    def verdict(values):
        fit = fit_small_argument_exponent(values, edges, fit_quantile=0.3, min_count=3, floor=1e-6)
        raised = fit_small_argument_exponent(values, edges, fit_quantile=0.3, min_count=3,
                                             floor=fit.lower * FLOOR_CHECK_FACTOR)
        return float(power_law_verdict(fit._asdict(), raised._asdict()))

    rng = np.random.default_rng(0)
    power_law = [verdict(rng.random(20000) ** 2) for _ in range(40)]
    bent = [verdict(rng.random(20000) ** 2 + 1e-4 * rng.random(20000)) for _ in range(40)]
    assert np.mean(power_law) >= 0.8 and np.mean(bent) == 0
    # At the sweep's sizes (~300 values in range): a power law passes in about 90 % of draws (two
    # tests at 5 %); a broken one, v^-0.2 below 1e-3 and v^-0.7 above, in about half (a limit
    # of the data, stated in docs/method.md; session 35's verdict passed it in 83-94 %).
    small = [verdict(rng.random(1000) ** 2) for _ in range(200)]
    broken = [verdict(_broken_power_law(1000, rng)) for _ in range(200)]
    assert 0.82 <= np.nanmean(small) <= 0.97 and np.nanmean(broken) <= 0.65
    assert np.isnan(verdict(0.5 + 0.5 * rng.random(200)))
    # A short range the goodness of fit rejects fails; one it does not reject is not checkable.
    short = {"exponent": [-1.0, -1.0], "stderr": [0.1, 0.1], "p_value": [0.001, 0.5]}
    no_refit = {"exponent": [np.nan, np.nan], "stderr": [np.nan, np.nan]}
    np.testing.assert_array_equal(power_law_verdict(short, no_refit), [0.0, np.nan])


def _simulated_coverage(scatter, offset, rng, n_sweeps=2000):
    """Coverage of 2.5, the known mean, by :func:`mean_transition_interval` and by the estimates'
    t-interval alone, over sweeps of three seeds drawn around it and read off a log grid of
    sizes 15 % apart (``offset``: the grid's phase, None for a random one each sweep)."""
    from scipy import stats

    covered, t_covered = 0, 0
    for _ in range(n_sweeps):
        true = 2.5 + scatter * rng.standard_normal(3)
        phase = rng.uniform(0, np.log(1.15)) if offset is None else offset
        lower = np.exp(phase + np.floor((np.log(true) - phase) / np.log(1.15)) * np.log(1.15))
        upper = lower * 1.15
        estimate = np.sqrt(lower * upper)
        low, high = mean_transition_interval(estimate, lower, upper)
        covered += low <= 2.5 <= high
        half = stats.t.ppf(0.975, 2) * estimate.std(ddof=1) / np.sqrt(3)
        t_covered += estimate.mean() - half <= 2.5 <= estimate.mean() + half
    return covered / n_sweeps, t_covered / n_sweeps


@pytest.mark.parametrize("scatter", [0.02, 0.1, 0.3])
def test_the_mean_transition_interval_covers_the_true_mean_with_brackets_and_scatter(scatter):
    """The known answer, 2.5, covered in at least 95 % of 2000 simulated sweeps at a random grid
    phase and at the worst one, a grid size just above the mean (all three seeds in the bracket
    above it one sweep in ten: without the brackets' spread the interval then has no width from
    the scatter and misses; the session-32 referee's 92 % on Cover's perceptron). The estimates'
    t-interval alone misses far more often where the scatter is small against the grid."""
    rng = np.random.default_rng(int(scatter * 1000))
    covered, t_covered = _simulated_coverage(scatter, None, rng)
    assert covered >= 0.95
    if scatter == 0.02:
        assert t_covered < 0.8
    worst, _ = _simulated_coverage(scatter, np.log(2.51) % np.log(1.15), rng)
    assert worst >= 0.95


def test_the_mean_transition_interval_needs_two_seeds_and_a_censored_seed_leaves_it_open_above():
    assert np.isnan(mean_transition_interval([2.5], [2.3], [2.7])).all()
    low, high = mean_transition_interval([2.5, 2.6, np.nan], [2.3, 2.4, 1.6], [2.7, 2.8, np.inf])
    assert np.isfinite(low) and low < (2.3 + 2.4 + 1.6) / 3 and high == np.inf


def _power_law_draws(exponent, size, generator):
    """``size`` values with density ~ v^exponent on (0, 1)."""
    return generator.uniform(size=size) ** (1 / (exponent + 1))


def test_the_seed_jackknife_gives_the_seeds_scatter_and_only_that():
    # Known answers: ten seeds drawn from one power law (v^-0.5) give a jackknife error close to
    # the pooled fit's own (Poisson) standard error; ten seeds whose exponents spread over
    # -0.2 ... -0.8 give an error near the scatter of the pooled estimate over such seed sets,
    # far above the fit's own.
    generator = np.random.default_rng(4)
    edges = np.geomspace(1e-4, 1, 31)
    options = dict(fit_quantile=0.5, min_count=3)

    def exponent(values):  # on one range, as the analysis refits each leave-one-out pool
        return power_law_on_range(values, 1e-3, 0.3)[0]

    def seed_sets(exponents):
        return [_power_law_draws(a, 600, generator) for a in exponents]

    same = seed_sets([-0.5] * 10)
    own = fit_small_argument_exponent(np.concatenate(same), edges, **options).stderr
    assert 0.4 < seed_jackknife_stderr(same, exponent) / own < 2.5
    spread = np.linspace(-0.2, -0.8, 10)
    apart = seed_sets(spread)
    jackknife = seed_jackknife_stderr(apart, exponent)
    own = fit_small_argument_exponent(np.concatenate(apart), edges, **options).stderr
    # The pooled exponent's scatter over independent draws of ten seeds with random exponents.
    pooled = [exponent(np.concatenate(seed_sets(generator.choice(spread, 10)))) for _ in range(40)]
    assert jackknife > 3 * own
    assert 0.4 < jackknife / np.std(pooled, ddof=1) < 2.5
    assert np.isnan(seed_jackknife_stderr(same[:1], exponent))


def _broken_power_law(size, rng, bend=1e-3):
    """Values on (0, 1) with density ~ v^-0.2 below ``bend`` and ~ v^-0.7 above (continuous)."""
    values = np.empty(0)
    while values.size < size:
        draws = rng.uniform(size=size) ** (1 / 0.3)  # v^-0.7
        kept = np.where(draws < bend, (draws / bend) ** 0.5, 1.0) > rng.uniform(size=size)
        values = np.concatenate([values, draws[kept]])
    return values[:size]


def test_seeds_with_different_exponents_are_told_apart():
    # Known answers: three seeds of one law give p < 0.05 in about 5 % of draws; seeds with
    # exponents -0.8, -0.5 and -0.2 (150 values each), which a pooled fit would pass as one
    # law, are told apart in nearly every draw; and the verdict fails such a mixture.
    from basins.jamming_analysis import power_law_verdict

    rng = np.random.default_rng(5)
    same = [seed_agreement_p_value([rng.uniform(size=150) ** 2 for _ in range(3)], 1e-4, 0.3) for _ in range(400)]
    apart = [seed_agreement_p_value([rng.uniform(size=150) ** (1 / (1 + a)) for a in (-0.8, -0.5, -0.2)], 1e-4, 0.3)
             for _ in range(50)]
    assert 0.02 <= np.mean(np.array(same) < 0.05) <= 0.09
    assert np.mean(np.array(apart) < 0.05) >= 0.95
    assert np.isnan(seed_agreement_p_value([rng.uniform(size=150)], 1e-4, 0.3))  # one seed
    fit = {"exponent": [-0.5], "stderr": [0.05], "p_value": [0.5]}
    raised = {"exponent": [-0.5], "stderr": [0.07]}
    np.testing.assert_array_equal(power_law_verdict(fit, raised, [0.001]), [0.0])
    np.testing.assert_array_equal(power_law_verdict(fit, raised, [np.nan]), [1.0])  # one seed in the range
    # Several seeds in the range, too few values to compare them (one seed of 200 values at -0.8
    # beside two of 9 at -0.1; a referee's case): not checkable, never a pass.
    lower, upper = 1e-4, 0.1
    seeds = [_truncated_power_law(a, n, lower, upper, rng) for a, n in ((-0.8, 200), (-0.1, 9), (-0.1, 9))]
    assert np.isnan(seed_agreement_p_value(seeds, lower, upper))
    assert np.isnan(power_law_verdict(fit, raised, [np.nan], [True])[0])


def _truncated_power_law(exponent, size, lower, upper, rng):
    """``size`` values with density ~ v^exponent on [lower, upper] (inverse transform)."""
    b = exponent + 1
    return lower * np.exp(np.log1p(rng.random(size) * np.expm1(b * np.log(upper / lower))) / b)
