import functools

import numpy as np
import pytest
import torch

from basins.connectivity import connect_minima, neighbour_pairs
from basins.engine.descent import descend
from basins.io import add_provenance, check_dataset
from basins.engine.dynamics import energy_and_gradient
from basins.landscapes import lennard_jones
from basins.labels import (
    BAND_DIVERGED,
    BAND_ENDS_MERGED,
    BAND_TRANSITION_STATES,
    BAND_UNRESOLVED,
    CONVERGED,
    DIVERGED,
    PAIR_CONNECTED,
    PAIR_MERGED,
    PAIR_UNCONNECTED,
)


def descend_on(potential, lr=1e-3, grad_tol=1e-4, dynamics="fire"):
    """Descent (FIRE, or another dynamics) from each point."""

    def descend_from(points, tolerance=None):
        out = descend(
            lambda theta, batch: energy_and_gradient(potential, theta), points, np.arange(len(points)),
            dynamics=dynamics, lr=lr, max_steps=20_000, grad_tol=tolerance or grad_tol, device=torch.device("cpu"),
            dtype=torch.float64, chunk=64, run_id=("test_connectivity",), progress_every_s=1e9,
        )
        endpoints = out.final_theta
        kicked = np.zeros(len(points), dtype=bool)  # no saddle escapes in these descents
        return endpoints, potential(torch.as_tensor(endpoints)).numpy(), out.status == CONVERGED, kicked

    return descend_from


def assign_within(radius):
    def assign(endpoints, energies, minima, minimum_energy):
        if not len(minima):
            return np.full(len(endpoints), -1)
        distance = np.linalg.norm(endpoints[:, None] - minima[None], axis=2)
        return np.where(distance.min(1) < radius, distance.argmin(1), -1)

    return assign


def connect_muller_brown(mb, catalogued, n_images=12, band_max_steps=20_000, **options):
    return connect_minima(
        mb.minima[catalogued], mb.minimum_energy[catalogued], mb, align=lambda reference, theta: theta,
        descend_from=descend_on(mb), assign=assign_within(1e-3), spring=100.0, band_dynamics="fire",
        band_lr=1e-3, band_max_steps=band_max_steps, band_force_tol=1e-3, band_climb_tol=1.0, ts_grad_tol=1e-8, n_images=n_images,
        **options,
    )


@pytest.fixture
def muller_brown_graph(muller_brown):
    return connect_muller_brown(muller_brown, [0, 1, 2], n_neighbors=2, n_levels=20)


def edge_table(graph):
    """``{(minimum, minimum): transition state energy}`` of the graph's edges."""
    edges = graph["connected_minimum"].values[graph["is_edge"].values]
    return {tuple(sorted(e)): energy for e, energy in zip(edges.tolist(), graph["ts_energy"].values[graph["is_edge"].values])}


def test_connect_minima_finds_the_saddles_and_the_minima_they_join(muller_brown_graph, muller_brown):
    graph, mb = muller_brown_graph, muller_brown
    np.testing.assert_array_equal(graph["minimum_pair"], [[0, 1], [0, 2], [1, 2]])
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_CONNECTED] * 3)
    # Every maximum of every band is refined: the band 0 -> 1 passes minimum 2 and shows both
    # saddles; the other two bands find them again (duplicates, not edges).
    np.testing.assert_array_equal(graph["n_band_maxima"], [2, 1, 1])
    np.testing.assert_array_equal(graph["band_outcome"], [BAND_TRANSITION_STATES] * 3)
    np.testing.assert_array_equal(graph["ts_index"], [1, 1, 1, 1])
    table = edge_table(graph)
    assert table.keys() == {(0, 2), (1, 2)}
    np.testing.assert_allclose([table[0, 2], table[1, 2]], mb.saddle_energy, atol=1e-6)
    assert graph.attrs["n_edges"] == 2 and (graph["ts_duplicate_of"] >= 0).sum() == 2
    assert graph.attrs["n_refused_not_minima"] == 0 and graph.attrs["n_displacement_sensitive_edges"] == 0
    assert graph.attrs["n_unchecked_edges"] == 0
    np.testing.assert_array_equal(graph["connected_minimum_checked"].values[graph["is_edge"].values],
                                  graph["connected_minimum"].values[graph["is_edge"].values])
    barrier = graph["barrier"].values
    expected = graph["ts_energy"].values[:, None] - mb.minimum_energy[graph["connected_minimum"].values]
    np.testing.assert_allclose(barrier, expected)
    # The result keeps the NetCDF contract: dim vocabulary, coordinates, names and units.
    check_dataset(add_provenance(graph, title="Mueller-Brown", stage="connect_minima", stage_config={}))
    # The band's first end's side comes first: on the band 0 -> 1 the saddle near 0 first.
    np.testing.assert_array_equal(graph["connected_minimum"].values[graph["ts_band"].values == 0], [[0, 2], [2, 1]])


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
    np.testing.assert_array_equal(graph["catalog_index"], [0, 1, -1])
    np.testing.assert_allclose(graph["theta"][2], muller_brown.minima[2], atol=1e-3)
    assert edge_table(graph).keys() == {(0, 2), (1, 2)}
    assert graph.attrs["n_edges"] == 2


def test_the_gaps_a_band_leaves_are_connected_by_bands_of_their_own(muller_brown):
    # Two images resolve only the saddle 0-2 on the path 0 -> 2 -> 1; the gap 2 -> 1 it leaves
    # gets a band of its own, which finds the second saddle.
    # (A band of two images settles slowly; its maximum is near enough the saddle long before.)
    graph = connect_muller_brown(muller_brown, [0, 1], n_neighbors=1, n_images=2, band_max_steps=2000)
    np.testing.assert_array_equal(graph["band_end_minimum"], [[0, 1], [2, 1]])
    np.testing.assert_array_equal(graph["n_band_maxima"], [1, 1])
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_CONNECTED])
    np.testing.assert_array_equal(graph["pair_n_bands"], [2])
    table = edge_table(graph)
    np.testing.assert_allclose([table[0, 2], table[1, 2]], muller_brown.saddle_energy, atol=1e-6)


def test_a_spent_budget_leaves_the_pair_unconnected_and_says_so(muller_brown):
    graph = connect_muller_brown(muller_brown, [0, 1], n_neighbors=1, n_images=2, max_bands_per_pair=1,
                                 band_max_steps=2000)
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_UNCONNECTED])
    np.testing.assert_array_equal(graph["pair_budget_spent"], [True])
    assert graph.attrs["n_unconnected"] == 1 and graph.attrs["n_edges"] == 1
    # The one saddle found still counts: minima 0 and 2 are one superbasin at the top, 1 apart.
    np.testing.assert_array_equal(graph["superbasin"].isel(level=-1), [0, 1, 0])


def test_a_single_minimum_is_its_own_funnel(muller_brown):
    graph = connect_minima(
        muller_brown.minima[:1], muller_brown.minimum_energy[:1], muller_brown, align=lambda r, t: t,
        descend_from=lambda points, tolerance: pytest.fail("nothing to descend from"), assign=None,
    )
    assert graph.sizes["pair"] == 0 and graph.sizes["transition_state"] == 0 and graph.attrs["n_edges"] == 0
    assert graph.attrs["funnel_fraction"] == 1.0
    np.testing.assert_array_equal(graph["superbasin"].isel(level=-1), [0])


def test_networks_too_large_for_dense_hessians_and_bad_budgets_are_refused(muller_brown):
    with pytest.raises(ValueError, match="max_dense_params"):
        connect_minima(
            muller_brown.minima, muller_brown.minimum_energy, muller_brown, align=lambda r, t: t,
            descend_from=None, assign=None, max_dense_params=1,
        )
    with pytest.raises(ValueError, match="max_bands_per_pair"):
        connect_minima(
            muller_brown.minima, muller_brown.minimum_energy, muller_brown, align=lambda r, t: t,
            descend_from=None, assign=None, max_bands_per_pair=0,
        )


def shallow_valley(points):
    """A valley along x whose floor rises gently from its one minimum at the origin."""
    return 0.05 * points[:, 0] ** 2 + points[:, 1] ** 2


def test_a_band_without_a_barrier_is_no_edge_and_merges_ends_that_are_one_minimum():
    # (1, 0) is no minimum: a descent stopped early on the valley floor would leave it there.
    ends = np.array([[0.0, 0.0], [1.0, 0.0]])
    graph = connect_minima(
        ends, shallow_valley(torch.as_tensor(ends)).numpy(), shallow_valley, align=lambda r, t: t,
        descend_from=descend_on(shallow_valley, lr=0.05, grad_tol=1e-6), assign=assign_within(1e-2),
        n_images=4, band_force_tol=1e-6, n_levels=5,
    )
    np.testing.assert_array_equal(graph["band_outcome"], [BAND_ENDS_MERGED])
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_MERGED])
    # The image next to (1, 0) lies below it, so that end segment is searched, but the valley
    # has no saddle: what it refines is no edge.
    np.testing.assert_array_equal(graph["ts_from_end_segment"], [True])
    assert not graph["is_edge"].any() and graph.attrs["n_edges"] == 0
    assert graph["ts_index"].values[0] != 1 or not graph["ts_converged"].values[0]
    # One minimum is left; the catalog's second entry is recorded as merged into it.
    np.testing.assert_array_equal(graph["catalog_index"], [0])
    np.testing.assert_array_equal(graph["merged_catalog_index"], [1])
    np.testing.assert_array_equal(graph["merged_into"], [0])
    np.testing.assert_array_equal(graph["merged_band"], [0])
    assert graph.attrs["n_merged"] == 1
    np.testing.assert_array_equal(graph["superbasin"].isel(level=-1), [0])


def narrow_well(points):
    """A slope 0.3 x^2 with a narrow well (width 0.03) near x = 1: a true minimum at x = 0.9946,
    0.056 below the barrier at x = 0.932 that separates it from the origin."""
    x, y = points[:, 0], points[:, 1]
    return 0.3 * x**2 - 0.1 * torch.exp(-((x - 1) ** 2) / (2 * 0.03**2)) + y**2


def connect_narrow_well(max_image_doublings, **options):
    ends = descend_on(narrow_well, lr=1e-3, grad_tol=1e-8)(np.array([[0.1, 0.0], [1.0, 0.0]]))[0]
    return connect_minima(
        ends, narrow_well(torch.as_tensor(ends)).numpy(), narrow_well, align=lambda r, t: t,
        descend_from=descend_on(narrow_well, lr=1e-3, grad_tol=1e-6), assign=assign_within(1e-3),
        n_images=2, max_image_doublings=max_image_doublings, spring=10.0, band_dynamics="fire", band_lr=1e-3,
        band_force_tol=1e-4, band_climb_tol=1e-2, ts_grad_tol=1e-9, n_levels=5, **options,
    )


def assert_narrow_well_saddle(graph):
    """The one edge is the known saddle at x = 0.932, 0.056 above the narrow well's minimum."""
    assert graph.attrs["n_edges"] == 1
    saddle = graph["ts_theta"].values[graph["is_edge"].values]
    np.testing.assert_allclose(saddle[:, 0], 0.932, atol=2e-3)
    np.testing.assert_allclose(graph["barrier"].values[graph["is_edge"].values][0, 1], 0.056, atol=2e-3)


def test_a_barrier_inside_an_end_segment_is_found_from_the_segment():
    # The two images lie outside the narrow well's basin and the band rises monotonically, but
    # the image next to the well lies below its minimum: the segment between them holds the
    # barrier, found at once, without more images.
    graph = connect_narrow_well(max_image_doublings=0)
    np.testing.assert_array_equal(graph["n_band_maxima"], [0])
    np.testing.assert_array_equal(graph["n_band_end_peaks"], [1])
    np.testing.assert_array_equal(graph["band_outcome"], [BAND_TRANSITION_STATES])
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_CONNECTED])
    np.testing.assert_array_equal(graph["ts_from_end_segment"], [True])
    assert_narrow_well_saddle(graph)


def test_a_minimum_narrower_than_the_displacement_is_not_merged_into_its_neighbour():
    # Every descent from the band drains to the origin's minimum, the one from a displacement
    # 0.1 inside the narrow well too (its basin reaches 0.063 toward the origin); the descent
    # from the well's minimum itself stays there, so the two are not one minimum.
    graph = connect_narrow_well(max_image_doublings=0, end_segment_points=0, displacement=0.1)
    np.testing.assert_array_equal(graph["band_merge_refused"], [True])
    np.testing.assert_array_equal(graph["band_outcome"], [BAND_UNRESOLVED])
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_UNCONNECTED])
    assert graph.attrs["n_merged"] == 0 and graph.sizes["minimum"] == 2


def test_a_band_that_misses_a_narrow_barrier_is_retried_with_more_images():
    # Two images lie outside the narrow well's basin: the band rises monotonically, but the
    # descent from just inside the well stays there, so the ends are not merged. (End segments
    # not searched: with them the barrier is found at once, as above.)
    unresolved = connect_narrow_well(max_image_doublings=0, end_segment_points=0)
    np.testing.assert_array_equal(unresolved["band_outcome"], [BAND_UNRESOLVED])
    np.testing.assert_array_equal(unresolved["pair_outcome"], [PAIR_UNCONNECTED])
    assert unresolved.attrs["n_merged"] == 0 and unresolved.attrs["n_edges"] == 0
    # The image doublings, not the bands, ran out, and the result says so.
    np.testing.assert_array_equal(unresolved["pair_budget_spent"], [False])
    np.testing.assert_array_equal(unresolved["pair_images_spent"], [True])
    # With doublings allowed, the bands grow until an image falls in the well's basin and the
    # barrier becomes a maximum, refined to the saddle between the two minima.
    resolved = connect_narrow_well(max_image_doublings=4, end_segment_points=0)
    assert (resolved["band_outcome"].values[:-1] == BAND_UNRESOLVED).all()
    assert resolved["band_outcome"].values[-1] == BAND_TRANSITION_STATES
    np.testing.assert_array_equal(resolved["band_n_images"][1:], 2 * resolved["band_n_images"][:-1])
    np.testing.assert_array_equal(resolved["pair_outcome"], [PAIR_CONNECTED])
    np.testing.assert_array_equal(resolved["pair_images_spent"], [False])
    assert_narrow_well_saddle(resolved)


def shoulder(points):
    """One minimum, at the origin; f_x = x (x - 1)^2 >= 0 for x > 0, so (1, 0) is a flat
    inflection (a shoulder), not a minimum, and there is no saddle anywhere."""
    x, y = points[:, 0], points[:, 1]
    return x**4 / 4 - 2 * x**3 / 3 + x**2 / 2 + y**2


@pytest.mark.parametrize("shoulder_x", [1.0, 1.0009])
def test_a_catalog_entry_on_a_shoulder_gives_no_edge(shoulder_x):
    # The end segment toward the shoulder refines to a point of gradient 5e-7 and curvature
    # -1.4e-3, "index 1", whose descents name the two entries; it lies 1e-10 below the
    # shoulder, and a transition state lies above both minima it joins, so it is no edge (an
    # independent referee's case). The shoulder stays where its own descent leaves it: apart.
    ends = np.array([[0.0, 0.0], [shoulder_x, 0.0]])
    graph = connect_minima(
        ends, shoulder(torch.as_tensor(ends)).numpy(), shoulder, align=lambda r, t: t,
        descend_from=descend_on(shoulder, lr=0.05, grad_tol=1e-6), assign=assign_within(1e-2),
        n_images=4, band_force_tol=1e-6, n_levels=5,
    )
    assert graph.attrs["n_edges"] == 0 and graph.attrs["n_merged"] == 0
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_UNCONNECTED])


def test_one_saddle_found_twice_is_one_edge_whatever_minima_its_descents_named():
    from basins.connectivity import _duplicate_transition_states

    # Saddles 0 and 1 are one point up to the symmetry x -> -x, named to other minima (a kick off
    # a higher saddle on the way down); saddle 2 has their energy but lies elsewhere; saddle 3
    # repeats saddle 2's minima at its energy.
    theta = np.array([[1.0, 2.0], [-1.0, -2.0], [5.0, 0.0], [5.0, 1e-3]])
    energy = np.array([0.3, 0.3, 0.3, 0.3])
    connected = np.array([[0, 3], [2, 3], [1, 4], [4, 1]])

    def same_point(reference, other):
        nearest = min((other, -other), key=lambda image: np.linalg.norm(image - reference))
        return np.linalg.norm(nearest - reference) <= 1e-2

    np.testing.assert_array_equal(
        _duplicate_transition_states(connected, energy, np.ones(4, bool), theta, same_point), [-1, 0, -1, 2])


def tilted_washboard(points, depth=1e-4, period=40.0):
    """Minima near x = k period, saddles near (k + 1/2) period, each step down by depth / 2: a
    landscape as flat as a network's near its saddles (curvature at the saddle -2.5e-6)."""
    x, y = points[:, 0], points[:, 1]
    return depth * (1 - torch.cos(2 * np.pi * x / period) - 0.5 * x / period + y**2 / period**2)


def connect_washboard(ts_grad_tol):
    """The washboard's two minima near 0.5 and 40.5, connected with descents stopped at 1e-5."""
    descend_from = descend_on(tilted_washboard, lr=1.0, grad_tol=1e-12, dynamics="gradient_flow")
    ends = descend_from(np.array([[0.0, 0.0], [40.0, 0.0]]))[0]
    return connect_minima(
        ends, tilted_washboard(torch.as_tensor(ends)).numpy(), tilted_washboard, align=lambda r, t: t,
        descend_from=descend_on(tilted_washboard, lr=1.0, grad_tol=1e-5, dynamics="gradient_flow"),
        assign=assign_within(0.04), descent_grad_tol=1e-5, n_images=8, band_dynamics="fire", band_lr=0.4,
        band_force_tol=2.5e-9, band_climb_tol=2.5e-8, ts_grad_tol=ts_grad_tol, spring=6e-7, trust_radius=4.0,
        n_levels=5,
    )


def test_descents_from_a_flat_saddle_reach_the_minima_it_joins():
    # The true graph: one saddle near x = 19.5 joins the minima near 0.5 and 40.5. The gradient
    # a displacement of 0.01 from that saddle is ~2.5e-8, far below the descents' tolerance 1e-5;
    # moving further out instead (40 units, as the stage once did) lands beyond both minima.
    graph = connect_washboard(ts_grad_tol=2.5e-12)
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_CONNECTED])
    assert graph.attrs["n_edges"] == 1 and graph.sizes["minimum"] == 2 and graph.attrs["funnel_fraction"] == 1
    edge = graph["is_edge"].values
    np.testing.assert_allclose(graph["ts_theta"].values[edge][0], [19.49, 0.0], atol=0.05)
    np.testing.assert_array_equal(np.sort(graph["connected_minimum"].values[edge][0]), [0, 1])


def descend_on_lennard_jones(points, tolerance=None):
    """FIRE to gradient norm 1e-6 (or ``tolerance``), endpoints centred."""
    endpoints, energies, converged, kicked = descend_on(lennard_jones.energy, lr=1e-2, grad_tol=1e-6)(points, tolerance)
    return lennard_jones.canonicalize(endpoints), energies, converged, kicked



def descend_on_lennard_jones_3d(points, tolerance=None):
    """FIRE to gradient norm 1e-6 (or ``tolerance``) on LJ7 in space, endpoints centred."""
    endpoints, energies, converged, kicked = descend_on(lennard_jones.energy_3d, lr=1e-2, grad_tol=1e-6)(
        points, tolerance)
    return lennard_jones.canonicalize(endpoints, 3), energies, converged, kicked


def test_lj7_in_three_dimensions_the_stage_reproduces_the_published_saddles():
    """Seven Lennard-Jones atoms in space: from a catalog of the four minima the stage joins
    them through exactly the three published transition states (IBM topography-searcher's LJ7
    example), each between the published pair of minima, energies to the five decimals given."""
    lj = lennard_jones
    graph = connect_minima(
        lj.MINIMA_3D, lj.MINIMUM_ENERGY_3D, lj.energy_3d, align=lj.align_3d, descend_from=descend_on_lennard_jones_3d,
        assign=functools.partial(lj.assign_to_structures, dimension=3), n_neighbors=2, n_images=8,
        band_dynamics="fire", band_lr=1e-2, band_max_steps=5000, band_force_tol=1e-2, band_climb_tol=0.1,
        ts_grad_tol=1e-8, trust_radius=0.05, ts_max_steps=300,
    )
    np.testing.assert_allclose(graph["energy"], lj.PUBLISHED_MINIMUM_ENERGY_3D, atol=6e-6)
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_CONNECTED] * graph.sizes["pair"])
    edges = graph["is_edge"].values
    joined = map(tuple, np.sort(graph["connected_minimum"].values[edges], axis=1))
    found = sorted(zip(graph["ts_energy"].values[edges].round(5), joined))
    published = sorted(zip(lj.PUBLISHED_SADDLE_ENERGY_3D, map(tuple, lj.PUBLISHED_SADDLE_MINIMA_3D)))
    assert [minima for _, minima in found] == [minima for _, minima in published]
    np.testing.assert_allclose([e for e, _ in found], [e for e, _ in published], atol=1e-5)
    assert graph.attrs["funnel_fraction"] == 1.0 and graph.attrs["n_displacement_sensitive_edges"] == 0

def test_an_edge_whose_descent_was_kicked_off_a_saddle_says_so(muller_brown):
    # A descent that stopped at a higher saddle and was moved off it reached its minimum by the
    # kick's choice: the transition state records it (here every descent from the first band's
    # saddles is declared kicked, the others not).
    plain = descend_on(muller_brown)
    calls = []

    def descend_from(points, tolerance=None):
        endpoints, energies, converged, _ = plain(points, tolerance)
        calls.append(len(points))
        return endpoints, energies, converged, np.full(len(points), len(calls) == 1)

    mb = muller_brown
    graph = connect_minima(
        mb.minima[[0, 1, 2]], mb.minimum_energy[[0, 1, 2]], mb, align=lambda reference, theta: theta,
        descend_from=descend_from, assign=assign_within(1e-3), spring=100.0, band_dynamics="fire", band_lr=1e-3,
        band_force_tol=1e-3, band_climb_tol=1.0, ts_grad_tol=1e-8, n_images=12, n_levels=20,
    )
    verified = (graph["ts_index"].values == 1) & graph["ts_converged"].values
    assert graph["ts_descent_kicked"].values[verified].all()  # one round: the first call named them all
    assert not graph["ts_descent_kicked"].values[~verified].any()


def test_lj7_connection_finds_the_published_minima_and_the_reference_saddles():
    """The 2-D seven-atom Lennard-Jones cluster (Dellago, Bolhuis and Chandler 1998): from a
    catalog of C0, C1 and C3, the stage finds C2 and joins all four through index-1 saddles
    of the table derived independently in :mod:`basins.landscapes.lennard_jones`."""
    lj = lennard_jones
    catalogued = [0, 1, 3]
    graph = connect_minima(
        lj.MINIMA[catalogued], lj.MINIMUM_ENERGY[catalogued], lj.energy, align=lj.align,
        descend_from=descend_on_lennard_jones, assign=lj.assign_to_structures, n_neighbors=2, n_images=8,
        band_dynamics="fire", band_lr=1e-2, band_max_steps=5000, band_force_tol=1e-2, band_climb_tol=0.1,
        ts_grad_tol=1e-8, trust_radius=0.05, ts_max_steps=300,
    )
    # Every published minimum, C2 reached by descent from a saddle.
    energy = graph["energy"].values
    np.testing.assert_array_equal(np.sort(np.round(energy, 2)), np.sort(lj.PUBLISHED_MINIMUM_ENERGY))
    structure = np.abs(energy[:, None] - lj.MINIMUM_ENERGY[None]).argmin(1)
    np.testing.assert_allclose(energy, lj.MINIMUM_ENERGY[structure], atol=1e-9)
    np.testing.assert_array_equal(structure[graph["found_by_descent"].values], [2])
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_CONNECTED] * graph.sizes["pair"])
    # Every edge is a reference saddle between the structures the table names.
    edges = graph["is_edge"].values
    assert edges.sum() >= 3 and (graph["ts_index"].values[edges] == 1).all()
    for ts_energy, joined in zip(graph["ts_energy"].values[edges], graph["connected_minimum"].values[edges]):
        match = np.flatnonzero(np.abs(lj.REFERENCE_SADDLE_ENERGY - ts_energy) < 1e-6)
        assert len(match) == 1, f"transition state at {ts_energy} is not in the reference table"
        np.testing.assert_array_equal(sorted(structure[joined]), lj.REFERENCE_SADDLE_MINIMA[match[0]])
    # The two ways out of the hexagon: C0-C1 at -11.0373 and C0-C2 at -11.0403.
    out_of_c0 = {tuple(sorted(structure[j])): e for j, e in zip(graph["connected_minimum"].values[edges],
                                                              graph["ts_energy"].values[edges]) if 0 in structure[j]}
    assert out_of_c0.keys() == {(0, 1), (0, 2)}
    np.testing.assert_allclose([out_of_c0[0, 1], out_of_c0[0, 2]], lj.REFERENCE_SADDLE_ENERGY[[1, 0]], atol=1e-6)
    # Each higher minimum descends to the hexagon through ever lower minima: one funnel.
    assert graph.attrs["funnel_fraction"] == 1.0
    # Every entry is a minimum, and no edge's minima change when its descents start closer.
    assert graph.attrs["n_refused_not_minima"] == 0 and graph.attrs["n_displacement_sensitive_edges"] == 0


def test_a_diverged_band_is_neither_refined_nor_drained_and_its_pair_stays_unconnected():
    """LJ7 bands relaxed by gradient steps too long for its repulsive cores blow the cluster
    apart. Such a band's maxima and images say nothing about the landscape: refined and drained
    they made an edge at energy ~0 and dozens of spurious "minima" (an independent referee).
    Now its ends are tried again with more images until those are spent, and the pair is
    reported unconnected: no edge, no catalogue entry but the published structures."""
    lj = lennard_jones
    graph = connect_minima(
        lj.MINIMA[[0, 1, 3]], lj.MINIMUM_ENERGY[[0, 1, 3]], lj.energy, align=lj.align,
        descend_from=descend_on_lennard_jones, assign=lj.assign_to_structures, n_neighbors=1, n_images=8,
        band_dynamics="gd", band_lr=1e-2, band_max_steps=2000, band_force_tol=1e-2, band_climb_tol=0.1,
        ts_grad_tol=1e-8, trust_radius=0.05, ts_max_steps=300,
    )
    diverged = graph["band_status"].values == DIVERGED
    assert diverged.sum() >= 3
    np.testing.assert_array_equal(graph["band_outcome"].values[diverged], BAND_DIVERGED)
    assert not np.isin(graph["ts_band"].values, np.flatnonzero(diverged)).any()
    assert not graph["is_edge"].values.any()
    np.testing.assert_array_equal(np.round(graph["energy"].values, 2), lj.PUBLISHED_MINIMUM_ENERGY[[0, 1, 3]])
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_UNCONNECTED] * graph.sizes["pair"])


def tilted_double_well(points):
    """Minima near (+-1, 0), the left one the lower, an index-1 saddle near the origin between
    them: the stationary points of 4 x (x^2 - 1) + 1/4 = 0 on y = 0."""
    x, y = points[:, 0], points[:, 1]
    return (x**2 - 1) ** 2 + x / 4 + y**2


def test_a_catalog_entry_that_is_a_saddle_is_refused_and_the_minima_it_sat_between_are_joined():
    # An independent referee's catalog: the two minima and the saddle between them. Before this
    # check the saddle entered the graph as a "minimum" that no band could join (pair
    # unconnected, funnel 2/3); its Hessian has one negative eigenvalue, so it is refused.
    stationary = np.sort(np.roots([4.0, 0.0, -4.0, 0.25]).real)
    entries = np.stack([stationary, np.zeros(3)], axis=1)
    graph = connect_minima(
        entries, tilted_double_well(torch.as_tensor(entries)).numpy(), tilted_double_well, align=lambda r, t: t,
        descend_from=descend_on(tilted_double_well, lr=0.05, grad_tol=1e-8), assign=assign_within(1e-2),
        n_images=6, band_force_tol=1e-6, ts_grad_tol=1e-10, n_levels=5,
    )
    np.testing.assert_array_equal(graph["refused_catalog_index"], [1])
    np.testing.assert_array_equal(graph["refused_morse_index"], [1])
    np.testing.assert_allclose(graph["refused_lowest_eigenvalue"], 12 * stationary[1] ** 2 - 4)
    assert graph.attrs["n_refused_not_minima"] == 1
    # The graph is the two minima, counted in the input's rows, joined over the saddle.
    np.testing.assert_array_equal(graph["catalog_index"], [0, 2])
    np.testing.assert_array_equal(graph["minimum_pair"], [[0, 2]])
    np.testing.assert_array_equal(graph["pair_outcome"], [PAIR_CONNECTED])
    assert graph.attrs["n_edges"] == 1 and graph.attrs["funnel_fraction"] == 1.0
    saddle_energy = tilted_double_well(torch.as_tensor(entries[1:2])).numpy()
    np.testing.assert_allclose(graph["ts_energy"].values[graph["is_edge"].values], saddle_energy, atol=1e-12)
    check_dataset(add_provenance(graph, title="double well", stage="connect_minima", stage_config={}))


#: Tilt of ``ridge_landscape``, found by bisection, at which the descents (GD, step 1e-2) from
#: 1e-2 along its saddle's mode cross to y > 0 and those from 1e-3 to 1e-6 stay at y < 0: the
#: smaller the displacement, the nearer the zero-displacement limit.
RIDGE_TILT = -5.75672e-4


def ridge_landscape(points, tilt=RIDGE_TILT):
    """A saddle at about the origin, its descent to x < 0 ending at a minimum near (-2, 0) and to
    x > 0 running along y = 0 into a ridge (the transverse curvature 0.02 at the saddle turns
    negative past x ~ 1), which splits it between minima near (2, +-1.7): a valley-ridge
    inflection, where which minimum a descent reaches hangs on where it starts."""
    x, y = points[:, 0], points[:, 1]
    transverse = 0.02 - 4 * (torch.sigmoid(4 * (x - 1)) - torch.sigmoid(torch.tensor(-4.0, dtype=x.dtype)))
    return x**4 / 16 - x**2 / 2 + transverse * y**2 / 2 + y**4 / 4 + 0.05 * x**2 * y + tilt * y


def test_an_edge_whose_minima_depend_on_the_descents_displacement_is_flagged():
    descend_from = descend_on(ridge_landscape, lr=1e-2, grad_tol=1e-6, dynamics="gd")
    minima = descend_from(np.array([[-2.0, 0.0], [2.0, 1.5], [2.0, -1.5]]))[0]
    energy = ridge_landscape(torch.as_tensor(minima)).numpy()

    def connect(**options):
        return connect_minima(
            minima[:2], energy[:2], ridge_landscape, align=lambda r, t: t, descend_from=descend_from,
            assign=assign_within(1e-3), n_images=8, band_lr=0.05, band_force_tol=1e-3, ts_grad_tol=1e-12, n_levels=5,
            **options)

    graph = connect()
    edge = graph["is_edge"].values
    assert graph.attrs["n_edges"] >= 1 and graph.attrs["n_displacement_sensitive_edges"] == 1
    sensitive = graph["ts_displacement_sensitive"].values
    assert (sensitive <= edge).all() and sensitive.sum() == 1
    # From the saddle between (-2, 0) and (2, 1.7) the displacement's descents name those two;
    # from 1e-4 the far one is the minimum near (2, -1.7), which the graph lacks (-2).
    k = np.flatnonzero(sensitive)[0]
    near_far = graph["connected_minimum"].values[k]
    assert sorted(graph["theta"].values[near_far, 0].round()) == [-2, 2]
    checked = graph["connected_minimum_checked"].values[k]
    assert float(graph["ts_check_displacement"][k]) == 1e-4  # refined to 1e-12 at curvature ~ -1: as configured
    assert sorted(checked.tolist()) == sorted([-2, int(np.flatnonzero(graph["theta"].values[:, 0] < 0)[0])])
    # Without the check nothing is flagged and nothing checked.
    unchecked = connect(check_displacement=0.0)
    assert unchecked.attrs["n_displacement_sensitive_edges"] == 0
    assert (unchecked["connected_minimum_checked"].values == -1).all()
    np.testing.assert_array_equal(unchecked["connected_minimum"], graph["connected_minimum"])
    # A check displacement equal to the displacement checks nothing: refused.
    with pytest.raises(ValueError, match="check_displacement"):
        connect(check_displacement=1e-2)


def test_a_saddle_is_checked_only_where_its_mode_outweighs_its_leftover_gradient():
    from types import SimpleNamespace

    from basins.connectivity import MODE_DOMINANCE, _check_displacements

    # Refined to gradient g at curvature lambda: from delta along the mode the gradient is about
    # |lambda| delta; below MODE_DOMINANCE g the leftover gradient steers both descents (on the
    # default study's moons_shallow, two saddles at g ~ 5e-7 and 9e-7 sent both check descents
    # to one minimum). The check moves out to MODE_DOMINANCE g / |lambda|, up to half the
    # displacement; beyond that the saddle is not checked.
    saddles = [{"grad_norm": 1e-12, "lowest_eigenvalue": -1.0}, {"grad_norm": 1e-7, "lowest_eigenvalue": -1e-3},
               {"grad_norm": 9e-7, "lowest_eigenvalue": -1e-3}]
    connector = SimpleNamespace(check_displacement=1e-4, displacement=1e-2)
    checkable, step = _check_displacements(saddles, connector)
    np.testing.assert_array_equal(checkable, [True, True, False])
    np.testing.assert_allclose(step, [1e-4, MODE_DOMINANCE * 1e-4, MODE_DOMINANCE * 9e-4])
    off = SimpleNamespace(check_displacement=0.0, displacement=1e-2)
    assert not _check_displacements(saddles, off)[0].any()


def test_a_flat_saddle_is_refined_on_until_its_mode_outweighs_its_leftover_gradient():
    from basins.connectivity import MODE_DOMINANCE

    # The washboard's saddle (curvature -2.5e-6) met at the refinement's tolerance 2e-8 keeps a
    # gradient of 1.2e-9, five times the mode's 1e-4 out (2.5e-10): descents from there would
    # follow the leftover gradient. Refined on, it is a saddle the check can start next to.
    graph = connect_washboard(ts_grad_tol=2e-8)
    edge = graph["is_edge"].values
    assert graph.attrs["n_edges"] == 1
    curvature, gradient = graph["ts_lowest_eigenvalue"].values[edge][0], graph["ts_grad_norm"].values[edge][0]
    assert gradient * MODE_DOMINANCE <= abs(curvature) * 1e-4
    assert float(graph["ts_check_displacement"].values[edge][0]) == 1e-4
    np.testing.assert_array_equal(graph["connected_minimum_checked"].values[edge][0],
                                  graph["connected_minimum"].values[edge][0])


def test_an_edge_whose_check_descents_did_not_converge_is_counted_unchecked_not_insensitive(muller_brown):
    # An independent referee's case (moons_p32_depth2, seed 4): both check descents spent their
    # budget, and the edge read as "not sensitive". Here the first round's check descents (the
    # second call) are declared unconverged.
    plain, calls = descend_on(muller_brown), []

    def descend_from(points, tolerance=None):
        endpoints, energies, converged, kicked = plain(points, tolerance)
        calls.append(len(points))
        return endpoints, energies, converged & (len(calls) != 2), kicked

    mb = muller_brown
    graph = connect_minima(
        mb.minima[[0, 1, 2]], mb.minimum_energy[[0, 1, 2]], mb, align=lambda reference, theta: theta,
        descend_from=descend_from, assign=assign_within(1e-3), spring=100.0, band_dynamics="fire", band_lr=1e-3,
        band_force_tol=1e-3, band_climb_tol=1.0, ts_grad_tol=1e-8, n_images=12, n_levels=20,
    )
    edge = graph["is_edge"].values
    unchecked = edge & (graph["connected_minimum_checked"].values == -1).any(1)
    assert graph.attrs["n_unchecked_edges"] == unchecked.sum() >= 1
    assert not graph["ts_displacement_sensitive"].values[unchecked].any()
