import numpy as np
import pytest
import xarray as xr

from basins.basin_geometry import analyze_basins
from basins.summary import SHAPE_STATISTICS, compare_at_matched_size, summarize_study


def tentacles_of(minima, n_members, basin_fraction, reach, reach_halfwidth=0.05, min_members=10):
    """A hand-built measure_tentacles output: every statistic equal to ``reach`` (thickness 1 - it)."""
    minima, reach = np.asarray(minima), np.asarray(reach, dtype=float)
    per = lambda values: ("minimum", np.asarray(values, dtype=float))  # noqa: E731
    data = {"n_members": ("minimum", np.asarray(n_members)), "basin_fraction": per(basin_fraction),
            "old_tentacle_fraction": per(np.ones(len(minima)))}
    for name, (kind, sign) in SHAPE_STATISTICS.items():
        value = reach if sign > 0 else 1 - reach
        data[name] = per(value)
        if kind == "interval":
            data[f"{name}_low"], data[f"{name}_high"] = per(value - reach_halfwidth), per(value + reach_halfwidth)
        else:
            data[f"{name}_se"] = per(np.full(len(minima), reach_halfwidth / 1.96))
    return xr.Dataset(data, coords={"minimum": minima}, attrs={"min_members": min_members})


def basins_of(test_error, n_members=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(test_error), size=n_members)
    start = rng.normal(size=(n_members, 4))
    return analyze_basins(labels, start, start + 1.0, np.zeros(len(test_error)), np.asarray(test_error))


FLATNESS = xr.Dataset({"trace": ("minimum", np.array([3.0, 1.0, 2.0, 4.0]))})  # the flatter, the better


def test_good_and_bad_are_the_extremes_among_minima_with_enough_members():
    basins = basins_of([0.3, 0.1, 0.2, 0.4])
    # minimum 3 (worst) has 4 members only: the bad minimum is then 0; minimum 1 is the good one
    tentacles = tentacles_of([0, 1, 3], [40, 30, 4], [0.3, 0.25, 0.02], [0.2, 0.7, 0.9])
    summary = summarize_study(["a/seed1"], [basins], [tentacles], [FLATNESS])
    assert float(summary["good_test_error"][0]) == pytest.approx(0.1)
    assert float(summary["bad_test_error"][0]) == pytest.approx(0.3)
    assert float(summary["reach_difference"][0]) == pytest.approx(0.5)
    se = np.hypot(0.05, 0.05) / 1.959963984540054
    assert float(summary["reach_difference_low"][0]) == pytest.approx(0.5 - 1.959963984540054 * se)
    assert float(summary["median_thickness_ratio_difference"][0]) == pytest.approx(-0.5)
    assert float(summary["matched"][0]) == 1 and str(summary["shape_reason"][0].values) == "measured"
    assert float(summary["reach_difference_matched"][0]) == pytest.approx(0.5)
    assert int(summary["n_minima"][0]) == 4
    assert float(summary["trace_vs_test_error"][0]) == pytest.approx(1.0)


def test_unmatched_basins_get_no_stratified_difference():
    basins = basins_of([0.3, 0.1, 0.2, 0.4])
    tentacles = tentacles_of([0, 1], [40, 30], [0.6, 0.05], [0.2, 0.7])  # a factor 12 apart
    summary = summarize_study(["a/seed1"], [basins], [tentacles], [FLATNESS])
    assert float(summary["matched"][0]) == 0
    assert np.isfinite(float(summary["reach_difference"][0]))
    assert np.isnan(float(summary["reach_difference_matched"][0]))
    assert "factor 2" in str(summary["shape_reason"][0].values)


def test_too_few_qualifying_minima_give_nan_and_a_reason():
    basins = basins_of([0.3, 0.1, 0.2, 0.4])
    tentacles = tentacles_of([0, 1], [40, 3], [0.3, 0.01], [0.2, 0.7])
    summary = summarize_study(["a/seed1"], [basins], [tentacles], [FLATNESS])
    for name in ("good_reach", "bad_reach", "reach_difference", "reach_difference_low", "matched"):
        assert np.isnan(float(summary[name][0])), name
    assert "min_members=10" in str(summary["shape_reason"][0].values)
    assert np.isnan(summary["matched_difference"].values).all()
    assert all("qualifying minima" in str(reason) for reason in summary["matched_reason"].values)


def test_the_matched_comparison_removes_a_basin_size_confound():
    """y depends on basin size only; bad minima have smaller basins. The raw good - bad difference
    is large, the difference at matched basin fraction is 0 within its interval. With a planted
    effect of 0.3 on top, the matched difference finds it."""
    rng = np.random.default_rng(1)
    n = 60
    badness = rng.random(n)
    log_fraction = -1 - 2 * badness + rng.normal(0, 0.5, n)
    y = 0.2 * log_fraction + rng.normal(0, 0.02, n)
    raw = np.polyfit(badness, y, 1)[0]
    assert -raw > 0.3
    pooled = compare_at_matched_size({"reach": y}, badness, log_fraction)
    difference, se = float(pooled["matched_difference"][0]), float(pooled["matched_difference_se"][0])
    assert abs(difference) < 2.5 * se and se < 0.05
    pooled = compare_at_matched_size({"reach": y - 0.3 * badness}, badness, log_fraction)
    difference, se = float(pooled["matched_difference"][0]), float(pooled["matched_difference_se"][0])
    assert abs(difference - 0.3) < 2.5 * se and difference - 1.96 * se > 0


def test_the_study_level_comparison_pools_experiments():
    rng = np.random.default_rng(2)
    basins, tentacles = [], []
    for seed in range(4):
        basins.append(basins_of([0.1, 0.2, 0.3], seed=seed))
        fraction = rng.uniform(0.1, 0.4, 3)
        tentacles.append(tentacles_of([0, 1, 2], [50, 50, 50], fraction, [0.8, 0.5, 0.2] + rng.normal(0, 0.02, 3)))
    summary = summarize_study([f"e{k}/seed1" for k in range(4)], basins, tentacles,
                              [FLATNESS.isel(minimum=slice(3))] * 4)
    reach = summary["matched_difference"].sel(statistic="reach")
    assert float(reach) == pytest.approx(0.6, abs=0.1)
    assert int(summary["matched_n_minima"].sel(statistic="reach")) == 12


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="one entry"):
        summarize_study(["a"], [], [], [])


def test_the_summary_keeps_the_file_contract(tmp_path):
    from basins.io import add_provenance, read_dataset, write_dataset

    summary = summarize_study(["a/seed1"], [basins_of([0.3, 0.1, 0.2, 0.4])],
                              [tentacles_of([0, 1], [40, 30], [0.3, 0.25], [0.2, 0.7])], [FLATNESS])
    write_dataset(add_provenance(summary, title="s", stage="summarize_study", stage_config={}), tmp_path / "s.nc")
    assert list(read_dataset(tmp_path / "s.nc")["statistic"].values) == list(SHAPE_STATISTICS)
