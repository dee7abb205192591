import numpy as np
import pytest
import xarray as xr
from PIL import Image

from basins import figures
from basins.protocols import compare_protocols

SIGMAS = np.array([0.0, 0.05, 0.1, 0.5])


def catalog(n_members_per_minimum, test_error, theta, n_members_total):
    """A minima catalog as deduplicate_minima writes it (the variables compare_protocols reads)."""
    counts = np.asarray(n_members_per_minimum)
    return xr.Dataset(
        {
            "n_members": ("minimum", counts),
            "test_error": ("minimum", np.asarray(test_error, dtype=float)),
            "train_error": ("minimum", np.zeros(len(counts))),
            "theta": (("minimum", "param"), np.asarray(theta, dtype=float)),
            "minimum_of_member": ("member", np.repeat(np.arange(len(counts)), counts).tolist()
                                  + [-1] * (n_members_total - counts.sum())),
        }
    )


def flatness(local_energy, se, top=None, sigmas=SIGMAS):
    local_energy = np.asarray(local_energy, dtype=float)
    return xr.Dataset(
        {
            "local_energy": (("minimum", "sigma"), local_energy),
            "perturbed_error_se": (("minimum", "sigma"), np.full(local_energy.shape, se)),
            "top_eigenvalue": (("minimum", "eigen"), np.ones((len(local_energy), 1)) if top is None else top),
        },
        coords={"sigma": sigmas},
    )


@pytest.fixture
def two_protocols():
    flat = [[0.0, 0.0, 0.01, 0.1], [0.0, 0.01, 0.02, 0.2]]
    sharp = [[0.0, 0.1, 0.2, 0.4], [0.0, 0.1, 0.3, 0.5]]
    return (
        ["flat", "sharp"],
        [
            catalog([3, 1], [0.1, 0.2], [[3.0, 4.0], [0.0, 1.0]], 5),
            catalog([2, 2], [0.3, 0.4], [[1.0, 0.0], [0.0, 1.0]], 4),
        ],
        [flatness(flat, 0.01), flatness(sharp, 0.0)],
    )


def test_averages_weight_each_minimum_by_its_basin(two_protocols):
    result = compare_protocols(*two_protocols, reference_sigma=0.1)
    weights = np.array([0.75, 0.25])
    expected = weights @ np.array([[0.0, 0.0, 0.01, 0.1], [0.0, 0.01, 0.02, 0.2]])
    np.testing.assert_allclose(result["local_energy"].sel(experiment="flat"), expected)
    np.testing.assert_allclose(result["local_energy"].sel(experiment="sharp"), [0.0, 0.1, 0.25, 0.45])
    np.testing.assert_allclose(result["test_error"], [0.125, 0.35])
    np.testing.assert_allclose(result["weight_norm"], [0.75 * 5 + 0.25 * 1, 1.0])
    np.testing.assert_allclose(result["assigned_fraction"], [0.8, 1.0])
    # no perturbation noise and minima that agree: nothing left to be uncertain about
    np.testing.assert_allclose(result["local_energy_se"].sel(experiment="sharp", sigma=[0.0, 0.05]), 0.0)
    # draw noise of the two minima plus the sampling of minima by the 4 assigned members
    spread = weights @ (np.array([0.01, 0.02]) - 0.0125) ** 2 / 4
    draws = weights @ weights * 0.01**2
    assert float(result["local_energy_se"].sel(experiment="flat", sigma=0.1)) == pytest.approx(np.sqrt(spread + draws))
    assert result.attrs["reference_sigma"] == 0.1


def test_minima_are_pooled_across_protocols_at_the_reference_sigma(two_protocols):
    result = compare_protocols(*two_protocols, reference_sigma=0.1)
    np.testing.assert_array_equal(result["protocol"], [0, 0, 1, 1])
    np.testing.assert_allclose(result["pooled_local_energy"], [0.01, 0.02, 0.2, 0.3])
    np.testing.assert_allclose(result["pooled_basin_fraction"], [0.6, 0.2, 0.5, 0.5])
    # local energy and test error rise together: the rank correlation is +1
    assert float(result["rank_correlation"]) == pytest.approx(1.0)


def test_a_protocol_without_minima_gives_nan_not_an_error(two_protocols):
    names, catalogs, measured = two_protocols
    empty = catalog(np.zeros(0, dtype=int), [], np.zeros((0, 2)), 4)
    result = compare_protocols(names, [catalogs[0], empty], [measured[0], flatness(np.zeros((0, 4)), 0.0,
                                                                                   top=np.zeros((0, 1)))],
                               reference_sigma=0.1)
    assert np.isnan(result["local_energy"].sel(experiment="sharp")).all()
    assert float(result["assigned_fraction"].sel(experiment="sharp")) == 0.0


def test_protocols_must_share_the_sigma_grid_and_name_a_sigma_on_it(two_protocols):
    names, catalogs, measured = two_protocols
    with pytest.raises(ValueError, match="reference_sigma=0.3 is not on"):
        compare_protocols(names, catalogs, measured, reference_sigma=0.3)
    other_grid = flatness([[0.0, 0.1, 0.2, 0.4], [0.0, 0.1, 0.3, 0.5]], 0.0, sigmas=SIGMAS * 2)
    with pytest.raises(ValueError, match="compared on one grid"):
        compare_protocols(names, catalogs, [measured[0], other_grid], reference_sigma=0.1)


def test_the_protocol_figure_renders(two_protocols, tmp_path):
    result = compare_protocols(*two_protocols, reference_sigma=0.1)
    figures.save_figure(figures.figure_protocols(result, title="test"), tmp_path / "a.pdf", tmp_path / "a.png")
    width, height = Image.open(tmp_path / "a.png").size
    assert width > 300 and height > 200


def test_the_runs_of_one_start_are_one_cluster_in_the_errors():
    # 6 starts reaching minima 0 0 0 1 1 2; a noisy dynamics ran each start 3 times and, here,
    # every draw reached the start's minimum: the same information as one run per start.
    labels = np.array([0, 0, 0, 1, 1, 2])
    energy = [[0.0, 0.0, 0.01, 0.1], [0.0, 0.02, 0.05, 0.3], [0.0, 0.03, 0.2, 0.6]]
    measured = flatness(energy, 0.0)

    def catalog_of(members):
        counts = np.bincount(members, minlength=3)
        one = catalog(counts, [0.1, 0.2, 0.4], np.eye(3), len(members))
        return one.assign(minimum_of_member=("member", members))

    once = compare_protocols(["once"], [catalog_of(labels)], [measured], reference_sigma=0.1)
    thrice = compare_protocols(["thrice"], [catalog_of(np.tile(labels, 3))], [measured], reference_sigma=0.1,
                               n_starts=[6])
    for name in ("local_energy", "local_energy_se", "test_error", "test_error_se"):
        np.testing.assert_allclose(thrice[name].values, once[name].values, err_msg=name)
    # by hand, one run per start: the spread over starts divided by their number
    errors = np.array([0.1, 0.1, 0.1, 0.2, 0.2, 0.4])
    assert float(once["test_error_se"][0]) == pytest.approx(np.sqrt(((errors - errors.mean()) ** 2).sum()) / 6)
    # counted as 18 independent runs, the error would be sqrt(3) times smaller
    independent = compare_protocols(["18"], [catalog_of(np.tile(labels, 3))], [measured], reference_sigma=0.1)
    assert float(independent["test_error_se"][0]) == pytest.approx(float(once["test_error_se"][0]) / np.sqrt(3))
