"""Comparing disconnectivity graphs over seeds: the permutation test and the stage's invariants."""

import itertools

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from basins.connectivity_comparison import compare_connectivity, graph_statistics, permutation_p_value


def fake_graph(n_minima, *, funnel=1.0, n_params=25, barrier=0.01, n_train=32, depth=1, width=6, data_seed=0):
    """A connect_minima result with the variables and attributes the comparison reads."""
    return xr.Dataset(
        {
            "theta": (("minimum", "param"), np.zeros((n_minima, n_params))),
            "escape_barrier": ("minimum", np.full(n_minima, barrier) if n_minima > 1 else np.full(1, np.nan)),
        },
        attrs={"funnel_fraction": funnel, "n_edges": n_minima - 1, "n_unconnected": 0, "n_merged": 0,
               "n_train": n_train, "depth": depth, "width": width, "data_seed": data_seed},
    )


def test_separated_seeds_give_the_enumerated_p_values():
    assert permutation_p_value([1, 2, 3], [4, 5, 6]) == pytest.approx((2 / 20, 2 / 20))
    assert permutation_p_value([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx((2 / 70, 2 / 70))
    # Unequal sizes: the least p-value is one split in ten; evenly spaced values make the
    # opposite split ({4, 5} first) as extreme, so these give two.
    assert permutation_p_value([1, 2], [3, 4, 5]) == pytest.approx((2 / 10, 1 / 10))
    assert permutation_p_value([2, 2, 2], [2, 2, 2])[0] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_the_p_value_agrees_with_scipys_exact_permutation_test(seed):
    rng = np.random.default_rng(seed)
    first, second = rng.normal(size=4), rng.normal(0.8, size=4)
    reference = stats.permutation_test(
        (first, second), lambda a, b: np.mean(a) - np.mean(b), permutation_type="independent",
        n_resamples=np.inf, alternative="two-sided",
    )
    # Equal sizes: the null distribution is symmetric, so |difference| and scipy's doubled tail agree.
    assert permutation_p_value(first, second)[0] == pytest.approx(reference.pvalue)


def test_the_p_value_counts_every_split_as_extreme_as_the_observed_one():
    first, second = np.array([0.0, 3.0, 1.0]), np.array([2.0, 5.0])
    pooled = np.concatenate([first, second])
    observed = abs(first.mean() - second.mean())
    splits = list(itertools.combinations(range(5), 3))
    extreme = sum(abs(pooled[list(s)].mean() - np.delete(pooled, s).mean()) >= observed - 1e-12 for s in splits)
    assert permutation_p_value(first, second)[0] == pytest.approx(extreme / len(splits))


def test_a_planted_difference_is_found_with_four_seeds_and_not_three():
    for n_seeds, expected in ((4, "differs"), (3, "undecided: too few seeds")):
        graphs = {
            "shallow": {seed: fake_graph(1 + seed % 2) for seed in range(n_seeds)},
            "deep": {seed: fake_graph(6 + seed % 2, funnel=0.5, depth=2, width=3) for seed in range(n_seeds)},
        }
        result = compare_connectivity(graphs)
        n_minima = result.sel(statistic="n_minima")
        assert n_minima["difference"].item() == pytest.approx(5.0)
        assert str(n_minima["verdict"].item()).startswith(expected)
        assert n_minima["mean"].values.tolist() == pytest.approx([1.5 if n_seeds == 4 else 4 / 3, 6.5 if n_seeds == 4 else 19 / 3])


def test_equal_experiments_are_undecided_and_unmatched_ones_confounded():
    same = {seed: fake_graph(3 + seed % 3) for seed in range(5)}
    result = compare_connectivity({"a": same, "b": dict(same), "c": {s: fake_graph(3, n_params=37) for s in range(5)}})
    verdicts = result["verdict"].sel(statistic="n_minima").values
    assert verdicts[0] == "undecided"  # a vs b
    assert verdicts[1].startswith("confounded: 25 vs 37") and verdicts[2].startswith("confounded")
    assert result["matched_parameters"].values.tolist() == [True, False, False]


def test_missing_seeds_are_nan_not_zero_and_one_seed_has_no_spread():
    result = compare_connectivity({"a": {1: fake_graph(2), 2: fake_graph(4)}, "b": {1: fake_graph(3)}})
    assert np.isnan(result["value"].sel(experiment="b", seed=2, statistic="n_minima").item())
    assert result["n_seeds"].sel(experiment="b", statistic="n_minima").item() == 1
    assert np.isnan(result["sd"].sel(experiment="b", statistic="n_minima").item())
    assert result["sd"].sel(experiment="a", statistic="n_minima").item() == pytest.approx(np.sqrt(2))
    assert result["value"].sel(experiment="b", seed=1, statistic="median_escape_barrier").item() == 0.01
    # A lone minimum has no transition state: its escape barrier is no value, not zero.
    assert np.isnan(graph_statistics(fake_graph(1))["median_escape_barrier"])


def test_a_statistic_some_graphs_lack_is_censored_not_tested_on_the_rest():
    # Testing the barriers of the graphs that have one would select them: the most funnelled
    # graphs (one minimum) would silently leave the comparison.
    graphs = {"a": {seed: fake_graph(3, barrier=0.01 * seed) for seed in range(1, 5)},
              "b": {seed: fake_graph(1 if seed < 3 else 2) for seed in range(1, 5)}}
    row = compare_connectivity(graphs).sel(pair=0)
    assert row["verdict"].sel(statistic="median_escape_barrier").item().startswith("censored: 2 graphs")
    assert np.isnan(row["p_value"].sel(statistic="median_escape_barrier").item())
    assert row["verdict"].sel(statistic="n_minima").item() == "differs"
    # Networks of different sizes stay confounded, censored or not.
    graphs["b"] = {seed: fake_graph(1, n_params=30) for seed in range(1, 5)}
    row = compare_connectivity(graphs).sel(pair=0)
    assert row["verdict"].sel(statistic="median_escape_barrier").item().startswith("confounded: 25 vs 30")


def test_the_stage_refuses_impossible_numbers_and_mixed_networks():
    with pytest.raises(ValueError, match="funnel fractions outside"):
        compare_connectivity({"a": {1: fake_graph(2, funnel=1.5)}, "b": {1: fake_graph(2)}})
    with pytest.raises(ValueError, match="networks of"):
        compare_connectivity({"a": {1: fake_graph(2), 2: fake_graph(2, n_params=30)}, "b": {1: fake_graph(2)}})
    with pytest.raises(ValueError, match="needs a graph"):
        compare_connectivity({"a": {1: fake_graph(2)}, "b": {}})


def test_a_group_of_one_experiment_has_its_summaries_and_no_pairs():
    result = compare_connectivity({"a": {1: fake_graph(2), 2: fake_graph(3)}})
    assert result.sizes["pair"] == 0 and result["mean"].sel(statistic="n_minima").item() == 2.5


def test_the_comparison_says_whether_its_seeds_are_data_draws():
    one_draw = {name: {seed: fake_graph(2) for seed in (1, 2, 3)} for name in ("a", "b")}
    per_seed = {name: {seed: fake_graph(2, data_seed=seed) for seed in (1, 2, 3)} for name in ("a", "b")}
    mixed = {"a": one_draw["a"], "b": per_seed["b"]}
    assert compare_connectivity(one_draw).attrs["replicates"].startswith("initialization only")
    assert compare_connectivity(per_seed).attrs["replicates"].startswith("data draws and initialization")
    assert compare_connectivity(mixed).attrs["replicates"].startswith("mixed")
    assert compare_connectivity({"a": {1: fake_graph(2, data_seed=1)}}).attrs["replicates"].startswith("nothing")
    assert compare_connectivity(per_seed)["data_seed"].values.tolist() == [[1, 2, 3], [1, 2, 3]]
