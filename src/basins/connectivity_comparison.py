"""Stage ``compare_connectivity``: a group's disconnectivity graphs compared over seeds.

Verpoort, Lee and Wales (2020) read a network's landscape from its disconnectivity graph: one
funnel where data are abundant or the network shallow, many competing low-barrier minima where
data are scarce or the network deep. One graph per experiment cannot show that: a graph is one
draw of the initial conditions, and networks with different numbers of parameters differ in
more than depth. So each experiment of a group is run over several seeds, and per group:

- per experiment and seed, the graph's summaries (:data:`GRAPH_STATISTICS`);
- per experiment, their mean, standard deviation, least and largest value over seeds, and the
  escape barriers of all its minima pooled over seeds (the barrier distribution);
- per pair of experiments, the difference of the means and an exact two-sided permutation test
  over seeds (every split of the seeds' values between the two experiments; Fisher's
  randomization test of the difference of means). The verdict is ``differs`` at p <= ``alpha``,
  else ``undecided``; ``smallest_p_value`` says what the seeds could show at best: with 3 seeds
  each it is 0.1, so 3 seeds never decide at 5 % and 4 seeds each (0.029) are the least that
  can. A pair of networks with different parameter counts is ``confounded`` whatever the test
  says: depth or data and size change together there.

The test is distribution-free, so it stays honest where a t interval is not: seeds that all
give the same number of minima have zero spread, and a t interval would claim certainty.
Known answers (``tests/test_connectivity_comparison.py``): planted seed values give the
enumerated p-values, a planted difference larger than any seed spread is found at 4 seeds and
not at 3, equal experiments are undecided.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import xarray as xr

from basins.io import variable_attrs

#: The summaries of one disconnectivity graph that the comparison reads, with what they mean.
GRAPH_STATISTICS = {
    "n_minima": "distinct minima in the graph (catalogued and found from saddles, merges resolved)",
    "funnel_fraction": "fraction of minima in the monotonic sequence basin of the global minimum",
    "n_transition_states": "verified transition states (edges of the graph)",
    "median_escape_barrier": "median over minima of the lowest barrier out of each (nan: no transition state)",
    "n_unconnected_pairs": "pairs of minima the connection budget left unconnected",
    "n_merged": "catalogue entries found to be the same minimum as another",
}


def graph_statistics(graph: xr.Dataset) -> dict[str, float]:
    """The :data:`GRAPH_STATISTICS` of one ``connect_minima`` result."""
    barriers = graph["escape_barrier"].values
    finite = barriers[np.isfinite(barriers)]
    return {
        "n_minima": float(graph.sizes["minimum"]),
        "funnel_fraction": float(graph.attrs["funnel_fraction"]),
        "n_transition_states": float(graph.attrs["n_edges"]),
        "median_escape_barrier": float(np.median(finite)) if len(finite) else float("nan"),
        "n_unconnected_pairs": float(graph.attrs["n_unconnected"]),
        "n_merged": float(graph.attrs["n_merged"]),
    }


def permutation_p_value(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Exact two-sided permutation p-value of the difference of means, and the smallest p-value
    samples of these sizes can give (all values distinct and the samples fully separated).

    Every split of the pooled values into groups of the two sizes is enumerated; the p-value is
    the fraction of splits whose absolute difference of means is at least the observed one.
    """
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(first) < 1 or len(second) < 1:
        raise ValueError(f"samples of sizes {len(first)} and {len(second)}: each needs a value")
    pooled, n_first = np.concatenate([first, second]), len(first)
    n_splits = math.comb(len(pooled), n_first)
    if n_splits > 2_000_000:
        raise ValueError(f"{n_splits} splits of {len(first)} + {len(second)} seeds: too many to enumerate")
    observed = abs(first.mean() - second.mean())
    total, extreme = pooled.sum(), 0
    tolerance = 1e-12 * max(1.0, np.abs(pooled).max())
    for chosen in itertools.combinations(range(len(pooled)), n_first):
        sum_first = pooled[list(chosen)].sum()
        difference = abs(sum_first / n_first - (total - sum_first) / len(second))
        extreme += difference >= observed - tolerance
    # Fully separated distinct values: the extreme split, and its mirror when the sizes are equal.
    smallest = (2 if len(first) == len(second) else 1) / n_splits
    return extreme / n_splits, min(smallest, 1.0)


def compare_connectivity(
    graphs: dict[str, dict[int, xr.Dataset]], *, alpha: float = 0.05
) -> xr.Dataset:
    """Compare the experiments of one group over their seeds; see the module docstring.

    Parameters
    ----------
    graphs : dict
        Experiment name -> seed -> its ``connect_minima`` dataset (with ``theta``, the
        ``escape_barrier`` of every minimum and the attributes ``funnel_fraction``, ``n_edges``,
        ``n_unconnected``, ``n_merged``, ``n_train``, ``data_seed``, ``depth``, ``width``). In the order the
        group lists them; every ordered pair (first, later) is compared (none for a group of one).
    alpha : float
        Level of the permutation test's verdict.

    Returns
    -------
    xarray.Dataset
        ``value (experiment, seed, statistic)`` (nan where an experiment lacks the seed);
        ``mean``, ``sd``, ``least``, ``largest``, ``n_seeds`` per ``(experiment, statistic)``;
        ``escape_barrier (experiment, seed, barrier)``; ``data_seed (experiment, seed)``, the
        draw of each graph's training set, and the attribute ``replicates`` saying what the
        seeds vary (:func:`replicates_of`); per experiment ``n_params``, ``n_train``,
        ``depth``, ``width``; per ``pair``: ``first``, ``second``, ``matched_parameters``, and per
        ``(pair, statistic)`` ``difference`` (second minus first), ``p_value``,
        ``smallest_p_value`` and ``verdict``.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha}: give a level in (0, 1)")
    if not graphs or any(not per_seed for per_seed in graphs.values()):
        raise ValueError(f"every experiment of the group needs a graph: {({n: list(s) for n, s in graphs.items()})}")
    experiments = list(graphs)
    seeds = sorted({seed for per_seed in graphs.values() for seed in per_seed})
    values = _seed_values(graphs, experiments, seeds)
    barriers = _pooled_barriers(graphs, experiments, seeds)
    n_params = [_n_params(graphs[name]) for name in experiments]
    pairs = list(itertools.combinations(range(len(experiments)), 2))
    data_seeds = _data_seeds(graphs, experiments, seeds)
    result = xr.Dataset(
        {
            **_experiment_variables(graphs, experiments, values, n_params),
            **_pair_variables(experiments, pairs, values, n_params, alpha),
            "escape_barrier": barriers,
            "data_seed": (("experiment", "seed"), data_seeds,
                          variable_attrs("seed of the graph's training set (-1: no graph)")),
        },
        coords={
            "experiment": ("experiment", experiments, variable_attrs("experiment of the group")),
            "seed": ("seed", seeds, variable_attrs("initialization seed")),
            "statistic": ("statistic", list(GRAPH_STATISTICS), variable_attrs("summary of a graph")),
            "pair": ("pair", np.arange(len(pairs)), variable_attrs("pair of experiments compared")),
            "barrier": ("barrier", np.arange(barriers[1].shape[-1]), variable_attrs("minimum of a graph")),
        },
        attrs={"alpha": alpha, "test": "exact two-sided permutation test of the difference of the seed means",
               "replicates": replicates_of(data_seeds),
               "statistics": "; ".join(f"{name}: {meaning}" for name, meaning in GRAPH_STATISTICS.items())},
    )
    _check_invariants(result)
    return result


def _seed_values(graphs, experiments, seeds):
    """(experiment, seed, statistic), nan where an experiment lacks the seed."""
    values = np.full((len(experiments), len(seeds), len(GRAPH_STATISTICS)), np.nan)
    for i, name in enumerate(experiments):
        for seed, graph in graphs[name].items():
            values[i, seeds.index(seed)] = list(graph_statistics(graph).values())
    return values


def _data_seeds(graphs, experiments, seeds):
    data_seeds = np.full((len(experiments), len(seeds)), -1, dtype=np.int64)
    for i, name in enumerate(experiments):
        for seed, graph in graphs[name].items():
            data_seeds[i, seeds.index(seed)] = int(graph.attrs["data_seed"])
    return data_seeds


def replicates_of(data_seeds: np.ndarray) -> str:
    """What the seeds of a group replicate, from each graph's training-set seed ``(experiment,
    seed)`` (-1: no graph): nothing with one seed each; data draws and initialization when every
    experiment's seeds draw distinct training sets; initialization alone when each experiment
    has one training set, which compares those training sets' landscapes: a difference found
    then may be that draw's."""
    drawn = [row[row >= 0] for row in np.asarray(data_seeds)]
    if all(len(row) <= 1 for row in drawn):
        return "nothing: one seed per experiment"
    if all(len(np.unique(row)) == len(row) > 1 for row in drawn):
        return "data draws and initialization (each seed its own training set)"
    if all(len(np.unique(row)) == 1 for row in drawn):
        return "initialization only (one training set per experiment: a difference may be that draw's)"
    return "mixed: some experiments draw a training set per seed, others share one"


def _experiment_variables(graphs, experiments, values, n_params):
    dims = ("experiment", "statistic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-nan or one-seed slice gives nan, as meant
        summaries = {
            "mean": (np.nanmean(values, axis=1), "mean over seeds"),
            "sd": (np.nanstd(values, axis=1, ddof=1), "standard deviation over seeds (nan: fewer than two)"),
            "least": (np.nanmin(values, axis=1), "least value over seeds"),
            "largest": (np.nanmax(values, axis=1), "largest value over seeds"),
        }
    variables = {name: (dims, data, variable_attrs(meaning)) for name, (data, meaning) in summaries.items()}
    variables["value"] = (("experiment", "seed", "statistic"), values, variable_attrs("the graph's statistic"))
    variables["n_seeds"] = (dims, np.isfinite(values).sum(axis=1), variable_attrs("seeds with a value"))
    for attribute, meaning in (("n_train", "training points"), ("depth", "hidden layers"), ("width", "hidden units")):
        variables[attribute] = ("experiment", [_one_value(graphs[name], attribute) for name in experiments],
                                variable_attrs(meaning))
    variables["n_params"] = ("experiment", n_params, variable_attrs("parameters of the network"))
    return variables


def _pair_variables(experiments, pairs, values, n_params, alpha):
    matched = [n_params[a] == n_params[b] for a, b in pairs]
    shape = (len(pairs), len(GRAPH_STATISTICS))
    difference, p_value, smallest = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    verdict = np.full(shape, "", dtype=object)
    for row, (a, b) in enumerate(pairs):
        for column in range(len(GRAPH_STATISTICS)):
            first, second = (_finite(values[index, :, column]) for index in (a, b))
            censored = sum(_n_graphs(values[index]) - len(kept) for index, kept in ((a, first), (b, second)))
            if censored:
                # A graph with one minimum or no transition state has no escape barrier; testing
                # the others alone would select the graphs that have one.
                censored_verdict = f"censored: {censored} graphs have no value (one minimum or no transition state)"
                verdict[row, column] = censored_verdict if matched[row] else _confounded(n_params[a], n_params[b])
                continue
            difference[row, column] = second.mean() - first.mean()
            p_value[row, column], smallest[row, column] = permutation_p_value(first, second)
            verdict[row, column] = _verdict(p_value[row, column], smallest[row, column], alpha, matched[row],
                                            (n_params[a], n_params[b]))
    dims = ("pair", "statistic")
    return {
        "first": ("pair", [experiments[a] for a, _ in pairs], variable_attrs("experiment compared")),
        "second": ("pair", [experiments[b] for _, b in pairs], variable_attrs("experiment it is compared with")),
        "matched_parameters": ("pair", matched, variable_attrs("the two networks have the same number of parameters")),
        "difference": (dims, difference, variable_attrs("mean of second minus mean of first")),
        "p_value": (dims, p_value, variable_attrs("exact two-sided permutation p-value over seeds")),
        "smallest_p_value": (dims, smallest, variable_attrs("least p-value these numbers of seeds can give")),
        "verdict": (dims, verdict.astype(str), variable_attrs("differs / undecided / confounded / censored")),
    }


def _confounded(first_params, second_params):
    return f"confounded: {first_params} vs {second_params} parameters"


def _verdict(p_value, smallest, alpha, matched, n_params):
    if not matched:
        return _confounded(*n_params)
    if p_value <= alpha:
        return "differs"
    if smallest > alpha:
        return f"undecided: too few seeds (the least p-value they allow is {smallest:.2g})"
    return "undecided"


def _pooled_barriers(graphs, experiments, seeds):
    """Every minimum's escape barrier, per experiment and seed, padded with nan."""
    per_graph = {(name, seed): graph["escape_barrier"].values for name in experiments
                 for seed, graph in graphs[name].items()}
    width = max((len(values) for values in per_graph.values()), default=0)
    pooled = np.full((len(experiments), len(seeds), width), np.nan)
    for (name, seed), values in per_graph.items():
        pooled[experiments.index(name), seeds.index(seed), : len(values)] = values
    return (("experiment", "seed", "barrier"), pooled,
            variable_attrs("lowest barrier out of each minimum (nan: none, or padding)"))


def _one_value(per_seed, attribute):
    values = {graph.attrs[attribute] for graph in per_seed.values()}
    if len(values) != 1:
        raise ValueError(f"the seeds of one experiment disagree on {attribute}: {sorted(values)}")
    return values.pop()


def _n_params(per_seed):
    sizes = {graph.sizes["param"] for graph in per_seed.values()}
    if len(sizes) != 1:
        raise ValueError(f"the seeds of one experiment have networks of {sorted(sizes)} parameters")
    return int(sizes.pop())


def _n_graphs(values):
    """Seeds with a graph, from one experiment's ``(seed, statistic)`` values."""
    return int(np.isfinite(values).any(axis=1).sum())


def _finite(values):
    return values[np.isfinite(values)]


def _check_invariants(result):
    """Refuse a comparison whose numbers cannot be: the stage writes nothing then."""
    mean, least, largest = result["mean"].values, result["least"].values, result["largest"].values
    known = np.isfinite(mean)
    if (mean[known] < least[known] - 1e-12).any() or (mean[known] > largest[known] + 1e-12).any():
        raise ValueError("a mean over seeds lies outside the seeds' range")
    funnel = result["value"].sel(statistic="funnel_fraction").values
    if ((funnel < 0) | (funnel > 1)).any():
        raise ValueError(f"funnel fractions outside [0, 1]: {funnel[(funnel < 0) | (funnel > 1)]}")
    p_value, smallest = result["p_value"].values, result["smallest_p_value"].values
    tested = np.isfinite(p_value)
    if ((p_value[tested] <= 0) | (p_value[tested] > 1) | (p_value[tested] < smallest[tested] - 1e-12)).any():
        raise ValueError("a permutation p-value outside (0, 1] or below the least the seeds allow")
