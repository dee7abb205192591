"""Known answer: the twisted state q = 0 of a Kuramoto ring has a basin with tentacles.

Zhang and Strogatz (2021): on rings of n = 40 and n = 83 identical oscillators (k = 1), the
basin of the synchronous state is octopus-like: its initial conditions lie far (normalized
distance ~1.6-1.8) from the state, where random rays from the state have long left the head,
and are reached along thin tentacles. The stage's statistics must say so, with the settings of
``config/kuramoto.yaml`` (relaxation, rays, tentacles; schema defaults filled in), not tuned
ones. The sample is smaller than that config's ensemble (512 initial conditions, not 32 768),
and only q = 0 is probed (16 s for n = 40 and 183 s for n = 83 on the 2-core VM at load
average 4.5; 85 s and 570 s at load 12); the
full-config numbers are in ``docs/basin_shape.md``, from ``snakemake --configfile
config/kuramoto.yaml``.
"""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from snakemake.utils import validate

from basins.basin_geometry import analyze_basins
from basins.oscillators import (
    KuramotoRing,
    attractor_distance,
    classify_twisted_states,
    distance_to_twisted_state,
    relax_ring,
    uniform_phases,
    winding_number,
)
from basins.rays import probe_rays, ray_radii
from basins.ring_reruns import nearest_twisted_images, ring_outcomes
from basins.tentacles import measure_tentacles

ROOT = Path(__file__).resolve().parents[1]
N_MEMBERS = 512  # initial conditions of the CI sample (config/kuramoto.yaml: 32 768)
SEED = 1


@functools.cache
def kuramoto_config():
    config = yaml.safe_load((ROOT / "config/kuramoto.yaml").read_text())
    validate(config, str(ROOT / "workflow/schemas/config.schema.yaml"), set_default=True)
    return config


@functools.cache
def q0_tentacles(name):
    """The ring pipeline (relax, classify, basins, rays from q = 0, measure_tentacles) on the sample."""
    torch.set_num_threads(1)
    config = kuramoto_config()
    ring_config = config["oscillators"][name]
    ring = KuramotoRing(**ring_config["ring"])
    budget_factors = config["budget_factors"]
    starts = uniform_phases(ring.n_oscillators, np.arange(N_MEMBERS), seed=SEED)
    relaxed = relax_ring(ring, starts, np.arange(N_MEMBERS), seed=SEED, budget_factors=budget_factors,
                         progress_every_s=1e9, **ring_config["relaxation"])
    final, status = relaxed["final_theta"].values, relaxed["status"].values
    tolerance = ring_config["twisted_states"]["tolerance"]
    minima = classify_twisted_states(final, status, ring, tolerance=tolerance)
    labels = minima["minimum_of_member"].values
    basins = analyze_basins(labels, starts, final, n_minima=minima.sizes["minimum"], distance=attractor_distance,
                            end_offset=distance_to_twisted_state(final, winding_number(final)))
    winding = minima["winding_number"].values
    q0 = np.flatnonzero(winding == 0)[:1]
    outcomes = ring_outcomes(ring, winding, tolerance=tolerance, relaxation=ring_config["relaxation"],
                             budget_factors=budget_factors, seed=SEED)
    rays_config = ring_config["rays"]
    rays = probe_rays(minima["theta"].values[q0], lambda points, k: outcomes(points, q0[k]),
                      radii=ray_radii(rays_config["smallest_radius"], rays_config["largest_radius"],
                                      rays_config["n_radii"], farthest=rays_config.get("farthest_radius"),
                                      n_far_radii=rays_config["n_far_radii"]),
                      n_directions=rays_config["n_directions"], n_bisection=rays_config["n_bisection"], seed=SEED,
                      minimum_ids=q0)
    images, unwrapped = nearest_twisted_images(starts, winding[labels.clip(0)])
    tentacles = measure_tentacles(rays, basins["basin_fraction"].values, basins["start_distance"].values, labels,
                                  unwrapped, images, outcomes, seed=SEED, **ring_config["tentacles"])
    return ring, tentacles.sel(minimum=q0[0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ring40", "ring83"])
def test_the_synchronous_state_is_tentacled(name):
    ring, q0 = q0_tentacles(name)
    assert str(q0["reason"].values) == "measured"
    # its members start far beyond the head: normalized distance ~1.6-1.8, rays leave at ~1.1-1.5
    assert float(q0["far_radius"]) / np.sqrt(ring.n_oscillators) > 1.4
    assert float(q0["median_exit_radius"]) < float(q0["far_radius"])
    # star-shapedness: most segments from the state to a member's start leave the basin
    assert float(q0["leaving_fraction_low"]) > 0.5
    # local thickness: far thinner than the distance from the state
    assert float(q0["median_thickness_ratio_high"]) < 0.2
    # reach: part of the basin at its members' distances is met only after leaving it
    assert float(q0["reach_low"]) > 0
    # p(d) far out: the basin is re-entered there at about its volume fraction (the plateau)
    far, se, fraction = (float(q0[key]) for key in ("far_return_probability", "far_return_probability_se",
                                                    "basin_fraction"))
    assert far - 1.96 * se > 0.1
    assert 0.5 < far / fraction < 1.5
    assert float(q0["far_reentry_probability"]) - 1.96 * float(q0["far_reentry_probability_se"]) > 0


def test_nearest_twisted_images_are_on_the_circle_at_the_torus_distance():
    rng = np.random.default_rng(0)
    starts = rng.uniform(-np.pi, np.pi, (50, 12))
    q = rng.integers(-2, 3, 50)
    images, unwrapped = nearest_twisted_images(starts, q)
    np.testing.assert_allclose(np.linalg.norm(unwrapped - images, axis=1), distance_to_twisted_state(starts, q),
                               atol=1e-12)
    np.testing.assert_allclose(distance_to_twisted_state(images, q), 0, atol=1e-12)  # on the circle
    np.testing.assert_allclose(np.angle(np.exp(1j * (unwrapped - starts))), 0, atol=1e-12)  # the same torus point
