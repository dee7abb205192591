"""The process's C allocator keeps freed tensors' memory (basins.engine.devices.keep_freed_memory)."""

import platform
import subprocess
import sys

import pytest

# 20 of the Chebyshev flow's fresh directions for 200 members of 400 parameters (each call makes
# a dozen temporaries of 160-640 kB, as the engine's torch steps do) and the minor page faults
# they took. Both runs start from every temporary mapped afresh, an mmap threshold of 64 kB,
# fixed (glibc's default threshold moves with the order of frees: the default allocator's faults
# ranged from 600 to 15 000 between runs of this same script, too few in CI to compare against);
# "keep" then calls keep_freed_memory, which must undo it.
FAULTS_OF_ENGINE_TEMPORARIES = """
import ctypes, resource, sys, torch
from basins.engine.devices import _M_MMAP_THRESHOLD, keep_freed_memory
from basins.engine.dynamics import member_normal
assert ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
if sys.argv[1] == "keep":
    assert keep_freed_memory()
members = torch.arange(200)
member_normal(1, members, members, (400,), torch.float64)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for step in range(20):
    member_normal(1, members, members + step, (400,), torch.float64)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(setting: str) -> int:
    run = subprocess.run([sys.executable, "-c", FAULTS_OF_ENGINE_TEMPORARIES, setting],
                         capture_output=True, text=True, check=True)
    return int(run.stdout.split()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_tensors_memory_is_reused_not_mapped_afresh():
    # Mapped afresh, every temporary's pages fault (~70 000 times on the 2-core VM); reused,
    # only the heap's growth does (0-700).
    mapped, kept = page_faults("mapped"), page_faults("keep")
    assert mapped > 3_000
    assert kept < mapped / 5
