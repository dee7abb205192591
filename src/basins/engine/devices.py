"""Where the engine computes and how many members it holds at once.

One home for the device (``resolve_device``), the floating-point types a config may name
(``TORCH_DTYPES``) and the chunking of members within a memory budget (``chunk_size``).

Conventions: a stage that builds its own landscape from arrays (training, jamming, rings) takes
``device="auto"`` and ``memory_budget_mb`` and resolves both here; a function handed a landscape
as a callable (flatness, elastic bands, transition states) takes the ``device`` the callable's
tensors live on and a ``chunk`` its caller sized from the memory budget (e.g. with
:func:`basins.landscapes.objective.network_chunk_size`), since only the caller knows what one
evaluation costs.
"""

from __future__ import annotations

import torch


TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is CUDA where available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(device)


# On the CPU, one layer's activations (sample, member, unit) are kept to a few MB: larger
# tensors are mmap-ed afresh by the C allocator at every evaluation, and the page faults cost
# more than the arithmetic; small ones also stay in cache (h = 16, E = 1024 on the 2-core VM:
# 4000 member-steps/s unchunked, 10000 at 16 MB, 13000 at 4 MB, 11000 at 2 MB).
CPU_LARGEST_TEMPORARY_BYTES = 4 * 2**20


def chunk_size(
    working_bytes_per_member: int, largest_temporary_per_member: int, memory_budget_mb: float, device: torch.device
) -> int:
    """Members processed at once: within the memory budget, and on the CPU within
    :data:`CPU_LARGEST_TEMPORARY_BYTES` for the largest temporary tensor."""
    chunk = int(memory_budget_mb * 2**20 // working_bytes_per_member)
    if device.type == "cpu":
        chunk = min(chunk, CPU_LARGEST_TEMPORARY_BYTES // largest_temporary_per_member)
    return max(1, chunk)
