"""Cost of probing a basin's shape: runs of the dynamics (probes) per second, by kind of probe.

The stages probe_ring_rays and measure_ring_tentacles re-run the dynamics from three kinds of
points, which cost differently: points on rays from a twisted state (most return within a few
hundred steps), points on segments from the state to initial conditions, and points on rays
from initial conditions (local thickness: far from any state, they relax as long as a fresh
initial condition). This times a batch of each on Kuramoto rings with the relaxation and
budget settings of config/kuramoto.yaml, so a config's cost can be sized as
runs / (probes per second):

- probe_ring_rays: n_probed * n_directions * (n_radii + n_bisection) runs (bisection rounds
  run only the rays still refining, in small batches);
- measure_ring_tentacles: n_probed * (n_star_members * n_segment + n_thickness_members *
  n_thickness_directions * (n_thickness_radii + n_thickness_bisection)) runs.

A network probe is one run of the experiment's training from a point (what the probing
stages' CatalogRerun does, polish and saddle check included); this times runs from the
initialization of the default study's experiments (config/config.yaml), the cost of ray and
thickness points far from any minimum, an upper bound for points near one:

- probe_rays: n_probed * n_directions * (n_radii + n_bisection) runs;
- measure_tentacles: n_probed * (n_star_members * n_segment + n_thickness_members *
  n_thickness_directions * (n_thickness_radii + n_thickness_bisection)) runs.

    python benchmarks/bench_probing.py                     # rings n = 40, 83 and three networks, CPU, one thread
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from basins.data import train_test_arrays
from basins.oscillators import KuramotoRing, relax_ring, twisted_state, uniform_phases, winding_number
from basins.rays import random_directions
from basins.ring_reruns import nearest_twisted_images, ring_outcomes
from basins.training import train_ensemble
from recording import write_table
from study_experiments import default_study, landscape_and_starts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def probe_points(ring, rays, n_points, seed=0):
    """Batches of the three kinds of probe points around q = 0, ``n_points`` each."""
    n = ring.n_oscillators
    rng = np.random.default_rng(seed)
    radii = np.geomspace(rays["smallest_radius"], rays["largest_radius"], rays["n_radii"])
    directions = random_directions(1, n_points, n, seed=seed)[0]
    on_rays = twisted_state(n, 0) + rng.choice(radii, n_points)[:, None] * directions
    starts = uniform_phases(n, np.arange(4 * n_points), seed=seed)
    ends = relax_ring(ring, starts, np.arange(len(starts)), dynamics="gradient_flow", lr=0.1, max_steps=20000,
                      grad_tol=1e-4, rtol=1e-6, atol=1e-8, progress_every_s=1e9)["final_theta"].values
    members = starts[winding_number(ends) == 0][:n_points]
    images, unwrapped = nearest_twisted_images(members, np.zeros(len(members), dtype=int))
    fractions = rng.uniform(0, 1, (len(members), 1))
    on_segments = images + fractions * (unwrapped - images)
    distance = np.linalg.norm(unwrapped - images, axis=1, keepdims=True)
    around = random_directions(1, len(members), n, seed=seed + 1)[0]
    scale = np.exp(rng.uniform(np.log(0.02), np.log(2.0), (len(members), 1)))
    on_thickness_rays = unwrapped + distance * scale * around
    return {"ray_from_state": on_rays, "segment": on_segments, "ray_from_start": on_thickness_rays}


def time_network(name, experiment, n_points, budget_factors):
    """Seconds to train ``n_points`` members of ``experiment`` from its initialization."""
    dataset, arch, ids, theta = landscape_and_starts(experiment, n_points, data_seed=1, start_seed=7)
    began = time.perf_counter()
    result = train_ensemble(arch, *train_test_arrays(dataset), theta, ids, seed=7, budget_factors=budget_factors,
                            device="cpu", **experiment["training"])
    seconds = time.perf_counter() - began
    return {"experiment": name, "n_params": arch.n_params, "kind": "from_initialization", "probes": n_points,
            "seconds": round(seconds, 2), "probes_per_s": round(n_points / seconds, 3),
            "converged_fraction": round(float((result["status"].values == 0).mean()), 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rings", nargs="*", default=["ring40", "ring83"])
    parser.add_argument("--points", type=int, default=384, help="probe points per kind")
    parser.add_argument("--experiments", nargs="*", default=["teacher_tanh", "digits_parity_tanh", "digits_ce_quench"])
    parser.add_argument("--network-points", type=int, default=256, help="probes per network experiment")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load((ROOT / "config/kuramoto.yaml").read_text())
    rows = []
    for name in args.rings:
        ring_config = config["oscillators"][name]
        ring = KuramotoRing(**ring_config["ring"])
        outcomes = ring_outcomes(ring, np.array([0]), tolerance=ring_config["twisted_states"]["tolerance"],
                                 relaxation=ring_config["relaxation"], budget_factors=(1, 4, 16), seed=0)
        for kind, points in probe_points(ring, ring_config["rays"], args.points).items():
            began = time.perf_counter()
            ended = outcomes(points, np.zeros(len(points), dtype=int))
            seconds = time.perf_counter() - began
            rows.append({"ring": name, "n_oscillators": ring.n_oscillators, "kind": kind, "probes": len(points),
                         "seconds": round(seconds, 2), "probes_per_s": round(len(points) / seconds, 3),
                         "returned_fraction": round(float((ended == 1).mean()), 3)})
            print(json.dumps(rows[-1]), flush=True)
    study = default_study()
    for name in args.experiments:
        rows.append(time_network(name, study["experiments"][name], args.network_points, study["budget_factors"]))
        print(json.dumps(rows[-1]), flush=True)
    machine = {"load_average_1min": round(os.getloadavg()[0], 2),
               "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": "float64",
               "relaxation": "config/kuramoto.yaml", "budget_factors": [1, 4, 16]}
    output = args.output or RESULTS / "probing_cpu.json"
    write_table(output, rows, machine)


if __name__ == "__main__":
    main()
