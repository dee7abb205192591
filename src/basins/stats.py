"""Statistics shared by stages and figures: numpy and scipy only (no torch)."""

from __future__ import annotations

import numpy as np
# scipy.special, not scipy.stats: the same quantile functions (scipy.stats calls them), without the
# second of import scipy.stats costs every job that pools or forms an interval.
from scipy import special


def wilson_interval(successes: np.ndarray, n, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (Wilson 1927); sensible at p near 0 or 1.
    ``n``: the trials, one count or one per proportion."""
    n = np.asarray(n, dtype=np.float64)
    if (n <= 0).any():
        raise ValueError(f"n={n}: an interval needs at least one trial")
    p = np.asarray(successes, dtype=np.float64) / n
    centre = _wilson_centre(p, n, z)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    # At p = 0 or 1 the bound is exactly p; clipping removes round-off on the wrong side.
    return np.clip(centre - half, 0.0, p), np.clip(centre + half, p, 1.0)


def binomial_standard_error(p: np.ndarray, n: np.ndarray, z: float = 1.96) -> np.ndarray:
    """Binomial standard error of a proportion ``p`` of ``n`` trials, taken at the centre of its
    Wilson interval (Agresti-Coull), so it is never 0 at p = 0 or 1; nan where n < 2."""
    p, n = np.asarray(p, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = _wilson_centre(p, n, z)
        return np.where(n > 1, np.sqrt(centre * (1 - centre) / n), np.nan)


def _wilson_centre(p, n, z):
    """Centre of the Wilson interval of a proportion ``p`` of ``n`` trials (Agresti and Coull's point)."""
    return (p + z**2 / (2 * n)) / (1 + z**2 / n)


def spearman_with_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman's rank correlation and its standard error 1.03 / sqrt(n - 3) (Fieller et al. 1957)."""
    rho, n = _spearman_rows(np.asarray(a, dtype=np.float64)[None], np.asarray(b, dtype=np.float64)[None])
    if np.isnan(rho[0]):
        return float("nan"), float("nan")
    return float(rho[0]), float(1.03 / np.sqrt(n[0] - 3))


def _spearman_rows(a, b, entering=None) -> tuple[np.ndarray, np.ndarray]:
    """Spearman's rho of each row of ``a`` and ``b`` over the pairs ``entering`` (all by
    default) where both are finite, and their number; nan with fewer than 4 pairs or a constant
    side."""
    entering = _finite_entering(entering, a, b)
    n = entering.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = rank_correlation(np.where(entering, a, 0.0), np.where(entering, b, 0.0), entering)
    return np.where((n >= 4) & np.isfinite(rho), rho, np.nan), n


def mid_ranks(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Ranks of ``values`` along the last axis (each row of a 2-D array on its own), each value
    counting ``weights`` times (1 each by default): a value's rank is the weight of the values
    below it plus half the weight of its tie group, so tied values share the mid-rank of their
    group (half less than scipy's ``rankdata`` with weights 1: rank correlations are unchanged).

    The rows are sorted once and each tie group's rank found from its first and last sorted
    position (the answer's redraws rank ~10^7 values). The order of tied values within a group
    changes the sums only by round-off, and not at all for integer weights (member counts, 0/1)."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.broadcast_to(np.ones(1) if weights is None else np.asarray(weights, dtype=np.float64), values.shape)
    if not values.size:
        return np.empty(values.shape)
    rows = values.reshape(-1, values.shape[-1] if values.ndim else 1)
    order = np.argsort(rows, axis=-1)
    flat = (order + np.arange(len(rows))[:, None] * rows.shape[1]).ravel()  # sorted rows, in the flat array
    ordered = rows.ravel()[flat].reshape(rows.shape)
    ordered_weights = np.ascontiguousarray(weights).reshape(-1)[flat]
    through = np.cumsum(ordered_weights.reshape(rows.shape), axis=-1).ravel()  # weight up to and including each
    starts = np.ones(rows.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    first = np.flatnonzero(starts)  # each tie group's first and last sorted position
    last = np.empty_like(first)
    last[:-1] = first[1:] - 1
    last[-1:] = rows.size - 1
    # The mean of the weight below the group and the weight through its end.
    mid = (through[first] - ordered_weights[first] + through[last]) / 2
    ranks = np.empty(rows.size)
    ranks[flat] = np.repeat(mid, last - first + 1)
    return ranks.reshape(values.shape)


def rank_correlation(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """Spearman's rho: the (weighted) Pearson correlation of the (weighted) mid-ranks; equal
    to ``scipy.stats.spearmanr`` without weights, and with integer weights to its value on the
    pairs repeated that often (``tests/test_stats.py``), at about a fifth of its cost (the
    answer computes it thousands of times). Along the last axis: rows of 2-D arrays give one
    correlation each."""
    w = np.broadcast_to(np.ones(1) if weights is None else np.asarray(weights, dtype=np.float64), np.shape(a))
    ra, rb = mid_ranks(a, w), mid_ranks(b, w)
    total = w.sum(-1, keepdims=True)
    ra -= (w * ra).sum(-1, keepdims=True) / total
    rb -= (w * rb).sum(-1, keepdims=True) / total
    rho = (w * ra * rb).sum(-1) / np.sqrt((w * ra**2).sum(-1) * (w * rb**2).sum(-1))
    return float(rho) if rho.ndim == 0 else rho


def spearman_fisher_z(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """Spearman's rank correlation on Fisher's scale: ``(atanh(rho), 1.03 / sqrt(n - 3), n)``.

    On that scale the estimate is nearly normal with the given standard error (Fieller, Hartley
    and Pearson 1957), which is what pooling over replicates needs; ``tanh`` takes an estimate
    or an interval back to a correlation. nan with fewer than 4 finite pairs or a constant side;
    a perfect correlation is taken at :func:`perfect_rank_correlation` (finite z).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    z, stderr = spearman_fisher_z_rows(a[None], b[None])
    return float(z[0]), float(stderr[0]), int((np.isfinite(a) & np.isfinite(b)).sum())


def spearman_fisher_z_rows(
    a: np.ndarray, b: np.ndarray, entering: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`spearman_fisher_z` of each row of ``a`` and ``b`` ``(row, pair)`` over the pairs
    ``entering`` (all by default) where both are finite: ``(z, stderr)``, each ``(row,)``."""
    rho, n = _spearman_rows(a, b, entering)
    usable = np.isfinite(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(usable, fisher_z(rho, n), np.nan), np.where(usable, 1.03 / np.sqrt(n - 3), np.nan)


def _finite_entering(entering, *values):
    """``entering`` (all by default) where every one of ``values`` is finite: 0/1 weights."""
    keep = np.ones(np.shape(values[0]), dtype=bool) if entering is None else np.asarray(entering, dtype=bool)
    for value in values:
        keep = keep & np.isfinite(value)
    return keep.astype(np.float64)


#: Triples a partial rank correlation needs: four columns in its design (see
#: :func:`partial_spearman_fisher_z`), and n - 5 > 0 for its standard error.
PARTIAL_MIN_PAIRS = 7
#: Where the control's rank scale (0 to 1) bends in the partial correlation's design.
PARTIAL_KNOTS = (1 / 3, 2 / 3)
#: By how much first differences of independent residuals inflate a correlation's variance:
#: twice the variance, neighbouring differences correlated by -1/2, 1 + 2 (1/2)^2 (Yatchew 1997).
DIFFERENCING_VARIANCE_FACTOR = 1.5


def partial_spearman_fisher_z(a: np.ndarray, b: np.ndarray, control: np.ndarray) -> tuple[float, float, int]:
    """Spearman's correlation of ``a`` and ``b`` at fixed ``control``, on Fisher's scale:
    ``(atanh(rho), 1.03 sqrt(1.5 / (n - 5)), n)`` over the triples where all three are finite.

    Two steps take out a common link that varies slowly on the scale of the minima's spacing in
    the control (see below for what leaks). The mid-ranks of ``a`` and ``b`` are
    each regressed (least squares) on a linear spline of the control's rank scale ``u``
    (mid-rank / n: an intercept, ``u`` and ``(u - k)_+`` at the knots :data:`PARTIAL_KNOTS`),
    which removes most of a link at a few minima; what it leaves is a smooth function of the
    control plus noise, and the first differences of the residuals between neighbours in the
    control's order remove that function too (the differencing estimator of the partially
    linear model, Yatchew 1997), at the price of :data:`DIFFERENCING_VARIANCE_FACTOR` in the
    variance. The result is the correlation of the two sides' differences. A fixed spline alone
    (session 28) kept a bias of one sign at any n, so that pooled larger studies, stronger and
    U-shaped links decided null rows far above the nominal rate (an independent referee); the
    differences' bias vanishes as neighbours close up. Known answers (docs/method.md's
    simulations and ``tests/test_stats.py``): without a direct link, linear, tanh, exp, cubic,
    moderate U- and V-shaped, sine and bump links of the control are decided in 1-4 % of pooled
    studies of the default study's sizes (the spline alone 3-12 %) and every one of these links
    in 0-6 % of studies of 8 replicates of 100 minima (up to 87 %); strong U-shaped links and
    steps still leak at 20 minima a replicate, and links that oscillate on the minima's spacing
    (sin(6z): 27 % at the study's sizes, 11 % at 8 x 100; a session-29 referee) at any size.
    Without a link the spread of z is 0.90-0.99 times the standard error at n = 7-200 with
    noise of one size, up to 1.2 times with noise that grows with the control (the pooled
    interval, from the replicates' own scatter, absorbs it). The price is power where the link
    is linear in ranks (a direct slope of 0.5 found in 87 % instead of 94 % of studies). nan
    with fewer than :data:`PARTIAL_MIN_PAIRS` triples, a constant variable, ties in the control
    (the order of tied triples, and with it the differences, would be the input's: the losses
    of distinct minima do not tie), or a side wholly set by the control (its ranks a spline of
    the control's, e.g. equal to them); a side that follows the control's order but for one
    swap is defined. Invariant under any reordering of the triples (tests/test_stats.py)."""
    a, b, control = (np.asarray(v, dtype=np.float64) for v in (a, b, control))
    z, stderr = partial_spearman_fisher_z_rows(a[None], b[None], control)
    return float(z[0]), float(stderr[0]), int((np.isfinite(a) & np.isfinite(b) & np.isfinite(control)).sum())


def partial_spearman_fisher_z_rows(
    a: np.ndarray, b: np.ndarray, control: np.ndarray, entering: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`partial_spearman_fisher_z` of each row of ``a`` and ``b`` ``(row, triple)`` at one
    ``control`` ``(triple,)``, over the triples ``entering`` (all by default) where all three
    are finite: ``(z, stderr)``, each ``(row,)``. Each row's triples are packed to the front in
    the control's order (the rest weigh nothing), so that rows letting in different triples are
    computed together."""
    if np.shape(a)[-1] == 0:
        return np.full(len(a), np.nan), np.full(len(a), np.nan)
    entering = _finite_entering(entering, a, b, np.broadcast_to(control, np.shape(a))) > 0
    order = np.argsort(control, kind="stable")
    entering = entering[:, order]
    pack = np.argsort(~entering, axis=-1, kind="stable")  # entering first, in the control's order
    n = entering.sum(-1)
    slots = np.arange(a.shape[-1]) < n[:, None]  # (row, position): holds an entering triple
    weight = slots.astype(np.float64)

    def packed(values):
        return np.where(slots, np.take_along_axis(np.broadcast_to(values, a.shape)[:, order], pack, -1), 0.0)

    held = packed(control)
    # Packed in the control's order, an untied row's k-th triple has the mid-rank k + 1/2 (tied
    # rows are not fitted below, whatever their positions).
    scale_position = weight * (np.arange(a.shape[-1]) + 0.5) / np.maximum(n, 1)[:, None]
    design = weight[..., None] * np.stack(
        [np.ones(a.shape), scale_position, *(np.maximum(scale_position - knot, 0.0) for knot in PARTIAL_KNOTS)], -1
    )
    sides = weight[..., None] * np.stack([mid_ranks(packed(a), weight), mid_ranks(packed(b), weight)], -1)
    # Tied controls leave their triples' order, and so their differences, to the input's order.
    tied = np.any((held[:, 1:] == held[:, :-1]) & slots[:, 1:], -1)
    fitted = (n >= PARTIAL_MIN_PAIRS) & ~tied  # rows whose spline design has full rank
    left = sides - design @ _least_squares_rows(design, sides, fitted)
    steps = np.diff(left, axis=-2) * slots[:, 1:, None]  # neighbours' differences, within each row
    scale = np.sqrt(np.sum(steps[..., 0] ** 2, -1) * np.sum(steps[..., 1] ** 2, -1))
    # A side wholly set by the control leaves nothing to correlate.
    usable = fitted & (scale > 1e-12 * n**3) & np.isfinite(scale)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(usable, fisher_z(np.sum(steps[..., 0] * steps[..., 1], -1) / scale, n), np.nan)
        return z, np.where(usable, 1.03 * np.sqrt(DIFFERENCING_VARIANCE_FACTOR / (n - 5)), np.nan)


def _least_squares_rows(design: np.ndarray, targets: np.ndarray, full_rank: np.ndarray) -> np.ndarray:
    """Least-squares coefficients ``(row, column, target)`` of ``targets`` ``(row, point, target)``
    on ``design`` ``(row, point, column)`` in the rows ``full_rank`` (0 elsewhere), by the
    normal equations: the spline's four columns on rank positions in [0, 1] are well
    conditioned once at least :data:`PARTIAL_MIN_PAIRS` untied points enter, and one batched
    solve of 4 x 4 systems costs a small part of a pseudo-inverse a row (the answer's
    redraws form it ~10^6 times)."""
    coefficients = np.zeros(design.shape[:1] + design.shape[-1:] + targets.shape[-1:])
    if full_rank.any():
        rows, transposed = design[full_rank], np.swapaxes(design[full_rank], -1, -2)
        coefficients[full_rank] = np.linalg.solve(transposed @ rows, transposed @ targets[full_rank])
    return coefficients


def perfect_rank_correlation(n: float) -> float:
    """The value a perfect rank correlation of ``n`` pairs is taken at: halfway between 1 and
    the largest Spearman correlation below 1 that ``n`` untied pairs can show, 1 - 12 / (n (n^2 -
    1)) (one swap of neighbours), i.e. 1 - 6 / (n (n^2 - 1)): 0.9 for 4 pairs, 0.95 for 5.

    A continuity correction, as adding a half to a count of zero before taking its logarithm:
    rho = 1 is the end of a discrete scale, not an infinitely precise estimate, and taken at
    face value (atanh(1 - 1e-12) = 14.2, with the standard error of an interior value, ~1) one
    replicate of four perfectly ordered minima outweighed every other replicate's estimate in
    the pooled mean (a cell of the default study's sensitivity table, session 25: +0.93 [-0.99,
    +1.00]; -0.03 [-0.33, +0.28] with this rule)."""
    return 1.0 - 6.0 / (n * (n * n - 1.0))


def fisher_z(rho: float | np.ndarray, n: float) -> float | np.ndarray:
    """``atanh(rho)``, a perfect rank correlation of ``n`` pairs taken at
    :func:`perfect_rank_correlation` (no finite sample measures |rho| = 1 exactly)."""
    bound = perfect_rank_correlation(n)
    z = np.arctanh(np.clip(rho, -bound, bound))
    return float(z) if np.ndim(z) == 0 else z


#: Verdicts on a hypothesis from an interval of its effect (never typed by hand).
SUPPORTED, CONTRADICTED, UNDECIDED_VERDICT = "supported", "contradicted", "undecided"


def _usable_replicates(estimates, standard_errors, confidence):
    """The replicates' estimates and standard errors (checked: equal 1-D shapes, a confidence in
    (0, 1)) without those whose estimate or error is not finite or whose error is not positive,
    and the mask of those kept."""
    y, s = np.asarray(estimates, dtype=np.float64), np.asarray(standard_errors, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"estimates {y.shape} and standard_errors {s.shape} must be equal 1-D shapes")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must lie in (0, 1)")
    usable = np.isfinite(y) & np.isfinite(s) & (s > 0)
    return y[usable], s[usable], usable


def pool_replicates(estimates: np.ndarray, standard_errors: np.ndarray, confidence: float = 0.95) -> dict:
    """Random-effects pooling of one statistic over independent replicates.

    Each replicate (a data draw and an initialization seed) gives an estimate ``y_i`` with its
    within-replicate standard error ``s_i``. Replicates may differ by more than ``s_i`` (another
    data draw is another landscape), so the between-replicate variance ``tau^2`` is estimated
    (DerSimonian and Laird 1986) and the pooled mean is weighted by ``1 / (s_i^2 + tau^2)``. Its
    interval is Hartung and Knapp's (2001): the weighted spread of the replicates about the
    pooled mean with a t quantile on ``k - 1`` degrees of freedom, which keeps nominal coverage
    with few replicates where the normal interval of DerSimonian-Laird does not (exact when
    ``tau = 0``), but never narrower than that normal interval (a variant of the correction of
    Knapp and Hartung 2003; Roever, Knapp and Friede 2015): a few replicates that agree by chance
    (or a discrete statistic) would otherwise give an interval far narrower than any replicate
    resolves. ``stderr`` is the wider of the two standard errors. One replicate gives no interval
    (nan, with ``reason``): never a zero width.

    Replicates with a non-finite estimate or error are left out and counted (``n_left_out``).
    Returns ``estimate``, ``stderr``, ``low``, ``high``, ``tau``, ``k`` (replicates used),
    ``n_left_out``, ``reason`` ("" when the interval is defined), ``p_value``: the two-sided p
    dual to the interval (the larger of the Hartung-Knapp and normal ones: the interval at
    confidence c excludes 0 exactly where p < 1 - c; nan without an interval) and, where an estimate exists,
    ``weights``: each replicate's weight in it (summing to 1; 0 for those left out) and
    ``design_stderr``, the pooled mean's standard error ``sqrt(1 / sum w)`` that the replicates'
    own errors and tau give (:func:`design_stderr` at the estimated tau; what
    :func:`detectable_effect` needs), and ``hartung_knapp_stderr``, the replicates' weighted
    spread about the mean, ``sqrt(scale / sum w)`` (with ``design_stderr`` it gives the interval
    at any confidence: :func:`pooled_half_width`).
    """
    y, s, usable = _usable_replicates(estimates, standard_errors, confidence)
    k = len(y)
    out = dict(estimate=np.nan, stderr=np.nan, low=np.nan, high=np.nan, tau=np.nan, k=k,
               n_left_out=int((~usable).sum()), reason="", p_value=np.nan)
    if k == 0:
        return dict(out, reason="no replicate with a finite estimate and error")
    if k == 1:
        return dict(out, estimate=float(y[0]), weights=usable.astype(float),
                    reason="one replicate: no between-replicate interval")
    w = 1 / s**2
    fixed = (w * y).sum() / w.sum()
    q = (w * (y - fixed) ** 2).sum()
    tau = float(np.sqrt(max(0.0, (q - (k - 1)) / (w.sum() - (w**2).sum() / w.sum()))))
    w = random_effects_weights(s, tau)
    mean = float((w * y).sum() / w.sum())
    scale = float((w * (y - mean) ** 2).sum() / (k - 1))
    stderr = float(np.sqrt(max(scale, 1.0) / w.sum()))
    weights = np.zeros(len(usable))
    weights[usable] = w / w.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        p_value = max(2 * special.stdtr(k - 1, -abs(mean) / np.sqrt(scale / w.sum())),
                      2 * special.ndtr(-abs(mean) * np.sqrt(w.sum())))
    pooled = dict(out, estimate=mean, stderr=stderr, tau=tau, weights=weights,
                  design_stderr=float(np.sqrt(1 / w.sum())), p_value=float(p_value),
                  hartung_knapp_stderr=float(np.sqrt(scale / w.sum())))
    half = pooled_half_width(pooled, 1 - confidence)
    return dict(pooled, low=mean - half, high=mean + half)


def pooled_half_width(pooled: dict, tail: float) -> float:
    """The half-width of :func:`pool_replicates`' interval at confidence ``1 - tail``: the
    wider of Hartung-Knapp's (Student-t on k - 1 degrees of freedom) and the normal one the
    replicates' own errors give (never narrower than that); nan without an interval."""
    if "hartung_knapp_stderr" not in pooled:
        return np.nan
    # The lower tail's quantiles, negated: exact for tails far below the spacing of doubles near 1.
    return float(max(-special.stdtrit(pooled["k"] - 1, tail / 2) * pooled["hartung_knapp_stderr"],
                     -special.ndtri(tail / 2) * pooled["design_stderr"]))


def dual_p_value(distance: float, half_width_at) -> float:
    """The two-sided p dual to a family of intervals whose centre lies ``distance`` from 0 and
    whose half-width at confidence 1 - a is ``half_width_at(a)`` (0 at a = 1, growing without
    bound as a falls to 0): the a at which the interval's nearer end reaches 0, so that the
    interval at confidence c excludes 0 exactly where p < 1 - c. 1 at distance 0, nan where the
    distance or the half-width is not finite; p below 1e-300 is returned as 1e-300."""
    if not np.isfinite(distance) or not np.isfinite(half_width_at(0.5)):
        return np.nan
    if distance == 0:
        return 1.0
    smallest = 1e-300
    if half_width_at(smallest) <= distance:
        return smallest
    # Bisection on log a (a small p keeps its relative precision; no scipy.optimize to import).
    low, high = np.log(smallest), 0.0
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if half_width_at(np.exp(middle)) > distance else (low, middle)
    return float(np.exp((low + high) / 2))


def holm_adjusted(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values of a family of tests (the finite ones; nan stays nan
    and does not count in the family): the i-th smallest p times (m - i + 1), made monotone and
    capped at 1. A test decided at family-wise level alpha is one whose adjusted p is below it."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return out


#: The probability at which :func:`detectable_effect` quotes the effect a pool would have decided.
DETECTION_POWER = 0.8
#: Quantiles of the replicates' scatter over which :func:`detectable_effect` averages.
_DETECTION_NODES = 512


def detectable_effect(
    k: int, design_stderr: float, confidence: float = 0.95, power: float = DETECTION_POWER, widening: float = 0.0
) -> float:
    """The smallest true effect (on the pooled scale, > 0) that :func:`pool_replicates` of ``k``
    replicates with this ``design_stderr`` decides with probability ``power``: its interval then
    excludes 0 on the effect's side. nan below two replicates.

    A sensitivity analysis of the design, not a post-hoc power (the estimate itself is not
    used): it says how large an effect an undecided row's design would have decided 4 times in 5
    (weaker ones less often; below about 0.7 of it, more often missed than decided).
    Model: the pooled mean is normal about the effect with standard deviation ``design_stderr``
    (from the replicates' errors and the tau the pool estimated), and the Hartung-Knapp scale is
    ``design_stderr^2`` times a chi-square on ``k - 1`` degrees of freedom over ``k - 1``, the
    half-width never below the normal one, as :func:`pool_replicates` takes it (exact for normal
    replicates of known variances s_i^2 + tau^2; the pool estimates tau anew in every study);
    ``widening``, a fixed half-width added in quadrature (the answer's size-corrected rows; the
    slope's error also moves their estimate, which the model leaves out). The probability is
    averaged over :data:`_DETECTION_NODES` quantiles of the chi-square (4 096 change the value by
    4e-5 relative) and the effect found by bisection.

    Known answer (tests/test_stats.py): simulated pools whose effect is this value for the true
    tau are decided in 79-81 % of 4 000 studies at power 0.8 (3, 7, 10 and 16 replicates with
    errors within 2.4x of each other). Where it errs (an independent referee, session 55): the
    quoted value is the design's at the *estimated* tau, and a few replicates cannot resolve a
    modest true tau (most of the default study's rows estimate tau = 0): at a true tau of 0.3
    on Fisher's scale its main rows' quoted values are decided in 66-71 % of studies; the value
    null studies report from their own data is decided in 68-78 % at the median, with a wide
    spread between studies (below 70 % in a quarter to a half of them where tau is large or the
    errors span 10x); with errors spanning 10x and tau = 0 the pool's estimated tau moves its
    weights (k = 8: 71 %; k = 2, errors 0.05 and 0.5: 69 %). With the default study's rows'
    errors (within 2.75x) and each row's own tau taken as true: 78-82 %.
    """
    if k < 2 or not (np.isfinite(design_stderr) and design_stderr > 0):
        return float("nan")
    if not 0 < power < 1:
        raise ValueError(f"power={power} must lie in (0, 1)")
    scatter = special.chdtri(k - 1, 1 - (np.arange(_DETECTION_NODES) + 0.5) / _DETECTION_NODES) / (k - 1)
    normal = special.ndtri(0.5 + confidence / 2)
    half = np.hypot(np.maximum(special.stdtrit(k - 1, 0.5 + confidence / 2) * np.sqrt(scatter), normal)
                    * design_stderr, widening)
    low, high = 0.0, float(half.max()) + 10 * design_stderr  # the probability rises with the effect
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if special.ndtr((middle - half) / design_stderr).mean() < power else (low, middle)
    return (low + high) / 2


def tau_upper_bound(estimates: np.ndarray, standard_errors: np.ndarray, confidence: float = 0.95) -> float:
    """The upper end of the Q-profile interval of the between-replicate tau (Viechtbauer 2007):
    the tau at which the generalized Q statistic, ``sum w_i (y_i - mean_w)^2`` with ``w_i = 1 /
    (s_i^2 + tau^2)``, falls to the chi-square quantile ``(1 - confidence) / 2`` on ``k - 1``
    degrees of freedom (0 where it is below that already at tau = 0; nan below two usable
    replicates), and never below DerSimonian-Laird's estimate (the two estimators differ: with
    errors far apart the Q-profile end can fall just below it, 1.62 against 1.64 in the
    session-56 referee's example). DerSimonian-Laird's estimate is often 0 with a few
    replicates; this bound says how large a tau they leave possible. Known answer
    (tests/test_stats.py): it lies at or above the true tau in 97-98 % of simulated studies
    (nominal 97.5 %)."""
    y, s, _ = _usable_replicates(estimates, standard_errors, confidence)
    if len(y) < 2:
        return float("nan")
    target = special.chdtri(len(y) - 1, 0.5 + confidence / 2)  # the lower (1 - confidence) / 2 quantile

    def q(tau2):
        w = 1 / (s**2 + tau2)
        return float((w * (y - (w * y).sum() / w.sum()) ** 2).sum())

    if q(0.0) <= target:
        return 0.0
    high = float(np.var(y, ddof=1)) + float(s.max()) ** 2  # q falls with tau^2: raise until below
    while q(high) > target:
        high *= 4
    low = 0.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if q(middle) > target else (low, middle)
    return max(float(np.sqrt((low + high) / 2)), pool_replicates(y, s, confidence)["tau"])


def random_effects_weights(standard_errors: np.ndarray, tau: float) -> np.ndarray:
    """Each replicate's weight 1 / (s_i^2 + tau^2) at a between-replicate ``tau`` (not normalized)."""
    return 1 / (np.asarray(standard_errors, dtype=np.float64) ** 2 + tau**2)


def design_stderr(standard_errors: np.ndarray, tau: float) -> float:
    """The pooled mean's standard error that replicates with these ``standard_errors`` give at a
    between-replicate ``tau``: sqrt(1 / sum_i 1 / (s_i^2 + tau^2)), the random-effects weights'
    total (:func:`pool_replicates`' ``design_stderr`` at its estimated tau); what
    :func:`detectable_effect` takes. k times its square is the harmonic mean of s_i^2 + tau^2, the
    variance of a replicate of the design's mean precision."""
    return float(np.sqrt(1 / np.sum(random_effects_weights(standard_errors, tau))))


def detectable_effect_at_tau_bound(
    estimates: np.ndarray, standard_errors: np.ndarray, confidence: float = 0.95, power: float = DETECTION_POWER,
    widening: float = 0.0, tau_bound: float | None = None,
) -> float:
    """:func:`detectable_effect` of these replicates with the between-replicate tau at the upper
    end of its Q-profile interval at ``confidence`` (:func:`tau_upper_bound`, never below the
    pool's DerSimonian-Laird estimate) instead of that estimate: the design's smallest decided
    effect at the largest spread the replicates leave possible. It errs high. The value at the
    estimate errs low where the pool estimates tau = 0 (a few replicates that scatter no more
    than their errors: most of the default study's rows), and either way where it estimates
    more (high in about half of such studies). nan below two usable replicates.

    Known answer (tests/test_stats.py, 7-16 replicates, true tau 0.2-0.3 on Fisher's scale,
    confidence 0.95): the value lies at or above the one the true tau gives in 96.9-97.8 % of
    simulated studies (the bound's coverage, nominal 97.5 %: the effect grows with tau; an
    independent referee, session 56: 96.3-98.1 % over k = 2-30, tau 0-0.6, errors spread up to
    10x; about 95 % at confidence 0.9, whose bound is the 95 % one), and pools at the value
    studies report from their own data are decided in 99-100 % (its median) and 92-96 % (its
    lower tenth; 87-92 % at k = 30). Its median is 1.6-2.2 times the true tau's value at 7-16
    replicates, 3.4-6.3 times at 4, 5-10 at 3 and 22-27 at 2 (a correlation's size then reads
    1.00): with few replicates tau is barely bounded. ``tau_bound``: that bound where the caller
    has it already (:func:`tau_upper_bound` of the same replicates and confidence)."""
    y, s, _ = _usable_replicates(estimates, standard_errors, confidence)
    if len(y) < 2:
        return float("nan")
    tau = tau_upper_bound(y, s, confidence) if tau_bound is None else tau_bound
    return detectable_effect(len(y), design_stderr(s, tau), confidence, power, widening)


#: The most replicates :func:`replicates_to_detect` considers.
MOST_REPLICATES = 100_000


def replicates_to_detect(
    effect: float, replicate_variance: float, confidence: float = 0.95, power: float = DETECTION_POWER,
    most: int = MOST_REPLICATES,
) -> int:
    """The fewest replicates, each with the variance ``replicate_variance`` (its own error
    squared plus tau^2, on the pooled scale), whose pool decides a true ``effect`` (> 0) with
    probability ``power``: the smallest k with ``detectable_effect(k, sqrt(v / k)) <= effect``
    (it falls with k). -1 where more than ``most`` would be needed, or the inputs give none.
    Known answer (tests/test_stats.py): simulated pools of that many replicates decide the
    effect in 80-83 % of 4 000 studies at power 0.8 (14 and 21 replicates), half as many in
    41-45 % (about half in general). An independent referee (session 55) found 0.80-0.82 for
    future replicates with the errors of the default study's rows, effects 0.1-0.5, tau from
    0.05 to 0.6 and confidence 0.9; with errors spread 10x and tau = 0, 0.67-0.70 (the pool's
    estimated tau moves its weights, as in :func:`detectable_effect`). Like
    :func:`detectable_effect` it takes tau as given: where a few replicates estimate tau = 0 and
    it is not, more are needed (the answer gives the count at :func:`tau_upper_bound` too)."""
    if most < 2 or not (np.isfinite(effect) and effect > 0 and np.isfinite(replicate_variance)
                        and replicate_variance > 0):
        return -1

    def enough(k):
        return detectable_effect(k, float(np.sqrt(replicate_variance / k)), confidence, power) <= effect

    high = 2
    while not enough(high):
        if high > most:
            return -1
        high *= 2
    low = high // 2  # too few (or 1), unless high is 2
    if high == 2:
        return 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high if high <= most else -1


def verdict(low: float, high: float, expected_sign: int) -> str:
    """``supported`` when the interval excludes 0 on the side the hypothesis expects
    (``expected_sign`` +1 or -1), ``contradicted`` on the other side, else ``undecided``
    (also for an undefined interval)."""
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign={expected_sign} must be +1 or -1")
    if not (np.isfinite(low) and np.isfinite(high)):
        return UNDECIDED_VERDICT
    if low > 0 or high < 0:
        return SUPPORTED if np.sign(low if low > 0 else high) == expected_sign else CONTRADICTED
    return UNDECIDED_VERDICT


def least_squares_coefficient(design: np.ndarray, y: np.ndarray, standard_error: np.ndarray,
                              column: int) -> tuple[float, float, float, int]:
    """One coefficient of the ordinary least squares fit ``y ~ design``, with two parts of its
    standard error: ``(value, scatter, measurement, dof)``.

    ``scatter`` is the heteroskedasticity-robust HC3 standard error (MacKinnon and White 1985:
    residuals over one less their leverage); ``measurement`` adds each row's own independent
    error ``standard_error`` through the coefficient's weights w (the coefficient is sum_i w_i
    y_i, so sqrt(sum_i w_i^2 se_i^2)). The residuals carry the measurement errors too, so their
    sum in quadrature errs on the wide side; with few residual degrees of freedom the residuals
    alone can fall far short of the measured errors (issue #19). ``dof`` = rows - columns; the
    caller takes a Student-t quantile on it. The design must have full column rank.
    """
    inverse = np.linalg.inv(design.T @ design)
    weight = inverse @ design.T  # each row: a coefficient's weights on the rows of y
    coef = weight @ y
    residual = y - design @ coef
    leverage = np.einsum("ij,jk,ik->i", design, inverse, design)
    with np.errstate(divide="ignore", invalid="ignore"):  # leverage 1 (no residual left): nan
        meat = design.T @ (design * (residual / (1 - leverage))[:, None] ** 2)
    scatter = float(np.sqrt((inverse @ meat @ inverse)[column, column]))
    measurement = float(np.sqrt(np.sum(weight[column] ** 2 * standard_error**2)))
    return float(coef[column]), scatter, measurement, len(y) - design.shape[1]


def log_count_ratio_variance(count_a: float, count_b: float) -> float:
    """Delta-method variance of ln(count_a / count_b), two cells of one multinomial draw (two
    basins' members among one ensemble's): 1 / count_a + 1 / count_b. The cells' negative
    covariance (-1 / total each) cancels the total's share of the two single variances exactly."""
    if count_a <= 0 or count_b <= 0:
        raise ValueError(f"counts {count_a}, {count_b}: a log ratio needs both counted")
    return 1 / count_a + 1 / count_b
