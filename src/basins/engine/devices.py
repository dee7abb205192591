"""Where the engine computes and how many members it holds at once.

One home for the device (``resolve_device``), the floating-point types a config may name
(``TORCH_DTYPES``), the chunking of members within a memory budget (``chunk_size``) and how
a process's C allocator keeps the memory its tensors free (``keep_freed_memory``).

Conventions: a stage that builds its own landscape from arrays (training, jamming, rings) takes
``device="auto"`` and ``memory_budget_mb`` and resolves both here; a function handed a landscape
as a callable (flatness, elastic bands, transition states) takes the ``device`` the callable's
tensors live on and a ``chunk`` its caller sized from the memory budget (e.g. with
:func:`basins.landscapes.objective.network_chunk_size`), since only the caller knows what one
evaluation costs.
"""

from __future__ import annotations

import ctypes
import logging

import torch

log = logging.getLogger(__name__)


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


#: mallopt's parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap and are reused once freed: glibc's largest
#: mmap threshold on 64-bit systems (HEAP_MAX_SIZE / 2).
LARGEST_REUSED_BLOCK_BYTES = 32 * 2**20
#: Free memory the heap keeps at its top before returning it to the system.
KEPT_FREE_BYTES = 2**30


def keep_freed_memory() -> bool:
    """Let glibc's allocator reuse the memory of freed tensors up to 32 MB instead of returning
    it to the system; True where it took the settings (glibc), False elsewhere (nothing changes).

    torch allocates every CPU tensor with malloc. glibc serves blocks above its mmap threshold
    (128 kB at start, raised as such blocks are freed) with fresh mappings and returns freed
    memory above its trim threshold: a step of the engine's torch paths (tens of temporaries
    of a few hundred kB to a few MB each) then takes its memory from the system afresh, and
    the kernel zeroes every page at its first touch. On the 2-core VM (session 50) the default
    study's slowest jamming run spent 8-11 of its 41-48 s in the kernel so (4.8 million page
    faults), 33-35 s with these settings (0.5 s in the kernel, 0.1 million); an N = 401 draw
    3.1 of its 40 s (1.1 with them). Which memory a tensor gets changes no value (torch aligns every block to 64
    bytes either way): the study's results are the same bits. Call it once, early in a process
    (the workflow's jobs and the tests do); it applies to allocations made after it.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):  # not glibc (macOS, musl): its allocator as it is
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    taken = mallopt(_M_MMAP_THRESHOLD, LARGEST_REUSED_BLOCK_BYTES) and mallopt(_M_TRIM_THRESHOLD, KEPT_FREE_BYTES)
    if not taken:
        log.info("the C allocator refused mallopt's settings: freed tensors' memory returns to the system")
    return bool(taken)
