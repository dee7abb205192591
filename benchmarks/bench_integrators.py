"""Gradient flow by the explicit and the stiff integrator, on the default study's own landscapes.

Trains the same starting points of an experiment of config/config.yaml (its training section,
the schema's defaults filled in) once with each of ``basins.engine.dynamics.INTEGRATORS`` and
records, per integrator: seconds, attempted steps (median, 90th percentile, largest), members
converged, and how far the two integrators' endpoints lie apart (largest distance, and the
share of members whose endpoints differ by more than the experiment's ``minima.dist_tol``: a
start that changes basin between two integrations of one flow). Both follow the flow to the
same local error tolerances, so endpoints should agree to about the tolerance-scale error
accumulated along the path; a start within that error of a basin boundary can go either way.

    python benchmarks/bench_integrators.py                                   # teacher, digits; 256 starts; CPU, one thread
    python benchmarks/bench_integrators.py --experiments digits_parity_tanh --starts 1024
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from basins.data import train_test_arrays
from basins.engine.dynamics import INTEGRATORS
from basins.training import train_ensemble
from recording import write_table
from study_experiments import default_study, landscape_and_starts

RESULTS = Path(__file__).parent / "results"


def run(name, experiment, n_starts, budget_factors):
    dataset, arch, ids, theta = landscape_and_starts(experiment, n_starts)
    training = experiment["training"]
    rows, ends = [], {}
    for integrator in INTEGRATORS:
        began = time.perf_counter()
        result = train_ensemble(arch, *train_test_arrays(dataset), theta, ids, seed=1, budget_factors=budget_factors,
                                device="cpu", **dict(training, integrator=integrator))
        seconds = time.perf_counter() - began
        steps = result["steps"].values
        ends[integrator] = result["final_theta"].values
        rows.append({"experiment": name, "n_params": arch.n_params, "integrator": integrator, "starts": n_starts,
                     "rtol": training["rtol"], "seconds": round(seconds, 2),
                     "steps_median": float(np.median(steps)), "steps_p90": float(np.percentile(steps, 90)),
                     "steps_max": int(steps.max()),
                     "converged_fraction": round(float((result["status"].values == 0).mean()), 4)})
    distance = np.linalg.norm(ends["rosenbrock"] - ends["dormand_prince"], axis=1)
    for row in rows:
        row.update(endpoint_distance_max=float(distance.max()),
                   endpoints_apart_fraction=round(float((distance > experiment["minima"]["dist_tol"]).mean()), 4))
        print(json.dumps(row), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", nargs="*", default=["teacher_tanh", "digits_parity_tanh"])
    parser.add_argument("--starts", type=int, default=256)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    study = default_study()
    rows = [row for name in args.experiments
            for row in run(name, study["experiments"][name], args.starts, study["budget_factors"])]
    machine = {"load_average_1min": round(os.getloadavg()[0], 2), "cpu_threads": torch.get_num_threads(),
               "torch": torch.__version__, "dtype": "float64", "config": "config/config.yaml"}
    write_table(args.output or RESULTS / "integrators_cpu.json", rows, machine)


if __name__ == "__main__":
    main()
