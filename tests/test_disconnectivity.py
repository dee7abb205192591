import numpy as np
import pytest

from basins.disconnectivity import escape_barriers, funnel_fraction, superbasins, tree_segments

# Five minima; transition states (1, 2) at 2.5, (0, 3) at 3.5, (4, 2) at 4 and (0, 1) at 5.
ENERGY = np.array([0.0, 1.0, 2.0, 1.5, 3.0])
EDGES = np.array([[0, 1], [1, 2], [0, 3], [4, 2]])
EDGE_ENERGY = np.array([5.0, 2.5, 3.5, 4.0])
LEVELS = np.array([0.5, 1.75, 3.0, 4.5, 5.5])


def test_superbasins_of_a_hand_made_landscape_are_exactly_the_expected_tree():
    expected = [
        [0, -1, -1, -1, -1],  # only the global minimum lies below 0.5
        [0, 1, -1, 3, -1],  # three minima, no transition state yet
        [0, 1, 1, 3, -1],  # (1, 2) joins at 2.5
        [0, 1, 1, 0, 1],  # (0, 3) at 3.5 and (4, 2) at 4: two superbasins
        [0, 0, 0, 0, 0],  # (0, 1) at 5: one
    ]
    np.testing.assert_array_equal(superbasins(ENERGY, EDGES, EDGE_ENERGY, LEVELS), expected)


def test_superbasins_do_not_depend_on_the_order_of_the_edges():
    order = np.array([3, 1, 0, 2])
    np.testing.assert_array_equal(
        superbasins(ENERGY, EDGES[order, ::-1], EDGE_ENERGY[order], LEVELS),
        superbasins(ENERGY, EDGES, EDGE_ENERGY, LEVELS),
    )


def test_tree_segments_join_every_node_to_its_children():
    labels = superbasins(ENERGY, EDGES, EDGE_ENERGY, LEVELS)
    segments, x = tree_segments(ENERGY, labels, LEVELS)
    # Leaves are 0, 1, ..., with the lowest minimum's branch in the middle at the top merge.
    assert sorted(x) == [0.0, 1.0, 2.0, 3.0, 4.0]
    # Each minimum's line ends at its own energy, straight below its position.
    for minimum, energy in enumerate(ENERGY):
        assert any(np.allclose(end, (x[minimum], energy)) for end in segments[:, 1])
    # Nodes: 1 + 3 + 3 + 2 + 1 over the levels; every node but a root hangs from one segment,
    # every leaf ends one, and each root has one stub on top.
    n_nodes = 1 + 3 + 3 + 2 + 1
    assert len(segments) == (n_nodes - 1) + len(ENERGY) + 1
    assert segments[:, :, 1].max() > LEVELS[-1]
    # Minima 0 and 3 form one branch below 4.5, minima 1, 2, 4 the other: they are not interleaved.
    left, right = sorted([x[[0, 3]], x[[1, 2, 4]]], key=min)
    assert left.max() < right.min()


def test_funnel_is_the_monotonic_sequence_basin_of_the_global_minimum():
    fraction, in_funnel = funnel_fraction(ENERGY, EDGES)
    assert fraction == 1.0 and in_funnel.all()
    # 2 -> 1 -> 0 climbs before it descends: minimum 2 is outside the funnel.
    fraction, in_funnel = funnel_fraction(np.array([0.0, 2.0, 1.0]), np.array([[0, 1], [1, 2]]))
    assert fraction == pytest.approx(2 / 3)
    np.testing.assert_array_equal(in_funnel, [True, True, False])


def test_escape_barrier_is_the_lowest_way_out():
    np.testing.assert_allclose(escape_barriers(ENERGY, EDGES, EDGE_ENERGY), [3.5, 1.5, 0.5, 2.0, 1.0])
    np.testing.assert_array_equal(escape_barriers(np.zeros(2), np.zeros((0, 2)), np.zeros(0)), [np.nan, np.nan])


def test_bad_disconnectivity_input_is_refused():
    with pytest.raises(ValueError, match="ascending"):
        superbasins(ENERGY, EDGES, EDGE_ENERGY, LEVELS[::-1])
    with pytest.raises(ValueError, match="edge energies"):
        superbasins(ENERGY, EDGES, EDGE_ENERGY[:2], LEVELS)
    with pytest.raises(ValueError, match="do not exist"):
        superbasins(ENERGY, np.array([[0, 7]]), np.array([1.0]), LEVELS)
