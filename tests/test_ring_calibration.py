import json

import numpy as np
import pytest
import xarray as xr

from basins.io import add_provenance, check_dataset
from basins.ring_calibration import calibration_markdown, ring_calibration


def ring_files(n_oscillators, *, probed_windings=(1, 0)):
    """analyze_ring_basins- and measure_ring_tentacles-shaped outputs with known numbers; q = 0 is
    not the first state of either file, so the table must find it by winding number."""
    windings = np.array([1, 0, -1])
    basins = xr.Dataset(
        {
            "winding_number": ("minimum", windings),
            "basin_fraction": ("minimum", [0.2, 0.5, 0.3]),
            "basin_fraction_se": ("minimum", [0.01, 0.02, 0.01]),
            "start_distance_median": ("minimum", [9.0, 8.0, 9.5]),
            "rate": ("fit", [0.25, 1.1]),
            "rate_se": ("fit", [0.01, 0.02]),
            "p_value": ("fit", [0.4, 1e-320]),
            "chi_square_dof": ("fit", [5, 7]),
        },
        coords={"fit": ["gaussian", "exponential"]},
        attrs={"n_members_total": 1000, "ring": json.dumps({"n_oscillators": n_oscillators, "coupling_range": 1})},
    )
    shape = {
        "basin_fraction": 0.5, "median_exit_radius": 4.0, "reach": 0.3, "reach_low": 0.1, "reach_high": 0.5,
        "leaving_fraction": 0.8, "leaving_fraction_low": 0.6, "leaving_fraction_high": 0.9,
        "median_thickness_ratio": 0.05, "median_thickness_ratio_low": 0.03, "median_thickness_ratio_high": 0.08,
        "far_return_probability": 0.45, "far_return_probability_se": 0.05,
    }
    probed = np.array(probed_windings)
    tentacles = xr.Dataset(
        {"winding_number": ("minimum", probed), "far_radius": ((), 8.5)}
        | {name: ("minimum", np.where(probed == 0, value, -1.0)) for name, value in shape.items()},
        attrs={"confidence": 0.95, "ray_radii": np.array([0.3, 1.0, 8.0, 12.0])},
    )
    return basins, tentacles


def test_the_table_reads_the_q0_state_and_derives_the_gaussian_width():
    first, second = ring_files(40), ring_files(83)
    calibration = ring_calibration(["ring40/seed1", "ring83/seed1"], [first[0], second[0]], [first[1], second[1]])
    check_dataset(add_provenance(calibration, title="test", stage="summarize_rings", stage_config={}, inputs=()))
    row = calibration.sel(ring="ring83/seed1")
    assert float(row["p0"]) == 0.5 and float(row["p0_se"]) == 0.02
    np.testing.assert_allclose(float(row["sigma_over_sqrt_n"]), (2 * 0.25) ** -0.5 / np.sqrt(83))
    assert float(row["reach"]) == 0.3 and float(row["far_return_probability"]) == 0.45
    np.testing.assert_allclose(float(row["distance_ratio"]), 8.0 / 4.0)
    assert float(row["farthest_ray_radius"]) == 12.0
    table = calibration_markdown(calibration)
    assert "| ring83/seed1 | 1000 | 0.5000 +- 0.0200 |" in table
    assert "(< 1e-300)" in table and "0.30 [0.10, 0.50]" in table and "(8.5-12.0 rad)" in table


def test_an_unprobed_q0_state_gets_nan_shape_and_mismatched_inputs_are_refused():
    basins, tentacles = ring_files(40, probed_windings=(1, -1))
    row = ring_calibration(["ring40/seed1"], [basins], [tentacles]).sel(ring="ring40/seed1")
    assert float(row["p0"]) == 0.5 and np.isnan(float(row["reach"]))
    with pytest.raises(ValueError, match="one each per ring"):
        ring_calibration(["a", "b"], [basins], [tentacles])
    unreached = basins.assign(winding_number=("minimum", [1, 2, -1]))
    with pytest.raises(ValueError, match="reached the q = 0 state"):
        ring_calibration(["ring40/seed1"], [unreached], [tentacles])


def basin_size_file(estimates, disagreements):
    """estimate_ring_basin_sizes-shaped output: states q = 0 and 2 of one ring."""
    estimates = np.asarray(estimates, dtype=float)
    return xr.Dataset(
        {
            "winding_number": ("minimum", [0, 2]),
            "n_members": ("minimum", [9000, 230]),
            "log_count_fraction": ("minimum", [-0.6, -4.9]),
            "log_count_fraction_low": ("minimum", [-0.62, -5.0]),
            "log_count_fraction_high": ("minimum", [-0.58, -4.8]),
            "log_basin_fraction": ("minimum", estimates),
            "log_basin_fraction_low": ("minimum", estimates - 0.3),
            "log_basin_fraction_high": ("minimum", estimates + 0.3),
            "log_measure_dof": ("minimum", [40.0, 12.5]),
            "count_disagreement": ("minimum", disagreements),
            "reference_inside_fraction": ("minimum", [0.9, 0.7]),
            "undecided_fraction": ("minimum", [0.0, 0.001]),
            "log_measure_half_drift": ("minimum", [0.1, 0.9]),
            "half_drift_score": ("minimum", [0.2, 1.4]),
            "plateau_score": ((), 1.13),
            "plateau_method": ((), "half-length walk"),
            "half_walk_score": ("minimum", [-0.4, 2.6]),
            "plateau_basin_failed": ("minimum", [0, 1]),
            "basin_samples": ("minimum", [256, 230]),
            "draws_check": ("minimum", [1.2, 3.4]),
            "draws_check_threshold": ("minimum", [2.9, 3.0]),
            "reason": ("minimum", np.array(["", ""], dtype=object)),
            "burn_in_drift": (("minimum", "coupling"), [[0.5, -2.5, 1.0], [0.1, 0.2, -0.3]]),
        }
    )


def test_measured_basin_sizes_are_tabulated_beside_their_counts():
    basins, tentacles = ring_files(16)
    calibration = ring_calibration(["ring16/seed1"], [basins], [tentacles], ["ring16/seed1"],
                                   [basin_size_file([-0.7, -4.2], [-0.4, 3.1])])
    check_dataset(add_provenance(calibration, title="test", stage="summarize_rings", stage_config={}, inputs=()))
    assert calibration.sizes["measured_state"] == 2
    assert calibration["largest_burn_in_drift"].values.tolist() == [2.5, 0.3]
    table = calibration_markdown(calibration)
    assert "| ring16/seed1 | 2 | 230 | -4.90 [-5.00, -4.80] | -4.20 [-4.50, -3.90] | 12 | +3.1 | 0.70 | 0.0010 | +0.90 (+1.4) | +1.1 (half-length walk); own +2.6 beyond the per-basin level | 0.3 | 230 | 3.4 / 3.0 |" in table
    assert "| +1.1 (half-length walk); own -0.4 | 2.5 |" in table  # q = 0: within the level
    assert calibration["plateau_basin_failed"].values.tolist() == [0, 1]
    # A file written before the per-basin level: its states' own scores, unchecked.
    old = ring_calibration(["ring16/seed1"], [basins], [tentacles], ["ring16/seed1"],
                           [basin_size_file([-0.7, -4.2], [-0.4, 3.1]).drop_vars(["plateau_basin_failed"])])
    assert old["plateau_basin_failed"].values.tolist() == [2, 2] and "beyond the per-basin level" not in calibration_markdown(old)
    assert "1 of 2 estimates lie within two combined standard errors of their counts; states without an estimate: 0." in table
    unmeasured = basin_size_file([-0.7, np.nan], [-0.4, np.nan])
    table = calibration_markdown(ring_calibration(["ring16/seed1"], [basins], [tentacles], ["ring16/seed1"],
                                                  [unmeasured.assign(reason=("minimum", np.array(["", "no draw"],
                                                                                                  dtype=object)))]))
    assert "| none: no draw |" in table and "1 of 1 estimates" in table and "states without an estimate: 1." in table
    plain = calibration_markdown(ring_calibration(["ring16/seed1"], [basins], [tentacles]))
    assert "thermodynamic integration" not in plain
