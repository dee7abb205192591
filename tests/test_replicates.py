"""Replicates over data draws: ``dataset.seed: per_seed`` gives each ensemble seed its own data."""

import numpy as np
import pytest
import yaml
from workflow_runner import ROOT, snakemake

from basins.io import read_dataset


def _datasets(directory, seed):
    experiment = yaml.safe_load((ROOT / "config/test.yaml").read_text())["experiments"]["tiny_teacher_gd"]
    experiment["dataset"]["seed"] = seed
    experiment["ensemble"]["seeds"] = [1, 2]
    directory.mkdir()
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump({"experiments": {"tiny": experiment}}))
    snakemake("--directory", str(directory), "--configfile", str(config), "--cores", "1",
              "--until", "prepare_dataset")
    return [read_dataset(directory / f"results/datasets/tiny/seed{s}.nc") for s in (1, 2)]


@pytest.mark.slow
def test_per_seed_draws_each_seed_its_own_data_and_an_integer_one_shared_draw(tmp_path):
    first, second = _datasets(tmp_path / "per_seed", "per_seed")
    assert not np.array_equal(first["x"].values, second["x"].values)
    assert first.attrs["seed"] != second.attrs["seed"]
    first, second = _datasets(tmp_path / "shared", 0)
    np.testing.assert_array_equal(first["x"].values, second["x"].values)
    np.testing.assert_array_equal(first["y"].values, second["y"].values)
