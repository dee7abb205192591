"""Running the workflow from the tests: the snakemake command line of this environment."""

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _without_a_slurm_controller() -> str:
    """A folder whose ``scontrol`` fails at once, to put first on PATH for local runs.

    Snakemake loads every executor plugin at start-up, and the Slurm plugin asks ``scontrol
    show config`` for its help text; on a machine with Slurm's client installed but no
    controller running (the CI machine after ``test_slurm`` has stopped its cluster) that call
    waits about 10 s before it gives up, in every snakemake invocation. Local runs never use it.
    """
    folder = Path(tempfile.mkdtemp(prefix="no_slurm_"))
    scontrol = folder / "scontrol"
    scontrol.write_text("#!/bin/sh\nexit 1\n")
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IXUSR)
    return str(folder)


_NO_SLURM = _without_a_slurm_controller()


def snakemake(*args, cwd=ROOT, check=True, slurm=False, timeout=None):
    """Snakemake on the repository's Snakefile; ``slurm=True`` keeps the real ``scontrol`` on PATH.

    A Slurm run with the failing ``scontrol`` waits for its jobs forever, so a run that submits
    to Slurm must say so; ``timeout`` (seconds) turns any hang into a failure.
    """
    path = os.environ.get("PATH", "") if slurm else _NO_SLURM + os.pathsep + os.environ.get("PATH", "")
    result = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path},
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result
