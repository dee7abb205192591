import numpy as np
import pytest

from basins.comparison import compare_dynamics


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
    total = result["basin_fraction"].sum("minimum") + result["unmatched_fraction"]
    assert (total <= 1).all()


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="expected"):
        compare_dynamics(np.zeros((2, 3), int), [np.arange(1)], ["a", "b"], n_reference_minima=1)
