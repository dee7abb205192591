"""The outputs of an ensemble's networks in NumPy, for the stages that compare minima by the
function they compute (the catalogue's fingerprints, :mod:`basins.minima`) without loading
torch: deduplication needs nothing else of it, and importing it is ~1.4 s of each of the default
study's 42 deduplication jobs. The engine's forward pass, with gradients, is
:func:`basins.landscapes.networks.forward`; both evaluate the same network (tested to round-off,
``tests/test_outputs.py``).
"""

from __future__ import annotations

import numpy as np

from basins.landscapes.architecture import Architecture


def network_outputs(theta: np.ndarray, x: np.ndarray, arch: Architecture) -> np.ndarray:
    """Outputs ``(member, sample, output)`` of every member's network ``theta (member, param)``
    on the inputs ``x (sample, feature)``."""
    theta, hidden = np.asarray(theta, dtype=np.float64), np.asarray(x, dtype=np.float64)
    n_members, n_layers = theta.shape[0], len(arch.layer_shapes)
    for index, ((fan_in, fan_out), (w_slice, b_slice)) in enumerate(zip(arch.layer_shapes, arch.layer_slices)):
        weight = theta[:, w_slice].reshape(n_members, fan_out, fan_in)
        pre = hidden @ weight.transpose(0, 2, 1)  # (member, sample, fan_out); shared inputs broadcast
        if b_slice is not None:
            pre = pre + theta[:, None, b_slice]
        hidden = pre if index == n_layers - 1 else _activated(pre, arch.activation)
    return hidden


def output_margins(outputs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed margins ``(member, sample)`` of outputs ``(member, sample, output)``, > 0 where the
    sample is classified correctly: :func:`basins.landscapes.losses.margins` in NumPy (+-1 labels
    times the output for one output; else the true class's output less the largest other one,
    ``y`` the class indices)."""
    if outputs.shape[-1] == 1:
        return y * outputs[..., 0]
    classes = np.broadcast_to(np.asarray(y, dtype=np.int64), outputs.shape[:2])[..., None]
    others = outputs.copy()
    np.put_along_axis(others, classes, -np.inf, -1)
    return np.take_along_axis(outputs, classes, -1)[..., 0] - others.max(-1)


def _activated(pre: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(pre, 0.0)
    if activation == "tanh":
        return np.tanh(pre)
    if activation == "erf":
        from scipy.special import erf  # only erf networks pay for scipy.special's import

        return erf(pre)
    return pre
