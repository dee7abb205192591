"""Check a finished study's basin catalogues against the invariants they must keep.

``python -m basins.verify [results]`` re-reads every experiment's outputs under ``results/``
(training shards, minima, basins) and reports, per experiment and seed:

- ``reproduced``: the fraction of a sample of catalogued starts whose re-run (the same dynamics,
  options and member ids, read from the shards' provenance) gets the label the catalogue gave
  it, by the re-runs' identity rule (:func:`basins.minima.assign_to_catalog`), and
  ``reproduced_without_itself``, the same with each endpoint's own member left out of the
  catalogue (members of minima with at least two members);
- ``start_above_travel``: members whose nearest-image start distance exceeds the distance to
  the image they reached (must be 0; ``analyze_basins`` refuses to write any);
- ``lowest_eigenvalue``: the lowest Hessian eigenvalue over the catalogued minima (their
  representatives), which must not be negative beyond the experiment's ``curvature_tol``;
- ``off_stationary``: catalogued members (label >= 0) whose polished gradient norm exceeds the
  experiment's ``stationary_tol`` (must be 0 wherever the Newton polish ran);

and, to read beside them, the catalogue's count at each tolerance factor and whether it has a
plateau, the members kicked off a saddle, the undecided fraction and the largest Newton-polish
shift. The table it prints is the README's catalogue reading.

Everything it needs is in the result files; no config is read.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from basins.data import train_test_arrays
from basins.io import provenance_inputs, read_dataset
from basins.landscapes.architecture import Architecture
from basins.minima import assign_to_catalog, matching_options
from basins.reruns import labels_of
from basins.training import train_ensemble

log = logging.getLogger(__name__)


def check_catalogue(
    training: xr.Dataset,
    minima: xr.Dataset,
    dataset: xr.Dataset,
    *,
    training_options: dict,
    minima_options: dict,
    seed: int,
    budget_factors: list[float] = (1,),
    n_rerun: int = 256,
) -> dict:
    """Re-run ``n_rerun`` catalogued starts (evenly spaced member ids) and compare labels.

    Returns ``reproduced`` (fraction), ``n_rerun``, ``reproduced_without_itself`` (the same
    with each endpoint matched against the catalogue without its own member, over members of
    minima with others: it fails where the catalogue's grouping and the identity rule differ)
    and the ``lowest_eigenvalue`` of the catalogued minima (their representatives' final points).
    """
    training = training.sortby("member")
    arch = Architecture.from_json(training.attrs["architecture"])
    labels = minima["minimum_of_member"].sel(member=training["member"]).values
    rows = np.unique(np.linspace(0, training.sizes["member"] - 1, min(n_rerun, training.sizes["member"])).astype(int))
    matching, probes = matching_options(minima_options, train_test_arrays(dataset)[0])
    rerun = train_ensemble(
        arch, *train_test_arrays(dataset), training["initial_theta"].values[rows], training["member"].values[rows],
        seed=seed, budget_factors=budget_factors, device="cpu", progress_every_s=1e9, final_errors=False,
        **training_options,
    )
    assigned = assign_to_catalog(
        rerun["final_theta"].values, rerun["loss"].values, training["final_theta"].values, training["loss"].values,
        arch, probes, catalog_labels=labels, **matching,
    )
    again = labels_of(assigned, rerun["status"].values)
    # A stronger check: each re-run endpoint matched against the catalogue without its own
    # member, among members of minima that have others (a one-member minimum has nothing left).
    sizes = np.bincount(labels[labels >= 0], minlength=minima.sizes["minimum"])
    shared = np.flatnonzero((labels[rows] >= 0) & (sizes[np.maximum(labels[rows], 0)] >= 2))
    without_itself = []
    for k in shared:
        others = labels.copy()
        others[rows[k]] = -1
        without_itself.append(assign_to_catalog(
            rerun["final_theta"].values[k : k + 1], rerun["loss"].values[k : k + 1], training["final_theta"].values,
            training["loss"].values, arch, probes, catalog_labels=others, **matching,
        )[0] == labels[rows[k]])
    lowest = np.nan
    if "lowest_eigenvalue" in training and minima.sizes["minimum"]:
        lowest = float(training["lowest_eigenvalue"].sel(member=minima["representative"].values).min())
    return {
        "reproduced": float(np.mean(again == labels[rows])),
        "n_rerun": len(rows),
        "reproduced_without_itself": float(np.mean(without_itself)) if without_itself else np.nan,
        "lowest_eigenvalue": lowest,
    }


def verify_results(results: Path, *, n_rerun: int = 256) -> list[dict]:
    """:func:`check_catalogue` and the distance invariant for every experiment under ``results``."""
    rows = []
    for minima_path in sorted(results.glob("minima/*/seed*.nc")):
        experiment, seed_name = minima_path.parent.name, minima_path.stem
        seed = int(seed_name.removeprefix("seed"))
        shards = sorted(results.glob(f"training/{experiment}/{seed_name}/shard*.nc"))
        training = xr.concat([read_dataset(path) for path in shards], dim="member")
        minima = read_dataset(minima_path)
        config = json.loads(training.attrs["stage_config"])
        log.info("%s seed %d: re-running %d catalogued starts", experiment, seed, n_rerun)
        row = {"experiment": experiment, "seed": seed, "n_minima": minima.sizes["minimum"]}
        row |= check_catalogue(
            training, minima, read_dataset(_dataset_of(training, results)),
            training_options=config["training"], minima_options=json.loads(minima.attrs["stage_config"]),
            seed=seed, budget_factors=config.get("budget_factors", [1]), n_rerun=n_rerun,
        )
        basins_path = results / f"basins/{experiment}/{seed_name}.nc"
        if basins_path.exists():
            basins = read_dataset(basins_path)
            start, travel = basins["start_distance"].values, basins["travel_distance"].values
            row["start_above_travel"] = int(np.sum(start > travel * (1 + 1e-10) + 1e-12))
        row["curvature_tol"] = config["training"].get("curvature_tol", 1e-6)
        if "n_refinements" in training:
            catalogued = minima["minimum_of_member"].sel(member=training["member"]).values >= 0
            stationary_tol = config["training"].get("stationary_tol", 1e-9)
            row["off_stationary"] = int(np.sum(catalogued & ~(training["grad_norm"].values <= stationary_tol)))
        rows.append(row | _catalogue_reading(training, minima))
    return rows


def _dataset_of(training: xr.Dataset, results: Path) -> Path:
    """The data set file the training stage read (experiments with the same data set share one)."""
    (path,) = [name for name in provenance_inputs(training) if Path(name).parent.parent.name == "datasets"]
    return results.parent / path


def _catalogue_reading(training: xr.Dataset, minima: xr.Dataset) -> dict:
    """What the catalogue says of itself, for the table beside the checks."""
    reading = {
        "count_at_tolerance": " ".join(str(int(n)) for n in minima["n_minima_at_tolerance"].values),
        "plateau": "yes" if bool(minima["on_tolerance_plateau"]) else "**no**",
        "undecided": f"{100 * float(minima['undecided_fraction']):.1f} %",
    }
    if "n_escapes" in training:
        reading["kicked_off_saddle"] = f"{int((training['n_escapes'] > 0).sum())} of {training.sizes['member']}"
    if "polish_shift" in training:
        shift = training["polish_shift"].values
        reading["largest_polish_shift"] = float(np.nanmax(shift)) if np.isfinite(shift).any() else np.nan
    return reading


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results", type=Path)
    parser.add_argument("--n-rerun", type=int, default=256, help="catalogued starts re-run per experiment")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("basins.training").setLevel(logging.WARNING)
    rows = verify_results(args.results, n_rerun=args.n_rerun)
    columns = ("experiment", "seed", "n_minima", "count_at_tolerance", "plateau", "kicked_off_saddle", "undecided",
               "largest_polish_shift", "n_rerun", "reproduced", "reproduced_without_itself", "start_above_travel",
               "off_stationary", "lowest_eigenvalue")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(_format(row.get(name, "")) for name in columns) + " |")
    broken = [row["experiment"] for row in rows if row["reproduced"] < 0.999 or row.get("start_above_travel", 0)
              or row["lowest_eigenvalue"] < -row["curvature_tol"] or row.get("off_stationary", 0)]
    if broken:
        print(f"invariants broken in: {', '.join(broken)}", file=sys.stderr)
    return 1 if broken else 0


def _format(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    sys.exit(main())
