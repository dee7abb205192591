"""Fully connected networks evaluated for a whole ensemble at once.

The parameters of ``M`` networks live in one tensor ``theta`` of shape ``(member, param)``;
each row is the flat concatenation, layer by layer, of the weight matrix ``(fan_out, fan_in)``
(row-major, as ``torch.nn.Linear.weight``) and then the bias (:mod:`basins.landscapes.architecture`,
with the initial parameters). A forward pass is one GEMM for the first layer (the inputs are
shared by all members) and one batched matmul per further layer, so there is no Python loop
over members.
"""

from __future__ import annotations

import torch

from basins.landscapes.architecture import Architecture


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
