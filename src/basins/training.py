"""Stage ``train_ensemble``: train an ensemble of networks, and keep only true minima.

Every basin measurement is "start many networks at chosen points, let the dynamics run, see
where each ends". This stage runs the engine (:func:`basins.engine.descent.descend_until_decided`)
on a network's training loss (:mod:`basins.landscapes.objective`) from every member's start,
then checks what it reached: members stopped at a saddle are kicked off it
(:func:`escape_saddles`), converged members are Newton-polished and confirmed as stationary
points (:func:`confirm_minima`), and errors on the training and test sets are recorded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import xarray as xr

from basins.engine.checkpoints import fingerprint_arrays
from basins.engine.curvature import block_low_rank_of, lowest_eigenpairs, make_hvp
from basins.engine.descent import (
    Descent,
    descend_until_decided,
    descent_dataset,
    merge_continued,
    to_numpy,
    with_final_losses,
    with_rows,
)
from basins.engine.devices import TORCH_DTYPES, resolve_device
from basins.engine.dynamics import energy_and_gradient
from basins.engine.polish import polish_minima
from basins.io import variable_attrs
from basins.labels import BUDGET, CONVERGED, DIVERGED, SADDLE
from basins.landscapes.losses import check_loss, margins
from basins.landscapes.architecture import Architecture
from basins.landscapes.networks import forward
from basins.landscapes.objective import (
    NetworkLoss,
    beta_at,
    check_beta_schedule,
    data_tensors,
    make_objective,
    network_chunk_size,
)

log = logging.getLogger(__name__)

#: Each continuation after a kick off a saddle tests the gradient this much tighter than the last
#: (:func:`escape_saddles`).
ESCAPE_TIGHTENING = 0.1


# Long only by its signature and numpydoc docstring, one keyword per config key; the body is ~50 lines.
def train_ensemble(
    arch: Architecture,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    initial_theta: np.ndarray,
    member_ids: np.ndarray,
    *,
    loss: str,
    dynamics: str,
    lr: float,
    max_steps: int,
    grad_tol: float,
    budget_factors: Sequence[float] = (1,),
    l2: float = 0.0,
    margin: float = 1.0,
    momentum: float = 0.0,
    batch_size: int | None = None,
    lr_decay_every: int = 0,
    lr_decay_factor: float = 1.0,
    beta: float = 1.0,
    beta_start: float | None = None,
    beta_ramp_steps: int = 0,
    flat_seeking: dict | None = None,
    compile: bool = False,
    stop_when_satisfied: bool = False,
    curvature_tol: float = 1e-6,
    saddle_kick: float = 1e-2,
    max_saddle_escapes: int = 3,
    max_dense_params: int = 600,
    n_lanczos: int = 60,
    newton_steps: int = 64,
    stationary_tol: float = 1e-9,
    max_refinements: int = 2,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    integrator: str = "dormand_prince",
    check_every: int = 100,
    divergence_threshold: float = 1e6,
    seed: int = 0,
    device: str = "auto",
    dtype: str = "float64",
    memory_budget_mb: float = 1024.0,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every_s: float = 300.0,
    progress_every_s: float = 30.0,
    final_errors: bool = True,
) -> xr.Dataset:
    """Train every member from its starting point until it stops.

    Parameters
    ----------
    arch : Architecture
        The network, shared by all members.
    x_train, y_train, x_test, y_test : ndarray
        Data ``(sample, feature)`` and labels ``(sample,)``: +-1 for binary tasks (one output),
        class indices otherwise.
    initial_theta : ndarray, shape (member, param)
        Starting points (see :func:`basins.landscapes.architecture.initial_parameters`, or points chosen by
        the basin stage).
    member_ids : ndarray, shape (member,)
        Global member indices; they seed the minibatch order, so results do not depend on
        how members are split into shards or chunks.
    loss : {"mse", "hinge", "quadratic_hinge", "cross_entropy"}
        Training loss, averaged over the training set, plus ``l2 / 2 |theta|^2``.
    dynamics : {"gradient_flow", "gd", "sgd", "adam", "fire"}
        ``lr`` is the step size (the first step for the adaptive gradient flow).
    max_steps : int
        Step budget per member (for ``gradient_flow``: attempted integrator steps).
    budget_factors : sequence of float
        A member that spends ``max_steps`` is continued up to ``budget_factors[-1] * max_steps``
        steps in all, in stages (:func:`descend_until_decided`); one still running then ends
        with status ``BUDGET``. The same for every continuation after a saddle kick.
    grad_tol : float
        A member has converged when its full-batch gradient norm is at most this. Too large
        stops members on plateaus before the minimum; too small spends the budget on
        round-off near flat minima.
    lr_decay_every, lr_decay_factor : int, float
        ``gd``, ``sgd``, ``adam``: multiply the step size by the factor every so many steps
        (0: constant step size).
    beta, beta_start, beta_ramp_steps : float, float, int
        ``cross_entropy`` only: its inverse temperature (see :func:`basins.landscapes.losses.sample_losses`)
        grows geometrically from ``beta_start`` to ``beta`` over the first ``beta_ramp_steps``
        steps (a slow ramp anneals, 0 quenches at ``beta``); members converge only on the final
        landscape, after the ramp. Not for ``gradient_flow``, whose steps are not times.
    flat_seeking : dict
        Options of the ``entropy_gd`` and ``replicated_gd`` dynamics
        (:mod:`basins.engine.flat_seeking`: coupling and its growth over ``scoping_steps``,
        then plain descent with ``final_lr``); members converge only after the scoping.
    compile : bool
        Evaluate the loss and gradient by autograd through ``torch.compile`` (needs a C++
        compiler on the CPU, Triton on CUDA) instead of the default hand-derived pass
        (:mod:`basins.landscapes.fused_mlp`): equal to round-off, a few seconds of compilation
        per job, and on the CPU no faster than the default (0.5-1.0x; benchmarks/README.md).
    stop_when_satisfied : bool
        Also stop a member once every training point has margin >= ``margin``. Such stopping
        points are not claimed to be minima: they get no saddle check.
    curvature_tol, saddle_kick, max_saddle_escapes : float, float, int
        Minima, not saddles: at every member that converged by its gradient the lowest
        Hessian eigenvalue is computed (:func:`escape_saddles`); below ``-curvature_tol`` the
        member is kicked along that eigenvector and the same dynamics continues (its gradient
        test tightened tenfold at each kick after the first), up to ``max_saddle_escapes``
        times; one still at a saddle then ends with status ``SADDLE``.
        Too large a ``curvature_tol`` lets shallow saddles pass as minima; too small flags the
        round-off of flat minima (near-zero eigenvalues) as saddles.
    max_dense_params, n_lanczos : int
        The lowest eigenpair comes from dense Hessians up to ``max_dense_params`` parameters;
        above it, for networks of one hidden layer and one output, from their Hessians as blocks
        plus low rank (exact: :mod:`basins.engine.block_low_rank`), else from ``n_lanczos``
        Lanczos iterations.
    newton_steps : int
        Then up to this many Newton steps on the directions of curvature above
        ``curvature_tol`` move each converged member onto its minimum, to round-off
        (:func:`basins.engine.polish.polish_minima`; networks up to ``max_dense_params`` parameters
        and, above it, those with block Hessians; 0: no polish), so that members of one minimum
        agree whatever ``grad_tol`` was.
    stationary_tol, max_refinements : float, int
        A converged member is a minimum once its polished gradient norm is at most
        ``stationary_tol``; others are continued with a tighter gradient test, up to
        ``max_refinements`` rounds, and then left undecided (:func:`confirm_minima`). Where
        there is no polish (above ``max_dense_params`` parameters without block Hessians) the
        gradient test alone decides (a warning says so).
    rtol, atol : float
        Local error tolerances of ``gradient_flow``.
    integrator : {"dormand_prince", "rosenbrock", "chebyshev"}
        How ``gradient_flow`` is integrated: explicit Dormand-Prince 5(4), the L-stable
        Rosenbrock triple for stiff landscapes (:class:`basins.engine.dynamics.RosenbrockFlow`;
        networks with hand-derived Hessians: one output, at most one hidden layer), or the
        stabilized explicit Runge-Kutta-Chebyshev method (:class:`basins.engine.dynamics.ChebyshevFlow`).
    check_every : int
        ``sgd`` only: steps between full-batch convergence checks.
    divergence_threshold : float
        A member whose loss is not finite, or whose largest parameter exceeds this, is marked
        diverged and frozen.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:k]"``.
    memory_budget_mb : float
        Members are processed in chunks sized to stay within this working memory.
    checkpoint_path : path, optional
        Where to save progress every ``checkpoint_every_s`` seconds; an existing checkpoint of
        the same run is resumed from: same settings, starting points, training data
        (``x_train``, ``y_train``), package source code and torch version
        (:mod:`basins.engine.checkpoints`). Any other checkpoint there is discarded, with a log line
        saying which of these differ; any edit to ``src/basins`` discards them all. It is
        removed once the run is complete.
    final_errors : bool
        Measure each final point's training and test errors (``train_error``, ``test_error``,
        ``n_unsatisfied``). The probing stages' reruns, which only ask where each run ended,
        leave them out: over the test set they cost a tenth of such a rerun at N = 41.

    Returns
    -------
    xarray.Dataset
        Dims ``(member, param)`` and ``(member, step)``: ``initial_theta``, ``final_theta``,
        ``loss``, ``train_error``, ``test_error``, ``n_unsatisfied`` (with ``final_errors``), ``grad_norm``,
        ``steps``, ``flow_time``, ``wall_time``, ``status`` (0 converged at a minimum, 1 budget,
        2 diverged, 3 saddle), ``lowest_eigenvalue`` and ``n_escapes`` (without
        ``stop_when_satisfied``) and ``loss_history`` at log-spaced steps (of the first run, before
        any saddle escape).
    """
    beta_start = beta if beta_start is None else beta_start
    _check_run(arch, initial_theta, member_ids, loss=loss, dynamics=dynamics, max_steps=max_steps, grad_tol=grad_tol,
               beta=beta, beta_start=beta_start, beta_ramp_steps=beta_ramp_steps)
    torch_device = resolve_device(device)
    torch_dtype = TORCH_DTYPES[dtype]
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch_dtype, device=torch_device)  # noqa: E731
    data = {
        "train": data_tensors(arch, x_train, y_train, dtype=torch_dtype, device=torch_device),
        "test": data_tensors(arch, x_test, y_test, dtype=torch_dtype, device=torch_device),
    }
    objective, annealed = _training_landscape(
        arch, data["train"], loss=loss, margin=margin, l2=l2, beta=beta, beta_start=beta_start,
        beta_ramp_steps=beta_ramp_steps, compile=compile,
    )
    # Curvature, continuations by the Rosenbrock integrator and the final errors take torch's
    # pass on (sample, member, unit) tensors; the run's own steps may not (_steps_in_kernel).
    chunk = network_chunk_size(arch, len(y_train), memory_budget_mb, torch_dtype, torch_device)
    in_kernel = _steps_in_kernel(objective, batch_size, stop_when_satisfied, flat_seeking, integrator)
    engine = dict(
        dynamics=dynamics, lr=lr, max_steps=max_steps, grad_tol=grad_tol, momentum=momentum,
        batch_size=batch_size, lr_decay_every=lr_decay_every, lr_decay_factor=lr_decay_factor,
        dynamics_options=_dynamics_options(flat_seeking, integrator), n_samples=len(y_train),
        satisfied=_margins_met(arch, data["train"], margin) if stop_when_satisfied else None,
        rtol=rtol, atol=atol, check_every=check_every,
        divergence_threshold=divergence_threshold, seed=seed, device=torch_device, dtype=torch_dtype,
        chunk=network_chunk_size(arch, len(y_train), memory_budget_mb, torch_dtype, torch_device, in_kernel=in_kernel),
        run_id=(arch, loss, l2, margin, beta, beta_start, stop_when_satisfied, dtype, compile),
        progress_every_s=progress_every_s,
    )
    # Members that spent the step budget, or passed the gradient test short of a stationary
    # point, are continued by the stiff integrator where there is one (_continuation_integrator);
    # members kicked off a saddle fall away from it by the run's own integrator first.
    stiff_integrator = _continuation_integrator(dynamics, integrator, objective)
    block_low_rank = stiff_integrator == "rosenbrock" and _curvature_form(objective, arch.n_params,
                                                                           max_dense_params) == "blocks"
    stiff = dict(dynamics_options=_dynamics_options(flat_seeking, stiff_integrator, block_low_rank=block_low_rank))
    if stiff_integrator == "rosenbrock":  # its Hessians take torch's pass: the run's chunks may be the kernel's
        stiff["chunk"] = chunk
    out = descend_until_decided(
        objective, initial_theta, member_ids, budget_factors=budget_factors, continued_by=stiff,
        # No member converges while the landscape or the flat-seeking coupling still moves.
        annealed=annealed, anneal_steps=max(beta_ramp_steps, (flat_seeking or {}).get("scoping_steps", 0)),
        checkpoint_path=checkpoint_path, checkpoint_every_s=checkpoint_every_s,
        data_fingerprint=fingerprint_arrays(x_train, y_train), **engine,
    )
    checks = None
    if not stop_when_satisfied:
        x, y = data["train"]
        out, checks = check_minima(
            out, member_ids,
            energy=NetworkLoss(arch, x, y, loss=loss, margin=margin, l2=l2, beta=beta),
            continue_from=lambda theta, ids, tol: descend_until_decided(
                objective, theta, ids, budget_factors=budget_factors, **dict(engine, grad_tol=tol, **stiff)
            ),
            escape_from=lambda theta, ids, tol: descend_until_decided(
                objective, theta, ids, budget_factors=budget_factors, continued_by=stiff, **dict(engine, grad_tol=tol)
            ),
            n_params=arch.n_params, grad_tol=grad_tol, curvature_tol=curvature_tol, saddle_kick=saddle_kick,
            max_saddle_escapes=max_saddle_escapes, max_dense_params=max_dense_params, n_lanczos=n_lanczos,
            newton_steps=newton_steps, stationary_tol=stationary_tol, max_refinements=max_refinements,
            seed=seed, device=torch_device, dtype=torch_dtype, memory_budget_mb=memory_budget_mb, chunk=chunk,
        )
    out = with_final_losses(out, objective, as_tensor)
    with torch.no_grad():
        errors = _final_errors(out, arch, data, margin, as_tensor, chunk) if final_errors else None
    return _as_dataset(out, checks, errors, member_ids, initial_theta, arch, dynamics)


def _steps_in_kernel(objective, batch_size, stop_when_satisfied, flat_seeking, integrator) -> bool:
    """Whether the run's every evaluation is the C kernel's (full batch on a network it covers),
    with no torch pass over (sample, member, unit) between them (the satisfied test's margins)
    and no Hessians (the Rosenbrock integrator's), so its chunks need not stay within torch's
    temporaries (:func:`basins.landscapes.objective.network_chunk_size`)."""
    return (getattr(objective, "native", None) is not None and batch_size is None and not stop_when_satisfied
            and not flat_seeking and integrator != "rosenbrock")


def _dynamics_options(flat_seeking, integrator, *, block_low_rank=False):
    """The stepper's own options; the default integrator is left out, so the runs (and
    checkpoints) of gradient flow by Dormand-Prince keep their fingerprint, and so is
    ``block_low_rank`` where false (Rosenbrock's Hessians as blocks plus low rank: networks
    above ``max_dense_params`` parameters)."""
    options = dict(flat_seeking or {})
    if integrator != "dormand_prince":
        options["integrator"] = integrator
    if block_low_rank:
        options["block_low_rank"] = True
    return options or None


def _continuation_integrator(dynamics, integrator, objective):
    """How gradient flow continues members that spent the step budget, or passed the gradient
    test short of a stationary point (continued with the test tightened): the L-stable
    Rosenbrock integrator wherever the objective writes out its Hessians, unless the run's own
    integrator is Runge-Kutta-Chebyshev, which continues them itself.

    Such members crawl along directions of curvature 1e-4 or less beside stiff ones, where
    Dormand-Prince's steps are held down by stability (a digits member took 5 800 of them at
    0.2k member-steps/s). Both integrate the same flow to its limit (the endpoints of both are
    polished onto the same minima; tests/test_training.py). Chebyshev's stages follow the
    stiffness at one gradient each, where each Rosenbrock step factors a Hessian: at N = 401
    (digits draw 1, 512 members) its continuations ended every member at Rosenbrock's point, the
    draw 118 -> 93 s (benchmarks/README.md). Members kicked off a saddle are not crawling: they
    fall away from it along its unstable direction, where a Rosenbrock step (a dense Hessian and
    its factorization a member) costs far more than the explicit steps it saves (4x the time at
    N = 161, 5x at N = 401 in session 30's runs of the digits replicates); they are continued by
    the run's own integrator, and by this one only once they spend a budget.
    """
    if dynamics == "gradient_flow" and integrator != "chebyshev" and getattr(objective, "hessians", None) is not None:
        return "rosenbrock"
    return integrator


def _check_run(arch, initial_theta, member_ids, *, loss, dynamics, max_steps, grad_tol, beta, beta_start, beta_ramp_steps):
    """Refuse a loss, budget, beta schedule or starting points that :func:`train_ensemble` cannot run."""
    check_loss(loss)
    if max_steps <= 0 or grad_tol < 0:
        raise ValueError(f"max_steps={max_steps} must be > 0 and grad_tol={grad_tol} >= 0")
    check_beta_schedule(loss, dynamics, beta, beta_start, beta_ramp_steps)
    if initial_theta.shape != (len(member_ids), arch.n_params):
        raise ValueError(
            f"initial_theta has shape {initial_theta.shape}; expected "
            f"({len(member_ids)}, {arch.n_params}) for {len(member_ids)} members of this network"
        )


def _training_landscape(arch, train, *, loss, margin, l2, beta, beta_start, beta_ramp_steps, compile):
    """The training objective at ``beta``, and ``annealed(step)`` on the ramp from ``beta_start``
    (None without a ramp)."""

    def landscape(inverse_temperature):
        return make_objective(arch, *train, loss=loss, margin=margin, l2=l2, beta=inverse_temperature, compile=compile)

    annealed = None
    if beta_ramp_steps:
        annealed = lambda step: landscape(  # noqa: E731
            beta_at(step, beta=beta, beta_start=beta_start, ramp_steps=beta_ramp_steps)
        )
    return landscape(beta), annealed


def _margins_met(arch, train, margin):
    """``satisfied(theta, loss)``: every training point has margin >= ``margin``."""
    x, y = train
    return lambda theta, loss: (margins(forward(theta, x, arch), y) < margin).sum(1) == 0


@dataclasses.dataclass(frozen=True)
class MinimumChecks:
    """Per-member records ``(member,)`` of :func:`check_minima` (their meanings:
    :data:`_MINIMUM_CHECKS`); ``n_refinements`` is None where no confirmation ran."""

    lowest_eigenvalue: np.ndarray
    n_escapes: np.ndarray
    polish_shift: np.ndarray
    grad_norm_before_polish: np.ndarray
    n_refinements: np.ndarray | None = None

    def merged(self, rows: np.ndarray, continued: MinimumChecks) -> MinimumChecks:
        """These records with the members at ``rows`` continued by ``continued``: its records
        replace theirs, their escapes add up."""
        replaced = {name: with_rows(getattr(self, name), rows, getattr(continued, name))
                    for name in ("lowest_eigenvalue", "polish_shift", "grad_norm_before_polish")}
        n_escapes = with_rows(self.n_escapes, rows, self.n_escapes[rows] + continued.n_escapes)
        return dataclasses.replace(self, **replaced, n_escapes=n_escapes)


def check_minima(
    out: Descent,
    member_ids: np.ndarray,
    *,
    energy: Callable[[torch.Tensor], torch.Tensor],
    continue_from: Callable[[np.ndarray, np.ndarray, float], Descent],
    escape_from: Callable[[np.ndarray, np.ndarray, float], Descent],
    n_params: int,
    grad_tol: float,
    curvature_tol: float,
    saddle_kick: float,
    max_saddle_escapes: int,
    max_dense_params: int,
    n_lanczos: int,
    newton_steps: int,
    stationary_tol: float,
    max_refinements: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    memory_budget_mb: float,
    chunk: int | None = None,
) -> tuple[Descent, MinimumChecks]:
    """Keep only true minima among the converged members of the run ``out``: the run checked,
    and the checks' records.

    Members at a saddle are kicked off it and continued (:func:`escape_saddles`), converged
    members are Newton-polished onto their minimum (:func:`basins.engine.polish.polish_minima`)
    and confirmed stationary, or continued with a tighter gradient test (:func:`confirm_minima`).
    ``energy`` is the per-member loss, ``continue_from(theta, ids, grad_tol)`` the engine run
    that continues members, ``escape_from`` (the same signature) the one that carries members
    kicked off a saddle. Above ``max_dense_params`` parameters the Hessians are taken as blocks
    plus low rank where ``energy`` gives them so (``energy.block_low_rank_hessians``:
    one-hidden-layer, one-output networks; exact, :mod:`basins.engine.block_low_rank`);
    otherwise (or with ``newton_steps`` 0) there is no polish, and a warning says the gradient
    test alone decides. ``chunk``: the most members whose curvature is taken at once (the run's
    own chunk where None; a run whose steps are all the C kernel's has larger ones than torch's
    Hessians should take).
    """
    form = _curvature_form(energy, n_params, max_dense_params)
    hessian_bytes = 4 * _hessian_bytes(energy, n_params, form)

    def settle(run, ids, tol):
        """Saddles kicked off and continued, then the Newton polish, for the members of ``run``."""
        run, lowest_eigenvalue, n_escapes = escape_saddles(
            run, ids,
            continue_from=escape_from,
            energy=energy,
            curvature_tol=curvature_tol, saddle_kick=saddle_kick, grad_tol=tol,
            max_saddle_escapes=max_saddle_escapes, max_dense_params=max_dense_params,
            n_lanczos=n_lanczos, seed=seed, device=device, dtype=dtype,
            memory_budget_mb=memory_budget_mb, chunk=chunk,
        )
        return polish_run(
            run, energy, lowest_eigenvalue=lowest_eigenvalue, n_escapes=n_escapes, curvature_tol=curvature_tol,
            newton_steps=newton_steps, max_dense_params=max_dense_params, stationary_tol=stationary_tol,
            device=device, dtype=dtype, chunk=max(1, min(chunk or run.chunk, int(memory_budget_mb * 2**20 // hessian_bytes))),
            dense_chunk=max(1, min(chunk or run.chunk, int(memory_budget_mb * 2**20 // (8 * 4 * n_params**2)))),
        )

    out, checks = settle(out, member_ids, grad_tol)
    if form != "lanczos" and newton_steps > 0:
        return confirm_minima(
            out, checks, member_ids, refine=lambda theta, ids, tol: settle(continue_from(theta, ids, tol), ids, tol),
            grad_tol=grad_tol, stationary_tol=stationary_tol, max_refinements=max_refinements,
        )
    log.warning(
        "no Newton polish (%d parameters, max_dense_params=%d, no block Hessians, newton_steps=%d): minima are "
        "confirmed by the gradient test at grad_tol alone, and their count can depend on it",
        n_params, max_dense_params, newton_steps,
    )
    return out, checks


def polish_run(
    run: Descent, energy: Callable[[torch.Tensor], torch.Tensor], *, lowest_eigenvalue: np.ndarray,
    n_escapes: np.ndarray, **polish,
) -> tuple[Descent, MinimumChecks]:
    """The run ``run`` Newton-polished by :func:`basins.engine.polish.polish_minima` (which
    takes the options ``polish``), and the records of its checks, given those of the saddle
    check (:func:`escape_saddles`)."""
    polished = polish_minima(
        run.final_theta, run.grad_norm, run.status, energy, lowest_eigenvalue=lowest_eigenvalue, **polish
    )
    checks = MinimumChecks(polished.lowest_eigenvalue, n_escapes, polished.shift, run.grad_norm)
    return dataclasses.replace(run, final_theta=polished.final_theta, grad_norm=polished.grad_norm), checks


def confirm_minima(
    out: Descent,
    checks: MinimumChecks,
    member_ids: np.ndarray,
    *,
    refine: Callable[[np.ndarray, np.ndarray, float], tuple[Descent, MinimumChecks]],
    grad_tol: float,
    stationary_tol: float,
    max_refinements: int,
) -> tuple[Descent, MinimumChecks]:
    """Catalogue as minima only members shown to sit on a stationary point.

    A member that passed the gradient test but whose Newton polish did not bring its gradient
    norm to ``stationary_tol`` (round-off, far below any ``grad_tol``) has not been shown to be
    at a minimum: the dynamics may only be slow there (a shallow slope on which GD or FIRE
    crawls, with no stationary point nearby), or the polish may have fallen short in an
    anharmonic valley. Such members are continued by ``refine(points, member_ids, tol)`` (the
    same dynamics from where they stopped, with the gradient test tightened to ``tol``, then the
    saddle check and the polish) with ``tol = grad_tol * 0.01**k`` in round ``k``; after
    ``max_refinements`` rounds a member still unconfirmed gets status ``BUDGET``: undecided,
    never a minimum. ``refine`` returns the continued run and its :class:`MinimumChecks`.
    Returns the run and the ``checks`` with ``n_refinements``; the other variables of a refined
    member are its continued run's (``steps``, ``wall_time``, ``flow_time`` and ``n_escapes``
    summed).
    """
    if not 0 < stationary_tol or max_refinements < 0:
        raise ValueError(f"stationary_tol={stationary_tol} must be > 0 and max_refinements={max_refinements} >= 0")
    n_refinements = np.zeros(len(member_ids), dtype=np.int64)

    def unconfirmed(run):
        return np.flatnonzero((run.status == CONVERGED) & ~(run.grad_norm <= stationary_tol))

    for round_ in range(1, max_refinements + 1):
        rows = unconfirmed(out)
        if not len(rows):
            break
        tol = grad_tol * 0.01**round_
        log.info("%d members not yet on a stationary point (gradient up to %.2g): continued to grad_tol %.2g",
                 len(rows), out.grad_norm[rows].max(), tol)
        refined, refined_checks = refine(out.final_theta[rows], member_ids[rows], tol)
        out, checks = merge_continued(out, rows, refined), checks.merged(rows, refined_checks)
        n_refinements[rows] = round_
    rows = unconfirmed(out)
    if len(rows):
        log.info("%d members still not on a stationary point: undecided (status budget)", len(rows))
    return out.with_status(rows, BUDGET), dataclasses.replace(checks, n_refinements=n_refinements)


def escape_saddles(
    out: Descent,
    member_ids: np.ndarray,
    *,
    continue_from: Callable[[np.ndarray, np.ndarray, float], Descent],
    energy: Callable[[torch.Tensor], torch.Tensor],
    curvature_tol: float,
    saddle_kick: float,
    grad_tol: float,
    max_saddle_escapes: int,
    max_dense_params: int,
    n_lanczos: int,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    memory_budget_mb: float = 1024.0,
    chunk: int | None = None,
) -> tuple[Descent, np.ndarray, np.ndarray]:
    """Make every converged member of the run ``out`` a minimum, or say it is not.

    A gradient test cannot tell a minimum from a saddle: flows started on a ridge stop on it.
    At each converged member the lowest Hessian eigenpair of ``energy`` (the final landscape,
    ``(member, param) -> (member,)``) is computed; where the eigenvalue is below
    ``-curvature_tol`` the member is moved along the eigenvector, to the side its own flow was
    heading (:func:`_downhill_side`), by ``max(saddle_kick, 2 grad_tol / |lambda|)``, capped at 1 (a kick whose
    quadratic gradient exceeds ``grad_tol``, so the dynamics must move), and
    ``continue_from(points, member_ids, tol)`` (the same dynamics, a fresh budget, the gradient
    test at ``tol``) carries it on. After ``max_saddle_escapes`` kicks a member still at a saddle
    gets status ``SADDLE``.

    The first continuation tests at ``grad_tol``; each later one tightens it tenfold. A member
    found at a saddle again after a kick has stopped where the flow is slow rather than where it
    ends: at N = 401 (the digits replicates, width 40) a fifth of the members kept stopping on
    shallow saddles (lowest eigenvalue -2e-4 to -4e-6, among a hidden layer's small units) after
    24 kicks at a fixed ``grad_tol``; the tighter test lets the flow, not the tolerance, decide
    where they end. Kicks shrink with it (``2 tol / |lambda|``).

    Returns the run with new ``final_theta``, ``status``, ``grad_norm``, ``steps``,
    ``wall_time`` and ``flow_time`` (summed over the continued runs), the lowest eigenvalue at
    each final point (nan where not converged, and where the dense Hessian's Cholesky factor
    showed every eigenvalue above ``-curvature_tol``: the polish computes it at the polished
    point) and each member's number of escapes. ``chunk``: the most members whose eigenpairs are
    taken at once (the run's own chunk where None).
    """
    if curvature_tol < 0 or saddle_kick <= 0 or max_saddle_escapes < 0:
        raise ValueError(
            f"curvature_tol={curvature_tol} must be >= 0, saddle_kick={saddle_kick} > 0 and "
            f"max_saddle_escapes={max_saddle_escapes} >= 0"
        )
    n_members = len(member_ids)
    lowest_eigenvalue = np.full(n_members, np.nan)
    n_escapes = np.zeros(n_members, dtype=np.int64)
    lowest_eigenpairs_at = _LowestEigenpairs(
        make_hvp(energy), torch.Generator().manual_seed(seed), max_dense_params=max_dense_params, n_lanczos=n_lanczos,
        chunk=_eigenpair_chunk(out, energy, max_dense_params, n_lanczos, memory_budget_mb, chunk or out.chunk),
        device=device, dtype=dtype,
        known_above=curvature_tol,
    )
    rows = np.flatnonzero(out.status == CONVERGED)
    for attempt in range(max_saddle_escapes + 1):
        if not len(rows):
            break
        value, vector = lowest_eigenpairs_at(out.final_theta[rows])
        lowest_eigenvalue[rows] = value
        at_saddle = value < -curvature_tol
        rows, value, vector = rows[at_saddle], value[at_saddle], vector[at_saddle]
        if attempt == max_saddle_escapes or not len(rows):
            out = out.with_status(rows, SADDLE)
            break
        log.info("%d members stopped at saddles (lowest eigenvalue down to %.3g): kick %d", len(rows),
                 value.min(), attempt + 1)
        tol = grad_tol * ESCAPE_TIGHTENING**attempt
        kicked = _kicked_off_saddles(
            energy, out.final_theta[rows], value, vector, member_ids[rows], saddle_kick=saddle_kick,
            grad_tol=tol, seed=seed, attempt=attempt, device=device, dtype=dtype,
        )
        continued = continue_from(kicked, member_ids[rows], tol)
        out = merge_continued(out, rows, continued)
        n_escapes[rows] += 1
        lowest_eigenvalue[rows] = np.nan
        rows = rows[continued.status == CONVERGED]
    return out, lowest_eigenvalue, n_escapes


def _eigenpair_chunk(out, energy, max_dense_params, n_lanczos, memory_budget_mb, chunk):
    """Members whose lowest eigenpair is computed at once: at most ``chunk``, within ``memory_budget_mb``."""
    n_params = out.final_theta.shape[1]
    form = _curvature_form(energy, n_params, max_dense_params)
    # the Lanczos basis, or a Hessian with eigh's copies
    per_member = 8 * 2 * n_lanczos * n_params if form == "lanczos" else 3 * _hessian_bytes(energy, n_params, form)
    return max(1, min(chunk, int(memory_budget_mb * 2**20 // per_member)))


def _curvature_form(loss, n_params, max_dense_params):
    """How the saddle check, polish and continuations take the Hessians of ``loss``: ``dense``
    up to ``max_dense_params`` parameters, above it ``blocks`` (plus low rank) where the loss
    gives them, else ``lanczos`` (and no polish)."""
    if n_params <= max_dense_params:
        return "dense"
    return "blocks" if block_low_rank_of(loss) is not None else "lanczos"


def _hessian_bytes(energy, n_params, form):
    """Bytes of a member's Hessian in the curvature ``form`` (:func:`_curvature_form`): dense, or
    blocks plus low rank (Jacobian-sized: :mod:`basins.engine.block_low_rank`)."""
    if form == "blocks":
        # the Jacobian and its rotated copies: a peak of 4.6 of these measured at N = 4001, P = 60
        return 2 * 8 * n_params * (energy.x.shape[0] + 1)
    return 8 * n_params**2


@dataclasses.dataclass(frozen=True)
class _LowestEigenpairs:
    """``(points (member, param)) -> (value (member,), vector (member, param))``: the lowest
    Hessian eigenpair at each point, ``chunk`` points at a time, drawing from one ``generator``
    (nan where a dense Hessian is shown to have every eigenvalue above ``-known_above``)."""

    hvp: Callable
    generator: torch.Generator
    max_dense_params: int
    n_lanczos: int
    chunk: int
    device: torch.device
    dtype: torch.dtype
    known_above: float | None = None

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value, vector = np.empty(len(points)), np.empty(points.shape)
        for start in range(0, len(points), self.chunk):
            theta = torch.as_tensor(points[start : start + self.chunk], dtype=self.dtype, device=self.device)
            low, direction = lowest_eigenpairs(
                self.hvp, theta, max_dense_params=self.max_dense_params, n_lanczos=self.n_lanczos,
                generator=self.generator, known_above=self.known_above,
            )
            value[start : start + self.chunk], vector[start : start + self.chunk] = to_numpy(low), to_numpy(direction)
        return value, vector


def _kicked_off_saddles(energy, theta, value, vector, member_ids, *, saddle_kick, grad_tol, seed, attempt, device, dtype):
    """Points at saddles moved along their unstable eigenvector ``vector`` (eigenvalue ``value``)
    to their downhill side, by ``max(saddle_kick, 2 grad_tol / |value|)`` capped at 1."""
    sign = _downhill_side(energy, theta, vector, member_ids, seed, attempt, device, dtype)
    kick = np.minimum(np.maximum(saddle_kick, 2 * grad_tol / np.abs(value)), 1.0)
    return theta + (sign * kick)[:, None] * vector


def _downhill_side(energy, theta, vector, member_ids, seed, attempt, device, dtype):
    """The side of the saddle each member was already moving to: the sign of -grad . v.

    Near a saddle the gradient's component along the unstable direction v points away from the
    side the point lies on, so following -grad continues the flow's own motion and the outcome
    is the landscape's, not a coin's. Only where that component vanishes exactly (a start on the
    ridge itself, a set of measure zero) is the side drawn, seeded by ``(seed, member)``.
    """
    points = torch.as_tensor(theta, dtype=dtype, device=device)
    _, grad = energy_and_gradient(energy, points)
    along = -(to_numpy(grad) * vector).sum(1)
    drawn = np.array([np.random.default_rng([seed, int(member), attempt]).choice([-1.0, 1.0]) for member in member_ids])
    return np.where(along > 0, 1.0, np.where(along < 0, -1.0, drawn))


def _final_errors(out, arch, data, margin, as_tensor, chunk):
    """Training and test errors and unsatisfied training points of every final point of the
    run ``out``, ``chunk`` members at a time."""
    n_members = out.final_theta.shape[0]
    errors = {name: np.full(n_members, np.nan) for name in ("train_error", "test_error", "n_unsatisfied")}
    for start in range(0, n_members, chunk):
        rows = slice(start, start + chunk)
        theta = as_tensor(out.final_theta[rows])
        for split in ("train", "test"):
            x, y = data[split]
            member_margins = margins(forward(theta, x, arch), y)
            errors[f"{split}_error"][rows] = to_numpy((member_margins <= 0).to(theta.dtype).mean(1))
            if split == "train":
                errors["n_unsatisfied"][rows] = to_numpy((member_margins < margin).sum(1))
    diverged = out.status == DIVERGED
    for name in ("train_error", "test_error"):
        errors[name][diverged] = np.nan
    errors["n_unsatisfied"][diverged] = -1
    return errors


#: Per-member records of the saddle check, the confirmation and the Newton polish.
_MINIMUM_CHECKS = {
    "lowest_eigenvalue": "lowest Hessian eigenvalue at the final point (nan: not converged)",
    "n_escapes": "kicks along a negative-curvature direction before the final point",
    "n_refinements": "rounds continued with a tighter gradient test before the polish confirmed a stationary point",
    "polish_shift": "distance moved by the Newton polish (nan: not polished)",
    "grad_norm_before_polish": "gradient norm where the dynamics stopped, before the Newton polish",
}


def _as_dataset(out, checks, errors, member_ids, initial_theta, arch, dynamics):
    result = descent_dataset(out, member_ids, initial_theta, loss_name="training loss including L2")
    if errors is not None:
        result["train_error"] = ("member", errors["train_error"], variable_attrs("training error (0-1)"))
        result["test_error"] = ("member", errors["test_error"], variable_attrs("test error (0-1)"))
    for name, long_name in _MINIMUM_CHECKS.items():
        # No checks for stopping points (stop_when_satisfied), no n_refinements for unpolished runs.
        if checks is not None and getattr(checks, name) is not None:
            result[name] = ("member", getattr(checks, name), variable_attrs(long_name))
    if errors is not None:
        result["n_unsatisfied"] = (
            "member",
            errors["n_unsatisfied"].astype(np.int64),
            variable_attrs("training points with margin below the loss margin (-1: diverged)"),
        )
    return result.assign_attrs(
        architecture=json.dumps(arch.__dict__, sort_keys=True),
        n_params=arch.n_params,
        n_weights=arch.n_weights,
        dynamics=dynamics,
        parameter_layout="per layer: weight (fan_out, fan_in) row-major, then bias",
    )


