"""Session 54: would a half-length walk from below (every rung at the anchor) make the basin
walk's plateau check see main walks that read high? Measured, not adopted (docs/method.md,
*The walk from above*).

The box in d = 20 (ten sides of half-width 0.3, ten of 3; ln mu known), three basins a stage,
64 exact draws of the measure inside each as the members' starts, 17 springs up to 1e3, eight
ladders with replica exchange. Per stage: the main walk (rungs at their draw or the anchor, as
the stage runs it), the stage's half-length walk from above (ladders descended from their draws)
and a half-length walk with every rung at the anchor; each compared with the main walk by the
stage's own plateau check (`_half_walk_plateau`), at the interval's level and, for the two
together, each at half of it.

    python docs/experiments/half_walk_from_below.py N_STEPS N_BURN N_STAGES

Prints the mean errors (nats, against the truth) of the three walks and how many stages each
check flags. Not a test: an experiment run once and recorded in docs/method.md.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

import basins.basin_volume as basin_volume
from basins.basin_volume import PLATEAU_DRIFTING, GaussianMeasure, coupling_schedule, estimate_basin_measures
from basins.labels import LEFT, RETURNED

_stage_starts = basin_volume._chain_starts


def _every_rung_at_the_anchor(measure, centres, samples, couplings, n_chains, rng, **options):
    """The stage's starts, with the same random stream, moved to the anchor: the walk from below."""
    starts, which = _stage_starts(measure, centres, samples, couplings, n_chains, rng, **options)
    return np.broadcast_to(centres[:, None, None, :], starts.shape).copy(), np.zeros_like(which)


def box_in_twenty_dimensions(n_basins: int, n_samples: int, rng):
    """Membership, anchors, ln mu and exact draws inside (inverse CDF of the truncated normal)."""
    dim = 20
    widths = np.where(np.arange(dim) < dim // 2, 0.3, 3.0)
    truth = float(np.sum(np.log(2 * stats.norm.cdf(widths) - 1)))
    samples = stats.norm.ppf(rng.uniform(stats.norm.cdf(-widths), stats.norm.cdf(widths), (n_basins, n_samples, dim)))

    def inside(z, basin):
        return np.where(np.all(np.abs(z) < widths, axis=-1), RETURNED, LEFT).astype(np.int8)

    return inside, np.zeros((n_basins, dim)), truth, list(samples)


def one_stage(seed: int, n_steps: int, n_burn: int) -> dict:
    inside, centres, truth, samples = box_in_twenty_dimensions(3, 64, np.random.default_rng(1000 + seed))
    measure = GaussianMeasure(centres.shape[1])
    common = dict(couplings=coupling_schedule(1e3, 17), n_chains=8, n_reference=200, basin_samples=samples,
                  replica_exchange=True)
    half = dict(n_steps=n_steps // 2, n_burn=max(n_burn // 2, 1), seed=np.random.SeedSequence([seed, 2]), **common)
    main = estimate_basin_measures(inside, measure, centres, seed=seed, n_steps=n_steps, n_burn=n_burn, **common)
    above = estimate_basin_measures(inside, measure, centres, descend_ladders=True, **half)
    basin_volume._chain_starts = _every_rung_at_the_anchor
    try:
        below = estimate_basin_measures(inside, measure, centres, **half)
    finally:
        basin_volume._chain_starts = _stage_starts
    estimate = [main[name].values for name in ("log_measure", "log_measure_se", "log_measure_dof")]
    covered = (main["log_measure_low"].values <= truth) & (truth <= main["log_measure_high"].values)

    def flagged(walk, z):
        return basin_volume._half_walk_plateau(*estimate, walk, z)["verdict"] == PLATEAU_DRIFTING

    z, z_half = stats.norm.isf(0.025), stats.norm.isf(0.0125)
    return dict(main=estimate[0].mean() - truth, above=above["log_measure"].values.mean() - truth,
                below=below["log_measure"].values.mean() - truth, covered=covered.mean(),
                flagged_above=flagged(above, z), flagged_below=flagged(below, z),
                flagged_either=flagged(above, z_half) or flagged(below, z_half))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n_steps", type=int)
    parser.add_argument("n_burn", type=int)
    parser.add_argument("n_stages", type=int)
    args = parser.parse_args()
    rows = [one_stage(seed, args.n_steps, args.n_burn) for seed in range(args.n_stages)]
    mean = {key: np.mean([row[key] for row in rows]) for key in rows[0]}
    count = {key: sum(bool(row[key]) for row in rows) for key in rows[0] if key.startswith("flagged")}
    print(f"{args.n_steps} steps (burn-in {args.n_burn}), {len(rows)} stages of 3 basins: errors main {mean['main']:+.2f} "
          f"(intervals holding {mean['covered']:.2f}), half-length from above {mean['above']:+.2f}, from below "
          f"{mean['below']:+.2f}; stages flagged: from above {count['flagged_above']}, from below "
          f"{count['flagged_below']}, either at half the level {count['flagged_either']}")


if __name__ == "__main__":
    main()
