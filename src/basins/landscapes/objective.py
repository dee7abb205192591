"""The loss landscape of a network on its training set, as the engine wants it.

``make_objective`` turns an architecture, data and a loss into ``objective(theta, batch) ->
(loss (member,), grad (member, param))`` (:data:`basins.engine.dynamics.Objective`), each member
a row of ``theta``; ``member_losses`` is the same loss as a differentiable function, for
curvature and polish; ``network_chunk_size`` sizes the engine's chunks for a network.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from basins.engine.devices import chunk_size
from basins.landscapes.fused_mlp import FusedMLPObjective
from basins.landscapes.losses import l2_penalty, margins, sample_losses
from basins.landscapes.networks import forward


def network_errors_and_losses(arch, x, y, *, loss, margin, l2, beta=1.0, chunk: int = 4096):
    """``errors_and_losses`` of :func:`basins.flatness.local_energy` for a network on data ``x``,
    ``y``: each point's error and its loss (:func:`losses_of_outputs`, as :func:`member_losses`),
    from one forward pass."""

    def evaluate(points):
        errors, losses = [], []
        with torch.no_grad():
            for start in range(0, len(points), chunk):
                block = torch.as_tensor(points[start : start + chunk], dtype=x.dtype, device=x.device)
                output = forward(block, x, arch)
                errors.append((margins(output, y) <= 0).to(x.dtype).mean(1).cpu().numpy())
                losses.append(losses_of_outputs(output, block, y, loss=loss, margin=margin, l2=l2, beta=beta)
                              .cpu().numpy())
        if not errors:  # no point (an empty catalogue)
            return np.empty(0), np.empty(0)
        return np.concatenate(errors), np.concatenate(losses)

    return evaluate


def data_tensors(arch, x, y, *, dtype=torch.float64, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels as the losses want them: +-1 labels in ``dtype`` for one output, class
    indices (long) for several."""
    labels = dtype if arch.n_outputs == 1 else torch.long
    return (
        torch.as_tensor(np.asarray(x), dtype=dtype, device=device),
        torch.as_tensor(np.asarray(y), dtype=labels, device=device),
    )


class NetworkLoss:
    """The training loss ``(member, param) -> (member,)`` of :func:`member_losses` on fixed data:
    the ``energy`` of the curvature code (saddle checks, polish, flatness, transition states).

    ``loss_and_gradient`` is the hand-derived pass of the training engine
    (:class:`basins.landscapes.fused_mlp.FusedMLPObjective`;
    :func:`basins.engine.dynamics.energy_and_gradient` takes it instead of autograd), and
    ``hessians`` the dense Hessian by :func:`basins.landscapes.fused_mlp.hessians` where that
    covers the network (one output, at most one hidden layer), else None (Hessian-vector
    products of autograd then build it: :func:`basins.engine.curvature.dense_hessians`).
    """

    def __init__(self, arch, x, y, *, loss, margin, l2, beta=1.0):
        self.arch, self.x, self.y = arch, x, y
        self.options = dict(loss=loss, margin=margin, l2=l2, beta=beta)
        self.fused = FusedMLPObjective(arch, x, y, **self.options)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        return member_losses(theta, self.x, self.y, self.arch, **self.options)

    def loss_and_gradient(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fused(theta, None)

    @property
    def hessians(self):
        return self.fused.hessians

    @property
    def block_low_rank_hessians(self):
        return self.fused.block_low_rank_hessians


def member_losses(theta, x, y, arch, *, loss, margin, l2, beta=1.0) -> torch.Tensor:
    """Training loss ``(member,)``: the mean sample loss plus ``l2 / 2 |theta|^2``; differentiable."""
    return losses_of_outputs(forward(theta, x, arch), theta, y, loss=loss, margin=margin, l2=l2, beta=beta)


def losses_of_outputs(output, theta, y, *, loss, margin, l2, beta=1.0) -> torch.Tensor:
    """:func:`member_losses` from the networks' ``output`` on the data (the forward pass done)."""
    return sample_losses(output, y, loss=loss, margin=margin, beta=beta).mean(1) + l2_penalty(theta, l2)


def make_objective(arch, x, y, *, loss, margin, l2, beta=1.0, compile=False):
    """``objective(theta, batch) -> (loss, grad)``, per member, as :mod:`basins.engine.dynamics` wants.

    The loss of :func:`member_losses` and its gradient by the hand-derived pass of
    :class:`basins.landscapes.fused_mlp.FusedMLPObjective` (about 20 kernels an evaluation
    instead of autograd's ~290 operator calls; equal to autograd to round-off,
    tests/test_fused_mlp.py). ``compile`` instead evaluates autograd through
    :func:`compiled_loss_and_gradient`.
    """
    if not compile:
        return FusedMLPObjective(arch, x, y, loss=loss, margin=margin, l2=l2, beta=beta)
    gradient = compiled_loss_and_gradient(arch, loss, margin, l2)
    beta_tensor = torch.tensor(beta, dtype=x.dtype, device=x.device)

    def objective(theta, batch):
        inputs, labels = (x, y) if batch is None else (x[batch], y[batch])
        grad, (_, values) = gradient(theta, inputs, labels, beta_tensor)
        return values, grad

    return objective


@functools.cache
def compiled_loss_and_gradient(arch, loss, margin, l2):
    """``(theta, x, y, beta) -> (grad, (sum, losses))`` of :func:`member_losses`, by ``torch.compile``.

    Inductor fuses the element-wise chain around the GEMMs (activation, its derivative, the
    loss): 2-3x faster than eager autograd at h = 16 on the CPU, but no faster than the
    default hand-derived pass (0.5x at the study's shape, 0.6-1.0x at h = 16;
    benchmarks/README.md). Shapes are dynamic and beta is a tensor input, so neither members
    dropping out nor an annealed beta recompiles it. Fused kernels round differently: results
    agree with eager autograd to round-off, not bit for bit.
    """

    def total(theta, x, y, beta):
        losses = member_losses(theta, x, y, arch, loss=loss, margin=margin, l2=l2, beta=beta)
        return losses.sum(), losses

    return torch.compile(torch.func.grad_and_value(total, has_aux=True), dynamic=True)


def beta_at(step: int, *, beta: float, beta_start: float, ramp_steps: int) -> float:
    """Inverse temperature of the cross-entropy after ``step`` steps: geometric from
    ``beta_start`` to ``beta`` over ``ramp_steps`` steps, then ``beta``."""
    if step >= ramp_steps:
        return beta
    return beta_start * (beta / beta_start) ** (step / ramp_steps)


def check_beta_schedule(loss: str, dynamics: str, beta: float, beta_start: float, ramp_steps: int) -> None:
    """The inverse temperature is the cross-entropy's, and ramps only under stepwise dynamics."""
    if beta <= 0 or beta_start <= 0 or ramp_steps < 0:
        raise ValueError(f"beta={beta} and beta_start={beta_start} must be > 0, beta_ramp_steps={ramp_steps} >= 0")
    if loss != "cross_entropy" and (beta != 1.0 or beta_start != 1.0):
        raise ValueError(f"beta applies to the cross_entropy loss, not {loss!r}")
    if ramp_steps and dynamics == "gradient_flow":
        raise ValueError("beta_ramp_steps needs a stepwise dynamics (gd, sgd, adam, fire), not gradient_flow")
    if beta_start != beta and not ramp_steps:
        raise ValueError(f"beta_start={beta_start} differs from beta={beta} but beta_ramp_steps is 0")
    if ramp_steps and beta_start == beta:
        raise ValueError(f"beta_ramp_steps={ramp_steps} ramps beta from {beta} to itself; set beta_start")


def network_chunk_size(arch, n_train, memory_budget_mb, dtype, device, *, in_kernel: bool = False) -> int:
    """:func:`chunk_size` for members of ``arch`` evaluated on ``n_train`` samples.

    ``in_kernel``: every evaluation runs in the C kernel (:mod:`basins.landscapes.native_mlp`),
    whose scratch is its threads' own, so no (sample, member, unit) tensor is made and the
    members' parameter-sized tensors are the largest. torch's pass bounds the chunk to 8 members
    at h = 128, P = 1 000 in float32: one group of the kernel's lanes (half of one with
    AVX-512's sixteen), which no second thread can share.
    """
    if in_kernel:
        return chunk_size(dtype.itemsize * arch.n_params * 12, dtype.itemsize * arch.n_params, memory_budget_mb, device)
    activations = n_train * (arch.width * arch.depth + arch.n_outputs) * 4
    layer = n_train * max(arch.width, arch.n_outputs)
    return chunk_size(
        dtype.itemsize * (arch.n_params * 12 + activations), dtype.itemsize * layer, memory_budget_mb, device
    )
