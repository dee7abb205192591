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


def _activated(pre: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(pre, 0.0)
    if activation == "tanh":
        return np.tanh(pre)
    if activation == "erf":
        from scipy.special import erf  # only erf networks pay for scipy.special's import

        return erf(pre)
    return pre
