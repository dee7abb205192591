"""Checks of basin-shape outputs shared by the tests of measure_reach and measure_tentacles."""

import pytest


def interval(dataset, name, row):
    """A per-minimum statistic and its interval: ``(value, low, high)`` at minimum ``row``."""
    return tuple(float(dataset[f"{name}{suffix}"].sel(minimum=row)) for suffix in ("", "_low", "_high"))


def assert_no_reentry(dataset, row, n_rays=64):
    """Reach exactly 0, its interval [0, the Wilson bound of 0 re-entering rays of n_rays, over p]:
    no resample sees a re-entry, yet 0 of 64 rays does not rule out a few percent."""
    assert int(dataset["n_rays_reentering"].sel(minimum=row)) == 0
    value, low, high = interval(dataset, "reach", row)
    z2 = 1.959963984540054**2
    bound = z2 / (n_rays + z2) / float(dataset["return_probability_at_members"].sel(minimum=row))
    assert value == 0 and low == 0 and high == pytest.approx(min(1.0, bound), rel=1e-9)
