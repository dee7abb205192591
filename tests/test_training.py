import os

import numpy as np
import pytest
import torch

from basins.engine.dynamics import INTEGRATORS, GradientFlow, make_stepper, minibatch_indices
from basins.labels import BUDGET, CONVERGED, DIVERGED
from basins import training
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.landscapes.objective import beta_at, data_tensors, make_objective, member_losses
from basins.training import train_ensemble


def torch_model(arch, theta):
    """A plain torch.nn network holding one member's parameters."""
    layers = []
    for index, ((fan_in, fan_out), (w, b)) in enumerate(zip(arch.layer_shapes, arch.layer_slices)):
        linear = torch.nn.Linear(fan_in, fan_out, bias=arch.bias, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(theta[w]).view(fan_out, fan_in))
            if b is not None:
                linear.bias.copy_(torch.as_tensor(theta[b]))
        layers.append(linear)
        if index < len(arch.layer_shapes) - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def flat_parameters(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def mse(out, y, step):
    return 0.5 * (out - y) ** 2


def plain_loop(
    arch, x, y, theta0, member_ids, *, optimizer, steps, l2, batches=None, step_decay=None, sample_loss=mse, **options
):
    """Train each member alone with torch.optim: the reference the engine must reproduce.
    ``sample_loss(output, y, step)`` is the loss of step ``step`` (MSE by default)."""
    x, y = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.float64)
    finals = []
    for row, member in enumerate(member_ids):
        model = torch_model(arch, theta0[row])
        opt = optimizer(model.parameters(), **options)
        every, factor = step_decay or (steps + 1, 1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=every, gamma=factor)
        for step in range(steps):
            index = slice(None) if batches is None else batches(member, step)
            opt.zero_grad()
            out = model(x[index])[:, 0]
            loss = sample_loss(out, y[index], step).mean()
            loss = loss + 0.5 * l2 * sum((p * p).sum() for p in model.parameters())
            loss.backward()
            opt.step()
            scheduler.step()
        finals.append(flat_parameters(model))
    return np.array(finals)


# BASINS_TEST_DEVICE=cuda runs the engine's tests on a GPU (the references stay on the CPU).
DEVICE = os.environ.get("BASINS_TEST_DEVICE", "cpu")


def run_engine(arch, data, theta0, ids, **options):
    defaults = dict(loss="mse", grad_tol=0.0, l2=1e-3, device=DEVICE, progress_every_s=1e9)
    return train_ensemble(arch, *data, theta0, ids, **{**defaults, **options})


@pytest.mark.parametrize(
    "dynamics, optimizer, options",
    [
        ("gd", torch.optim.SGD, {"lr": 0.3}),
        ("gd", torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
        ("adam", torch.optim.Adam, {"lr": 0.02}),
    ],
)
def test_full_batch_dynamics_match_torch_optim(teacher_data, tiny_arch, tiny_start, dynamics, optimizer, options):
    theta0, ids = tiny_start
    result = run_engine(tiny_arch, teacher_data, theta0, ids, dynamics=dynamics, max_steps=60, **options)
    expected = plain_loop(
        tiny_arch, *teacher_data[:2], theta0, ids, optimizer=optimizer, steps=60, l2=1e-3, **options
    )
    assert (result["status"] == BUDGET).all()
    np.testing.assert_allclose(result["final_theta"].values, expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "dynamics, optimizer, lr", [("gd", torch.optim.SGD, 0.3), ("adam", torch.optim.Adam, 0.02)]
)
def test_step_decay_matches_torch_step_lr(teacher_data, tiny_arch, tiny_start, dynamics, optimizer, lr):
    theta0, ids = tiny_start
    result = run_engine(
        tiny_arch, teacher_data, theta0, ids, dynamics=dynamics, lr=lr, max_steps=50,
        lr_decay_every=7, lr_decay_factor=0.5,
    )
    expected = plain_loop(
        tiny_arch, *teacher_data[:2], theta0, ids, optimizer=optimizer, steps=50, l2=1e-3,
        step_decay=(7, 0.5), lr=lr,
    )
    np.testing.assert_allclose(result["final_theta"].values, expected, rtol=1e-6, atol=1e-12)
    if dynamics == "gd":  # flow time is the sum of the decayed step sizes
        step_sizes = lr * 0.5 ** (np.arange(50) // 7)
        np.testing.assert_allclose(result["flow_time"].values, step_sizes.sum())


def test_step_decay_is_refused_where_it_has_no_meaning(teacher_data, tiny_arch, tiny_start):
    theta0, ids = tiny_start
    with pytest.raises(ValueError, match="lr_decay_every applies to gd, sgd and adam"):
        run_engine(tiny_arch, teacher_data, theta0, ids, dynamics="fire", lr=0.1, max_steps=5, lr_decay_every=3)
    with pytest.raises(ValueError, match="lr_decay_factor"):
        run_engine(tiny_arch, teacher_data, theta0, ids, dynamics="gd", lr=0.1, max_steps=5, lr_decay_factor=1.5)


def test_a_cross_entropy_annealed_in_beta_matches_torch_optim_on_the_same_schedule(teacher_data, tiny_arch, tiny_start):
    theta0, ids = tiny_start
    schedule = dict(beta=8.0, beta_start=0.5, beta_ramp_steps=30)
    result = run_engine(
        tiny_arch, teacher_data, theta0, ids, loss="cross_entropy", dynamics="gd", lr=0.2, max_steps=45, **schedule
    )

    def annealed_cross_entropy(out, y, step):
        beta = 0.5 * 16.0 ** min(step / 30, 1.0)  # geometric from 0.5 to 8 over 30 steps
        return torch.nn.functional.softplus(-beta * y * out) / beta

    expected = plain_loop(
        tiny_arch, *teacher_data[:2], theta0, ids, optimizer=torch.optim.SGD, steps=45, l2=1e-3,
        sample_loss=annealed_cross_entropy, lr=0.2,
    )
    np.testing.assert_allclose(result["final_theta"].values, expected, rtol=1e-6, atol=1e-12)
    assert beta_at(15, **{"ramp_steps" if k == "beta_ramp_steps" else k: v for k, v in schedule.items()}) == pytest.approx(2.0)


def test_no_member_converges_while_beta_is_still_ramping(teacher_data, tiny_arch, tiny_start):
    theta0, ids = tiny_start
    # grad_tol stops members at once, far from minima; this test is about *when* they may stop,
    # so the saddle check and the confirmation of minima (which would rightly flag those points)
    # are off.
    options = dict(loss="cross_entropy", dynamics="gd", lr=0.1, max_steps=100, grad_tol=1e3, curvature_tol=np.inf,
                   newton_steps=0)
    quenched = run_engine(tiny_arch, teacher_data, theta0, ids, beta=4.0, **options)
    annealed = run_engine(tiny_arch, teacher_data, theta0, ids, beta=4.0, beta_start=0.25, beta_ramp_steps=20, **options)
    assert (quenched["steps"] == 0).all() and (quenched["status"] == CONVERGED).all()
    assert (annealed["steps"] == 20).all() and (annealed["status"] == CONVERGED).all()
    x, y = data_tensors(tiny_arch, *teacher_data[:2])
    final = torch.as_tensor(annealed["final_theta"].values)
    on_final_landscape = member_losses(final, x, y, tiny_arch, loss="cross_entropy", margin=1.0, l2=1e-3, beta=4.0)
    np.testing.assert_allclose(annealed["loss"].values, on_final_landscape.numpy(), rtol=1e-12)


def test_the_compiled_objective_reproduces_eager_autograd(teacher_data, tiny_arch, tiny_start):
    theta0, ids = tiny_start
    options = dict(loss="cross_entropy", dynamics="gd", lr=0.2, max_steps=40, beta=8.0, beta_start=0.5, beta_ramp_steps=30)
    eager = run_engine(tiny_arch, teacher_data, theta0, ids, **options)
    compiled = run_engine(tiny_arch, teacher_data, theta0, ids, compile=True, **options)
    np.testing.assert_allclose(compiled["final_theta"].values, eager["final_theta"].values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(compiled["loss_history"].values, eager["loss_history"].values, rtol=1e-9)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(loss="mse", beta=2.0), "beta applies to the cross_entropy loss"),
        (dict(dynamics="gradient_flow", beta_start=0.5, beta_ramp_steps=10), "stepwise dynamics"),
        (dict(beta_start=0.5), "beta_ramp_steps is 0"),
        (dict(beta=2.0, beta_ramp_steps=10), "to itself"),
        (dict(beta=-1.0), "must be > 0"),
    ],
)
def test_bad_beta_schedules_are_refused(teacher_data, tiny_arch, tiny_start, options, message):
    theta0, ids = tiny_start
    options = dict(loss="cross_entropy", dynamics="gd", lr=0.1, max_steps=5) | options
    with pytest.raises(ValueError, match=message):
        run_engine(tiny_arch, teacher_data, theta0, ids, **options)


def test_sgd_matches_torch_optim_with_the_same_minibatches(teacher_data, tiny_arch, tiny_start):
    theta0, ids = tiny_start
    n_train, batch_size, seed = len(teacher_data[1]), 8, 11

    def batches(member, step):
        index = minibatch_indices(seed, torch.tensor([member]), torch.tensor([step]), n_train, batch_size)
        return index[0]

    result = run_engine(
        tiny_arch, teacher_data, theta0, ids, dynamics="sgd", lr=0.2, batch_size=batch_size,
        seed=seed, max_steps=40, check_every=7,
    )
    expected = plain_loop(
        tiny_arch, *teacher_data[:2], theta0, ids, optimizer=torch.optim.SGD, steps=40, l2=1e-3,
        batches=batches, lr=0.2,
    )
    np.testing.assert_allclose(result["final_theta"].values, expected, rtol=1e-6, atol=1e-12)


def test_minibatches_are_epoch_permutations_that_differ_between_members():
    steps = torch.arange(3)
    members = torch.tensor([5, 5, 5])
    epoch = minibatch_indices(0, members, steps, n_samples=12, batch_size=4)
    assert sorted(epoch.reshape(-1).tolist()) == list(range(12))
    other = minibatch_indices(0, torch.tensor([6, 6, 6]), steps, n_samples=12, batch_size=4)
    assert not torch.equal(epoch, other)


def test_gradient_flow_follows_the_analytic_solution_of_a_quadratic():
    # L = 1/2 theta^T A theta per member: theta(t) = exp(-A t) theta0.
    eigenvalues = torch.tensor([[0.5, 3.0, 20.0], [1.0, 1.0, 1.0]], dtype=torch.float64)

    def objective(theta, batch):
        return 0.5 * (eigenvalues * theta * theta).sum(1), eigenvalues * theta

    theta = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.1, -1.0]], dtype=torch.float64)
    theta0 = theta.clone()
    flow = GradientFlow(first_step=1e-3, rtol=1e-9, atol=1e-12, max_time=2.0)
    loss, grad = objective(theta, None)
    state = flow.init_state(theta, grad, torch.arange(2))
    while not flow.finished(state).all():
        theta, state, loss, grad = flow.step(theta, state, loss, grad, objective)
    expected = torch.exp(-eigenvalues * 2.0) * theta0
    torch.testing.assert_close(theta, expected, rtol=1e-7, atol=1e-10)


class StiffQuadratic:
    """L = 1/2 theta^T A theta per member, A with curvatures from 1e-3 to 1e3 in a rotated
    basis: theta(t) = exp(-A t) theta0, and the explicit integrator's steps are held at ~2e-3."""

    def __init__(self):
        rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
        self.matrix = rotation @ torch.diag(torch.tensor([1e-3, 1e-1, 1e1, 1e3], dtype=torch.float64)) @ rotation.T

    evaluations = 0  # gradients per member

    def __call__(self, theta, batch):
        self.evaluations += theta.shape[0] / 2  # the test's two members
        grad = theta @ self.matrix
        return 0.5 * (theta * grad).sum(1), grad

    def hessians(self, theta):
        return self.matrix.expand(theta.shape[0], -1, -1).clone()

    def flow(self, theta0, time):
        return theta0 @ torch.linalg.matrix_exp(-self.matrix * time)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_each_integrator_follows_a_stiff_quadratic_flow(integrator):
    objective = StiffQuadratic()
    theta0 = torch.tensor([[1.0, -2.0, 0.5, 0.2], [0.3, 0.1, -1.0, 2.0]], dtype=torch.float64)
    stepper = make_stepper("gradient_flow", lr=1e-3, rtol=1e-6, atol=1e-9, max_time=20.0, integrator=integrator)
    theta, (loss, grad) = theta0.clone(), objective(theta0, None)
    state = stepper.init_state(theta, grad, torch.arange(2))
    while not stepper.finished(state).all():
        theta, state, loss, grad = stepper.step(theta, state, loss, grad, objective)
    # Local errors of ~1e-6 per step (rtol x |theta|) add up over the path: a few 1e-6 at the end.
    torch.testing.assert_close(theta, objective.flow(theta0, 20.0), rtol=0, atol=2e-5)
    # Dormand-Prince needs about 20 / (2.5e-3) steps of six gradients; the L-stable triple steps by
    # accuracy; the Chebyshev method's steps are stable up to ~0.65 s^2 / 1e3 with s gradients.
    steps, evaluations = state["steps"], objective.evaluations
    if integrator == "dormand_prince":
        assert (steps > 5000).all() and evaluations > 30_000
    elif integrator == "rosenbrock":
        assert (steps < 500).all()
    else:
        assert evaluations < 6_000, evaluations


def test_a_chebyshev_step_of_a_member_does_not_depend_on_the_members_beside_it():
    # Members far apart on a quartic take different stage counts (their curvatures differ by
    # 1e4); each, run alone, ends bit for bit where it ends among the others (shards, chunks).
    objective = lambda theta, batch: ((theta**4).sum(1) / 4, theta**3)  # noqa: E731
    theta0 = torch.tensor([[3.0, -0.02, 1.0], [0.05, 0.3, -0.01], [10.0, 2.0, 0.4]], dtype=torch.float64)
    stepper = make_stepper("gradient_flow", lr=1e-3, rtol=1e-4, atol=1e-9, max_time=50.0, integrator="chebyshev")

    def run(rows):
        theta, (loss, grad) = theta0[rows].clone(), objective(theta0[rows], None)
        state = stepper.init_state(theta, grad, torch.as_tensor(rows))
        for _ in range(40):
            theta, state, loss, grad = stepper.step(theta, state, loss, grad, objective)
        return theta, state["time"]

    together, time = run([0, 1, 2])
    assert len(set(time.tolist())) == 3 and (together.abs() < theta0.abs()).all()
    for row in range(3):
        alone, _ = run([row])
        assert torch.equal(alone[0], together[row])


def test_the_chebyshev_curvature_estimate_finds_a_stiffness_that_grows_in_another_direction():
    # The session-41 referee's landscape: L = 0.01 x + 5 z^2 + c(x) |y|^2 / 2, c rising from 1 to
    # 1000 as x drifts past -1 (t ~ 100). The Hessian is block-diagonal, so a power iteration on
    # gradient differences alone stays in z's block (curvature 10) and its estimate at 1/80 of the
    # top: the flow then crawls by rejected steps (20 520 attempts). Mixing a fresh direction into
    # the vector every step finds y's curvature again.
    def objective(theta, batch):
        x, z, y = theta[:, 0], theta[:, 1], theta[:, 2:]
        sigmoid = torch.sigmoid(-(x + 1) / 0.1)
        c, slope = 1 + 999 * sigmoid, -9990 * sigmoid * (1 - sigmoid)
        yy = (y**2).sum(1)
        grad = torch.cat([(0.01 + 0.5 * slope * yy)[:, None], (10 * z)[:, None], c[:, None] * y], 1)
        return 0.01 * x + 5 * z**2 + 0.5 * c * yy, grad

    theta = torch.tensor([[0.0, 1.0, 1.0, -0.5, 0.3], [0.2, -0.7, 0.1, 0.9, 2.0]], dtype=torch.float64)
    stepper = make_stepper("gradient_flow", lr=1e-3, rtol=1e-4, atol=1e-7, max_time=150.0, integrator="chebyshev")
    loss, grad = objective(theta, None)
    state = stepper.init_state(theta, grad, torch.arange(2))
    low = attempts = 0
    while not stepper.finished(state).all():
        top = torch.maximum(1 + 999 * torch.sigmoid(-(theta[:, 0] + 1) / 0.1), torch.tensor(10.0, dtype=torch.float64))
        theta, state, loss, grad = stepper.step(theta, state, loss, grad, objective)
        low += int((stepper.spectral_safety * state["spectral_radius"] < top).sum())
        attempts += 2
    assert attempts < 1000 and low < 0.05 * attempts
    assert theta[:, 0].max() < -1.0 and theta[:, 2:].abs().max() < 1e-6  # past the rise; y decayed


def test_the_rosenbrock_integrator_needs_hessians_and_gradient_flow():
    stepper = make_stepper("gradient_flow", lr=0.1, integrator="rosenbrock")
    theta = torch.zeros(1, 2, dtype=torch.float64)
    state = stepper.init_state(theta, theta, torch.arange(1))
    with pytest.raises(ValueError, match="Hessians"):
        stepper.step(theta, state, theta[:, 0], theta, lambda t, batch: (t.sum(1), t))
    with pytest.raises(ValueError, match="integrator"):
        make_stepper("gd", lr=0.1, integrator="rosenbrock")
    with pytest.raises(ValueError, match="integrator"):
        make_stepper("gradient_flow", lr=0.1, integrator="euler")


def test_a_rosenbrock_run_that_spends_its_budget_is_continued(teacher_data, tiny_arch, tiny_start):
    theta0, ids = tiny_start
    out = run_engine(tiny_arch, teacher_data, theta0, ids, dynamics="gradient_flow", integrator="rosenbrock", lr=0.1,
                     max_steps=10, budget_factors=(1, 4), grad_tol=1e-8)
    assert (out["status"] == BUDGET).all() and (out["steps"] == 40).all()


def test_continued_members_follow_the_same_flow_by_the_stiff_integrator(teacher_data, tiny_arch, monkeypatch):
    # One Newton step leaves every member short of a stationary point: all are continued with a
    # tightened gradient test (confirm_minima), by Rosenbrock, or by Dormand-Prince as the run.
    ids = np.arange(6)
    theta0 = initial_parameters(tiny_arch, ids, seed=3, init="gaussian")
    options = dict(dynamics="gradient_flow", lr=0.1, max_steps=3000, budget_factors=(1,), grad_tol=1e-3, newton_steps=1,
                   l2=1e-2, rtol=1e-4, atol=1e-7)
    stiff = run_engine(tiny_arch, teacher_data, theta0, ids, **options)
    monkeypatch.setattr(training, "_continuation_integrator", lambda dynamics, integrator, objective: integrator)
    explicit = run_engine(tiny_arch, teacher_data, theta0, ids, **options)
    assert (stiff["n_refinements"] > 0).all()
    both = ((stiff["status"] == CONVERGED) & (explicit["status"] == CONVERGED)).values
    assert both.all()
    np.testing.assert_allclose(stiff["final_theta"].values[both], explicit["final_theta"].values[both], atol=1e-6)
    assert stiff["steps"].sum() < explicit["steps"].sum() / 2


def test_a_chebyshev_run_continues_its_members_itself_to_rosenbrocks_points(teacher_data, tiny_arch, monkeypatch):
    # Every member is continued with a tightened gradient test (one Newton step leaves it short),
    # by the run's own Chebyshev integrator, or by Rosenbrock as a Dormand-Prince run would be.
    ids = np.arange(6)
    theta0 = initial_parameters(tiny_arch, ids, seed=3, init="gaussian")
    options = dict(dynamics="gradient_flow", integrator="chebyshev", lr=0.1, max_steps=3000, budget_factors=(1,),
                   grad_tol=1e-3, newton_steps=1, l2=1e-2, rtol=1e-5, atol=1e-7)
    own = run_engine(tiny_arch, teacher_data, theta0, ids, **options)
    monkeypatch.setattr(training, "_continuation_integrator", lambda dynamics, integrator, objective: "rosenbrock")
    stiff = run_engine(tiny_arch, teacher_data, theta0, ids, **options)
    assert (own["n_refinements"] > 0).all()
    assert (own["status"] == CONVERGED).all() and (stiff["status"] == CONVERGED).all()
    np.testing.assert_allclose(own["final_theta"].values, stiff["final_theta"].values, atol=1e-6)


def test_a_gradient_flow_that_spends_its_budget_is_continued_by_the_stiff_integrator(
    teacher_data, tiny_arch, tiny_start
):
    theta0, ids = tiny_start
    options = dict(dynamics="gradient_flow", lr=0.1, grad_tol=1e-6, l2=1e-2, rtol=1e-4, atol=1e-7)
    explicit = run_engine(tiny_arch, teacher_data, theta0, ids, max_steps=20000, **options)
    continued = run_engine(tiny_arch, teacher_data, theta0, ids, max_steps=20, budget_factors=(1, 100), **options)
    assert (explicit["steps"] > 20).all()  # every member spends the first budget
    assert (explicit["status"] == CONVERGED).all() and (continued["status"] == CONVERGED).all()
    np.testing.assert_allclose(continued["final_theta"], explicit["final_theta"], atol=1e-6)
    assert continued["steps"].sum() < explicit["steps"].sum() / 2


def test_only_gradient_flow_with_hessians_continues_by_the_stiff_integrator(teacher_data):
    x, y = data_tensors(Architecture(3, 1, 1, 3, "tanh"), *teacher_data[:2], dtype=torch.float64, device="cpu")
    for depth, dynamics, integrator, expected in [
        (1, "gradient_flow", "dormand_prince", "rosenbrock"), (2, "gradient_flow", "dormand_prince", "dormand_prince"),
        (1, "fire", "dormand_prince", "dormand_prince"), (1, "gradient_flow", "chebyshev", "chebyshev"),
    ]:
        arch = Architecture(3, 1, depth, 3, "tanh")
        objective = make_objective(arch, x, y, loss="mse", margin=1.0, l2=1e-3)
        assert training._continuation_integrator(dynamics, integrator, objective) == expected


def test_gradient_flow_reaches_the_minimum_tiny_step_gd_reaches(teacher_data, tiny_arch, tiny_start):
    theta0, ids = tiny_start
    flow = run_engine(tiny_arch, teacher_data, theta0, ids, dynamics="gradient_flow", lr=0.05,
                      rtol=1e-8, atol=1e-11, max_steps=20000, grad_tol=1e-8, l2=0.2)
    gd = run_engine(tiny_arch, teacher_data, theta0, ids, dynamics="gd", lr=0.01,
                    max_steps=50000, grad_tol=1e-8, l2=0.2)
    assert (flow["status"] == CONVERGED).all() and (gd["status"] == CONVERGED).all()
    np.testing.assert_allclose(flow["final_theta"].values, gd["final_theta"].values, atol=1e-6)


def test_diverging_members_are_frozen_and_marked(teacher_data, tiny_arch, tiny_start):
    theta0, ids = tiny_start
    theta0 = theta0.copy()
    theta0[0] *= 30.0  # a member so far out that this step size makes it blow up
    result = run_engine(tiny_arch, teacher_data, theta0, ids, dynamics="gd", lr=5.0,
                        max_steps=200, divergence_threshold=1e3)
    status = result["status"].values
    assert status[0] == DIVERGED
    assert np.isnan(result["loss"].values[status == DIVERGED]).all()
    assert np.isfinite(result["loss"].values[status != DIVERGED]).all()


def test_results_do_not_depend_on_shards_or_chunks(teacher_data, tiny_arch):
    ids = np.arange(8)
    whole = run_engine(tiny_arch, teacher_data, initial_parameters(tiny_arch, ids, seed=2), ids,
                       dynamics="sgd", lr=0.1, batch_size=6, seed=4, max_steps=30)
    parts = [
        run_engine(tiny_arch, teacher_data, initial_parameters(tiny_arch, part, seed=2), part,
                   dynamics="sgd", lr=0.1, batch_size=6, seed=4, max_steps=30, memory_budget_mb=1e-3)
        for part in (ids[:3], ids[3:])
    ]
    stacked = np.concatenate([p["final_theta"].values for p in parts])
    np.testing.assert_allclose(stacked, whole["final_theta"].values, rtol=1e-12)


def test_a_run_without_its_final_errors_ends_every_member_where_the_full_run_does(teacher_data, tiny_arch):
    ids = np.arange(12)
    start = initial_parameters(tiny_arch, ids, seed=3)
    options = dict(dynamics="gradient_flow", lr=0.05, grad_tol=1e-6, max_steps=20000, l2=0.2)
    full = run_engine(tiny_arch, teacher_data, start, ids, **options)
    bare = run_engine(tiny_arch, teacher_data, start, ids, final_errors=False, **options)
    assert {"train_error", "test_error", "n_unsatisfied"} <= set(full.data_vars)
    assert not {"train_error", "test_error", "n_unsatisfied"} & set(bare.data_vars)
    assert (full["status"].values == CONVERGED).any()
    for name in ("final_theta", "loss", "status", "steps", "n_escapes"):
        np.testing.assert_array_equal(bare[name].values, full[name].values)


def test_an_interrupted_run_resumes_from_its_checkpoint(teacher_data, tiny_arch, tiny_start, tmp_path, preempted_at):
    theta0, ids = tiny_start
    options = dict(dynamics="adam", lr=0.02, max_steps=80, checkpoint_every_s=0.0)
    uninterrupted = run_engine(tiny_arch, teacher_data, theta0, ids, **options)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt), preempted_at(37):
        run_engine(tiny_arch, teacher_data, theta0, ids, checkpoint_path=checkpoint, **options)
    assert checkpoint.exists()
    resumed = run_engine(tiny_arch, teacher_data, theta0, ids, checkpoint_path=checkpoint, **options)
    np.testing.assert_array_equal(resumed["final_theta"].values, uninterrupted["final_theta"].values)
    np.testing.assert_array_equal(resumed["status"].values, uninterrupted["status"].values)
    assert not checkpoint.exists()


def test_bad_starting_points_are_rejected(teacher_data, tiny_arch):
    with pytest.raises(ValueError, match="initial_theta has shape"):
        run_engine(tiny_arch, teacher_data, np.zeros((2, 5)), np.arange(2), dynamics="gd", lr=0.1, max_steps=5)


def test_unknown_dynamics_are_rejected(teacher_data, tiny_arch, tiny_start):
    with pytest.raises(ValueError, match="dynamics='newton'"):
        run_engine(tiny_arch, teacher_data, *tiny_start, dynamics="newton", lr=0.1, max_steps=5)


def test_runs_in_the_kernel_take_chunks_past_torchs_temporaries_and_end_the_same(teacher_data, tiny_arch,
                                                                                 monkeypatch):
    # h = 128 on 1 000 samples in float32: torch's pass would hold 8 members at a time, one
    # group of the kernel's lanes (half of one with AVX-512), which no second thread can share.
    wide, cpu = Architecture(20, 1, 1, 128), torch.device("cpu")
    assert training.network_chunk_size(wide, 1000, 4096, torch.float32, cpu) == 8
    assert training.network_chunk_size(wide, 1000, 4096, torch.float32, cpu, in_kernel=True) >= 64
    ids = np.arange(20)
    theta0 = initial_parameters(tiny_arch, ids, seed=5, init="gaussian")
    options = dict(dynamics="gradient_flow", lr=0.1, max_steps=400, grad_tol=1e-6, memory_budget_mb=0.02)
    chunks = []
    descend = training.descend_until_decided
    monkeypatch.setattr(training, "descend_until_decided",
                        lambda *args, **engine: chunks.append(engine["chunk"]) or descend(*args, **engine))
    in_kernel = run_engine(tiny_arch, teacher_data, theta0, ids, **options)
    stepped = {chunks[0]}
    monkeypatch.setattr(training, "_steps_in_kernel", lambda *args: False)
    chunks.clear()
    in_torch_chunks = run_engine(tiny_arch, teacher_data, theta0, ids, **options)
    assert stepped == {training.network_chunk_size(tiny_arch, 24, 0.02, torch.float64, cpu, in_kernel=True)} != {chunks[0]}
    for name in ("final_theta", "status", "steps", "loss", "test_error"):
        np.testing.assert_array_equal(in_kernel[name].values, in_torch_chunks[name].values, err_msg=name)
