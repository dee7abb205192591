"""How often a shape row is decided where nothing is there, on a run's own layout.

The answer stage's shape rows (``basins.answer``: good - bad at matched basin size, corrected
for the pairs' size ratios by a slope on log basin fraction) are checked against planted
answers in tests/test_answer.py on synthetic layouts. This script checks them on the layout of
a finished run: its probed minima, their member counts, test errors and the statistic's
standard errors, as the run wrote them. Per simulated study it

- redraws every probed minimum's member count (Poisson about the counted one, whose fraction
  is taken as the truth), or with ``--whole-catalogue`` every catalogued minimum's (one
  multinomial draw of the ensemble's members over the catalogue's counted fractions) and chooses
  the minima to probe again from the redrawn counts as ``probe_rays`` does
  (``select_minima_to_probe`` with the run's own settings): minima near the member cut then cross
  it, and the pair and its neighbours are chosen by noisy counts, as in the study; with
  ``--truth posterior`` besides, each fitting minimum's true fraction is drawn anew from its
  posterior given the run's count and test-error rank under the run's prior of sizes
  (``basins.size_prior``: true sizes spread smoothly, where the counted ones carry every
  count's noise) and counted anew; with ``--truth sorted`` (or ``reversed``) the fitting minima's
  counts are first dealt out again in order of test error, the largest to the best minimum (to the
  worst): size nearly a function of test-error rank, the session-64 referee's null, where the
  size slope's counting attenuation is strongest,
- plants the statistic as ``slope x ln(true basin fraction)`` + a level per replicate + noise
  of each minimum's own standard error (+ ``--extra-scatter``: scatter its error does not
  state), with no good - bad difference on average (``--heterogeneity`` tau: each replicate's
  own, drawn N(0, tau^2), times the minima's test-error rank),
- and passes the redrawn replicates through the stage's own functions (``good_bad_shape``,
  ``selection_shortfall`` and ``slope_window_moments`` on the redrawn catalogue,
  ``size_correction``, ``_pooled_interval``): new pairs, their shortfalls, new slope and its
  counting attenuation, the pooled interval.

A row decided at 95 % is then a false alarm; the rate should stay at or below 5 % (and the
one-sided rate in the hypothesis's direction at or below 2.5 %) at every planted slope (each
rate with its binomial Monte Carlo error), and the mean estimate should be 0 within its Monte
Carlo error. The same studies are pooled twice more: with the slope's attenuation not divided
out (``_attenuated``: session 64) and with neither it nor the pairs' selection shortfall
(``_counted``: before session 64); the fitted slope over the planted one shows the counts' bias
on it.

    python benchmarks/shape_row_calibration.py RUN/results --extra-scatter 0.02 --output benchmarks/results/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from basins.answer import (
    SHAPE_STATISTICS,
    _pooled_interval,
    good_bad_shape,
    probed_fitting_minima,
    selection_shortfall,
    size_correction,
    slope_window_moments,
)
from basins.io import read_dataset
from basins.rays import Probing
from basins.size_prior import LogSizePrior, fit_log_size_prior
from basins.summary import test_error_badness

sys.path.insert(0, str(Path(__file__).parent))
from recording import write_table  # noqa: E402


def run_layout(results: Path, experiment: str | None) -> tuple[str, list]:
    """The (minima, tentacles, how the rays stage chose the minima to probe) of every probed seed
    of one experiment of a run."""
    experiments = sorted(path.name for path in (results / "tentacles").iterdir() if path.is_dir())
    if not experiments:
        raise SystemExit(f"{results}/tentacles holds no probed experiment")
    if experiment is None:
        if len(experiments) > 1:
            raise SystemExit(f"{results} probed {experiments}: name one with --experiment")
        experiment = experiments[0]
    elif experiment not in experiments:
        raise SystemExit(f"{experiment} was not probed in {results} ({experiments})")
    files = sorted((results / "tentacles" / experiment).glob("seed*.nc"))
    return experiment, [(read_dataset(results / "minima" / experiment / f.name), read_dataset(f),
                         Probing.from_stage_config(json.loads(
                             read_dataset(results / "rays" / experiment / f.name).attrs["stage_config"])))
                        for f in files]


def test_error_rank(minima, fit_threshold) -> tuple[np.ndarray, np.ndarray]:
    """The catalogue's fitting minima (a mask) and their test-error ranks among themselves, 0
    the best .. 1 the worst (``test_error_badness``; 0 where they do not differ): the covariate
    of the prior the true sizes are drawn from."""
    fitting = minima["train_error"].values <= fit_threshold
    test_error = minima["test_error"].values[fitting]
    if len(test_error) < 2 or np.ptp(test_error) == 0:
        return fitting, np.zeros(len(test_error))
    return fitting, test_error_badness(test_error)


def run_size_prior(layout, fit_threshold) -> LogSizePrior:
    """The prior of the run's basin sizes (``basins.size_prior``), from every fitting minimum's
    count over the probed seeds' catalogues, shifted with its test-error rank: the truths of
    ``--truth posterior`` are drawn from each minimum's posterior under it."""
    counts, totals, ranks = [], [], []
    for minima, _, _ in layout:
        fitting, rank = test_error_rank(minima, fit_threshold)
        counted = minima["n_members"].values[fitting]
        counts.append(counted[counted >= 1])
        ranks.append(rank[counted >= 1])
        totals.append(np.full(int((counted >= 1).sum()), int(minima.attrs["n_members_total"])))
    return fit_log_size_prior(*map(np.concatenate, (counts, totals, ranks)))


def sorted_catalogue(minima, fit_threshold, *, good_largest: bool):
    """The catalogue with its fitting minima's counts dealt out again in order of test error, the
    largest count to the best minimum (``good_largest``) or to the worst (ties in catalogue order):
    a truth whose basin size is nearly a function of test-error rank."""
    counts = minima["n_members"].values.copy()
    fitting = np.flatnonzero(minima["train_error"].values <= fit_threshold)
    order = fitting[np.argsort(minima["test_error"].values[fitting], kind="stable")]
    counts[order if good_largest else order[::-1]] = np.sort(counts[fitting])[::-1]
    return minima.assign(n_members=("minimum", counts))


def redrawn_replicate(rng, minima, tentacles, probing: Probing, *, fit_threshold, min_members, match_factor,
                      whole_catalogue, truth_prior=None):
    """One replicate with its member counts redrawn: a tentacles-like dataset of the minima
    probed (ids, counts, fractions; no statistic yet), each one's true ln basin fraction, and
    the catalogue as the study would have counted it (for the stage's selection shortfall).
    With ``truth_prior`` (whole catalogue only) each fitting minimum's true fraction is drawn
    from its posterior given the run's count and test-error rank, and counted anew (Poisson)."""
    total = int(minima.attrs["n_members_total"])
    fitting = minima["train_error"].values <= fit_threshold
    if whole_catalogue:
        true_counts = minima["n_members"].values.astype(float)
        if truth_prior is None:
            drawn = rng.multinomial(total, np.append(true_counts, max(0.0, total - true_counts.sum())) / total)[:-1]
        else:
            _, rank = test_error_rank(minima, fit_threshold)
            reached = true_counts[fitting] >= 1
            weight, shift = truth_prior.posterior_weights(true_counts[fitting][reached], total, rank[reached])
            grid = truth_prior.log_fraction
            drawn_point = (weight.cumsum(1) < rng.random((len(weight), 1))).sum(1)
            spacing = grid[1] - grid[0]  # a draw anywhere within its grid cell
            true_fitting = true_counts[fitting]
            true_fitting[reached] = total * np.exp(grid[drawn_point] + shift
                                                   + spacing * (rng.random(len(weight)) - 0.5))
            true_counts[fitting] = true_fitting
            drawn = rng.poisson(true_counts)
            if drawn.sum() > total:  # the ensemble holds its members: thin the draw to them
                drawn = rng.multivariate_hypergeometric(drawn, total)
        ids = probing.probed(drawn, total, minima["train_error"].values, minima["test_error"].values)
        true_counts, counts = true_counts[ids], drawn[ids]
    else:
        ids = tentacles["minimum"].values
        true_counts = tentacles["n_members"].values.astype(float)
        counts = rng.poisson(true_counts)
        drawn = minima["n_members"].values.copy()
        drawn[ids] = counts
        if drawn.sum() > total:
            drawn = rng.multivariate_hypergeometric(drawn, total)
            counts = drawn[ids]
    redrawn = xr.Dataset({"n_members": ("minimum", counts), "basin_fraction": ("minimum", counts / total)},
                         coords={"minimum": ids}, attrs={"min_members": int(tentacles.attrs.get("min_members", 1))})
    return redrawn, np.log(true_counts / total), minima.assign(n_members=("minimum", drawn))


def statistic_errors(tentacles, ids, stat):
    """The statistic's standard error at each of ``ids``: the run's, or its median where the run
    probed it not."""
    measured = dict(zip(tentacles["minimum"].values, tentacles[f"{stat}_se"].values))
    error = np.array([measured.get(i, np.nan) for i in ids])
    return np.where(np.isfinite(error), error, np.nanmedian(tentacles[f"{stat}_se"].values))


#: How each study is pooled: which of the pairs' redrawn corrections each pool keeps (the stage
#: both; session 64's no attenuation divided out; session 63's no selection shortfall either).
POOLS = {"": ("shortfall", "window_moments"), "_attenuated": ("shortfall",), "_counted": ()}


def redrawn_pairs(layout, redrawn, catalogues, stat, *, shortfall_redraws, shortfall_seed, fit_threshold, min_members,
                  match_factor, attenuation_redraws=None):
    """The stage's path for one shape row over the redrawn replicates up to the pool: the probed
    fitting minima, the pairs with their selection shortfall (``selection_shortfall`` from each
    redrawn catalogue, ``shortfall_redraws`` redraws; 0: none) and the slope's window in redraws
    (``slope_window_moments`` with ``attenuation_redraws``; None: none), and each replicate's
    good - bad difference and its error: ``(probed, pairs, z, se)``."""
    probed, pairs, z, se = {}, {}, [], []
    for seed, ((minima, _, probing), tentacles, catalogue) in enumerate(zip(layout, redrawn, catalogues)):
        probed[seed] = probed_fitting_minima(minima, tentacles, fit_threshold=fit_threshold, min_members=min_members)
        shape, reason = good_bad_shape(minima, tentacles, fit_threshold=fit_threshold, min_members=min_members,
                                       match_factor=match_factor)
        difference = (np.nan, np.nan) if reason else shape["differences"][stat]
        if not reason:
            pairs[seed] = shape["sizes"]
            if shortfall_redraws:
                shortfall = selection_shortfall(catalogue, probing, fit_threshold=fit_threshold,
                                                need=probed[seed].need, match_factor=match_factor,
                                                n_redraws=shortfall_redraws, seed=shortfall_seed + seed)
                pairs[seed] = pairs[seed]._replace(shortfall=shortfall.mean, shortfall_variance=shortfall.variance)
            if attenuation_redraws:
                pairs[seed] = pairs[seed]._replace(window_moments=slope_window_moments(
                    catalogue, probing, fit_threshold=fit_threshold, need=probed[seed].need,
                    match_factor=match_factor, redraws=attenuation_redraws, seed=shortfall_seed + seed))
        z.append(difference[0])
        se.append(difference[1])
    return probed, pairs, np.array(z), np.array(se)


def pooled_row(probed, pairs, z, se, stat, *, kept, match_factor, confidence):
    """The pool of :func:`redrawn_pairs`' output with only the pairs' corrections named in ``kept``
    (:data:`POOLS`): its pooled interval, slope and attenuation, or None where the size correction
    is refused or no replicate has a pair."""
    pairs = {seed: pair._replace(shortfall=pair.shortfall if "shortfall" in kept else None,
                                 shortfall_variance=pair.shortfall_variance if "shortfall" in kept else 0.0,
                                 window_moments=pair.window_moments if "window_moments" in kept else None)
             for seed, pair in pairs.items()}
    correction = size_correction(probed, pairs, stat, list(range(len(z))), match_factor=match_factor,
                                 confidence=confidence)
    if correction is None or correction.reason:
        return None
    pooled, low, high = _pooled_interval(z, se, confidence, lambda v: v, (-np.inf, np.inf), correction)
    return dict(estimate=pooled["estimate"], low=low, high=high, tau=pooled["tau"], slope=correction.slope,
                k=pooled["k"], attenuation=correction.attenuation)


def simulated_study(rng, layout, *, slope, stat, fit_threshold, min_members, match_factor, confidence,
                    extra_scatter=0.0, heterogeneity=0.0, whole_catalogue=False, truth_prior=None,
                    shortfall_redraws=50, attenuation_redraws=None) -> dict | None:
    """One study on the run's layout with redrawn counts and a planted null statistic, pooled as
    the stage does (the pairs' size ratios raised by their selection shortfall, the slope's
    counting attenuation divided out), without the attenuation (``_attenuated``: session 64) and
    without either (``_counted``: before session 64); None where a size correction is refused."""
    redrawn, catalogues = [], []
    for minima, tentacles, probing in layout:
        replicate, true_log_fraction, catalogue = redrawn_replicate(
            rng, minima, tentacles, probing, fit_threshold=fit_threshold, min_members=min_members,
            match_factor=match_factor, whole_catalogue=whole_catalogue, truth_prior=truth_prior)
        ids = replicate["minimum"].values
        n = len(ids)
        error = statistic_errors(tentacles, ids, stat)
        test_error = minima["test_error"].values[ids]
        rank = np.argsort(np.argsort(test_error)) / max(1, n - 1)  # 0 best .. 1 worst
        value = (rng.normal(0.5, 0.1) + slope * true_log_fraction + rng.normal(0, heterogeneity) * rank
                 + np.hypot(error, extra_scatter) * rng.standard_normal(n))
        redrawn.append(replicate.assign(**{stat: ("minimum", value), f"{stat}_se": ("minimum", error)}))
        catalogues.append(catalogue)
    probed, pairs, z, se = redrawn_pairs(
        layout, redrawn, catalogues, stat, shortfall_redraws=shortfall_redraws, shortfall_seed=int(rng.integers(2**31)),
        fit_threshold=fit_threshold, min_members=min_members, match_factor=match_factor,
        attenuation_redraws=attenuation_redraws)
    rows = {suffix: pooled_row(probed, pairs, z, se, stat, kept=kept, match_factor=match_factor, confidence=confidence)
            for suffix, kept in POOLS.items()}
    if any(row is None for row in rows.values()):
        return None
    return {f"{key}{suffix}": value for suffix, row in rows.items() for key, value in row.items()}


def calibrate(layout, *, slopes, studies, seed, stat, fit_threshold, min_members, match_factor, confidence,
              extra_scatter=0.0, heterogeneity=0.0, whole_catalogue=False, truth="catalogue", shortfall_redraws=50,
              attenuation_redraws=None):
    sign = SHAPE_STATISTICS[stat][1]
    truth_prior = run_size_prior(layout, fit_threshold) if truth == "posterior" else None
    if truth in ("sorted", "reversed"):
        layout = [(sorted_catalogue(minima, fit_threshold, good_largest=truth == "sorted"), tentacles, probing)
                  for minima, tentacles, probing in layout]
    rows = []
    for slope in slopes:
        rng = np.random.default_rng([seed, round(1000 * slope)])
        results, refused = [], 0
        for study in range(studies):
            result = simulated_study(rng, layout, slope=slope, stat=stat, fit_threshold=fit_threshold,
                                     min_members=min_members, match_factor=match_factor, confidence=confidence,
                                     extra_scatter=extra_scatter, heterogeneity=heterogeneity,
                                     whole_catalogue=whole_catalogue, truth_prior=truth_prior,
                                     shortfall_redraws=shortfall_redraws, attenuation_redraws=attenuation_redraws)
            refused += result is None
            results += [result] if result else []
            if (study + 1) % 100 == 0:
                print(f"  slope {slope}: {study + 1} of {studies} studies", flush=True)
        column = {key: np.array([r[key] for r in results]) for key in results[0]}

        def rates(low, high):
            decided = (low > 0) | (high < 0)
            return float(decided.mean()), float((decided & (np.sign(low) == sign)).mean())

        two_sided, one_sided = rates(column["low"], column["high"])
        two_sided_counted, one_sided_counted = rates(column["low_counted"], column["high_counted"])
        two_sided_attenuated, one_sided_attenuated = rates(column["low_attenuated"], column["high_attenuated"])
        n = len(results)
        rows.append(dict(
            planted_slope=slope, studies=n, refused=refused, mean_replicates=float(column["k"].mean()),
            mean_estimate=float(column["estimate"].mean()),
            mean_estimate_error=float(column["estimate"].std() / np.sqrt(n)),
            sd_estimate=float(column["estimate"].std()),
            fitted_over_planted_slope=float(column["slope"].mean() / slope) if slope else np.nan,
            mean_tau=float(column["tau"].mean()), false_alarms=two_sided, false_alarms_hypothesis_side=one_sided,
            mean_attenuation=float(np.nanmean(column["attenuation"])),
            # the same studies with the slope's attenuation left in (session 64)
            mean_estimate_attenuated=float(column["estimate_attenuated"].mean()),
            fitted_over_planted_slope_attenuated=(float(column["slope_attenuated"].mean() / slope) if slope
                                                  else np.nan),
            false_alarms_attenuated=two_sided_attenuated,
            false_alarms_hypothesis_side_attenuated=one_sided_attenuated,
            # the same studies with the pairs' sizes as counted (sessions 63 and before)
            mean_estimate_counted=float(column["estimate_counted"].mean()),
            fitted_over_planted_slope_counted=float(column["slope_counted"].mean() / slope) if slope else np.nan,
            false_alarms_counted=two_sided_counted, false_alarms_hypothesis_side_counted=one_sided_counted,
            # binomial Monte Carlo errors of a rate near 5 % and near 2.5 %
            false_alarm_error_at_5_percent=float(np.sqrt(0.05 * 0.95 / n)),
            false_alarm_error_at_2_5_percent=float(np.sqrt(0.025 * 0.975 / n))))
        print({key: round(value, 4) if isinstance(value, float) else value for key, value in rows[-1].items()})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a finished run's results folder (with tentacles/ and minima/)")
    parser.add_argument("--experiment", help="the probed experiment (needed where the run probed several)")
    parser.add_argument("--statistic", default="far_return_probability",
                        choices=sorted(name for name, (kind, _) in SHAPE_STATISTICS.items() if kind == "se"),
                        help="a shape statistic stored with its standard error")
    parser.add_argument("--slopes", type=float, nargs="+", default=[0.0, 0.08, 0.2],
                        help="planted slopes of the statistic on ln basin fraction (0.08: the N = 401 run's)")
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--extra-scatter", type=float, default=0.0,
                        help="per-minimum scatter beyond its stated error (the N = 401 run's residuals about the "
                        "size slope: about 0.02)")
    parser.add_argument("--heterogeneity", type=float, default=0.0,
                        help="tau of each replicate's own good - bad difference (mean 0)")
    parser.add_argument("--whole-catalogue", action="store_true",
                        help="redraw every catalogued minimum's count and choose the minima to probe again")
    parser.add_argument("--truth", choices=["catalogue", "posterior", "sorted", "reversed"], default="catalogue",
                        help="with --whole-catalogue, the true basin sizes: the run's counted ones, each fitting "
                        "minimum's drawn anew per study from its posterior under the run's prior of sizes, or the "
                        "run's counts dealt out in order of test error (sorted: the largest to the best minimum; "
                        "reversed: to the worst)")
    parser.add_argument("--shortfall-redraws", type=int, default=50,
                        help="redraws behind each pair's selection shortfall (the stage's: 1000)")
    parser.add_argument("--attenuation-redraws", type=int, nargs=3, default=[50, 10, 10],
                        metavar=("FIRST", "OUTER", "INNER"),
                        help="redraws behind the size slope's counting attenuation (the stage's: 1000 25 40)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--fit-threshold", type=float, default=0.0)
    parser.add_argument("--min-members", type=int, default=10)
    parser.add_argument("--match-factor", type=float, default=2.0)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--output", type=Path, help="JSON table to write")
    args = parser.parse_args(argv)
    if args.studies < 1:
        parser.error("--studies must be at least 1")
    if args.truth != "catalogue" and not args.whole_catalogue:
        parser.error(f"--truth {args.truth} redraws the whole catalogue: give --whole-catalogue")
    if args.extra_scatter < 0 or args.heterogeneity < 0:
        parser.error("--extra-scatter and --heterogeneity are standard deviations: >= 0")
    experiment, layout = run_layout(args.results, args.experiment)
    print(f"{experiment}: {len(layout)} probed seeds", flush=True)
    rows = calibrate(layout, slopes=args.slopes, studies=args.studies, seed=args.seed, stat=args.statistic,
                     fit_threshold=args.fit_threshold, min_members=args.min_members, match_factor=args.match_factor,
                     confidence=args.confidence, extra_scatter=args.extra_scatter, heterogeneity=args.heterogeneity,
                     whole_catalogue=args.whole_catalogue, truth=args.truth,
                     shortfall_redraws=args.shortfall_redraws,
                     attenuation_redraws=dict(zip(("first", "outer", "inner"), args.attenuation_redraws)))
    if args.output:
        write_table(args.output, rows, dict(results=str(args.results), experiment=experiment, statistic=args.statistic,
                                            studies=args.studies, seed=args.seed, extra_scatter=args.extra_scatter,
                                            heterogeneity=args.heterogeneity, whole_catalogue=args.whole_catalogue,
                                            truth=args.truth, shortfall_redraws=args.shortfall_redraws,
                                            attenuation_redraws=args.attenuation_redraws))


if __name__ == "__main__":
    main()
