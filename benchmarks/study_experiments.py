"""The default study's experiments as the benchmarks use them: config/config.yaml with the
schema's defaults filled in (as the workflow fills them in), and an experiment's data set,
network and starting points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from basins.data import prepare_dataset
from basins.landscapes.architecture import architecture_for, initial_parameters

ROOT = Path(__file__).resolve().parents[1]


def default_study() -> dict:
    """config/config.yaml, validated against the workflow's schema with its defaults set."""
    from snakemake.utils import validate

    study = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    validate(study, str(ROOT / "workflow/schemas/config.schema.yaml"), set_default=True)
    return study


def landscape_and_starts(experiment: dict, n_starts: int, *, data_seed: int = 1, start_seed: int = 1):
    """Data set, architecture, member ids and ``n_starts`` starting points of an experiment
    (``data_seed`` is its draw where the data set has one per ensemble seed)."""
    options = dict(experiment["dataset"])
    if options["seed"] == "per_seed":
        options["seed"] = data_seed
    dataset = prepare_dataset(**options)
    model = dict(experiment["model"])
    init, init_scale = model.pop("init"), model.pop("init_scale")
    arch = architecture_for(dataset, **model)
    ids = np.arange(n_starts)
    return dataset, arch, ids, initial_parameters(arch, ids, seed=start_seed, init=init, init_scale=init_scale)
