"""Stage ``prepare_dataset``: the training and test sets that define each loss landscape.

Everything is generated offline and deterministically from a seed: synthetic tasks are drawn
with ``numpy.random.default_rng(seed)``, scikit-learn's digits ship inside the package, and
MNIST-1D comes from the ``mnist1d`` package's procedural generator (never its download path).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from basins.io import variable_attrs

DATASET_KINDS = ("random_patterns", "teacher_student", "gaussian_mixture", "two_moons", "digits", "mnist1d")
INPUT_DISTRIBUTIONS = ("gaussian", "binary")
TASKS = ("binary", "parity", "classes")

TRAIN, TEST = 0, 1


def prepare_dataset(
    *,
    kind: str,
    n_train: int,
    n_test: int,
    seed: int,
    n_features: int | None = None,
    normalize: bool = False,
    input_distribution: str = "gaussian",
    teacher_width: int = 0,
    cluster_separation: float = 2.0,
    noise: float = 0.1,
    task: str = "binary",
) -> xr.Dataset:
    """Generate one data set with dims ``(sample, feature)``.

    Parameters
    ----------
    kind : {"random_patterns", "teacher_student", "gaussian_mixture", "two_moons", "digits", "mnist1d"}
        ``random_patterns``: i.i.d. inputs with random +-1 labels (the perceptron storage
        problem; the test error is 1/2 by construction). ``teacher_student``: Gaussian inputs
        labelled by the sign of a random teacher (a perceptron if ``teacher_width`` is 0, else
        one tanh hidden layer of that width). ``gaussian_mixture``: two unit-variance clusters
        at distance ``cluster_separation``, labelled by cluster. ``two_moons``: scikit-learn's
        two interleaved half circles in 2-D with Gaussian ``noise`` (a small two-class problem
        no linear model separates). ``digits`` / ``mnist1d``: the
        real data sets, ``task="parity"`` (even vs odd, +-1) or ``task="classes"`` (10 classes).
    n_train, n_test : int
        Sizes of the two splits (both > 0).
    seed : int
        Seed of every random draw (inputs, labels, teacher, split).
    n_features : int, optional
        Input dimension of the synthetic kinds (required there). For the real data sets, the
        number of PCA components (fitted on the training split); ``None`` keeps the raw pixels.
    normalize : bool
        Rescale every input to norm sqrt(d), as the jamming literature does.
    input_distribution : {"gaussian", "binary"}
        Inputs of ``random_patterns``: standard normal or uniform +-1.
    teacher_width : int
        Hidden width of the teacher (``teacher_student`` only); 0 is a linear teacher.
    cluster_separation : float
        Distance between the two cluster means (``gaussian_mixture`` only).
    noise : float
        Standard deviation of the Gaussian noise on ``two_moons`` points.
    task : {"binary", "parity", "classes"}
        Label set of the real data sets; the synthetic kinds are always ``"binary"``.

    Returns
    -------
    xarray.Dataset
        ``x(sample, feature)`` float64, ``y(sample)`` (+-1 for binary tasks, the class index
        otherwise), ``split(sample)`` (0 = train, 1 = test); attribute ``n_classes``
        (2 for +-1 labels).
    """
    _check_sizes(n_train=n_train, n_test=n_test)
    rng = np.random.default_rng(seed)
    n_total = n_train + n_test
    split = np.r_[np.full(n_train, TRAIN), np.full(n_test, TEST)]
    if kind in ("random_patterns", "teacher_student", "gaussian_mixture"):
        x, y = _synthetic(kind, rng, n_total, task=task, n_features=n_features, input_distribution=input_distribution,
                          teacher_width=teacher_width, cluster_separation=cluster_separation)
        n_classes = 2
    elif kind == "two_moons":
        if task != "binary" or n_features not in (None, 2):
            raise ValueError(f"task={task!r}, n_features={n_features!r}: 'two_moons' is 2-D and binary")
        x, y = _two_moons(n_total, noise, seed)
        n_classes = 2
    elif kind in ("digits", "mnist1d"):
        x, y, n_classes = _real_digits(kind, rng, split, task=task, n_features=n_features, seed=seed)
    else:
        raise ValueError(f"kind={kind!r} is not a data set; choose one of {DATASET_KINDS}")
    if normalize:
        x = x * np.sqrt(x.shape[1]) / np.linalg.norm(x, axis=1, keepdims=True)
    return _as_dataset(x, y, split, n_classes=n_classes, kind=kind)


def _synthetic(kind, rng, n_total, *, task, n_features, input_distribution, teacher_width, cluster_separation):
    """Inputs and +-1 labels of one of the synthetic kinds drawn with ``rng``."""
    if task != "binary":
        raise ValueError(f"task={task!r}: the synthetic data set {kind!r} only has task 'binary'")
    if n_features is None or n_features <= 0:
        raise ValueError(f"n_features={n_features!r}: {kind!r} needs a positive input dimension")
    if kind == "random_patterns":
        return _random_patterns(rng, n_total, n_features, input_distribution)
    if kind == "teacher_student":
        return _teacher_student(rng, n_total, n_features, teacher_width)
    return _gaussian_mixture(rng, n_total, n_features, cluster_separation)


def _real_digits(kind, rng, split, *, task, n_features, seed):
    """Inputs, labels and number of classes of a random subset of ``digits`` or ``mnist1d``."""
    if task not in ("parity", "classes"):
        raise ValueError(f"task={task!r}: {kind!r} offers the tasks 'parity' and 'classes'")
    n_total = len(split)
    pixels, digit = _load_digits(n_total) if kind == "digits" else _load_mnist1d(n_total, seed)
    order = rng.permutation(len(digit))[:n_total]
    pixels, digit = pixels[order], digit[order]
    x = _standardize_and_project(pixels, split == TRAIN, n_features, seed)
    y = np.where(digit % 2 == 0, 1, -1) if task == "parity" else digit
    return x, y, 2 if task == "parity" else 10


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive integer")


def _random_patterns(rng, n, d, input_distribution):
    if input_distribution == "gaussian":
        x = rng.standard_normal((n, d))
    elif input_distribution == "binary":
        x = rng.choice([-1.0, 1.0], size=(n, d))
    else:
        raise ValueError(
            f"input_distribution={input_distribution!r}; choose one of {INPUT_DISTRIBUTIONS}"
        )
    return x, rng.choice([-1, 1], size=n)


def _teacher_student(rng, n, d, teacher_width):
    if teacher_width < 0:
        raise ValueError(f"teacher_width={teacher_width} must be >= 0 (0 is a linear teacher)")
    x = rng.standard_normal((n, d))
    if teacher_width == 0:
        field = x @ rng.standard_normal(d)
    else:
        hidden = np.tanh(x @ rng.standard_normal((d, teacher_width)) / np.sqrt(d))
        field = hidden @ rng.standard_normal(teacher_width)
    # A zero field has no sign; it has probability zero but is mapped to +1 explicitly.
    return x, np.where(field >= 0, 1, -1)


def _gaussian_mixture(rng, n, d, separation):
    if separation < 0:
        raise ValueError(f"cluster_separation={separation} must be >= 0")
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    y = rng.choice([-1, 1], size=n)
    x = rng.standard_normal((n, d)) + 0.5 * separation * y[:, None] * direction
    return x, y


def _two_moons(n, noise, seed):
    from sklearn.datasets import make_moons

    if noise < 0:
        raise ValueError(f"noise={noise} must be >= 0")
    x, label = make_moons(n_samples=n, noise=noise, random_state=seed)
    return x, np.where(label == 1, 1, -1)


def _load_digits(n_total):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    if n_total > len(bunch.target):
        raise ValueError(
            f"n_train + n_test = {n_total} exceeds the {len(bunch.target)} digits images"
        )
    return bunch.data / 16.0, bunch.target


def _load_mnist1d(n_total, seed):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = int(np.ceil(n_total / 10) * 10)
    args.train_split = 1.0
    args.seed = seed
    # mnist1d seeds numpy's global generator; restore it so this stays side-effect free.
    global_state = np.random.get_state()
    try:
        generated = make_dataset(args)
    finally:
        np.random.set_state(global_state)
    return generated["x"], generated["y"]


def _standardize_and_project(pixels, is_train, n_components, seed):
    mean = pixels[is_train].mean(axis=0)
    centered = pixels - mean
    if n_components is not None:
        if not 0 < n_components <= pixels.shape[1]:
            raise ValueError(
                f"n_features={n_components} PCA components: choose 1..{pixels.shape[1]}"
            )
        from sklearn.decomposition import PCA

        pca = PCA(n_components=n_components, random_state=seed).fit(centered[is_train])
        centered = pca.transform(centered)
    return centered / centered[is_train].std()


def _as_dataset(x, y, split, *, n_classes, kind):
    n, d = x.shape
    y_attrs = (
        variable_attrs("label", flag_values="-1 1", flag_meanings="negative positive")
        if n_classes == 2
        else variable_attrs("class index")
    )
    return xr.Dataset(
        {
            "x": (("sample", "feature"), x.astype(np.float64), variable_attrs("input")),
            "y": ("sample", np.asarray(y, dtype=np.int64), y_attrs),
            "split": (
                "sample",
                split.astype(np.int8),
                variable_attrs("split", flag_values="0 1", flag_meanings="train test"),
            ),
        },
        coords={
            "sample": ("sample", np.arange(n), variable_attrs("sample index")),
            "feature": ("feature", np.arange(d), variable_attrs("input feature index")),
        },
        attrs={"n_classes": n_classes, "dataset_kind": kind},
    )


def train_test_arrays(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` as numpy arrays from a ``prepare_dataset`` output."""
    is_train = ds["split"].values == TRAIN
    x, y = ds["x"].values, ds["y"].values
    return x[is_train], y[is_train], x[~is_train], y[~is_train]
