import numpy as np
import pytest
import torch
import xarray as xr

from basins.data import prepare_dataset, train_test_arrays
from basins.networks import Architecture, initial_parameters

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The tiny study (config/test.yaml) run once, locally; its directory."""
    from workflow_runner import ROOT, snakemake

    directory = tmp_path_factory.mktemp("tiny_study")
    snakemake("--cores", "2", "--directory", str(directory), "--configfile", str(ROOT / "config/test.yaml"))
    return directory


@pytest.fixture
def teacher_data():
    """A tiny teacher-student task: (x_train, y_train, x_test, y_test)."""
    ds = prepare_dataset(kind="teacher_student", n_train=24, n_test=50, n_features=3, teacher_width=2, seed=0)
    return train_test_arrays(ds)


@pytest.fixture
def tiny_arch():
    return Architecture(n_inputs=3, n_outputs=1, depth=1, width=3, activation="tanh")


@pytest.fixture
def tiny_start(tiny_arch):
    ids = np.arange(6)
    return initial_parameters(tiny_arch, ids, seed=3, init="gaussian"), ids


@pytest.fixture
def hand_built_minima():
    """Five members: three reach minimum 0, one minimum 1, one is unassigned."""
    return xr.Dataset(
        {
            "minimum_of_member": ("member", np.array([0, 0, 1, -1, 0])),
            "test_error": ("minimum", np.array([0.1, 0.3])),
        },
        coords={"member": np.arange(5), "minimum": np.arange(2)},
    )
