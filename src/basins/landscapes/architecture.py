"""Network architectures and their initial parameters: shapes and numbers, no torch.

An :class:`Architecture` says where each layer's weights and biases sit in the flat parameter
vector ``theta (member, param)`` (row-major ``(fan_out, fan_in)`` weights, as
``torch.nn.Linear.weight``, then the bias, layer by layer); :func:`initial_parameters` draws
starting points member by member. Stages that only read parameters (basin geometry, the
symmetry group, distances) need nothing more, so they do not load torch
(``tests/test_architecture.py``); the forward pass is :mod:`basins.landscapes.networks`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

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
