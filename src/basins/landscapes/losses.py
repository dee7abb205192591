"""Training losses and the measurements taken beside them, per member and sample.

Binary tasks have one output ``f`` and labels ``y = +-1``; the signed margin is ``y f``.
Multiclass tasks have one output per class and integer labels; the margin is the true-class
output minus the largest other output (Crammer and Singer 2001), so hinge losses and the
count of unsatisfied points mean the same thing in both cases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("mse", "hinge", "quadratic_hinge", "cross_entropy")


def check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}; choose one of {LOSSES}")


def margins(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Signed margin ``(member, sample)``; positive means correctly classified."""
    if output.shape[-1] == 1:
        return y * output[..., 0]
    true = output.gather(-1, y.expand(output.shape[:-1]).unsqueeze(-1))[..., 0]
    others = output.scatter(-1, y.expand(output.shape[:-1]).unsqueeze(-1), float("-inf"))
    return true - others.amax(-1)


def sample_losses(
    output: torch.Tensor, y: torch.Tensor, *, loss: str, margin: float = 1.0, beta: float = 1.0
) -> torch.Tensor:
    """Per-sample loss ``(member, sample)`` from outputs ``(member, sample, output)``.

    ``mse``: 1/2 (f - y)^2 (one-hot targets for several classes); ``hinge``:
    relu(margin - m); ``quadratic_hinge``: 1/2 relu(margin - m)^2, the loss of the jamming
    literature; ``cross_entropy``: logistic loss softplus(-beta y f) / beta or softmax
    cross-entropy of beta f, over beta. The inverse temperature ``beta`` (1: the usual
    cross-entropy) interpolates from a smooth, nearly linear loss of the margins (small beta)
    to the perceptron loss relu(-m) (beta -> infinity), the knob of Baldassi, Pittorino and
    Zecchina (2020) for reaching wide flat minima.
    """
    if isinstance(beta, (int, float)) and beta <= 0:  # a tensor beta is the compiled engine's
        raise ValueError(f"beta={beta}: the inverse temperature must be positive")
    binary = output.shape[-1] == 1
    if loss == "mse":
        if binary:
            return 0.5 * (output[..., 0] - y) ** 2
        target = F.one_hot(y, output.shape[-1]).to(output.dtype)
        return 0.5 * ((output - target) ** 2).sum(-1)
    if loss == "hinge":
        return torch.relu(margin - margins(output, y))
    if loss == "quadratic_hinge":
        return 0.5 * torch.relu(margin - margins(output, y)) ** 2
    if loss == "cross_entropy":
        if binary:
            return F.softplus(-beta * y * output[..., 0]) / beta
        scaled = beta * output
        true = scaled.gather(-1, y.expand(output.shape[:-1]).unsqueeze(-1))[..., 0]
        return (torch.logsumexp(scaled, -1) - true) / beta
    raise ValueError(f"loss={loss!r}; choose one of {LOSSES}")


def l2_penalty(theta: torch.Tensor, l2: float) -> torch.Tensor:
    """``l2 / 2 * |theta|^2`` per member."""
    return 0.5 * l2 * (theta * theta).sum(-1)
