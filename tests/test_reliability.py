"""Nothing lost, nothing mixed: resumed runs, damaged checkpoints, config errors, reruns,
empty catalogues and file modes (docs/reliability.md says what each test guarantees)."""

import logging
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from workflow_runner import ROOT, snakemake

from basins.engine import checkpoints, descent
from basins.engine.dynamics import energy_and_gradient
from basins.io import read_dataset, write_dataset
from basins.jamming import sweep_jamming
from basins.labels import BUDGET, CONVERGED, DIVERGED
from basins.landscapes.architecture import Architecture, initial_parameters
from basins.training import train_ensemble

ENGINE = dict(dynamics="adam", lr=0.02, max_steps=80, grad_tol=0.0, loss="mse", l2=1e-3, device="cpu",
              progress_every_s=1e9, checkpoint_every_s=0.0)


def run_engine(arch, data, theta0, ids, **options):
    return train_ensemble(arch, *data, theta0, ids, **{**ENGINE, **options})


def interrupted_run(arch, data, theta0, ids, checkpoint, preempted_at, step=37):
    """Leave the checkpoint a job cancelled at ``step`` leaves behind."""
    with pytest.raises(KeyboardInterrupt), preempted_at(step):
        run_engine(arch, data, theta0, ids, checkpoint_path=checkpoint)
    assert checkpoint.exists()


def other_data(data):
    """The teacher data with one training input moved: another landscape."""
    x_train, y_train, x_test, y_test = data
    x_train = x_train.copy()
    x_train[0] += 0.5
    return x_train, y_train, x_test, y_test


# 1. A resumed run never mixes results of two landscapes, two codes or two torch versions.


def test_a_checkpoint_of_other_training_data_is_discarded(teacher_data, tiny_arch, tiny_start, tmp_path,
                                                          preempted_at, caplog):
    theta0, ids = tiny_start
    checkpoint = tmp_path / "run.pt"
    interrupted_run(tiny_arch, teacher_data, theta0, ids, checkpoint, preempted_at)
    new_data = other_data(teacher_data)
    fresh = run_engine(tiny_arch, new_data, theta0, ids)
    with caplog.at_level(logging.INFO, logger="basins"):
        rerun = run_engine(tiny_arch, new_data, theta0, ids, checkpoint_path=checkpoint)
    np.testing.assert_array_equal(rerun["final_theta"].values, fresh["final_theta"].values)
    assert "discarded" in caplog.text and "training data differ" in caplog.text
    assert "resuming" not in caplog.text
    assert not checkpoint.exists()


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda patch: patch.setattr(checkpoints, "source_fingerprint", lambda: "an edited package"),
         "package source code"),
        (lambda patch: patch.setattr(torch, "__version__", "0.0.1"), "torch version"),
    ],
)
def test_a_checkpoint_of_other_code_is_discarded(teacher_data, tiny_arch, tiny_start, tmp_path, preempted_at,
                                                 caplog, monkeypatch, change, named):
    theta0, ids = tiny_start
    checkpoint = tmp_path / "run.pt"
    interrupted_run(tiny_arch, teacher_data, theta0, ids, checkpoint, preempted_at)
    fresh = run_engine(tiny_arch, teacher_data, theta0, ids)
    change(monkeypatch)
    with caplog.at_level(logging.INFO, logger="basins"):
        rerun = run_engine(tiny_arch, teacher_data, theta0, ids, checkpoint_path=checkpoint)
    np.testing.assert_array_equal(rerun["final_theta"].values, fresh["final_theta"].values)
    assert "discarded" in caplog.text and named in caplog.text
    assert "training data" not in caplog.text and "resuming" not in caplog.text


def test_the_source_hash_covers_every_module_of_the_package(tmp_path):
    """An edit anywhere in the package, subpackages and C sources included, changes the code
    fingerprint."""
    package = tmp_path / "basins"
    shutil.copytree(Path(checkpoints.__file__).parents[1], package, ignore=shutil.ignore_patterns("__pycache__"))
    assert len(list(package.rglob("*.py"))) > 25
    before = checkpoints.source_fingerprint(package)
    assert checkpoints.source_fingerprint(package) == before and len(before) == 64
    for module in ("training.py", "engine/dynamics.py", "landscapes/networks.py", "landscapes/native_mlp.c"):
        checkpoints.source_fingerprint.cache_clear()
        path = package / module
        path.write_text(path.read_text() + "# an edit\n")
        after = checkpoints.source_fingerprint(package)
        assert after != before, module
        before = after


def test_a_jamming_checkpoint_of_another_pool_is_discarded(tmp_path, preempted_at, caplog):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4)), rng.choice([-1.0, 1.0], 20)
    arch = Architecture(4, 1, 1, 3, "relu")
    n_train = np.array([5, 20])
    theta0 = initial_parameters(arch, np.arange(2), seed=1, init="orthogonal")
    options = dict(lr=0.02, max_steps=200, grad_tol=1e-10, device="cpu", progress_every_s=1e9,
                   checkpoint_every_s=0.0)
    checkpoint = tmp_path / "sweep.pt"
    with pytest.raises(KeyboardInterrupt), preempted_at(100):
        sweep_jamming(arch, x, y, x[:3], y[:3], theta0, n_train, checkpoint_path=checkpoint, **options)
    y_flipped = y.copy()
    y_flipped[:3] *= -1
    fresh = sweep_jamming(arch, x, y_flipped, x[:3], y[:3], theta0, n_train, **options)
    with caplog.at_level(logging.INFO, logger="basins"):
        rerun = sweep_jamming(arch, x, y_flipped, x[:3], y[:3], theta0, n_train, checkpoint_path=checkpoint,
                              **options)
    np.testing.assert_array_equal(rerun["final_theta"].values, fresh["final_theta"].values)
    assert "training data differ" in caplog.text


# 2. A damaged checkpoint never blocks a rerun; concurrent writers never share a temporary file.


def _slow_quadratic(theta, batch):
    """0.5 |theta|^2: GD at lr 0.01 needs ~700 steps to reach |grad| <= 1e-3 from |theta| ~ 1."""
    return energy_and_gradient(lambda t: 0.5 * (t**2).sum(1), theta)


def test_a_run_preempted_during_its_budget_continuation_resumes_it(tmp_path, caplog):
    """Preempted while continuing members that spent the first budget: the rerun redoes the
    first run (its checkpoint was removed when it completed), resumes the continuation from
    ``<path>.after<steps>`` and ends exactly as an uninterrupted run."""
    starts = np.random.default_rng(0).normal(size=(6, 3))
    starts /= np.linalg.norm(starts, axis=1, keepdims=True)
    options = dict(
        dynamics="gd", lr=0.01, max_steps=200, grad_tol=1e-3, budget_factors=(1, 4), device=torch.device("cpu"),
        dtype=torch.float64, chunk=6, run_id=("quadratic",), checkpoint_every_s=0.0, progress_every_s=0.0,
    )
    uninterrupted = descent.descend_until_decided(_slow_quadratic, starts, np.arange(6), **options)
    assert (uninterrupted.status == CONVERGED).all() and (uninterrupted.steps > 200).all()
    checkpoint = tmp_path / "run.pt"
    report, seen = descent._Progress.report, []

    def preempt_in_the_continuation(self, step, n_active):
        seen.append(step)
        if seen.count(100) == 2:  # step 100 of the first run, then of the continuation
            raise KeyboardInterrupt("preempted")
        report(self, step, n_active)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(descent._Progress, "report", preempt_in_the_continuation)
        descent.descend_until_decided(_slow_quadratic, starts, np.arange(6), checkpoint_path=checkpoint, **options)
    continuation = tmp_path / "run.pt.after200"
    assert continuation.exists() and not checkpoint.exists()
    with caplog.at_level(logging.INFO, logger="basins.engine.descent"):
        resumed = descent.descend_until_decided(_slow_quadratic, starts, np.arange(6), checkpoint_path=checkpoint,
                                                **options)
    assert f"resuming from checkpoint {continuation}" in caplog.text
    for name in ("final_theta", "status", "steps", "grad_norm"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(uninterrupted, name))
    assert not continuation.exists() and BUDGET not in resumed.status


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_an_unreadable_checkpoint_is_moved_aside_and_the_run_starts_over(teacher_data, tiny_arch, tiny_start,
                                                                         tmp_path, preempted_at, caplog, damage):
    theta0, ids = tiny_start
    checkpoint = tmp_path / "run.pt"
    interrupted_run(tiny_arch, teacher_data, theta0, ids, checkpoint, preempted_at)
    content = checkpoint.read_bytes()
    damaged = {"truncated": content[: len(content) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}
    checkpoint.write_bytes(damaged[damage])
    fresh = run_engine(tiny_arch, teacher_data, theta0, ids)
    with caplog.at_level(logging.INFO, logger="basins"):
        rerun = run_engine(tiny_arch, teacher_data, theta0, ids, checkpoint_path=checkpoint)
    np.testing.assert_array_equal(rerun["final_theta"].values, fresh["final_theta"].values)
    (aside,) = tmp_path.glob("run.pt.corrupt-*")
    assert aside.read_bytes() == damaged[damage]  # kept for inspection
    assert "unreadable" in caplog.text and aside.name in caplog.text


def test_checkpoints_are_written_through_a_temporary_file_unique_to_the_process(
    teacher_data, tiny_arch, tiny_start, tmp_path, preempted_at, monkeypatch
):
    theta0, ids = tiny_start
    checkpoint = tmp_path / "run.pt"
    # Another process is writing its checkpoint through the old fixed name.
    theirs = tmp_path / "run.pt.tmp"
    theirs.write_bytes(b"another process's half-written checkpoint")
    written = []
    save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, path: (written.append(str(path)), save(obj, path)))
    interrupted_run(tiny_arch, teacher_data, theta0, ids, checkpoint, preempted_at)
    assert theirs.read_bytes() == b"another process's half-written checkpoint"
    assert len(written) > 1 and len(set(written)) == len(written)
    assert all(os.path.dirname(path) == str(tmp_path) and str(os.getpid()) in path for path in written)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run.pt", "run.pt.tmp"]  # none left behind
    resumed = run_engine(tiny_arch, teacher_data, theta0, ids, checkpoint_path=checkpoint)
    np.testing.assert_array_equal(resumed["final_theta"].values, run_engine(tiny_arch, teacher_data, theta0, ids)
                                  ["final_theta"].values)


# 6. Results get the mode the umask gives, like any file the user writes.


@pytest.fixture
def umask():
    def set_umask(value):
        previous.append(os.umask(value))

    previous = []
    yield set_umask
    for value in previous[:1]:
        os.umask(value)


def tiny_result():
    ds = xr.Dataset({"loss": ("member", np.zeros(2), {"long_name": "loss", "units": "1"})},
                    coords={"member": ("member", np.arange(2), {"long_name": "member", "units": "1"})})
    return ds.assign_attrs(Conventions="CF-1.10", title="t", source="s", history="h", stage="s", stage_config="{}")


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_results_and_checkpoints_get_the_mode_the_umask_gives(tmp_path, umask, mask, mode):
    umask(mask)
    write_dataset(tiny_result(), tmp_path / "result.nc")
    assert stat.S_IMODE((tmp_path / "result.nc").stat().st_mode) == mode
    checkpoints.save_checkpoint(tmp_path / "run.pt", {}, {"out": {}})
    assert stat.S_IMODE((tmp_path / "run.pt").stat().st_mode) == mode


# Workflow: what reruns, what a config error looks like, empty catalogues. Each run is tiny and
# lives in its own directory (workflow_runner runs this checkout's Snakefile there).


def tiny_experiment(**training):
    """One small experiment of the test study: 8 members in 2 shards, a short budget."""
    config = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    experiment = config["experiments"]["tiny_teacher_gd"]
    experiment["training"].update(max_steps=50, **training)
    experiment["ensemble"].update(n_members=8, n_shards=2)
    return experiment


def write_config(directory, config, name="config.yaml"):
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def run_workflow(directory, config, *args, check=True):
    return snakemake("--directory", str(directory), "--configfile", write_config(directory, config), *args,
                     check=check)


# 3. Compute-only settings (device, memory budget, checkpoint interval) never rerun a job.


def test_compute_settings_never_rerun_a_job_and_study_settings_do(tmp_path):
    config = {"memory_budget_mb": 64, "checkpoint_every_s": 300, "experiments": {"tiny": tiny_experiment()}}
    run_workflow(tmp_path, config, "--cores", "2", "--until", "train_ensemble")
    compute = {**config, "memory_budget_mb": 16, "checkpoint_every_s": 1, "use_gpu": True}
    result = run_workflow(tmp_path, compute, "-n", "--until", "train_ensemble")
    assert jobs_to_run(result) == 0, result.stdout
    study = {**config, "experiments": {"tiny": tiny_experiment(lr=0.4)}}
    result = run_workflow(tmp_path, study, "-n", "--until", "train_ensemble")
    assert jobs_to_run(result) == 2 and "Params have changed" in result.stdout  # both shards


def jobs_to_run(result):
    """The job count of a dry run's job stats."""
    return int(re.findall(r"^total\s+(\d+)$", result.stdout, re.MULTILINE)[-1])


def gpu_visible():
    return torch.cuda.is_available() or shutil.which("nvidia-smi") is not None


@pytest.mark.skipif(gpu_visible(), reason="this machine has a GPU")
def test_use_gpu_without_a_gpu_fails_before_the_first_job(tmp_path):
    config = {"use_gpu": True, "experiments": {"tiny": tiny_experiment()}}
    result = run_workflow(tmp_path, config, "--cores", "1", "--until", "train_ensemble", check=False)
    assert result.returncode != 0
    assert "use_gpu: true, but the jobs would run on this machine" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
    assert run_workflow(tmp_path, config, "-n").returncode == 0  # a dry run, e.g. for a cluster, is fine


@pytest.mark.skipif(gpu_visible(), reason="this machine has a GPU")
def test_a_job_without_its_gpu_fails_before_writing_and_leaves_other_outputs(tmp_path):
    config = {"use_gpu": True, "experiments": {"tiny": tiny_experiment()}}
    # --no-hooks skips the check at start, as on a cluster node without the GPU it was promised.
    result = run_workflow(tmp_path, config, "--cores", "1", "--no-hooks", "--until", "train_ensemble", check=False)
    assert result.returncode != 0
    assert (tmp_path / "results/datasets/tiny/seed1.nc").exists()  # another job's valid output stays
    assert not list((tmp_path / "results").glob("training/**/*.nc"))
    log = next((tmp_path / "logs/train_ensemble").glob("**/*.log")).read_text()
    assert "use_gpu: true, but this job's machine has no CUDA device" in log


# 4. Config errors are caught before any job, and name the key, the value and the fix.


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda c: c["experiments"]["tiny"]["training"].update(lr=float("nan")), "experiments.tiny.training.lr=nan"),
        (lambda c: c["experiments"]["tiny"]["training"].update(grad_tol=float("inf")), "training.grad_tol=inf"),
        (lambda c: c["experiments"]["tiny"]["minima"].update(dist_tol=float("-inf")), "minima.dist_tol=-inf"),
        (lambda c: c.update(budget_factors=[1, float("nan")]), "budget_factors[1]=nan"),
        (lambda c: c["experiments"]["tiny"]["dataset"].update(kind="digits", task="parity", n_train=1000,
                                                               n_test=800, n_features=8),
         "n_train + n_test = 1000 + 800 = 1800 exceeds the 1797 images"),
        (lambda c: c["experiments"]["tiny"]["dataset"].pop("n_features"), "kind 'teacher_student' needs n_features"),
        (lambda c: c["experiments"]["tiny"]["dataset"].update(kind="two_moons", task="classes", n_features=None),
         "dataset.task='classes': 'two_moons' has two classes only"),
        (lambda c: c["experiments"]["tiny"]["dataset"].update(kind="digits", task="classes", n_train=100,
                                                               n_features=65),
         "dataset.n_features=65: 'digits' has 64 raw features"),
        (lambda c: c["experiments"]["tiny"]["dataset"].update(kind="mnist1d", task="classes", n_train=100,
                                                               n_features=41),
         "dataset.n_features=41: 'mnist1d' has 40 raw features"),
        (lambda c: c["experiments"]["tiny"]["dataset"].update(kind="digits", task="binary"),
         "'digits' offers the tasks 'parity' (even vs odd) and 'classes'"),
        (lambda c: c.update(jamming={"sweep": {"dataset": {"kind": "random_patterns", "n_test": 4},
                                               "networks": [{"depth": 0}], "seeds": [1],
                                               "train_sizes": {"smallest": 2, "largest": 10, "n_sizes": 3},
                                               "training": {"lr": 0.02, "max_steps": 10}}}),
         "jamming.sweep.dataset: kind 'random_patterns' needs n_features"),
        (lambda c: c.update(memroy_budget_mb=64), "unknown key 'memroy_budget_mb' (did you mean 'memory_budget_mb'?)"),
        (lambda c: c["experiments"]["tiny"]["training"].update(grad_tool=1e-3),
         "unknown key 'grad_tool' (did you mean 'grad_tol'?) in experiments.tiny.training"),
        (lambda c: c["experiments"]["tiny"]["training"].update(lr=-1.0),
         "config: experiments.tiny.training.lr: -1.0 is less than or equal to the minimum of 0"),
    ],
)
def test_a_config_error_is_one_short_message_naming_key_value_and_fix(tmp_path, edit, named):
    config = {"experiments": {"tiny": tiny_experiment()}}
    edit(config)
    result = run_workflow(tmp_path, config, "-n", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and named in output
    assert len(output) < 2000  # not the whole schema
    assert not (tmp_path / "results").exists()


def test_a_yaml_syntax_error_is_placed_by_a_verbose_run(tmp_path):
    """Snakemake reads --configfile before the workflow and hides the parser's message; the
    documented way to the line (docs/reliability.md) is the same command with --verbose."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("experiments:\n  tiny: {dataset: 1\n  model: 2\n")
    plain = snakemake("-n", "--configfile", str(broken), cwd=tmp_path, check=False)
    assert plain.returncode != 0 and "not valid JSON or YAML" in plain.stdout + plain.stderr
    verbose = snakemake("-n", "--verbose", "--configfile", str(broken), cwd=tmp_path, check=False)
    assert re.search(rf'in "{re.escape(str(broken))}", line 2, column \d+', verbose.stdout + verbose.stderr)


# 5. An experiment whose every member diverges runs through every stage; the outputs say why.


def test_an_empty_catalogue_flows_through_every_stage(tmp_path):
    experiment = tiny_experiment(lr=1.0e3)
    experiment["connectivity"] = {"n_neighbors": 1, "n_images": 4, "band_max_steps": 100, "n_levels": 4}
    # A grid in units of the shell, which an empty catalogue does not have: nothing is probed.
    experiment["rays"].update(radii_in_shells=True, smallest_radius=0.01, largest_radius=4.0)
    config = {"memory_budget_mb": 64, "experiments": {"tiny_diverging": experiment},
              "connectivity_groups": {"diverging": ["tiny_diverging"]}}
    run_workflow(tmp_path, config, "--cores", "2")
    results = tmp_path / "results"
    opened = {str(path.relative_to(results)): read_dataset(path) for path in results.glob("**/*.nc")}
    assert len(opened) >= 10
    shards = [opened[f"training/tiny_diverging/seed1/shard{shard}.nc"] for shard in (0, 1)]
    assert all((shard["status"].values == DIVERGED).all() for shard in shards)
    basins = opened["basins/tiny_diverging/seed1.nc"]
    assert opened["minima/tiny_diverging/seed1.nc"].sizes["minimum"] == 0
    assert float(basins["diverged_fraction"]) == 1.0
    assert opened["slices/tiny_diverging/seed1.nc"].sizes["plane"] == 0
    assert opened["connectivity/tiny_diverging/seed1.nc"].sizes["minimum"] == 0
    rays, tentacles = opened["rays/tiny_diverging/seed1.nc"], opened["tentacles/tiny_diverging/seed1.nc"]
    assert rays.sizes["minimum"] == 0 and rays.attrs["radii_in_shells"] == 1 and np.isnan(rays.attrs["shell_distance"])
    assert tentacles.sizes["minimum"] == 0 and tentacles.attrs["ray_radii_in_shells"] == 1
    summary = opened["summary.nc"]
    assert float(summary["n_minima"][0]) == 0 and float(summary["unassigned_fraction"][0]) == 1.0
    assert float(summary["saddle_fraction"][0]) == 0 and float(summary["undecided_fraction"][0]) == 0
    for figure in ("basin_sizes", "basin_slices", "return_probability", "tentacles", "flatness", "disconnectivity"):
        assert list((results / "figures" / figure).glob("*.png")), figure
