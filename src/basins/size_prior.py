"""Basin sizes counted from members, read through an experiment's own spread of sizes.

A basin's fraction is counted: n of an ensemble's M members reached it. The true fractions
behind an experiment's counts have a distribution (the prior ``g``, over every basin, reached
or not), estimated here from all its counted basins by Efron's g-modelling (Efron 2016,
"Empirical Bayes deconvolution estimates"): ``g`` on a grid of ln fraction, log-spline (cubic
B-splines) and fitted by penalized maximum likelihood of the counts, each Poisson of mean M f
and seen only because it is at least 1 (zero-truncated), the ln fraction optionally shifted by
a fitted slope times a covariate of each basin (its test-error rank: good minima may have the
larger basins). Each basin's posterior over its true ln fraction given its count follows.

What it serves: the shape rows' calibration (benchmarks/shape_row_calibration.py,
``--truth posterior``) draws each minimum's true basin fraction from its posterior, a null whose
true sizes are spread smoothly, as true fractions are, where the counted fractions themselves
(``--truth catalogue``) carry every count's noise as if it were spread in size. Read as the
answer stage's sizes (posterior means for the pairs' log size ratios, session 64) it closed about
0.005 of the pairs' 0.026-0.044 shortfall in log size ratio on the N = 401 run's layout: the
shortfall is the pairs' selection, not the counts' shrinkage (``basins.answer.selection_shortfall``
corrects it), and it was not kept there.

Known answers: tests/test_size_prior.py (a gamma prior, whose posterior mean of ln f is
digamma(n + shape) - ln(M (1 + 1 / scale)); a power law and a log-normal, against the mean true
log fraction of the basins counted alike in a large simulation; a covariate's shift recovered
and read; regression on the posterior means recovers a planted slope that counted logs bias).
Counts of 1-2 members say little about the prior below one expected member, so their posteriors
lean on the spline's smoothness there; at 5 members and more they match the simulations' truth.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize, special
from scipy.interpolate import BSpline

#: Points of the prior's grid of ln basin fraction.
GRID_POINTS = 200
#: The grid reaches down to fractions of this many expected members of the largest ensemble:
#: basins that small are seldom seen and shape no posterior of a counted one.
SMALLEST_EXPECTED_MEMBERS = 0.02
#: Cubic B-spline basis functions of the log prior (Efron's choice for g-modelling: 5-6).
SPLINE_FUNCTIONS = 6
#: Ridge weight on the spline coefficients (Efron's penalty keeps the fit from chasing single counts).
RIDGE = 1e-3


class LogSizePrior(NamedTuple):
    """The distribution of true ln basin fraction among an experiment's basins (reached or
    not), on a grid, shifted per basin by ``covariate_slope`` times its covariate
    (:func:`fit_log_size_prior`)."""

    log_fraction: np.ndarray  # the grid of ln basin fraction at covariate 0
    probability: np.ndarray  # the prior's mass at each grid point (sums to 1)
    n_basins: int  # counted basins behind it
    covariate_slope: float = 0.0  # d ln fraction / d covariate

    def posterior(self, counts: np.ndarray, totals: np.ndarray,
                  covariate: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each basin's posterior mean and variance of ln(true fraction), given ``counts`` of
        its ensemble's ``totals`` members reached it (Poisson of mean total x fraction) and its
        ``covariate`` (0 where None)."""
        weight, shift = self.posterior_weights(counts, totals, covariate)
        mean = weight @ self.log_fraction
        variance = weight @ self.log_fraction**2 - mean**2
        return mean + shift, np.maximum(variance, 0.0)

    def posterior_weights(self, counts: np.ndarray, totals: np.ndarray,
                          covariate: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each basin's posterior over the grid given its count and covariate: (basin, grid
        point), rows summing to 1, and each basin's shift of the grid (its ln fraction at grid
        point j is ``log_fraction[j] + shift``)."""
        counts, totals, covariate = _checked_counts(counts, totals, covariate)
        shift = self.covariate_slope * covariate
        weight = _poisson_log_pmf(counts, totals, self.log_fraction, shift) + np.log(self.probability)
        weight = np.exp(weight - weight.max(1, keepdims=True))
        return weight / weight.sum(1, keepdims=True), shift


def _checked_counts(counts, totals, covariate=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.atleast_1d(np.asarray(counts, dtype=np.float64))
    totals = np.broadcast_to(np.asarray(totals, dtype=np.float64), counts.shape)
    covariate = np.zeros(counts.shape) if covariate is None else np.asarray(covariate, dtype=np.float64)
    if np.any(counts < 1) or np.any(counts != np.round(counts)):
        raise ValueError("basin counts must be whole numbers of at least 1 member (a basin no member reached is "
                         "not counted)")
    if np.any(totals < counts):
        raise ValueError("a basin counted more members than its ensemble has")
    if covariate.shape != counts.shape or not np.all(np.isfinite(covariate)):
        raise ValueError(f"the covariate must be finite, one per basin ({counts.shape}), not {covariate.shape}")
    return counts, totals, covariate


def _poisson_log_pmf(counts, totals, log_fraction, shift) -> np.ndarray:
    """ln Poisson(count; total x fraction) at each basin's shifted grid: (basin, grid point)."""
    mean = totals[:, None] * np.exp(log_fraction[None] + shift[:, None])
    return counts[:, None] * np.log(mean) - mean - special.gammaln(counts + 1)[:, None]


def _spline_basis(grid: np.ndarray, n_functions: int) -> np.ndarray:
    """Cubic B-splines on ``grid`` (uniform knots, ``n_functions`` of them): (grid point, function)."""
    degree = 3
    inner = np.linspace(grid[0], grid[-1], n_functions - degree + 1)
    knots = np.concatenate([np.full(degree, grid[0]), inner, np.full(degree, grid[-1])])
    return BSpline.design_matrix(np.clip(grid, grid[0], grid[-1]), knots, degree).toarray()


def fit_log_size_prior(counts: np.ndarray, totals: np.ndarray, covariate: np.ndarray | None = None, *,
                       grid_points: int = GRID_POINTS, n_functions: int = SPLINE_FUNCTIONS,
                       ridge: float = RIDGE) -> LogSizePrior:
    """The prior of ln basin fraction behind counted basins: ``counts[i]`` of ``totals[i]``
    members reached basin i (each basin's own ensemble; pooled replicates may differ), whose
    ln fraction is shifted by a fitted slope times ``covariate[i]`` (None: no covariate).

    Penalized maximum likelihood over log-spline priors (Efron's g-modelling) and the slope:
    each count is Poisson of mean total x fraction, seen only where at least 1
    (zero-truncated: basins no member reached are in the prior but not in the data). The grid
    runs from a fraction of :data:`SMALLEST_EXPECTED_MEMBERS` members of the largest ensemble
    to 1 (at covariate 0). Raises ValueError for no counts, counts that are not whole numbers
    >= 1 within their totals, or a covariate not finite and one per basin.
    """
    counts, totals, covariate = _checked_counts(counts, totals, covariate)
    if counts.size == 0:
        raise ValueError("a prior of basin sizes needs at least one counted basin")
    grid = np.linspace(np.log(SMALLEST_EXPECTED_MEMBERS / totals.max()), 0.0, grid_points)
    basis = _spline_basis(grid, n_functions)
    # Basins alike in count, total and covariate enter once, weighted by how many they are.
    distinct, multiplicity = np.unique(np.column_stack([counts, totals, covariate]), axis=0, return_counts=True)
    counts, totals, covariate = distinct.T
    with_slope = bool(np.ptp(covariate) > 0)

    def objective(parameters):
        coefficients, slope = parameters[:n_functions], (parameters[n_functions] if with_slope else 0.0)
        log_prior = basis @ coefficients
        prior = np.exp(log_prior - special.logsumexp(log_prior))
        mean = totals[:, None] * np.exp(grid[None] + slope * covariate[:, None])
        likelihood = np.exp(counts[:, None] * np.log(mean) - mean - special.gammaln(counts + 1)[:, None])
        seen = -np.expm1(-mean)  # P(count >= 1)
        numerator, denominator = likelihood @ prior, seen @ prior
        value = multiplicity @ (np.log(numerator) - np.log(denominator)) - ridge * coefficients @ coefficients
        # d ln(prior . L) / d log-prior_j = prior_j L_j / (prior . L) - prior_j: the -prior_j cancels
        # between numerator and denominator.
        score = multiplicity @ (likelihood * prior / numerator[:, None] - seen * prior / denominator[:, None])
        gradient = basis.T @ score - 2 * ridge * coefficients
        if with_slope:  # d L / d shift = L (count - mean); d seen / d shift = mean e^-mean
            shift_score = (((likelihood * (counts[:, None] - mean)) @ prior) / numerator
                           - ((mean * np.exp(-mean)) @ prior) / denominator)
            gradient = np.append(gradient, multiplicity @ (shift_score * covariate))
        return -value, -gradient

    fit = optimize.minimize(objective, np.zeros(n_functions + with_slope), jac=True, method="L-BFGS-B")
    log_prior = basis @ fit.x[:n_functions]
    return LogSizePrior(grid, np.exp(log_prior - special.logsumexp(log_prior)), int(multiplicity.sum()),
                        float(fit.x[n_functions]) if with_slope else 0.0)
