import json

import numpy as np
import pytest
import xarray as xr

from basins.io import (
    add_provenance,
    check_dataset,
    differing_variables,
    provenance_inputs,
    read_dataset,
    read_starting_points,
    variable_attrs,
    write_dataset,
)


def small_dataset():
    ds = xr.Dataset(
        {"loss": ("member", np.array([0.5, 0.25]), variable_attrs("loss"))},
        coords={"member": ("member", np.arange(2), variable_attrs("member index"))},
    )
    return add_provenance(ds, title="test", stage="unit_test", stage_config={"a": 1}, seed=3)


def test_round_trip_keeps_values_and_provenance(tmp_path):
    path = tmp_path / "out.nc"
    write_dataset(small_dataset(), path)
    back = read_dataset(path)
    xr.testing.assert_identical(back, small_dataset())
    assert json.loads(back.attrs["stage_config"]) == {"a": 1}
    assert "torch" in json.loads(back.attrs["package_versions"])
    assert back.attrs["Conventions"].startswith("CF")
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize(
    "breach, message",
    [
        (lambda ds: ds.rename_dims(member="walker"), "outside the vocabulary"),
        (lambda ds: ds.assign(extra=("member", [1, 2])), "'extra' lacks"),
        (lambda ds: ds.drop_attrs(deep=False), "global attribute"),
    ],
)
def test_contract_breaches_are_named(breach, message):
    with pytest.raises(ValueError, match=message):
        check_dataset(breach(small_dataset()))


def test_the_inputs_a_stage_recorded_are_read_back():
    inputs = ("results/datasets/a/seed1.nc", "results/training/b/seed1/shard0.nc")
    ds = add_provenance(small_dataset(), title="t", stage="s", stage_config={}, inputs=inputs)
    assert provenance_inputs(ds) == list(inputs)
    assert provenance_inputs(add_provenance(small_dataset(), title="t", stage="s", stage_config={})) == []


def test_a_failed_write_leaves_no_file(tmp_path):
    bad = small_dataset().assign(extra=("member", [1, 2]))
    with pytest.raises(ValueError):
        write_dataset(bad, tmp_path / "out.nc")
    assert list(tmp_path.iterdir()) == []


def test_starting_points_are_read_by_member(tmp_path):
    theta = np.arange(12.0).reshape(4, 3)
    points = xr.Dataset(
        {"initial_theta": (("member", "param"), theta)}, coords={"member": [10, 11, 12, 13], "param": np.arange(3)}
    )
    points.to_netcdf(tmp_path / "points.nc")
    np.testing.assert_array_equal(read_starting_points(tmp_path / "points.nc", [12, 10], 3), theta[[2, 0]])
    with pytest.raises(ValueError, match="members"):
        read_starting_points(tmp_path / "points.nc", [14], 3)
    with pytest.raises(ValueError, match="parameters"):
        read_starting_points(tmp_path / "points.nc", [10], 5)


def test_two_runs_differ_only_where_their_values_do(tmp_path):
    """The comparison of two runs' outputs (Slurm against local, resumed against uninterrupted,
    speed changes that claim the same bits): a value one ulp off is named, NaN equals NaN, wall
    times and attributes are not compared, and a variable only one run has is named."""
    def written(name, **changes):
        ds = small_dataset().assign(wall_time=((), 1.0, variable_attrs("seconds", "s")),
                                    spread=("member", np.array([np.nan, 1.0]), variable_attrs("spread")))
        path = tmp_path / f"{name}.nc"
        write_dataset(ds.assign(**changes).assign_attrs(host=name), path)
        return path

    reference = written("reference")
    assert differing_variables(reference, written("same", wall_time=((), 7.0, variable_attrs("seconds", "s")))) == []
    off = np.nextafter(0.25, 1.0)
    assert differing_variables(reference, written("ulp", loss=("member", [0.5, off], variable_attrs("loss")))) == ["loss"]
    extra = written("extra", extra=("member", [1.0, 2.0], variable_attrs("extra")))
    assert differing_variables(reference, extra) == ["extra"] == differing_variables(extra, reference)
