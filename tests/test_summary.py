import numpy as np
import pytest
import xarray as xr

from basins.basin_geometry import analyze_basins, tentacle_index
from basins.summary import summarize_study


def test_summary_picks_the_best_and_worst_probed_minima():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=300)
    start = rng.normal(size=(300, 4))
    basins = analyze_basins(labels, start, start + 1.0, np.zeros(4), np.array([0.3, 0.1, 0.2, 0.4]))
    exits = np.array([np.full(8, 0.5), np.full(8, 5.0)])  # minimum 1 (best) reaches far less
    tentacles = tentacle_index(basins["start_distance"].values, labels, exits, np.ones_like(exits, bool), np.array([0, 1]))
    flatness = xr.Dataset({"trace": ("minimum", np.array([3.0, 1.0, 2.0, 4.0]))})  # the flatter, the better
    summary = summarize_study(["a/seed1"], [basins], [tentacles], [flatness])
    assert float(summary["good_test_error"][0]) == pytest.approx(0.1)
    assert float(summary["bad_test_error"][0]) == pytest.approx(0.3)
    assert float(summary["good_tentacle_fraction"][0]) == 0.0  # every travel distance is 2 < 5
    assert float(summary["bad_tentacle_fraction"][0]) == 1.0  # 2 > 0.5
    assert float(summary["tentacle_difference"][0]) == -1.0
    assert float(summary["good_distance_ratio"][0]) == pytest.approx(2.0 / 5.0)
    assert float(summary["bad_distance_ratio"][0]) == pytest.approx(2.0 / 0.5)
    assert int(summary["n_minima"][0]) == 4
    assert float(summary["trace_vs_test_error"][0]) == pytest.approx(1.0)
    assert np.isfinite(float(summary["trace_vs_basin_fraction"][0]))


def test_mismatched_inputs_are_rejected():
    with pytest.raises(ValueError, match="one entry"):
        summarize_study(["a"], [], [], [])
