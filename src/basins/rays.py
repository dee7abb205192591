"""Stage ``probe_rays``: how far a basin extends from its minimum, direction by direction.

From a minimum, random directions are drawn and starting points placed at a grid of distances
along each ray; the dynamics is run from each and ends in one of three outcomes
(:mod:`basins.labels`): it returned to the minimum, it left (another minimum, or diverged),
or it was undecided (the budget ran out first). The return probability p(d) is the fraction
of decided rays whose point at distance d comes back (Menck et al. 2013's basin stability as a
function of shock size), bracketed by the bounds that count every undecided run as left or as
returned. Along each ray the first exit radius is located on the grid and refined by
bisection. An undecided run says nothing about whether the ray left, so exit radii are
survival data: a ray whose exit was never seen is right-censored at the largest radius it is
known to return from. Their distribution per minimum is the Kaplan-Meier estimate (Kaplan and
Meier 1958), which keeps censored rays in the risk set instead of dropping them (dropping
them biases the median exit low); the smallest observed exit is the minimal critical shock
(Halekotte and Feudel 2020).
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, NamedTuple

import numpy as np
import xarray as xr

from basins.io import variable_attrs
from basins.labels import LEFT, OUTCOME_MEANINGS, OUTCOME_VALUES, RETURNED, UNDECIDED

#: ``outcomes(starts (point, param), targets (point,)) -> int (point,)``: run the dynamics from
#: each start and say how the run aimed at minimum ``targets[k]`` ended: ``RETURNED`` (reached
#: it), ``LEFT`` (reached another minimum or diverged) or ``UNDECIDED`` (neither within the
#: budget), the values of :mod:`basins.labels`. Any budget escalation happens inside the
#: callable: an ``UNDECIDED`` it hands back is final for that point.
Outcomes = Callable[[np.ndarray, np.ndarray], np.ndarray]


def ray_radii(smallest: float, largest: float, n_radii: int, *, farthest: float | None = None,
              n_far_radii: int = 0, unit: float = 1.0) -> np.ndarray:
    """The radii of a ray grid: ``n_radii`` log-spaced from ``smallest`` to ``largest`` (fine near
    the minimum, where exits are), then ``n_far_radii`` evenly spaced up to ``farthest`` (beyond
    the initialization shell, where a tentacled basin's p(d) levels off at its basin fraction;
    a log grid puts one radius or two there). Every radius is in units of ``unit``: 1 for
    distances in parameter space, the initialization shell's distance
    (:func:`basins.basin_geometry.shell_distance`) for a grid that sits alike about the shell
    at every network size (the shell moves out as the network grows)."""
    if not 0 < smallest < largest or n_radii < 2 or n_far_radii < 0:
        raise ValueError(f"radii from smallest={smallest} to largest={largest} in n_radii={n_radii} (>= 2) steps, "
                         f"n_far_radii={n_far_radii} >= 0")
    if not (np.isfinite(unit) and unit > 0):
        raise ValueError(f"the grid's unit must be a positive distance, not {unit}")
    radii = np.geomspace(smallest, largest, n_radii)
    if n_far_radii:
        if farthest is None or not farthest > largest:
            raise ValueError(f"n_far_radii={n_far_radii} needs farthest_radius > largest_radius={largest}, "
                             f"not {farthest}")
        radii = np.concatenate([radii, np.linspace(largest, farthest, n_far_radii + 1)[1:]])
    return radii * unit


class KaplanMeierMedian(NamedTuple):
    """Median of a right-censored sample and its confidence interval (nan: undefined)."""

    median: float  #: smallest radius where the survival estimate is at most 0.5
    low: float  #: where the lower confidence band first reaches 0.5
    high: float  #: where the upper confidence band first reaches 0.5 (nan: never, within the data)
    censored: bool  #: the survival estimate never fell to 0.5: the median lies beyond the data


def select_minima_to_probe(
    basin_fraction: np.ndarray, test_error: np.ndarray, *, n_largest: int, eligible: np.ndarray | None = None,
    match_factor: float = np.inf, n_size_neighbours: int = 0,
) -> np.ndarray:
    """Indices of the ``n_largest`` basins and of the good and bad minima among the ``eligible``
    ones (default: all): :func:`good_and_bad`, matched in basin fraction within ``match_factor``
    where a pair is (default: the best and worst by test error); with a matched pair, also up to
    ``n_size_neighbours`` other eligible minima whose basin fractions lie within
    ``match_factor`` of the pair's, farthest in log basin fraction from the pair's middle first
    (they pin the slope best: the session-33 referee found the slope's spread 0.73 of that from
    the nearest ones on the default run).

    The shape statistics of a basin need members (``measure_tentacles``' ``min_members``):
    best and worst chosen among all minima would mostly be one- or two-member basins, extremes
    of a noisy test error whose shape cannot be measured, so the probing stages pass the
    minima with enough members as ``eligible``. The neighbours in size measure how the shape
    statistics change with basin size where the pair is, which corrects the pair's difference
    for the sizes the matching left unequal (:func:`basins.answer.size_correction`). Every
    choice reads basin fractions and test errors only.
    """
    if len(basin_fraction) == 0:
        return np.zeros(0, dtype=np.int64)
    if n_size_neighbours < 0:
        raise ValueError(f"n_size_neighbours={n_size_neighbours} must be >= 0")
    largest = np.argsort(-basin_fraction, kind="stable")[:n_largest]
    candidates = np.flatnonzero(np.ones(len(basin_fraction), bool) if eligible is None else eligible)
    pair = good_and_bad(basin_fraction, test_error, candidates, match_factor=match_factor)
    neighbours = []
    if pair is not None and pair.matched and n_size_neighbours:
        ends = np.log(basin_fraction[pair.indices])
        others = candidates[~np.isin(candidates, pair.indices) & (basin_fraction[candidates] > 0)
                            & np.isfinite(test_error[candidates])]
        log_fraction = np.log(basin_fraction[others])
        near = (log_fraction >= ends.min() - np.log(match_factor)) & (log_fraction <= ends.max() + np.log(match_factor))
        distance = np.abs(log_fraction[near] - ends.mean())
        neighbours = others[near][np.argsort(-distance, kind="stable")[:n_size_neighbours]]
    return np.unique(np.r_[largest, pair.indices if pair else [], neighbours].astype(np.int64))


class GoodAndBad(NamedTuple):
    """Two minima compared for the hypothesis: ``good`` of lower test error than ``bad``."""

    good: int
    bad: int
    matched: bool  #: their basin fractions differ by at most the match factor

    @property
    def indices(self) -> list[int]:
        return [self.good, self.bad]


class Probing(NamedTuple):
    """How probe_rays chooses a replicate's minima to probe (:func:`select_minima_to_probe`):
    the ``n_largest`` basins and the good and bad minima among those reached by at least
    ``min_members`` members that fit the training set (training error at most ``fit_threshold``),
    matched in basin fraction within ``match_factor``, with ``n_size_neighbours`` minima near
    them in size. The stage chooses through :meth:`probed` from the catalogue's counts, and the
    answer stage redraws that choice from counts drawn anew (its selection shortfall and the size
    slope's attenuation), with the settings read back from the rays file
    (:meth:`from_stage_config`)."""

    n_largest: int
    n_size_neighbours: int
    min_members: int
    fit_threshold: float
    match_factor: float

    @classmethod
    def from_stage_config(cls, config: dict) -> "Probing":
        """From a rays file's ``stage_config`` (its ``rays`` section and the answer's settings it probed for)."""
        return cls(int(config["rays"]["n_largest"]), int(config["rays"].get("n_size_neighbours", 0)),
                   int(config["min_members"]), float(config["fit_threshold"]), float(config["match_factor"]))

    def probed(self, counts: np.ndarray, total: int, train_error: np.ndarray, test_error: np.ndarray) -> np.ndarray:
        """The catalogue indices probe_rays would probe had its minima been counted ``counts``
        of ``total`` members."""
        return select_minima_to_probe(
            counts / total, test_error, n_largest=self.n_largest, match_factor=self.match_factor,
            eligible=(counts >= self.min_members) & (train_error <= self.fit_threshold),
            n_size_neighbours=self.n_size_neighbours)


def good_and_bad(
    basin_fraction: np.ndarray, test_error: np.ndarray, candidates: np.ndarray, *, match_factor: float
) -> GoodAndBad | None:
    """The good and the bad minimum among ``candidates`` (indices into both arrays).

    Among the pairs whose basin fractions differ by at most ``match_factor`` (shape is compared
    at matched size: a large basin against a small one would confound shape with size), the
    one whose test errors differ most (ties: the larger basins); where no such pair has
    different test errors, the best and the worst by test error, not ``matched``. None where no
    two candidates of finite and different test errors exist. The choice reads basin fractions
    and test errors only, never the shape statistics it is then used to compare.
    """
    candidates = pair_candidates(basin_fraction, test_error, candidates)
    if len(candidates) < 2 or np.ptp(test_error[candidates]) == 0:
        return None
    good, bad = matched_pairs(basin_fraction, np.asarray(test_error)[None], candidates, match_factor=match_factor)
    if good[0] >= 0:
        return GoodAndBad(int(good[0]), int(bad[0]), True)
    # a matched pair of different test errors would have been found above
    pair = (candidates[np.argmin(test_error[candidates])], candidates[np.argmax(test_error[candidates])])
    good, bad = sorted(pair, key=lambda index: test_error[index])
    return GoodAndBad(int(good), int(bad), False)


def pair_candidates(basin_fraction: np.ndarray, test_error: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The ``candidates`` (indices) that can enter a good and bad pair: a positive basin fraction
    and a finite test error."""
    candidates = np.asarray(candidates, dtype=np.int64)
    return candidates[np.isfinite(test_error[candidates]) & (basin_fraction[candidates] > 0)]


def matched_pairs(
    basin_fraction: np.ndarray, test_errors: np.ndarray, candidates: np.ndarray, *, match_factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`good_and_bad`'s matched pair for each row of ``test_errors (row, minimum)`` (the
    candidates' test errors measured again, e.g. on resampled test sets), computed together:
    ``(good, bad)``, each ``(row,)``, -1 where no two candidates within ``match_factor`` in basin
    fraction differ in test error. ``candidates`` (:func:`pair_candidates`) must have finite
    test errors in every row."""
    test_errors = np.asarray(test_errors)
    rows = np.arange(len(test_errors))
    a, b = size_matched_pairs(basin_fraction, candidates, match_factor=match_factor)
    if not len(a):
        return np.full(len(rows), -1), np.full(len(rows), -1)
    # Pairs by decreasing combined basin fraction (stable): the first of the largest gaps wins the ties.
    order = np.argsort(-(basin_fraction[a] + basin_fraction[b]), kind="stable")
    a, b = a[order], b[order]
    # Test errors are counts over a test set: gaps the same count apart are ties, whatever their
    # floats' last bits (else round-off, not the larger basins, would break them).
    gap = np.round(np.abs(test_errors[:, a] - test_errors[:, b]), GAP_DECIMALS)
    best = np.argmax(gap, axis=1)
    a, b = a[best], b[best]
    a_better = test_errors[rows, a] < test_errors[rows, b]
    found = gap[rows, best] > 0
    good, bad = np.where(a_better, a, b), np.where(a_better, b, a)
    return np.where(found, good, -1), np.where(found, bad, -1)


#: Decimals test-error gaps are rounded to before they are compared: far below one point of any
#: test set (1e-6 of a million points), far above the round-off of a count over its size.
GAP_DECIMALS = 12


def size_matched_pairs(basin_fraction: np.ndarray, candidates: np.ndarray, *, match_factor: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of ``candidates`` (indices, each pair once) whose basin fractions differ by at
    most ``match_factor``: ``(first, second)`` index arrays."""
    first, second = np.triu_indices(len(candidates), k=1)
    a, b = np.asarray(candidates)[first], np.asarray(candidates)[second]
    matched = np.abs(np.log(basin_fraction[a] / basin_fraction[b])) <= np.log(match_factor)
    return a[matched], b[matched]


def random_directions(n_minima: int, n_directions: int, n_params: int, *, seed: int) -> np.ndarray:
    """Isotropic unit vectors ``(minimum, direction, param)``."""
    directions = np.random.default_rng(seed).standard_normal((n_minima, n_directions, n_params))
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def kaplan_meier_median(radius: np.ndarray, observed: np.ndarray, confidence: float = 0.95) -> KaplanMeierMedian:
    """Kaplan-Meier median of right-censored radii, with a confidence interval.

    Parameters
    ----------
    radius : ndarray, shape (direction,)
        Exit radius of each ray where ``observed``, else the radius it is censored at (the
        exit lies beyond it). Finite and non-negative.
    observed : ndarray of bool, shape (direction,)
        True where the exit was seen, False where the ray is right-censored.
    confidence : float
        Level of the pointwise band of the survival function (Greenwood's variance, linear;
        :meth:`scipy.stats.ecdf`'s default) whose crossings of 0.5 bound the median
        (Brookmeyer and Crowley 1982). The band is taken as 0 where the estimate is 0 (every
        ray has left: Greenwood's variance is 0/0 there).

    Returns
    -------
    KaplanMeierMedian
        ``median``: the smallest radius at which the survival estimate S(r) is at most 0.5
        (for an uncensored sample of even size, the lower of the two middle values, not
        their average); nan and ``censored`` True where S never falls to 0.5, i.e. the
        median lies beyond the largest radius in the sample. ``low`` and ``high``: the
        radii where the lower and upper bands first reach 0.5; nan where a band never does
        (``high`` is then unbounded within the data; ``low`` nan only when S stays high).

    Examples
    --------
    Exits at 1, 3 and 4, one ray censored at 2: S = 3/4 from 1; 2 rays remain at risk at 3,
    so S = 3/4 * 1/2 = 3/8 from 3, and the median is 3.

    >>> kaplan_meier_median([1.0, 2.0, 3.0, 4.0], [True, False, True, True]).median
    3.0
    """
    return _median_of(*_survival(radius, observed, confidence))


def _survival(radius, observed, confidence):
    """Kaplan-Meier survival: the distinct radii and S(r), its lower and upper band there."""
    radius, observed = np.asarray(radius, dtype=np.float64), np.asarray(observed)
    if radius.ndim != 1 or radius.shape != observed.shape or len(radius) == 0:
        raise ValueError(f"radius {radius.shape} and observed {observed.shape}: give two equal, non-empty 1-d arrays")
    if not np.isfinite(radius).all() or (radius < 0).any():
        raise ValueError("radius must be finite and >= 0 (censored rays carry the radius they are censored at; "
                         "rays files from before censoring was recorded must be re-made by probe_rays)")
    observed = observed.astype(bool)
    from scipy import stats  # here, not at the top: a second of import for the stages that never call it

    survival = stats.ecdf(stats.CensoredData(uncensored=radius[observed], right=radius[~observed])).sf
    with warnings.catch_warnings():  # Greenwood's 0/0 where S = 0, set to 0 below
        warnings.simplefilter("ignore", RuntimeWarning)
        band = survival.confidence_interval(confidence)
    exhausted = survival.probabilities == 0
    low, high = (np.where(exhausted, 0.0, curve.probabilities) for curve in (band.low, band.high))
    return survival.quantiles, np.stack([survival.probabilities, low, high])


def _median_of(radii, curves):
    median, low, high = (_first_at_most_half(radii, curve) for curve in curves)
    return KaplanMeierMedian(median, low, high, censored=bool(np.isnan(median)))


def _first_at_most_half(radii, probabilities):
    below = np.flatnonzero(probabilities <= 0.5)
    return float(radii[below[0]]) if len(below) else np.nan


def _evaluate(radii, curves, at):
    """The step functions ``curves (curve, radii)`` (right-continuous, 1 before ``radii[0]``) at ``at``."""
    index = np.searchsorted(radii, at, side="right") - 1
    return np.where(index >= 0, curves[:, np.maximum(index, 0)], 1.0)


# Over 80 lines only by its signature and numpydoc docstring (65 lines); the body is 18.
def probe_rays(  # long by its docstring: the censoring rules are the contract
    centres: np.ndarray,
    outcomes: Outcomes,
    *,
    radii: np.ndarray,
    n_directions: int,
    n_bisection: int,
    seed: int,
    minimum_ids: np.ndarray | None = None,
) -> xr.Dataset:
    """Return probabilities and censored exit radii along random rays from each minimum.

    Parameters
    ----------
    centres : ndarray, shape (minimum, param)
        The minima (in the frame the dynamics runs in).
    outcomes : callable
        :data:`Outcomes`: runs the dynamics from every start, all at once, and says whether
        each run returned to minimum ``targets[k]``, left, or is undecided.
    radii : ndarray, shape (radius,)
        Increasing distances along each ray, in parameter units.
    n_directions : int
        Rays per minimum; the standard error of p(d) is sqrt(p (1 - p) / n_decided).
    n_bisection : int
        Bisection rounds refining each ray's first exit between the last returning grid radius
        and the first leaving one; each halves the bracket and costs one run of the dynamics
        for all rays still refining. An undecided midpoint stops the ray's refinement.
    seed : int
        Seed of the directions.
    minimum_ids : ndarray, optional
        Catalog indices of the centres, for the ``minimum`` coordinate.

    Returns
    -------
    xarray.Dataset
        ``outcome (minimum, direction, radius)`` (:data:`basins.labels.OUTCOME_VALUES`);
        ``return_probability (minimum, radius)`` over decided rays with
        ``return_probability_se`` and the bounds ``return_probability_low`` / ``_high``
        (undecided counted as left / as returned), ``undecided_fraction (minimum, radius)``
        and per minimum over all its runs (grid and bisection) ``run_undecided_fraction``;
        ``exit_radius (minimum, direction)`` with ``exit_observed`` (1: the ray's exit,
        0: the radius it is right-censored at) and ``censored_fraction (minimum)``; the
        Kaplan-Meier survival ``exit_survival (minimum, radius)`` with its band
        ``exit_survival_low`` / ``_high``; per minimum ``median_exit_radius`` with its
        confidence interval ``median_exit_radius_low`` / ``_high`` and
        ``median_exit_censored``, ``minimal_exit_radius`` (the minimal critical shock) and
        ``maximal_exit_radius`` (both over observed exits).

    Notes
    -----
    A ray's exit is bracketed by the first grid radius that leaves, provided no undecided
    radius comes before it; bisection between the last returning radius (0 if none) and it
    then places the exit at the smallest radius seen to leave. The ray is right-censored
    instead (the exit is beyond the radius recorded) at

    - the low end of the bracket, where a bisection midpoint is undecided;
    - the last returning radius before the first undecided grid radius, where that comes
      before any leaving one; 0 if the very first grid radius is undecided: such a ray
      stays in the data and carries no information (it leaves the risk set at once) but
      counts in ``censored_fraction``;
    - the largest radius, where the ray returns at every grid radius.

    An exit is never placed below a radius the ray is known to return from, and an
    undecided run is never counted as an exit.
    """
    radii = _checked_grid(radii, n_directions, n_bisection)
    n_minima, n_params = centres.shape
    directions = random_directions(n_minima, n_directions, n_params, seed=seed)
    target = np.broadcast_to(np.arange(n_minima)[:, None, None], (n_minima, n_directions, len(radii)))
    starts = centres[:, None, None, :] + radii[None, None, :, None] * directions[:, :, None, :]
    outcome = run_outcomes(outcomes, starts.reshape(-1, n_params), target.reshape(-1)).reshape(target.shape)
    observed, low, high = _grid_brackets(outcome, radii)
    bisection_runs, bisection_undecided = _bisect_brackets(outcomes, centres, directions, observed, low, high,
                                                           n_bisection)
    runs = n_directions * len(radii) + bisection_runs
    undecided_runs = (outcome == UNDECIDED).sum(axis=(1, 2)) + bisection_undecided
    exit_radius = np.where(observed, high, low)
    ids = np.arange(n_minima) if minimum_ids is None else np.asarray(minimum_ids)
    return _as_dataset(outcome, exit_radius, observed, undecided_runs / runs, radii, ids)


def probe_first_exits(
    centres: np.ndarray,
    outcomes: Outcomes,
    *,
    radii: np.ndarray,
    n_directions: int,
    n_bisection: int,
    seed: int,
    minimum_ids: np.ndarray | None = None,
) -> xr.Dataset:
    """Each ray's first exit, as :func:`probe_rays` finds it, without the rest of the grid.

    The grid is run radius by radius, each time only for the rays that returned from every
    smaller radius: a ray's first exit (and where it is censored) depends on nothing beyond its
    first radius that does not return, so the runs past it are skipped (about half of them on
    the default study's thickness rays). The directions, the runs up to each ray's first
    non-return and the bisection are those of :func:`probe_rays` with the same arguments, so
    ``exit_radius``, ``exit_observed``, the survival curve and the median exit radius are its
    values; ``outcome`` and p(d), which need the whole grid, are not returned.
    """
    radii = _checked_grid(radii, n_directions, n_bisection)
    n_minima, n_params = centres.shape
    directions = random_directions(n_minima, n_directions, n_params, seed=seed)
    first_non_return = np.full((n_minima, n_directions), len(radii))
    first_outcome = np.full((n_minima, n_directions), RETURNED, dtype=np.int8)
    runs, undecided_runs = np.zeros(n_minima, dtype=np.int64), np.zeros(n_minima, dtype=np.int64)
    for k, radius in enumerate(radii):
        m, d = np.nonzero(first_non_return == len(radii))
        if not len(m):
            break
        ended = run_outcomes(outcomes, centres[m] + radius * directions[m, d], m)
        runs += np.bincount(m, minlength=n_minima)
        undecided_runs += np.bincount(m[ended == UNDECIDED], minlength=n_minima)
        stopped = ended != RETURNED
        first_non_return[m[stopped], d[stopped]] = k
        first_outcome[m[stopped], d[stopped]] = ended[stopped]
    # The grid as probe_rays would see it up to each ray's first non-return; cells past it do
    # not change the brackets, so they are filled with that outcome.
    past = np.arange(len(radii)) >= first_non_return[..., None]
    outcome = np.where(past, first_outcome[..., None], RETURNED)
    observed, low, high = _grid_brackets(outcome, radii)
    bisection_runs, bisection_undecided = _bisect_brackets(outcomes, centres, directions, observed, low, high,
                                                           n_bisection)
    exit_radius = np.where(observed, high, low)
    ids = np.arange(n_minima) if minimum_ids is None else np.asarray(minimum_ids)
    return xr.Dataset(
        {**_exit_variables(exit_radius, observed, radii),
         "run_undecided_fraction": _variable(
             ("minimum",), (undecided_runs + bisection_undecided) / (runs + bisection_runs),
             "fraction of the runs (grid up to each ray's first non-return, and bisection) that are undecided"),
         "n_runs": _variable(("minimum",), runs + bisection_runs, "runs of the dynamics spent on the minimum's rays")},
        coords=_ray_coordinates(ids, n_directions, radii),
    )


def _checked_grid(radii, n_directions, n_bisection):
    radii = np.asarray(radii, dtype=np.float64)
    if radii.ndim != 1 or len(radii) == 0 or (radii <= 0).any() or (np.diff(radii) <= 0).any():
        raise ValueError(f"radii={radii}: give positive, strictly increasing distances")
    if n_directions <= 0 or n_bisection < 0:
        raise ValueError(f"n_directions={n_directions} must be > 0 and n_bisection={n_bisection} >= 0")
    return radii


def _grid_brackets(outcome, radii):
    """Each ray's first exit bracketed on the grid, or where it is censored (see probe_rays' Notes)."""
    n_radii = len(radii)
    first_left = np.where((outcome == LEFT).any(axis=2), (outcome == LEFT).argmax(axis=2), n_radii)
    first_undecided = np.where((outcome == UNDECIDED).any(axis=2), (outcome == UNDECIDED).argmax(axis=2), n_radii)
    observed = first_left < first_undecided
    last_returned = np.minimum(first_left, first_undecided) - 1  # -1: none before the first non-return
    low = np.where(last_returned >= 0, radii[np.maximum(last_returned, 0)], 0.0)
    high = radii[np.minimum(first_left, n_radii - 1)]
    return observed, low, high


def _bisect_brackets(outcomes, centres, directions, observed, low, high, n_bisection):
    """Narrow the observed brackets in place; an undecided midpoint censors the ray at its low end.

    Returns the runs spent per minimum and how many of them were undecided.
    """
    n_minima = len(centres)
    runs, undecided_runs = np.zeros(n_minima, dtype=np.int64), np.zeros(n_minima, dtype=np.int64)
    rays = np.argwhere(observed)
    for _ in range(n_bisection):
        if not len(rays):
            break
        m, d = rays[:, 0], rays[:, 1]
        middle = 0.5 * (low[m, d] + high[m, d])
        ended = run_outcomes(outcomes, centres[m] + middle[:, None] * directions[m, d], m)
        runs += np.bincount(m, minlength=n_minima)
        undecided_runs += np.bincount(m[ended == UNDECIDED], minlength=n_minima)
        low[m, d] = np.where(ended == RETURNED, middle, low[m, d])
        high[m, d] = np.where(ended == LEFT, middle, high[m, d])
        observed[m, d] = ended != UNDECIDED
        rays = rays[ended != UNDECIDED]
    return runs, undecided_runs


def run_outcomes(outcomes: Outcomes, starts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``outcomes(starts, targets)``, refused unless it gives one outcome value per start."""
    ended = np.asarray(outcomes(starts, targets))
    if ended.dtype == bool:
        raise TypeError("the outcomes callable returned booleans: return LEFT, RETURNED or UNDECIDED "
                        "(basins.labels) so that runs out of budget are not counted as leaving")
    if ended.shape != targets.shape or not np.isin(ended, OUTCOME_VALUES).all():
        raise ValueError(f"the outcomes callable returned shape {ended.shape}, values {np.unique(ended)}: "
                         f"give one of {OUTCOME_VALUES} ({OUTCOME_MEANINGS}) per start, shape {targets.shape}")
    return ended


def _probabilities(outcome):
    """Return probability over decided rays, its standard error and bounds, undecided fraction."""
    returned, undecided = (outcome == RETURNED).sum(axis=1), (outcome == UNDECIDED).sum(axis=1)
    n_rays = outcome.shape[1]
    decided = n_rays - undecided
    with np.errstate(invalid="ignore", divide="ignore"):
        p = returned / decided
        se = np.sqrt(p * (1 - p) / decided)
    return p, se, returned / n_rays, (returned + undecided) / n_rays, undecided / n_rays


def _survival_summaries(exit_radius, observed, radii):
    """Per minimum: the survival curve and its band on ``radii`` (minimum, 3, radius), and the median."""
    curves, medians = [], []
    for radius, seen in zip(exit_radius, observed):
        distinct, survival = _survival(radius, seen, 0.95)
        curves.append(_evaluate(distinct, survival, radii))
        medians.append(_median_of(distinct, survival))
    n_minima = len(exit_radius)
    return np.array(curves).reshape(n_minima, 3, len(radii)), np.array(medians, dtype=np.float64).reshape(n_minima, 4)


def _variable(dims, values, long_name, **extra):
    return dims, values, variable_attrs(long_name, **extra)


def _as_dataset(outcome, exit_radius, observed, run_undecided_fraction, radii, minimum_ids):
    p, p_se, p_low, p_high, undecided = _probabilities(outcome)
    per_radius = functools.partial(_variable, ("minimum", "radius"))
    return xr.Dataset(
        {
            "outcome": (
                ("minimum", "direction", "radius"),
                outcome.astype(np.int8),
                variable_attrs("how the run from this point ended", flag_values=" ".join(map(str, OUTCOME_VALUES)),
                               flag_meanings=OUTCOME_MEANINGS),
            ),
            "return_probability": per_radius(
                p, "fraction of decided rays whose point at this distance returns", note="nan: none decided"),
            "return_probability_se": per_radius(
                p_se, "binomial standard error of return_probability over decided rays", note="nan: none decided"),
            "return_probability_low": per_radius(p_low, "return probability counting undecided runs as left"),
            "return_probability_high": per_radius(p_high, "return probability counting undecided runs as returned"),
            "undecided_fraction": per_radius(undecided, "fraction of rays whose run at this distance is undecided"),
            "run_undecided_fraction": _variable(
                ("minimum",), run_undecided_fraction,
                "fraction of all runs (grid and bisection) of the minimum that are undecided"),
            **_exit_variables(exit_radius, observed, radii),
        },
        coords=_ray_coordinates(minimum_ids, outcome.shape[1], radii),
    )


def _exit_variables(exit_radius, observed, radii):
    """The variables of a ray dataset that come from the rays' censored first exits."""
    curves, medians = _survival_summaries(exit_radius, observed, radii)
    observed_exits = np.where(observed, exit_radius, np.nan)
    any_observed = observed.any(axis=1)
    with warnings.catch_warnings():  # all-nan rows: no exit observed
        warnings.simplefilter("ignore", RuntimeWarning)
        minimal, maximal = np.nanmin(observed_exits, axis=1), np.nanmax(observed_exits, axis=1)
    per_radius = functools.partial(_variable, ("minimum", "radius"))
    per_minimum = functools.partial(_variable, ("minimum",))
    per_ray = functools.partial(_variable, ("minimum", "direction"))
    band = "95 % pointwise Greenwood band"
    return {
        "exit_radius": per_ray(
            exit_radius, "first distance seen to leave if exit_observed, else the distance the ray is "
            "right-censored at (its exit lies beyond)", note="0: undecided at the first grid radius"),
        "exit_observed": per_ray(
            observed.astype(np.int8), "whether the ray's exit was observed", flag_values="0 1",
            flag_meanings="right_censored observed"),
        "censored_fraction": per_minimum(
            1 - observed.mean(axis=1), "fraction of rays whose exit was not observed (right-censored)"),
        "exit_survival": per_radius(
            curves[:, 0], "Kaplan-Meier probability that a ray's exit lies beyond this distance"),
        "exit_survival_low": per_radius(curves[:, 1], "lower end of the " + band + " of exit_survival"),
        "exit_survival_high": per_radius(curves[:, 2], "upper end of the " + band + " of exit_survival"),
        "median_exit_radius": per_minimum(
            medians[:, 0], "Kaplan-Meier median exit radius",
            note="nan: median_exit_censored (beyond the largest radius probed)"),
        "median_exit_radius_low": per_minimum(
            medians[:, 1], "lower end of the 95 % confidence interval of median_exit_radius",
            note="where the lower survival band reaches 0.5; nan: it never does within the radii probed"),
        "median_exit_radius_high": per_minimum(
            medians[:, 2], "upper end of the 95 % confidence interval of median_exit_radius",
            note="where the upper survival band reaches 0.5; nan: it never does within the radii probed "
            "(the interval is unbounded above)"),
        "median_exit_censored": per_minimum(
            medians[:, 3].astype(np.int8), "whether the exit survival stays above 0.5 at every radius probed",
            flag_values="0 1", flag_meanings="median_observed median_beyond_largest_radius"),
        "minimal_exit_radius": per_minimum(
            np.where(any_observed, minimal, np.nan), "smallest observed exit radius (minimal critical shock)",
            note="nan: no exit observed"),
        "maximal_exit_radius": per_minimum(
            np.where(any_observed, maximal, np.nan), "largest observed exit radius", note="nan: no exit observed"),
    }


def _ray_coordinates(minimum_ids, n_directions, radii):
    return {
        "minimum": ("minimum", minimum_ids, variable_attrs("probed minimum (catalog index)")),
        "direction": ("direction", np.arange(n_directions), variable_attrs("ray index")),
        "radius": ("radius", radii, variable_attrs("distance from the minimum along the ray")),
    }
