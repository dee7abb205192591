"""The seven-atom Lennard-Jones cluster (LJ7) in two and three dimensions: standard test landscapes.

Seven atoms in the plane, pair potential 4 (r^-12 - r^-6) in reduced units (epsilon = sigma =
1, no cut-off); a configuration is a point of R^14, ``(x_1, y_1, ..., x_7, y_7)``. Dellago,
Bolhuis and Chandler (1998, J. Chem. Phys. 108, 9236) give its four minima: the centred hexagon
C0 at -12.53 and three higher structures C1, C2, C3 at -11.50, -11.48 and -11.40
(:data:`PUBLISHED_MINIMUM_ENERGY`); they sample its rearrangements with transition path sampling
and locate transition states by quenches.

The energy is invariant under translations and rotations of the plane (three zero Hessian
eigenvalues at every stationary point), under reflections, and under the 7! permutations of the
atoms. Nothing here removes them from the coordinates: the energy has no gradient along them,
so descents, bands and eigenvector following never move along them, and the zero eigenvalues
lie inside any relative index tolerance. Instead

- :func:`canonicalize` puts the centre of mass at the origin;
- :func:`align` moves a configuration, by permutation, rotation and reflection, as close as it
  can to a reference (the band between two minima is built between aligned ends, as OPTIM's
  ``minpermdist`` does before a connection attempt);
- :func:`assign_to_structures` says which catalogued minimum an endpoint is by its structure
  (energy and sorted pair distances, both invariant under all of the above): a minimum here is a
  structure, not one of its 7! x 2 x (rotations) copies.

The transition states between the four structures (:data:`REFERENCE_SADDLES`) were derived for
this module, independently of the connection code (no band, no eigenvector following), by two
searches. Powell's hybrid method on the gradient (``scipy.optimize.root``; Hessian analytic, or
differences of the analytic gradient) from 5700 random points (the four minima perturbed, and
points between aligned pairs of them, perturbed) found 9; an independent referee's gentlest-ascent
search (45 starts from each minimum, two seeds; session 21) confirmed those 9 and found 8 more below -10.4
(C1-C2 at -10.898, C2-C2 -10.883, C1-C1 -10.841, -10.552, -10.403, C1-C2 -10.547, C0-C2 -10.455,
C2-C3 -10.413), each polished here by the same root finder. Entries are kept when the gradient
norm is below 1e-8 and the Hessian has exactly one negative eigenvalue besides the three zero
modes; each was quenched (L-BFGS) from 1e-2 along its negative mode on either side to name the
two structures it joins. ``tests/test_lennard_jones.py`` re-checks every entry from its
coordinates. Dellago, Bolhuis and Chandler locate the transition states of the rearrangements
they sample, but we could not check their values (no copy of their table was reachable here):
the table is this module's, not a published one. Both searches agree that the lowest two,
C0-C1 at -11.037 and C0-C2 at -11.040, are the ways out of the hexagon, and neither found a
direct C0-C3 saddle below -10.4.

The same seven atoms in three dimensions (:func:`energy_3d`, :func:`align_3d`; ``dimension=3``
elsewhere) are the landscape whose saddles *are* published: its four minima and the three
transition states that join them (:data:`PUBLISHED_MINIMUM_ENERGY_3D`,
:data:`PUBLISHED_SADDLE_ENERGY_3D`), which the connection stage reproduces in
``tests/test_connectivity.py``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import pdist

N_ATOMS = 7
DIMENSION = 2

#: Energies of C0, C1, C2, C3 as published (two decimals), Dellago, Bolhuis and Chandler (1998).
PUBLISHED_MINIMUM_ENERGY = np.array([-12.53, -11.50, -11.48, -11.40])


#: Index-1 saddles of LJ7 (2-D) below -10.4 found by the two searches described above, ascending:
#: their energies (to 1e-8), the structures (rows of MINIMA) their two descents reach (equal:
#: a degenerate rearrangement, two copies of one structure), and their coordinates (centred,
#: rounded to 1e-9; gradient norm < 1e-8 before rounding). Not proven exhaustive.
REFERENCE_SADDLE_ENERGY = np.array(
    [
        -11.04025290, -11.03733448, -10.93522342, -10.91978916, -10.89848533, -10.88257484, -10.84132249,
        -10.80730445, -10.79874588, -10.79803943, -10.77139919, -10.55154963, -10.54689217, -10.48265698,
        -10.45467535, -10.41279601, -10.40310612
    ]
)
REFERENCE_SADDLE_MINIMA = np.array(
    [[0, 2], [0, 1], [1, 1], [1, 2], [1, 2], [2, 2], [1, 1], [1, 2], [1, 1], [2, 3], [2, 3], [1, 1], [1, 2], [1, 3],
     [0, 2], [2, 3], [1, 1]]
)
REFERENCE_SADDLES = np.array(
    [
        [-0.596733791, 0.904871392, 0.321341564, -0.987391964, 0.166230981, 0.099469871, 0.506171882,
         1.155589515, -0.897524007, -0.185402790, -0.751729380, -1.289844187, 1.252242750, 0.302708164],
        [-0.225597073, 0.111920691, -1.329837104, 0.139733519, -0.778002329, -0.850390804, 1.368684012,
         -0.366739992, -0.162025770, 1.215012395, 0.773590914, 0.574933391, 0.353187351, -0.824469200],
        [-0.352317063, 0.104586795, -1.404815008, 0.417025217, -0.725302813, -0.931576131, 1.475430398,
         -0.437987692, -0.099531845, 1.176431753, 0.715700254, 0.382938058, 0.390836076, -0.711418001],
        [-0.246688082, 0.213145418, -1.347351368, 0.235182126, -0.781487728, -0.754294157, 1.467678909,
         -0.611484382, -0.293168238, 1.309778866, 0.847173061, 0.320137412, 0.353843447, -0.712465282],
        [-0.295345773, 0.053503609, -1.362031170, 0.324035586, -1.026321899, -0.769086938, 1.549609479,
         -0.403465523, -0.100363807, 1.136314822, 0.756528401, 0.385174696, 0.477924770, -0.726476252],
        [0.827974546, 0.368759485, -0.105414025, -0.210035787, -0.600848598, -1.197181384, -0.199111754,
         0.884239739, 0.537219156, -1.102573704, -1.205083846, -0.228136188, 0.745264521, 1.484927840],
        [-0.335694737, 0.451713872, -1.328199086, -0.043548858, -0.829859819, -1.037950864, 1.276296542,
         -0.612346703, 0.273358363, 1.388948003, 0.783156966, 0.392474941, 0.160941770, -0.539290391],
        [0.854842964, 0.680771906, 0.384437967, -0.331877910, -0.516449849, -0.982783828, -0.262476257,
         0.568751562, 0.505473822, -1.443480556, -1.162568931, -0.079106489, 0.196740284, 1.587725315],
        [-0.510006157, 0.401194245, -1.541632877, -0.030430131, -0.644196064, -0.701926076, 1.489395982,
         -0.399070833, 0.157970166, 1.298858560, 0.591303930, 0.267250379, 0.457165020, -0.835876144],
        [-0.039525121, 1.142784642, -1.149366741, 1.293829578, -0.295616379, -0.772562966, 1.254586482,
         -0.573084582, 0.579530406, -1.456982664, 0.380213472, 0.109168345, -0.729822119, 0.256847646],
        [0.085352486, 1.316782617, -1.033196395, 1.247395501, -0.348054966, -0.791311254, 0.763442936,
         -0.731052244, 0.260221536, -1.731938328, 0.690508445, 0.376041634, -0.418274042, 0.314082073],
        [-0.339349148, 0.337091025, -1.415638930, 0.047855399, -0.623741875, -0.747486977, 1.241592436,
         -1.233330538, -0.057305726, 1.415287876, 0.743305958, 0.628718507, 0.451137284, -0.448135292],
        [-0.386746668, 0.166966478, -1.497429422, 0.259201574, -1.018566606, -0.756121133, 1.836588880,
         0.003496728, 0.243013347, 1.089140960, 0.724912453, 0.080300703, 0.098228015, -0.842985311],
        [-0.130395163, 1.241214097, -1.234442833, 1.051586410, 0.190873514, -0.664305507, 1.292175965,
         -0.486080463, -0.180256692, -1.714861430, 0.583970351, 0.382977532, -0.521925142, 0.189469361],
        [-0.336825682, 0.824180105, 0.674208935, -1.163628269, 0.161831253, -0.169748266, -0.373304321,
         1.941947733, -0.955651697, -0.110104754, -0.445247297, -1.107851529, 1.274988809, -0.214795021],
        [1.134030041, 1.087754086, 0.131550325, -0.561659755, -0.857920364, -1.090796279, 0.155497657,
         0.550796616, 0.095168753, -1.679606123, -0.827735568, 0.026668818, 0.169409156, 1.666842636],
        [-0.192768794, 0.526657695, -1.911572112, -0.778993657, -0.875693933, -0.356858114, 1.338705678,
         -0.662662131, 0.494225103, 1.409608293, 0.916855575, 0.373632087, 0.230248483, -0.511384173],
    ]
)
#: C0..C3 located for this module (quenches from 300 random starts, then BFGS to gradient norm
#: < 1e-7; coordinates rounded to 1e-9), centre of mass at the origin.
MINIMA = np.array(
    [
        [-0.757120915, 0.823238018, 0.757120915, -0.823238018, -0.000000000, 0.000000000, 0.334384579,
         1.067304955, -1.091505495, -0.244066937, -0.334384579, -1.067304956, 1.091505495, 0.244066937],
        [-0.348039010, 0.231205313, -1.454997064, 0.103797373, -0.786428522, -0.798009508, 1.433461877,
         -0.516584528, 0.073096640, 1.262987215, 0.758937729, 0.375928595, 0.323968350, -0.659324460],
        [0.845311172, 0.521804388, 0.095919666, -0.299983519, -0.643904343, -1.138612092, -0.254723867,
         0.759682323, 0.458129565, -1.353625819, -0.999199107, -0.075914876, 0.498466914, 1.586649595],
        [0.092568437, 1.243663691, -1.017260159, 1.395242759, -0.176167635, -0.674137874, 0.936291598,
         -0.823787796, 0.249412394, -1.708600025, 0.512695402, 0.209230054, -0.597540037, 0.358389191],
    ]
)
#: Their energies to 1e-8; rounded to two decimals they are the published ones.
MINIMUM_ENERGY = np.array([-12.53486652, -11.50129112, -11.47690703, -11.40341863])


# --- The same cluster in three dimensions: seven atoms in space, a point of R^21 ---------------
#: Energies of its four minima: the pentagonal bipyramid (global minimum, -16.505384; Wales and
#: Doye 1997, J. Phys. Chem. A 101, 5111), the capped octahedron, the tricapped tetrahedron and
#: the bicapped trigonal bipyramid, as published with IBM's topography-searcher (its LJ7 example's
#: ``expected_output/min.data``, commit 189a948; five decimals).
PUBLISHED_MINIMUM_ENERGY_3D = np.array([-16.505384, -15.93504, -15.59321, -15.53306])
#: Its transition states published in the same place (``ts.data``): energies, and the minima they
#: join (rows of MINIMA_3D). The three join the capped octahedron to each of the others; they are
#: the ones a connection of the four minima needs, not every saddle of the cluster.
PUBLISHED_SADDLE_ENERGY_3D = np.array([-15.44473, -15.31986, -15.28342])
PUBLISHED_SADDLE_MINIMA_3D = np.array([[0, 1], [1, 2], [1, 3]])
#: The four minima located for this module (BFGS from 400 random compact starts to gradient norm
#: < 1e-9; coordinates rounded to 1e-9), centre of mass at the origin, in the order above.
MINIMA_3D = np.array(
    [
        [-0.400318581, -0.244262185, 0.833313582, 0.781508050, 0.377109845, -0.401701181, 0.230784962,
         -0.523686387, -0.042636138, -0.230784962, 0.523686387, 0.042636138, -0.133778980, 0.018114672,
         -0.946628517, -0.864188006, -0.365914362, -0.183347417, 0.616777517, 0.214952030, 0.698363534],
        [0.805990563, -0.230570607, 0.368642811, -0.473222947, 0.078284308, -0.505037930, 0.235349770,
         -0.778906297, -0.420233959, -0.289421102, -0.402578149, 0.489180908, 0.098525809, 0.627684654,
         0.285370533, -0.999766990, 0.456726080, 0.405727016, 0.622544898, 0.249360011, -0.623649380],
        [-0.311902475, -0.677171661, 0.133454243, 0.024638934, 0.209110495, 0.727544068, 0.418174613,
         0.052711510, -0.315525255, 0.739963184, -0.622563269, 0.509583653, -0.386803354, -0.390230623,
         -0.944938761, -0.655118715, 0.349272531, -0.149942708, 0.171047814, 1.078871017, 0.039824759],
        [-0.283708430, -0.652538129, -0.193935717, 0.442334858, 0.204733199, -0.100075714, 0.325230642,
         0.668711182, 0.907582115, 0.353450510, -0.354585897, -1.061129817, 0.213550460, -0.440536189,
         0.782638614, -0.478156007, 0.318064404, -0.722773133, -0.572702035, 0.256151431, 0.387693653],
    ]
)
#: Their energies to 1e-8.
MINIMUM_ENERGY_3D = np.array([-16.50538417, -15.93504306, -15.59321094, -15.53306005])


def energy(points: torch.Tensor, dimension: int = DIMENSION) -> torch.Tensor:
    """Lennard-Jones energy ``(n,)`` of configurations ``(n, 7 dimension)``, differentiable."""
    atoms = points.reshape(len(points), N_ATOMS, dimension)
    first, second = torch.triu_indices(N_ATOMS, N_ATOMS, offset=1, device=points.device)
    r2 = ((atoms[:, first] - atoms[:, second]) ** 2).sum(-1)
    inverse6 = r2.reciprocal() ** 3
    return 4 * (inverse6 * inverse6 - inverse6).sum(1)


def energy_3d(points: torch.Tensor) -> torch.Tensor:
    """:func:`energy` of the cluster in three dimensions, configurations ``(n, 21)``."""
    return energy(points, dimension=3)


def canonicalize(points: np.ndarray, dimension: int = DIMENSION) -> np.ndarray:
    """Configurations ``(n, 7 dimension)`` with their centre of mass at the origin."""
    atoms = np.asarray(points, dtype=np.float64).reshape(len(points), N_ATOMS, dimension)
    return (atoms - atoms.mean(1, keepdims=True)).reshape(len(points), -1)


def align(
    reference: np.ndarray, theta: np.ndarray, *, dimension: int = DIMENSION, n_starts: int = 24, n_rounds: int = 10
) -> np.ndarray:
    """``theta`` permuted, rotated, reflected and translated onto the centred reference.

    Alternates the best permutation for a fixed orientation (Hungarian assignment,
    ``scipy.optimize.linear_sum_assignment``) with the best orthogonal map for a fixed
    permutation (Procrustes: SVD of the cross-covariance), from ``n_starts`` initial rotations
    of each handedness (evenly spaced angles in the plane; in three dimensions rotations drawn
    at random with a fixed seed); the closest result wins. A local search, as OPTIM's
    ``minpermdist``; ``tests/test_lennard_jones.py`` compares it with brute force over all 7!
    permutations.
    """
    target = canonicalize(np.asarray(reference)[None], dimension)[0].reshape(N_ATOMS, dimension)
    moving = canonicalize(np.asarray(theta)[None], dimension)[0].reshape(N_ATOMS, dimension)
    best, best_distance = moving, np.inf
    mirror = np.diag([1.0] * (dimension - 1) + [-1.0])
    for start in _initial_rotations(dimension, n_starts):
        for orientation in (start, start @ mirror):
            current = moving @ orientation.T
            for _ in range(n_rounds):
                cost = ((target[:, None] - current[None]) ** 2).sum(-1)
                _, order = linear_sum_assignment(cost)
                permuted = current[order]
                u, _, vt = np.linalg.svd(permuted.T @ target)
                current = permuted @ (u @ vt)
            distance = np.linalg.norm(current - target)
            if distance < best_distance:
                best, best_distance = current, distance
    return best.ravel()


def align_3d(reference: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """:func:`align` in three dimensions."""
    return align(reference, theta, dimension=3, n_starts=48)


@functools.lru_cache(maxsize=None)
def _initial_rotations(dimension, n_starts):
    """Starting rotations of :func:`align`: evenly spaced in the plane, seeded draws in space
    (the same on every call, so drawn once)."""
    if dimension == 2:
        angles = np.linspace(0.0, 2 * np.pi, n_starts, endpoint=False)
        return tuple(np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) for a in angles)
    rotations = []
    for gaussian in np.random.default_rng(0).normal(size=(n_starts, dimension, dimension)):
        q, r = np.linalg.qr(gaussian)
        q = q * np.sign(np.diag(r))
        rotations.append(q if np.linalg.det(q) > 0 else -q)
    return tuple(rotations)


def structure_fingerprint(points: np.ndarray, dimension: int = DIMENSION) -> np.ndarray:
    """Sorted pair distances ``(n, 21)``: the same for every copy of a structure."""
    atoms = np.asarray(points, dtype=np.float64).reshape(len(points), N_ATOMS, dimension)
    return np.sort([pdist(a) for a in atoms], axis=1)


def assign_to_structures(
    endpoints: np.ndarray,
    energies: np.ndarray,
    minima: np.ndarray,
    minimum_energy: np.ndarray,
    *,
    energy_tol: float = 1e-6,
    distance_tol: float = 1e-3,
    dimension: int = DIMENSION,
) -> np.ndarray:
    """Index ``(n,)`` of the catalogued minimum whose structure each endpoint has, -1 where none.

    Same structure: energies within ``energy_tol`` and sorted pair distances within
    ``distance_tol`` (max norm). Descents stopped at gradient norm g leave energies ~ g^2 /
    curvature and distances ~ g / curvature from the minimum; the defaults suit g <= 1e-5.
    """
    endpoints, minima = np.atleast_2d(endpoints), np.atleast_2d(minima)
    labels = np.full(len(endpoints), -1, dtype=np.int64)
    if not len(minima) or not len(endpoints):
        return labels
    same_energy = np.abs(np.asarray(energies)[:, None] - np.asarray(minimum_energy)[None]) <= energy_tol
    gap = np.abs(structure_fingerprint(endpoints, dimension)[:, None]
                 - structure_fingerprint(minima, dimension)[None]).max(-1)
    same = same_energy & (gap <= distance_tol)
    found = same.any(1)
    labels[found] = np.where(same, -gap, -np.inf)[found].argmax(1)
    return labels
