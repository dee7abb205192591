"""The LJ7 test landscapes: in 2-D its published minima, the derived saddle table, alignment and
the structure identity rule; in 3-D its published minima and alignment; each checked
independently of the connection code."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from basins.engine.curvature import dense_hessians, make_hvp
from basins.engine.dynamics import energy_and_gradient
from basins.landscapes import lennard_jones as lj


def gradient_and_hessian(points):
    points = torch.as_tensor(points, dtype=torch.float64)
    _, grad = energy_and_gradient(lj.energy, points)
    return grad.numpy(), dense_hessians(make_hvp(lj.energy), points).numpy()


def quench(x):
    def value_and_grad(y):
        value, grad = energy_and_gradient(lj.energy, torch.as_tensor(y[None]))
        return value.item(), grad[0].numpy()

    return minimize(value_and_grad, x, jac=True, method="L-BFGS-B", options=dict(gtol=1e-10, ftol=1e-15)).fun


def random_copy(x, seed):
    """The same configuration, atoms permuted, rotated, reflected and shifted."""
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([1, -1])
    atoms = x.reshape(lj.N_ATOMS, 2)[rng.permutation(lj.N_ATOMS)] @ rotation.T + rng.normal(size=2)
    return atoms.ravel()


def test_a_dimer_at_the_pair_minimum_has_energy_minus_one():
    r = 2 ** (1 / 6)
    far = 1e6 * np.arange(1, 6)  # five atoms far away: no interaction
    points = np.r_[0.0, 0.0, r, 0.0, np.c_[far, np.zeros(5)].ravel()][None]
    assert lj.energy(torch.as_tensor(points)).item() == pytest.approx(-1.0, abs=1e-12)


def test_the_minima_are_the_published_ones():
    energy = lj.energy(torch.as_tensor(lj.MINIMA)).numpy()
    np.testing.assert_allclose(energy, lj.MINIMUM_ENERGY, atol=1e-7)
    np.testing.assert_array_equal(np.round(energy, 2), lj.PUBLISHED_MINIMUM_ENERGY)
    grad, hessian = gradient_and_hessian(lj.MINIMA)
    assert np.abs(grad).max() < 1e-6
    for eigenvalues in np.linalg.eigvalsh(hessian):
        # three zero modes (two translations, one rotation), eleven positive curvatures
        assert np.abs(eigenvalues[:3]).max() < 1e-5 and eigenvalues[3] > 1.0


def test_the_reference_saddles_are_index_one_and_join_the_stated_structures():
    energy = lj.energy(torch.as_tensor(lj.REFERENCE_SADDLES)).numpy()
    np.testing.assert_allclose(energy, lj.REFERENCE_SADDLE_ENERGY, atol=1e-7)
    grad, hessian = gradient_and_hessian(lj.REFERENCE_SADDLES)
    assert np.abs(grad).max() < 1e-6
    for saddle, eigenvalues, vectors, joined in zip(
        lj.REFERENCE_SADDLES, *np.linalg.eigh(hessian), lj.REFERENCE_SADDLE_MINIMA
    ):
        assert eigenvalues[0] < -0.1 and np.abs(eigenvalues[1:4]).max() < 1e-5 and eigenvalues[4] > 1e-2
        ends = [quench(saddle + side * 1e-2 * vectors[:, 0]) for side in (1, -1)]
        reached = sorted(int(np.abs(lj.MINIMUM_ENERGY - e).argmin()) for e in ends)
        np.testing.assert_allclose(sorted(ends), lj.MINIMUM_ENERGY[reached], atol=1e-7)
        np.testing.assert_array_equal(reached, joined)


def brute_force_distance(reference, theta):
    """Smallest distance over all permutations and orthogonal maps (Procrustes per permutation)."""
    target = lj.canonicalize(reference[None])[0].reshape(lj.N_ATOMS, 2)
    moving = lj.canonicalize(theta[None])[0].reshape(lj.N_ATOMS, 2)
    best = np.inf
    for order in itertools.permutations(range(lj.N_ATOMS)):
        permuted = moving[list(order)]
        u, _, vt = np.linalg.svd(permuted.T @ target)
        best = min(best, np.linalg.norm(permuted @ (u @ vt) - target))
    return best


def test_align_undoes_a_permutation_rotation_reflection_and_shift():
    for k, minimum in enumerate(lj.MINIMA):
        aligned = lj.align(minimum, random_copy(minimum, seed=k))
        np.testing.assert_allclose(aligned, minimum, atol=1e-8)


@pytest.mark.parametrize("first, second", [(0, 1), (1, 2), (2, 3)])
def test_align_finds_the_brute_force_optimum_between_different_structures(first, second):
    reference, theta = lj.MINIMA[first], random_copy(lj.MINIMA[second], seed=first)
    distance = np.linalg.norm(lj.align(reference, theta) - reference)
    assert distance == pytest.approx(brute_force_distance(reference, theta), abs=1e-8)


def test_structures_are_recognised_in_any_copy_and_unknown_ones_are_not():
    copies = np.array([random_copy(m, seed=10 + k) for k, m in enumerate(lj.MINIMA)])[::-1]
    labels = lj.assign_to_structures(copies, lj.MINIMUM_ENERGY[::-1], lj.MINIMA, lj.MINIMUM_ENERGY)
    np.testing.assert_array_equal(labels, [3, 2, 1, 0])
    # C2 against a catalog of C0, C1, C3 only: none.
    np.testing.assert_array_equal(
        lj.assign_to_structures(lj.MINIMA[2:3], lj.MINIMUM_ENERGY[2:3], lj.MINIMA[[0, 1, 3]], lj.MINIMUM_ENERGY[[0, 1, 3]]),
        [-1],
    )


def random_copy_3d(x, seed):
    """The same configuration in space, atoms permuted, rotated, reflected and shifted."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    atoms = x.reshape(lj.N_ATOMS, 3)[rng.permutation(lj.N_ATOMS)] @ (rotation @ np.diag([1, 1, -1])).T
    return (atoms + rng.normal(size=3)).ravel()


def test_in_three_dimensions_the_minima_are_the_published_ones():
    energy = lj.energy_3d(torch.as_tensor(lj.MINIMA_3D)).numpy()
    np.testing.assert_allclose(energy, lj.MINIMUM_ENERGY_3D, atol=1e-7)
    np.testing.assert_allclose(energy, lj.PUBLISHED_MINIMUM_ENERGY_3D, atol=6e-6)  # published to 5-6 decimals
    points = torch.as_tensor(lj.MINIMA_3D)
    _, grad = energy_and_gradient(lj.energy_3d, points)
    assert grad.abs().max() < 1e-6
    for eigenvalues in np.linalg.eigvalsh(dense_hessians(make_hvp(lj.energy_3d), points).numpy()):
        # six zero modes (three translations, three rotations), fifteen positive curvatures
        assert np.abs(eigenvalues[:6]).max() < 1e-5 and eigenvalues[6] > 0.5


def test_in_three_dimensions_align_undoes_a_copy_and_finds_the_brute_force_optimum():
    for k, minimum in enumerate(lj.MINIMA_3D):
        np.testing.assert_allclose(lj.align_3d(minimum, random_copy_3d(minimum, seed=k)), minimum, atol=1e-8)
    reference, theta = lj.MINIMA_3D[0], random_copy_3d(lj.MINIMA_3D[1], seed=7)
    target = lj.canonicalize(reference[None], 3)[0].reshape(lj.N_ATOMS, 3)
    moving = lj.canonicalize(theta[None], 3)[0].reshape(lj.N_ATOMS, 3)
    brute_force = np.inf
    for order in itertools.permutations(range(lj.N_ATOMS)):
        permuted = moving[list(order)]
        u, _, vt = np.linalg.svd(permuted.T @ target)
        brute_force = min(brute_force, np.linalg.norm(permuted @ (u @ vt) - target))
    assert np.linalg.norm(lj.align_3d(reference, theta) - reference) == pytest.approx(brute_force, abs=1e-8)
    labels = lj.assign_to_structures(np.array([random_copy_3d(m, seed=20 + k) for k, m in enumerate(lj.MINIMA_3D)]),
                                     lj.MINIMUM_ENERGY_3D, lj.MINIMA_3D, lj.MINIMUM_ENERGY_3D, dimension=3)
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])
