import numpy as np
import pytest
import xarray as xr

from basins.data import DATASET_KINDS, prepare_dataset, train_test_arrays

SYNTHETIC = dict(n_train=30, n_test=20, n_features=5, seed=7)
REAL = dict(n_train=30, n_test=20, seed=7, task="parity")


def make(kind, **options):
    base = SYNTHETIC if kind in ("random_patterns", "teacher_student", "gaussian_mixture") else REAL
    if kind == "two_moons":
        base = {**SYNTHETIC, "n_features": 2}
    return prepare_dataset(kind=kind, **{**base, **options})


@pytest.mark.parametrize("kind", DATASET_KINDS)
def test_every_kind_is_deterministic_and_shaped(kind):
    first, second = make(kind), make(kind)
    xr.testing.assert_identical(first, second)
    assert first["x"].dims == ("sample", "feature")
    assert (first["split"] == 0).sum() == 30 and (first["split"] == 1).sum() == 20
    assert set(np.unique(first["y"].values)) <= {-1, 1}
    assert not first["x"].isnull().any()


@pytest.mark.parametrize("kind", DATASET_KINDS)
def test_another_seed_gives_other_data(kind):
    assert not np.array_equal(make(kind)["x"].values, make(kind, seed=8)["x"].values)


@pytest.mark.parametrize("kind", ["random_patterns", "digits"])
def test_normalize_puts_inputs_on_the_sphere_of_radius_sqrt_d(kind):
    ds = make(kind, normalize=True, n_features=6)
    np.testing.assert_allclose(np.linalg.norm(ds["x"].values, axis=1), np.sqrt(6))


def test_real_data_has_ten_classes_and_pca_dims():
    ds = prepare_dataset(kind="mnist1d", task="classes", n_train=200, n_test=100, n_features=10, seed=0)
    assert ds.attrs["n_classes"] == 10 and ds.sizes["feature"] == 10
    assert set(np.unique(ds["y"].values)) == set(range(10))


def test_two_moons_is_balanced_and_not_linearly_separable():
    x, y, _, _ = train_test_arrays(prepare_dataset(kind="two_moons", n_train=200, n_test=10, seed=0, noise=0.0))
    assert abs((y == 1).mean() - 0.5) < 0.1
    w = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)[0]
    assert (np.sign(np.c_[x, np.ones(len(x))] @ w) != y).any()


def test_binary_inputs_are_plus_minus_one():
    ds = make("random_patterns", input_distribution="binary")
    assert set(np.unique(ds["x"].values)) == {-1.0, 1.0}


def test_teacher_labels_are_learnable_by_the_teacher_class():
    # A linear teacher's labels are linearly separable: least squares fits them perfectly
    # once there are few points per dimension.
    x_train, y_train, _, _ = train_test_arrays(
        prepare_dataset(kind="teacher_student", n_train=4, n_test=2, n_features=8, seed=1)
    )
    w = np.linalg.lstsq(x_train, y_train, rcond=None)[0]
    assert (np.sign(x_train @ w) == y_train).all()


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(kind="spirals"), "kind='spirals'"),
        (dict(kind="random_patterns", n_train=0), "n_train=0"),
        (dict(kind="random_patterns", n_features=None), "n_features=None"),
        (dict(kind="random_patterns", input_distribution="cauchy"), "input_distribution='cauchy'"),
        (dict(kind="digits", task="binary"), "task='binary'"),
        (dict(kind="digits", n_train=2000, task="parity"), "exceeds"),
        (dict(kind="two_moons", n_features=3), "n_features=3"),
    ],
)
def test_bad_input_names_the_value(options, message):
    base = dict(n_train=30, n_test=20, n_features=5, seed=0)
    with pytest.raises(ValueError, match=message):
        prepare_dataset(**{**base, **options})
