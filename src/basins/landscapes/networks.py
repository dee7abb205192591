"""Fully connected networks evaluated for a whole ensemble at once.

The parameters of ``M`` networks live in one tensor ``theta`` of shape ``(member, param)``;
each row is the flat concatenation, layer by layer, of the weight matrix ``(fan_out, fan_in)``
(row-major, as ``torch.nn.Linear.weight``) and then the bias. A forward pass is one GEMM for the
first layer (the inputs are shared by all members) and one batched matmul per further layer,
so there is no Python loop over members.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

ACTIVATIONS = ("relu", "tanh", "erf", "linear")
INITS = ("gaussian", "kaiming", "orthogonal", "torch_default")


@dataclass(frozen=True)
class Architecture:
    """Shape of a fully connected network; ``depth`` hidden layers (0 is a perceptron)."""

    n_inputs: int
    n_outputs: int
    depth: int
    width: int
    activation: str = "tanh"
    bias: bool = True

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation={self.activation!r}; choose one of {ACTIVATIONS}")
        if self.depth < 0:
            raise ValueError(f"depth={self.depth} must be >= 0 (0 is a perceptron)")
        if self.depth > 0 and self.width <= 0:
            raise ValueError(f"width={self.width} must be positive when depth > 0")
        if self.n_inputs <= 0 or self.n_outputs <= 0:
            raise ValueError("n_inputs and n_outputs must be positive")

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        """The inverse of ``json.dumps(arch.__dict__)``, as stored in stage outputs."""
        return cls(**json.loads(text))

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(fan_in, fan_out)`` of every layer, input to output."""
        sizes = [self.n_inputs] + [self.width] * self.depth + [self.n_outputs]
        return list(zip(sizes[:-1], sizes[1:]))

    @property
    def layer_slices(self) -> list[tuple[slice, slice | None]]:
        """Where each layer's weight and bias sit in a flat parameter vector."""
        slices, offset = [], 0
        for fan_in, fan_out in self.layer_shapes:
            weight = slice(offset, offset + fan_in * fan_out)
            offset = weight.stop
            bias = None
            if self.bias:
                bias = slice(offset, offset + fan_out)
                offset = bias.stop
            slices.append((weight, bias))
        return slices

    @property
    def n_params(self) -> int:
        return self.layer_slices[-1][1].stop if self.bias else self.layer_slices[-1][0].stop

    @property
    def n_weights(self) -> int:
        """Number of weights, biases excluded (the N of the jamming literature)."""
        return sum(fan_in * fan_out for fan_in, fan_out in self.layer_shapes)


def activate(pre: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return torch.relu(pre)
    if activation == "tanh":
        return torch.tanh(pre)
    if activation == "erf":
        return torch.erf(pre)
    return pre


def forward(theta: torch.Tensor, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """Outputs ``(member, sample, output)`` of every member's network.

    ``x`` is either ``(sample, feature)``, shared by all members, or
    ``(member, sample, feature)`` (one minibatch per member).
    """
    n_members = theta.shape[0]
    n_layers = len(arch.layer_shapes)
    # Activations are kept sample-major, (sample, member, unit): the first layer is then one
    # GEMM over all members' units. On the CPU narrow layers are a broadcast multiply-sum, far
    # cheaper there than a batched matmul with a handful of output columns; on CUDA the
    # batched GEMV is faster (h = 16: 1.46 vs 1.24 million member-steps/s on an H100).
    hidden = x.transpose(0, 1) if x.dim() == 3 else None
    for index, ((fan_in, fan_out), (w_slice, b_slice)) in enumerate(
        zip(arch.layer_shapes, arch.layer_slices)
    ):
        weight = theta[:, w_slice].view(n_members, fan_out, fan_in)
        bias = None if b_slice is None else theta[:, b_slice]
        if hidden is None:
            # One GEMM for all members, the bias added in its epilogue.
            flat_weight = weight.reshape(n_members * fan_out, fan_in).T
            if bias is None:
                pre = x @ flat_weight
            else:
                pre = torch.addmm(bias.reshape(-1), x, flat_weight)
            pre = pre.view(x.shape[0], n_members, fan_out)
        else:
            if fan_out <= _NARROW and hidden.device.type == "cpu":
                pre = (hidden.unsqueeze(2) * weight.unsqueeze(0)).sum(-1)
            else:  # a batched GEMM (GEMV when narrow) reads the strided activations in place
                pre = torch.bmm(hidden.transpose(0, 1), weight.transpose(1, 2)).transpose(0, 1)
            if bias is not None:
                pre = pre + bias
        hidden = pre if index == n_layers - 1 else activate(pre, arch.activation)
    return hidden.transpose(0, 1)


_NARROW = 4


def smallest_hidden_preactivation(theta: torch.Tensor, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """Per member ``(member,)``, the smallest |pre-activation| of any hidden unit on any input
    row of ``x`` (``(sample, feature)``, or one set per member ``(member, sample, feature)``;
    rows of +-inf or nan are skipped): how close a point lies to a kink of a ReLU network's loss,
    where the loss is not differentiable and a minimum's gradient need not vanish. +inf
    without hidden layers."""
    valid, layers = _hidden_preactivations(theta, x, arch)
    smallest = torch.full((theta.shape[0],), torch.inf, dtype=theta.dtype, device=theta.device)
    for pre in layers:
        magnitude = torch.where(valid.unsqueeze(-1), pre.abs(), torch.inf)
        smallest = torch.minimum(smallest, magnitude.flatten(1).min(1).values)
    return smallest


def silenced_inputs(theta: torch.Tensor, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
    """Per member and input row ``(member, sample)``: whether some hidden layer of a ReLU network
    is off on that row (every unit's pre-activation <= 0). Such a row reaches the output as exact
    zeros, so every such row gets the same output (the last layers' biases) and the loss's
    gradient on it moves no weight: no small change of the weights can fit it. False for rows
    of +-inf or nan and without hidden layers."""
    valid, layers = _hidden_preactivations(theta, x, arch)
    silenced = torch.zeros(valid.shape, dtype=torch.bool, device=theta.device)
    for pre in layers:
        silenced |= (activate(pre, arch.activation) == 0).all(-1)
    return silenced & valid


def _hidden_preactivations(theta, x, arch):
    """The rows that are finite ``(member, sample)`` and a generator of each hidden layer's
    pre-activations ``(member, sample, unit)`` (the real network, layer by layer)."""
    hidden = x if x.dim() == 3 else x.unsqueeze(0).expand(theta.shape[0], -1, -1)
    valid = torch.isfinite(hidden).all(-1)
    hidden = torch.where(valid.unsqueeze(-1), hidden, 0.0)

    def layers():
        current = hidden
        for (fan_in, fan_out), (w_slice, b_slice) in list(zip(arch.layer_shapes, arch.layer_slices))[:-1]:
            pre = torch.einsum("msi,moi->mso", current, theta[:, w_slice].view(-1, fan_out, fan_in))
            if b_slice is not None:
                pre = pre + theta[:, b_slice].unsqueeze(1)
            yield pre
            current = activate(pre, arch.activation)

    return valid, layers()


def initial_parameters(
    arch: Architecture,
    member_ids: np.ndarray,
    *,
    seed: int,
    init: str = "kaiming",
    init_scale: float = 1.0,
) -> np.ndarray:
    """Draw starting points ``(member, param)``; member ``i`` depends only on ``(seed, i)``.

    ``gaussian``: weights N(0, init_scale^2 / fan_in); ``kaiming``: N(0, 2 init_scale^2 /
    fan_in) (He et al. 2015); ``orthogonal``: init_scale times a Haar-random orthogonal
    matrix (Saxe et al. 2014); biases zero for these three. ``torch_default``: weights and
    biases U(-k, k) with k = init_scale / sqrt(fan_in), as ``torch.nn.Linear``.
    """
    if init not in INITS:
        raise ValueError(f"init={init!r}; choose one of {INITS}")
    if init_scale <= 0:
        raise ValueError(f"init_scale={init_scale} must be positive")
    theta = np.zeros((len(member_ids), arch.n_params))
    for row, member in enumerate(np.asarray(member_ids, dtype=np.int64)):
        rng = np.random.default_rng([int(seed), int(member)])
        for (fan_in, fan_out), (w_slice, b_slice) in zip(arch.layer_shapes, arch.layer_slices):
            theta[row, w_slice] = _draw_weight(rng, fan_in, fan_out, init, init_scale).ravel()
            if b_slice is not None and init == "torch_default":
                bound = init_scale / np.sqrt(fan_in)
                theta[row, b_slice] = rng.uniform(-bound, bound, fan_out)
    return theta


def initial_scales(arch: Architecture, *, init: str, init_scale: float = 1.0) -> np.ndarray:
    """Standard deviation of each parameter under :func:`initial_parameters` ``(param,)``, for
    the Gaussian initializations (independent coordinates); biases, drawn as zero, have 0.

    The initial measure is then the standard normal in ``z = theta / scale`` on the weights.
    """
    if init not in ("gaussian", "kaiming"):
        raise ValueError(f"init={init!r}: the initial measure is a product of Gaussians only for 'gaussian' and "
                         "'kaiming' (orthogonal and uniform initializations are not)")
    scales = np.zeros(arch.n_params)
    for (fan_in, _), (w_slice, _) in zip(arch.layer_shapes, arch.layer_slices):
        scales[w_slice] = init_scale * np.sqrt((1.0 if init == "gaussian" else 2.0) / fan_in)
    return scales


def _draw_weight(rng, fan_in, fan_out, init, scale):
    if init == "gaussian":
        return rng.standard_normal((fan_out, fan_in)) * scale / np.sqrt(fan_in)
    if init == "kaiming":
        return rng.standard_normal((fan_out, fan_in)) * scale * np.sqrt(2.0 / fan_in)
    if init == "orthogonal":
        gaussian = rng.standard_normal((max(fan_out, fan_in), min(fan_out, fan_in)))
        q, r = np.linalg.qr(gaussian)
        q *= np.sign(np.diag(r))
        return scale * (q if fan_out >= fan_in else q.T)
    bound = scale / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_out, fan_in))


def architecture_for(dataset, *, depth: int, width: int, activation: str, bias: bool = True) -> Architecture:
    """The network for a ``prepare_dataset`` output: one output for binary tasks, else one per class."""
    n_classes = int(dataset.attrs["n_classes"])
    return Architecture(
        n_inputs=dataset.sizes["feature"],
        n_outputs=1 if n_classes == 2 else n_classes,
        depth=depth,
        width=width,
        activation=activation,
        bias=bias,
    )
