import contextlib

import numpy as np
import pytest
import torch
import xarray as xr

from basins.engine import descent
from basins.engine.devices import keep_freed_memory
from basins.data import prepare_dataset, train_test_arrays
from basins.landscapes.architecture import Architecture, initial_parameters

# Tests use tensors of a few hundred numbers: a second thread only adds overhead, and on a busy
# machine spinning threads made such tests up to 40 times slower.
torch.set_num_threads(1)
# As the workflow's jobs do: freed tensors' memory reused, not mapped afresh.
keep_freed_memory()


#: The tests that share the session's tiny study (its run is minutes) and the Slurm test cluster
#: (one per machine): one xdist worker runs them all, first, while the others share the rest.
TINY_STUDY_TESTS = ("tests/test_slurm.py::", "tests/test_workflow.py::test_tiny_study_")


def _uses_the_tiny_study(nodeid: str) -> bool:
    return nodeid.startswith(TINY_STUDY_TESTS)


def pytest_collection_modifyitems(config, items):
    """The tiny study's tests first, so that their worker starts them at once instead of
    running them alone at the end of the session."""
    items.sort(key=lambda item: not _uses_the_tiny_study(item.nodeid))


def pytest_xdist_make_scheduler(config, log):
    """Tests spread one by one over the workers, except the tiny study's, which go together.

    (xdist's own ``--dist=loadgroup`` marks groups by renaming node ids, which pytest 9
    no longer allows: its groups were split across workers and the tiny study ran twice.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class TinyStudyInOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return "tiny_study" if _uses_the_tiny_study(nodeid) else nodeid

    return TinyStudyInOneWorker(config, log)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The tiny study (config/test.yaml) run once, locally; its directory."""
    from workflow_runner import ROOT, snakemake

    directory = tmp_path_factory.mktemp("tiny_study")
    snakemake("--cores", "2", "--directory", str(directory), "--configfile", str(ROOT / "config/test.yaml"))
    return directory


@pytest.fixture
def preempted_at():
    """``with preempted_at(step):`` the engine stops with KeyboardInterrupt when it reaches
    ``step`` (on a GPU, at the end of the window that reaches it), as a job cancelled by the
    scheduler would."""

    @contextlib.contextmanager
    def preempt(step):
        original_report = descent._Progress.report

        def report(self, at_step, n_active, n_steps=1):
            if at_step - n_steps < step <= at_step:
                raise KeyboardInterrupt("preempted")
            original_report(self, at_step, n_active, n_steps)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(descent._Progress, "report", report)
            yield

    return preempt


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


class MullerBrown:
    """The Müller-Brown potential (Müller and Brown 1979): three minima, two saddles, known to
    many digits (located here by Newton's method on the gradient)."""

    A = (-200.0, -100.0, -170.0, 15.0)
    a = (-1.0, -1.0, -6.5, 0.7)
    b = (0.0, 0.0, 11.0, 0.6)
    c = (-10.0, -10.0, -6.5, 0.7)
    x0 = (1.0, 0.0, -0.5, -1.0)
    y0 = (0.0, 0.5, 1.5, 1.0)
    minima = np.array([[-0.55822363, 1.44172584], [0.62349940, 0.02803776], [-0.05001082, 0.46669410]])
    minimum_energy = np.array([-146.69951721, -108.16672412, -80.76781813])
    # Saddle 0 joins minima 0 and 2, saddle 1 joins minima 2 and 1.
    saddles = np.array([[-0.82200156, 0.62431280], [0.21248658, 0.29298833]])
    saddle_energy = np.array([-40.66484351, -72.24894011])

    def __call__(self, points):
        coefficients = [torch.tensor(v, dtype=points.dtype) for v in (self.A, self.a, self.b, self.c, self.x0, self.y0)]
        big_a, a, b, c, x0, y0 = coefficients
        dx, dy = points[:, :1] - x0, points[:, 1:2] - y0
        return (big_a * torch.exp(a * dx * dx + b * dx * dy + c * dy * dy)).sum(1)


@pytest.fixture
def muller_brown():
    return MullerBrown()
