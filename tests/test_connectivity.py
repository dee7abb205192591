import numpy as np
import pytest
import torch

from basins.connectivity import connect_minima, neighbour_pairs
from basins.engine.descent import descend
from basins.engine.dynamics import energy_and_gradient
from basins.labels import CONVERGED


def descend_on_muller_brown(mb):
    """Steepest descent (FIRE) from each point."""

    def descend_from(points):
        out = descend(
            lambda theta, batch: energy_and_gradient(mb, theta), points, np.arange(len(points)),
            dynamics="fire", lr=1e-3, max_steps=20_000, grad_tol=1e-4, device=torch.device("cpu"),
            dtype=torch.float64, chunk=64, run_id=("muller_brown",),
        )
        endpoints = out["final_theta"]
        return endpoints, mb(torch.as_tensor(endpoints)).numpy(), out["status"] == CONVERGED

    return descend_from


def assign_within(radius):
    def assign(endpoints, energies, minima, minimum_energy):
        if not len(minima):
            return np.full(len(endpoints), -1)
        distance = np.linalg.norm(endpoints[:, None] - minima[None], axis=2)
        return np.where(distance.min(1) < radius, distance.argmin(1), -1)

    return assign


def connect_muller_brown(mb, catalogued, **options):
    return connect_minima(
        mb.minima[catalogued], mb.minimum_energy[catalogued], mb, align=lambda reference, theta: theta,
        descend_from=descend_on_muller_brown(mb), assign=assign_within(1e-3), n_images=12, spring=100.0, band_dynamics="fire",
        band_lr=1e-3, band_max_steps=20_000, band_force_tol=1e-3, band_climb_tol=1.0, ts_grad_tol=1e-8, **options,
    )


@pytest.fixture
def muller_brown_graph(muller_brown):
    return connect_muller_brown(muller_brown, [0, 1, 2], n_neighbors=2, n_levels=20)


def test_connect_minima_finds_the_saddles_and_the_minima_they_join(muller_brown_graph, muller_brown):
    graph, mb = muller_brown_graph, muller_brown
    np.testing.assert_array_equal(graph["minimum_pair"], [[0, 1], [0, 2], [1, 2]])
    assert graph["is_edge"].all()
    # The band 0 -> 1 passes minimum 2; its highest saddle joins 0 and 2.
    joined = [set(row) for row in graph["connected_minimum"].values]
    assert joined == [{0, 2}, {0, 2}, {1, 2}]
    np.testing.assert_allclose(graph["ts_energy"], mb.saddle_energy[[0, 0, 1]], atol=1e-6)
    np.testing.assert_array_equal(graph["n_band_maxima"], [2, 1, 1])
    np.testing.assert_array_equal(graph["ts_index"], [1, 1, 1])
    barrier = graph["barrier"].values
    expected = graph["ts_energy"].values[:, None] - mb.minimum_energy[graph["connected_minimum"].values]
    np.testing.assert_allclose(barrier, expected)


def test_muller_brown_funnel_and_disconnectivity(muller_brown_graph):
    graph = muller_brown_graph
    # Minimum 1 (-108.2) reaches the global minimum only over the higher minimum 2 (-80.8).
    np.testing.assert_array_equal(graph["in_funnel"], [True, False, True])
    assert graph.attrs["funnel_fraction"] == pytest.approx(2 / 3)
    top = graph["superbasin"].isel(level=-1).values
    np.testing.assert_array_equal(top, [0, 0, 0])
    assert graph.attrs["n_top_components"] == 1
    # Between the two saddles (-72.2 and -40.7), minima 1 and 2 form one superbasin, 0 another.
    between = graph["superbasin"].sel(level=-60.0, method="nearest").values
    np.testing.assert_array_equal(between, [0, 1, 1])


def test_neighbour_pairs_take_the_nearest_in_the_aligned_distance_and_stay_connected():
    # Two clusters far apart: two nearest neighbours stay in the clusters, the spanning tree
    # adds one bridge.
    points = np.array([[0.0, 0], [1, 0], [0, 1], [10, 0], [11, 0], [10, 1]])
    pairs, distance = neighbour_pairs(points, 2, align=lambda reference, theta: theta)
    within = {(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)}
    assert within <= {tuple(p) for p in pairs}
    assert len(pairs) == len(within) + 1
    np.testing.assert_allclose(distance, np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1))
    # A "symmetry" shifting the far cluster onto the near one: the bridge is measured aligned.
    flip = lambda reference, theta: theta - [10, 0] if theta[0] >= 10 and reference[0] < 10 else theta  # noqa: E731
    pairs, distance = neighbour_pairs(points, 1, align=flip)
    assert np.all(distance <= 1.0)


def test_minima_missing_from_the_catalog_are_found_from_the_saddles(muller_brown):
    # Only the two deep minima are catalogued; the band between them finds the third.
    graph = connect_muller_brown(muller_brown, [0, 1], n_neighbors=1)
    np.testing.assert_array_equal(graph["found_by_descent"], [False, False, True])
    np.testing.assert_allclose(graph["theta"][2], muller_brown.minima[2], atol=1e-3)
    assert set(graph["connected_minimum"].values[0]) == {0, 2}
    assert graph.attrs["n_edges"] == 1


def test_a_single_minimum_is_its_own_funnel(muller_brown):
    graph = connect_minima(
        muller_brown.minima[:1], muller_brown.minimum_energy[:1], muller_brown, align=lambda r, t: t,
        descend_from=lambda points: pytest.fail("nothing to descend from"), assign=None,
    )
    assert graph.sizes["pair"] == 0 and graph.attrs["n_edges"] == 0
    assert graph.attrs["funnel_fraction"] == 1.0
    np.testing.assert_array_equal(graph["superbasin"].isel(level=-1), [0])


def test_networks_too_large_for_dense_hessians_are_refused(muller_brown):
    with pytest.raises(ValueError, match="max_dense_params"):
        connect_minima(
            muller_brown.minima, muller_brown.minimum_energy, muller_brown, align=lambda r, t: t,
            descend_from=None, assign=None, max_dense_params=1,
        )


def test_a_band_without_a_barrier_joins_its_minima_at_the_higher_energy():
    def tilted_valley(points):  # a slope along x inside a valley along y: no barrier anywhere
        return 0.1 * points[:, 0] + points[:, 1] ** 2

    ends = np.array([[0.0, 0.0], [1.0, 0.0]])
    graph = connect_minima(
        ends, np.array([0.0, 0.1]), tilted_valley, align=lambda r, t: t,
        descend_from=lambda points: (points, tilted_valley(torch.as_tensor(points)).numpy(), np.zeros(len(points), bool)),
        assign=None, n_images=4, band_force_tol=1e-6, n_levels=5,
    )
    assert graph["is_barrierless"].all() and not graph["is_edge"].any()
    np.testing.assert_array_equal(graph["superbasin"].isel(level=-1), [0, 0])
    np.testing.assert_array_equal(graph["escape_barrier"], [0.1, 0.0])
