"""Known answers for the basin sizes read through an experiment's prior of sizes (empirical
Bayes, basins.size_prior): a gamma prior's exact posterior, simulated power-law and log-normal
catalogues, a covariate that shifts sizes, regression on the posterior means."""

import numpy as np
import pytest
from scipy import special

from basins.size_prior import fit_log_size_prior

COUNTS = np.array([5, 10, 15, 20, 30, 50])


def _seen(rng, expected_members):
    """The member counts of basins of these expected counts, those reached (count >= 1)."""
    counts = rng.poisson(expected_members)
    return counts[counts >= 1]


@pytest.mark.parametrize("shape, scale", [(0.5, 20.0), (0.2, 60.0), (2.0, 10.0)])
def test_a_gamma_prior_gives_its_exact_posterior(shape, scale):
    """Known answer: expected counts Gamma(shape, scale) over basins (shape < 1: small basins
    outnumber large ones) make a basin counted n Gamma(n + shape, rate 1 + 1 / scale) a
    posteriori, so E[ln f | n] = digamma(n + shape) - ln(M (1 + 1 / scale)) and its variance
    trigamma(n + shape). From 3 000 basins (those reached) the fitted prior gives both to 0.03
    and 12 % at 5-50 members; ln(n / M) is off by up to 0.1 at 5 members."""
    rng, total = np.random.default_rng(1), 1000
    counts = _seen(rng, rng.gamma(shape, scale, 3000))
    mean, variance = fit_log_size_prior(counts, total).posterior(COUNTS, total)
    exact = special.digamma(COUNTS + shape) - np.log(total * (1 + 1 / scale))
    np.testing.assert_allclose(mean, exact, atol=0.03)
    np.testing.assert_allclose(variance, special.polygamma(1, COUNTS + shape), rtol=0.12)


def _power_law(rng, n, exponent, low, high):
    """Draws of density ~ x^-exponent on [low, high] (inverse transform)."""
    power = 1 - exponent
    return (low**power + rng.random(n) * (high**power - low**power)) ** (1 / power)


@pytest.mark.parametrize("kind", ["power law", "log-normal"])
def test_the_posterior_mean_is_the_mean_true_size_of_basins_counted_alike(kind):
    """Known answer by simulation: 200 000 basins of expected counts drawn from a power law
    (density ~ size^-1.5: small basins outnumber large ones, Tweedie's formula's case against
    counted logs) or a log-normal, of ensembles of 512 and 1 024 members pooled; the basins
    counted n have a mean true ln fraction, which the posterior mean matches to 0.02 plus three
    of that mean's own standard errors at 5-50 members, where ln(n / M) is off by 0.2 (power
    law) and 0.09 (log-normal) at 5 members."""
    rng = np.random.default_rng(2)
    totals = rng.choice([512, 1024], 200_000)
    if kind == "power law":
        fraction = _power_law(rng, len(totals), 1.5, 1e-4, 0.3)
    else:
        fraction = np.exp(rng.normal(np.log(3e-3), 1.2, len(totals)))
    counts = rng.poisson(totals * fraction)
    seen = counts >= 1
    prior = fit_log_size_prior(counts[seen], totals[seen])
    for total in (512, 1024):
        alike = [np.log(fraction[(counts == n) & (totals == total)]) for n in COUNTS]
        truth = np.array([values.mean() for values in alike])
        truth_error = np.array([values.std() / np.sqrt(len(values)) for values in alike])
        mean, _ = prior.posterior(COUNTS, total)
        assert np.all(np.abs(mean - truth) < 0.02 + 3 * truth_error)
        assert np.log(COUNTS[0] / total) - truth[0] > 0.08


def test_a_covariate_that_shifts_sizes_is_fitted_and_read():
    """Known answer: ln fraction = ln(1e-2) - 1.5 z + N(0, 0.8^2), z uniform on [0, 1] (a
    test-error rank: good minima larger), 100 000 basins of 512 members: the fit recovers the
    shift -1.5 within 0.1, and the posterior mean given count and z matches the mean true ln
    fraction of the basins alike in both (z within 0.05; 2-10 members) to 0.03 plus three of
    that mean's standard errors, where the prior blind to z is off by more than 0.1 at z 0.1 or
    0.9."""
    rng, total = np.random.default_rng(4), 512
    z = rng.random(100_000)
    log_fraction = np.log(1e-2) - 1.5 * z + 0.8 * rng.standard_normal(len(z))
    counts = rng.poisson(total * np.exp(log_fraction))
    seen = counts >= 1
    prior = fit_log_size_prior(counts[seen], total, z[seen])
    assert prior.covariate_slope == pytest.approx(-1.5, abs=0.1)
    blind = fit_log_size_prior(counts[seen], total)
    blind_errors = []
    for at in (0.1, 0.5, 0.9):
        for n in (2, 5, 10):  # 35-1 800 basins alike in each
            alike = log_fraction[(counts == n) & (np.abs(z - at) < 0.05)]
            mean, _ = prior.posterior(np.array([n]), total, np.array([at]))
            assert abs(mean[0] - alike.mean()) < 0.03 + 3 * alike.std() / np.sqrt(len(alike))
            blind_errors.append(blind.posterior(np.array([n]), total)[0][0] - alike.mean())
    assert np.max(np.abs(blind_errors)) > 0.1


def test_regression_on_posterior_means_recovers_a_slope_that_counted_logs_bias():
    """Known answer: a statistic planted as 0.3 x true ln fraction (+ noise) over basins with at
    least 10 members (about 3 000), sizes from a power law (density ~ size^-2): regressed on the
    posterior means (regression calibration) its slope is 0.3 within 0.01; on ln(n / M) it is
    0.32 (Tweedie: where small basins outnumber large ones, counted logs are pulled together
    at small counts, so the slope overshoots)."""
    rng, total = np.random.default_rng(3), 1000
    fraction = _power_law(rng, 300_000, 2.0, 1e-4, 0.1)
    counts = rng.poisson(total * fraction)
    prior = fit_log_size_prior(counts[counts >= 1], total)
    kept = counts >= 10
    value = 0.3 * np.log(fraction[kept]) + 0.05 * rng.standard_normal(kept.sum())
    posterior, _ = prior.posterior(counts[kept], total)
    assert np.polyfit(posterior, value, 1)[0] == pytest.approx(0.3, abs=0.01)
    assert np.polyfit(np.log(counts[kept] / total), value, 1)[0] > 0.315


@pytest.mark.parametrize("counts, totals, message", [
    (np.array([0, 3]), 10, "at least 1"), (np.array([2.5]), 10, "whole numbers"),
    (np.array([20]), 10, "more members than"), (np.array([], dtype=int), 10, "at least one counted"),
])
def test_counts_that_are_not_counts_are_refused(counts, totals, message):
    with pytest.raises(ValueError, match=message):
        fit_log_size_prior(counts, totals)
