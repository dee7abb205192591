"""The process's C allocator keeps freed tensors' memory (basins.engine.devices.keep_freed_memory)."""

import platform
import subprocess
import sys

import pytest

# 20 of the Chebyshev flow's fresh directions for 200 members of 400 parameters (each call makes
# a dozen temporaries of 160-640 kB, as the engine's torch steps do) and the minor page faults
# they took.
FAULTS_OF_ENGINE_TEMPORARIES = """
import resource, sys, torch
from basins.engine.devices import keep_freed_memory
from basins.engine.dynamics import member_normal
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
    # Mapped afresh, every temporary's pages fault (~10 000 times on the 2-core VM); reused,
    # only the heap's growth does (400-700).
    fresh, kept = page_faults("default"), page_faults("keep")
    assert fresh > 3_000
    assert kept < fresh / 5
