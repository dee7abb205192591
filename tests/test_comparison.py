import numpy as np
import pytest

from basins.comparison import compare_dynamics
from basins.io import add_provenance, check_dataset


def test_agreement_and_fractions_by_hand():
    reference = np.array([0, 0, 1, 1, -1, 0])
    # The other dynamics numbers its minima differently: its 0 is the reference's 1, its 2 is
    # unknown to the reference.
    other = np.array([1, 0, 0, 2, 0, -1])
    result = compare_dynamics(np.stack([reference, other]), [np.arange(2), np.array([1, 0, -1])],
                              ["flow", "gd"], n_reference_minima=2)
    # Members assigned under both: 0, 1, 2, 3 -> mapped other = [0, 1, 1, -1]; agree on 0 and 2.
    assert float(result["agreement"][0]) == 1.0
    assert float(result["agreement"][1]) == pytest.approx(0.5)
    np.testing.assert_allclose(result["basin_fraction"].values, [[3 / 6, 2 / 6], [1 / 6, 3 / 6]])
    np.testing.assert_allclose(result["unmatched_fraction"].values, [0, 1 / 6])
    np.testing.assert_allclose(result["unassigned_fraction"].values, [1 / 6, 1 / 6])
    total = result["basin_fraction"].sum("minimum") + result["unmatched_fraction"] + result["unassigned_fraction"]
    np.testing.assert_allclose(total.values, 1.0)
    # Paired change of minimum 0: members' indicators go 1 1 0 0 0 1 -> 1 0 0 0 0 0.
    change = np.array([0, -1, 0, 0, 0, -1])
    from_flow = result.sel(baseline="flow")
    assert from_flow["basin_fraction_change"].values[1, 0] == pytest.approx(change.mean())
    assert from_flow["basin_fraction_change_se"].values[1, 0] == pytest.approx(change.std(ddof=1) / np.sqrt(6))
    np.testing.assert_array_equal(from_flow["basin_fraction_change"].values[0], [0, 0])
    np.testing.assert_allclose(from_flow["basin_fraction_change"].values,
                               result["basin_fraction"].values - result["basin_fraction"].values[:1])
    # Any experiment is a baseline (a control): the change is antisymmetric, its error symmetric.
    changes, errors = result["basin_fraction_change"].values, result["basin_fraction_change_se"].values
    np.testing.assert_allclose(changes, -changes.transpose(1, 0, 2))
    np.testing.assert_allclose(errors, errors.transpose(1, 0, 2))
    reverse = result.sel(experiment="flow", baseline="gd")["basin_fraction_change"].values[0]
    assert reverse == pytest.approx(-change.mean())
    check_dataset(add_provenance(result, title="test", stage="compare_dynamics", stage_config={}, inputs=()))


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="expected"):
        compare_dynamics(np.zeros((2, 3), int), [np.arange(1)], ["a", "b"], n_reference_minima=1)


def test_the_reference_basin_size_each_member_reaches_by_hand():
    reference = np.array([0, 0, 1, 1, -1, 0])
    other = np.array([1, 0, 0, 2, 0, -1])  # its 0 is the reference's 1, its 2 is unknown to it
    sizes = np.array([0.7, 0.2])  # the reference's basins over its whole ensemble
    result = compare_dynamics(np.stack([reference, other]), [np.arange(2), np.array([1, 0, -1])],
                              ["flow", "gd"], n_reference_minima=2, reference_basin_fraction=sizes)
    # per member: flow 0.7 0.7 0.2 0.2 nan 0.7; gd 0.7 0.2 0.2 0 0.2 nan (its 2: never found, 0)
    np.testing.assert_allclose(result["reached_basin_size"].values, [2.5 / 5, 1.3 / 5])
    paired = np.array([0.0, 0.2 - 0.7, 0.0, 0.0 - 0.2])  # members 0-3, assigned under both
    change = result["reached_basin_size_change"].sel(experiment="gd", baseline="flow")
    assert float(change) == pytest.approx(paired.mean())
    se = result["reached_basin_size_change_se"].sel(experiment="gd", baseline="flow")
    assert float(se) == pytest.approx(paired.std(ddof=1) / 2)
    assert float(result["reached_basin_size_change"].sel(experiment="flow", baseline="flow")) == 0


def test_noise_draws_are_averaged_within_each_start_by_hand():
    reference = np.array([0, 0, 1, 1])
    # A noisy dynamics ran each of the 4 starts twice; draw 1 of start 3 ended unassigned.
    noisy = np.array([[0, 1, 1, 0],
                      [0, 0, 1, -1]])
    result = compare_dynamics([reference, noisy], [np.arange(2)] * 2, ["flow", "langevin"], n_reference_minima=2)
    assert result["n_draws"].values.tolist() == [1, 2]
    # per start, the fraction of draws reaching minimum 0: 1, 0.5, 0, 0.5
    np.testing.assert_allclose(result["basin_fraction"].sel(experiment="langevin").values, [2 / 4, 1.5 / 4])
    change = np.array([1, 0.5, 0, 0.5]) - np.array([1, 1, 0, 0])
    paired = result.sel(experiment="langevin", baseline="flow", minimum=0)
    assert float(paired["basin_fraction_change"]) == pytest.approx(change.mean())
    assert float(paired["basin_fraction_change_se"]) == pytest.approx(change.std(ddof=1) / 2)
    # agreement per start over the assigned draws: 1, 0.5, 1, 0 (start 3: its one assigned draw missed)
    agree = np.array([1, 0.5, 1, 0])
    assert float(result["agreement"].sel(experiment="langevin")) == pytest.approx(agree.mean())
    assert float(result["agreement_se"].sel(experiment="langevin")) == pytest.approx(agree.std(ddof=1) / 2)
    assert float(result["unmatched_fraction"].sel(experiment="langevin")) == 0
    assert float(result["unassigned_fraction"].sel(experiment="langevin")) == pytest.approx(1 / 8)


def test_identical_draws_change_nothing_and_more_draws_shrink_the_noise():
    rng = np.random.default_rng(3)
    n_starts = 400
    reference = rng.integers(0, 2, n_starts)
    one = rng.integers(0, 2, n_starts)
    single = compare_dynamics([reference, one], [np.arange(2)] * 2, ["a", "b"], 2, np.array([0.6, 0.4]))
    repeated = compare_dynamics([reference, np.stack([one] * 3)], [np.arange(2)] * 2, ["a", "b"], 2,
                                np.array([0.6, 0.4]))
    for name in ("basin_fraction", "basin_fraction_change", "basin_fraction_change_se", "agreement",
                 "reached_basin_size", "reached_basin_size_change_se"):
        np.testing.assert_allclose(repeated[name].values, single[name].values, err_msg=name)
    # Known answer: every start reaches minimum 0 with probability 0.3 under the noisy dynamics,
    # independently per draw; with 16 draws a start's share has variance 0.21 / 16.
    draws = (rng.random((16, n_starts)) > 0.3).astype(int)
    noisy = compare_dynamics([reference, draws], [np.arange(2)] * 2, ["a", "b"], 2)
    fraction = noisy["basin_fraction"].sel(experiment="b", minimum=0)
    assert abs(float(fraction) - 0.3) < 4 * np.sqrt(0.21 / 16 / n_starts)
    few = compare_dynamics([reference, draws[:1]], [np.arange(2)] * 2, ["a", "b"], 2)
    se = {name: float(result["basin_fraction_change_se"].sel(experiment="b", baseline="a", minimum=0))
          for name, result in (("many", noisy), ("one", few))}
    # the reference's own spread (0.25) stays; the noisy side's falls from 0.21 to 0.21 / 16
    assert se["many"] == pytest.approx(np.sqrt((0.25 + 0.21 / 16) / n_starts), rel=0.15)
    assert se["one"] == pytest.approx(np.sqrt((0.25 + 0.21) / n_starts), rel=0.15)


def test_the_markdown_table_reads_every_number_from_the_comparison():
    from basins.comparison import comparison_markdown

    reference = np.array([0, 0, 1, 1, 0, 0])
    noisy = np.array([[0, 1, 1, 0, 0, 0], [1, 1, 1, -1, 0, 0]])
    result = compare_dynamics([reference, noisy], [np.arange(2)] * 2, ["net", "net_langevin"], 2,
                              np.array([0.6, 0.4]))
    table = comparison_markdown(result)
    row = next(line for line in table.splitlines() if line.startswith("| langevin |"))
    langevin = result.sel(experiment="net_langevin")
    assert f"| 2 | {float(langevin.agreement):.2f} +- {float(langevin.agreement_se):.2f} |" in row
    assert f"{float(langevin.basin_fraction.sel(minimum=0)):.2f}" in row
    change = result.sel(experiment="net_langevin", baseline="net", minimum=0)
    expected = f"{float(change.basin_fraction_change):+.2f} +- {float(change.basin_fraction_change_se):.2f}"
    assert expected in table.split("reached basin size, row")[0]
    assert "| reference | 1 |" in table and "6 starts compared" in table
