"""The tiny study through a real one-node Slurm cluster, against the same study run locally.

``tests/slurm/start_cluster.sh`` installs Debian's slurm-wlm and munge where they are missing,
starts munged, slurmctld and slurmd for localhost (one GPU gres), and ``stop_cluster.sh``
stops them by PID. Where that cannot be done (not root, no apt, no plugin) the test is skipped
with the reason.
"""

import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest
import xarray as xr
from workflow_runner import ROOT, snakemake

SLURM_SCRIPTS = ROOT / "tests" / "slurm"
# Values that legitimately differ between two runs of the same computation.
RUN_DEPENDENT = {"wall_time"}


def reason_slurm_cannot_run():
    if os.geteuid() != 0:
        return "starting slurmctld, slurmd and munged needs root"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "slurm-wlm is not installed and there is no apt-get to install it"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (requirements.txt pins it)"
    return None


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = reason_slurm_cannot_run()
    if reason:
        pytest.skip(f"no Slurm test on this machine: {reason}")
    state = tmp_path_factory.mktemp("slurm_state")
    started = subprocess.run([str(SLURM_SCRIPTS / "start_cluster.sh"), str(state)], capture_output=True, text=True)
    if started.returncode != 0:
        subprocess.run([str(SLURM_SCRIPTS / "stop_cluster.sh"), str(state)], capture_output=True)
        pytest.skip(f"no Slurm test on this machine: the cluster did not start:\n{started.stderr[-2000:]}")
    yield state
    subprocess.run([str(SLURM_SCRIPTS / "stop_cluster.sh"), str(state)], capture_output=True)


def slurm_snakemake(directory, *args):
    """The workflow submitted through the Slurm executor of the test cluster (no accounting)."""
    return snakemake(
        "--directory", str(directory), "--configfile", str(ROOT / "config/test.yaml"),
        "--executor", "slurm", "--jobs", "4", "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", "1", "--default-resources", "slurm_partition=debug",
        "runtime=20", *args,
    )


def assert_same_results(directory, reference):
    files = sorted(path.relative_to(reference) for path in (reference / "results").rglob("*.nc"))
    assert files, "the reference run wrote no results"
    for relative in files:
        ours, theirs = xr.load_dataset(directory / relative), xr.load_dataset(reference / relative)
        for name in theirs.data_vars:
            if name not in RUN_DEPENDENT:
                np.testing.assert_array_equal(ours[name].values, theirs[name].values, err_msg=f"{relative}: {name}")


@pytest.mark.slow
def test_the_tiny_study_through_slurm_equals_the_local_run(slurm_cluster, tiny_study, tmp_path):
    run = slurm_snakemake(tmp_path)
    output = run.stdout + run.stderr
    assert "has been submitted with SLURM jobid" in output and "rule train_ensemble" in output
    assert_same_results(tmp_path, tiny_study)
