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
import time

import pytest
import yaml
from workflow_runner import BIN, ROOT, snakemake

from basins.io import differing_variables

SLURM_SCRIPTS = ROOT / "tests" / "slurm"


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


# The Slurm executor on the test cluster, which has no accounting database.
SLURM_OPTIONS = (
    "--executor", "slurm", "--jobs", "4", "--slurm-status-command", "squeue", "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
    "--default-resources", "slurm_partition=debug", "runtime=20",
)


# A hung Slurm run fails its test instead of holding CI until the job limit.
SLURM_RUN_TIMEOUT_S = 1200


def slurm_snakemake(directory, *args):
    """The tiny study submitted through the test cluster's Slurm."""
    return snakemake(
        "--directory", str(directory), "--configfile", str(ROOT / "config/test.yaml"), *SLURM_OPTIONS, *args,
        slurm=True, timeout=SLURM_RUN_TIMEOUT_S,
    )


def assert_same_results(directory, reference):
    """Every result the Slurm run wrote equals the reference run's."""
    files = sorted(path.relative_to(directory) for path in (directory / "results").rglob("*.nc"))
    assert files, "the Slurm run wrote no results"
    for relative in files:
        assert not differing_variables(directory / relative, reference / relative), relative


@pytest.mark.slow
def test_the_tiny_study_through_slurm_equals_the_local_run(slurm_cluster, tiny_study, tmp_path):
    # The stages that hold the GPU work of a study (a sharded training ensemble, a sharded ring
    # relaxation) and their catalogs, for one experiment and the ring: every job type of that
    # path goes through Slurm; the other experiments would only repeat them (22 jobs, 3.5 min).
    run = slurm_snakemake(  # "--": the targets are not values of --default-resources
        tmp_path, "--", "results/minima/tiny_teacher/seed1.nc", "results/oscillators/minima/tiny_ring/seed1.nc"
    )
    output = run.stdout + run.stderr
    assert "has been submitted with SLURM jobid" in output and "rule train_ensemble" in output
    stages = {path.relative_to(tmp_path / "results").parts[0] for path in (tmp_path / "results").rglob("*.nc")}
    assert stages == {"datasets", "training", "minima", "oscillators"}
    assert_same_results(tmp_path, tiny_study)


def preemption_config(directory):
    """One long training job (grad_tol 0: every member runs its whole budget), checkpointing every second."""
    config = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    teacher = config["experiments"]["tiny_teacher"]
    # ~15-20 s of training here: the cancel, a fraction of a second after the first checkpoint (1 s
    # in), comes long before the end even on a machine several times faster. (2 000 steps took
    # 1.3 s once the objective ran in C, and a cancel landing after the descent had removed its
    # checkpoint, before the shard was written, failed the test: session 32.)
    teacher["ensemble"].update(n_members=200, n_shards=1)
    teacher["training"].update(max_steps=30000, grad_tol=0.0)
    # One budget: every member runs it out, and no continuation stretches the job 16-fold.
    config = {"checkpoint_every_s": 1, "memory_budget_mb": 256, "budget_factors": [1],
              "experiments": {"tiny_teacher": teacher}}
    path = directory / "preemption.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_a_cancelled_training_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    config = preemption_config(tmp_path)
    shard = "results/training/tiny_teacher/seed1/shard0.nc"
    checkpoint = tmp_path / "results/checkpoints/tiny_teacher/seed1/shard0.pt"
    options = ("--configfile", str(config), "--until", "train_ensemble")
    submitted = subprocess.Popen(
        [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         *SLURM_OPTIONS, *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(600):  # wait until the job has saved progress mid-run
        if checkpoint.exists() or submitted.poll() is not None:
            break
        time.sleep(0.2)
    assert checkpoint.exists(), "the training job wrote no checkpoint before finishing"
    subprocess.run(["scancel", "--user", "root"], check=True)  # the preemption
    assert submitted.wait(timeout=300) != 0 and not (tmp_path / shard).exists()
    assert checkpoint.exists()

    snakemake("--directory", str(tmp_path), *SLURM_OPTIONS, "--rerun-incomplete", *options,
              slurm=True, timeout=SLURM_RUN_TIMEOUT_S)
    log = (tmp_path / "logs/train_ensemble/tiny_teacher/seed1/shard0.log").read_text()
    assert "resuming from checkpoint" in log
    assert not checkpoint.exists()  # removed once the run is complete

    reference = tmp_path / "uninterrupted"
    snakemake("--cores", "2", "--directory", str(reference), *options)
    assert not differing_variables(tmp_path / shard, reference / shard)
