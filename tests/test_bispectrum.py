"""Bispectrum descriptor: Amp 1.0.1's numbers, analytic derivatives at the
default jmax, Clebsch-Gordan coefficients and hyperspherical harmonics,
physics, stores, training with forces."""
import math
import os

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

from amp.descriptor.bispectrum import Bispectrum, generate_coefficients
from amp.descriptor.cutoffs import Cosine, Polynomial
from amp.descriptor.spherical.bispectrum_tables import (bispectrum_tables,
                                                         clebsch_gordan)
from amp.descriptor.spherical.hyperspherical import (cayley_klein, full_rows,
                                                     hyperspherical)
from amp.importing import importhelper
from density_checks import (WAVE3, assert_atoms_without_neighbours,
                            assert_estimated_memory,
                            assert_linear_energy_physics,
                            assert_primes_are_finite_differences,
                            assert_store_behaviour, load_case,
                            rattled_alloy, reproduce_amp, subsets,
                            train_load_and_run_md)

CASES = ["bispectrum_jmax2_cosine5", "bispectrum_default_jmax3"]


@pytest.mark.parametrize("case, subset", subsets(CASES))
def test_reproduces_amp(case, subset):
    """Values and parameters equal Amp's to 1e-10 of the system's largest
    fingerprint; the derivatives (which Amp does not have) are central
    differences."""
    descriptor, reference, _ = reproduce_amp(Bispectrum, case, subset)
    atoms = read(os.path.join(WAVE3, reference["images_file"]), 1)
    assert_primes_are_finite_differences(descriptor, atoms)


def test_default_jmax_derivatives():
    """At Amp's default jmax 5 (51 features, an estimated 500 s per
    atom-neighbour pair in Amp 1.0.1, no derivatives there)."""
    descriptor = Bispectrum()
    assert descriptor.jmax == 5 and descriptor.cutoff == Cosine(6.5)
    cluster = read(os.path.join(WAVE3, "cu3pt2_cluster.traj"), 1)
    assert descriptor.compute(cluster).values["Cu"].shape == (3, 51)
    assert_primes_are_finite_differences(descriptor, cluster)


def test_default_coefficients_are_amps():
    reference = load_case("bispectrum_default_jmax3")["subsets"]["cupt_box"]
    assert generate_coefficients(["Cu", "Pt"]) == \
        reference["parameters"]["Gs"]


@pytest.mark.parametrize("jmax, length", [(0, 1), (0.5, 2), (1, 5),
                                          (2, 12), (2.5, 15), (3, 22),
                                          (5, 51)])
def test_feature_counts(jmax, length):
    """Amp's count: 2 j1 = 0..2 jmax and the integers j = 0..min(2 j1,
    jmax) (Amp 1.0.1's loops; for jmax 2.5 they give 15)."""
    assert len(bispectrum_tables(jmax).features) == length
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1.5, 1.0, 0.5]])
    assert Bispectrum(jmax=jmax).compute(atoms).values["Cu"].shape == \
        (2, length)


def test_clebsch_gordan_coefficients():
    half = 0.5
    r = math.sqrt
    assert clebsch_gordan(half, half, half, -half, 1, 0) == \
        pytest.approx(r(0.5), abs=1e-15)
    assert clebsch_gordan(half, half, half, -half, 0, 0) == \
        pytest.approx(r(0.5), abs=1e-15)
    assert clebsch_gordan(half, -half, half, half, 0, 0) == \
        pytest.approx(-r(0.5), abs=1e-15)
    assert clebsch_gordan(1, 1, 1, -1, 2, 0) == \
        pytest.approx(r(1 / 6), abs=1e-15)
    assert clebsch_gordan(1, 0, 1, 0, 1, 0) == 0.0
    assert clebsch_gordan(2, 1, 1, 1, 3, 1) == 0.0  # m1 + m2 != m
    with pytest.raises(ValueError, match="half-integers"):
        clebsch_gordan(0.3, 0, 1, 0, 1, 0)
    # Orthogonality: sum over m1 of <j1 m1 j2 m-m1|j m><j1 m1 j2 m-m1|j' m>
    for j1, j2 in ((1.5, 1.5), (2, 1), (2.5, 1.5)):
        js = np.arange(abs(j1 - j2), j1 + j2 + 1)
        for m in np.arange(-j1 - j2, j1 + j2 + 1):
            matrix = np.array([[clebsch_gordan(j1, m1, j2, m - m1, j, m)
                                for m1 in np.arange(-j1, j1 + 1)]
                               for j in js])
            allowed = np.abs(m) <= js
            np.testing.assert_allclose(matrix @ matrix.T,
                                       np.diag(allowed * 1.0), atol=1e-14)


def rotation_matrices(vectors, levels, Rc=6.5):
    """The normalised U^j of each vector, every level."""
    a, b = cayley_klein(vectors, Rc)
    out = []
    for L, u in enumerate(hyperspherical(a, b, levels)):
        i = np.arange(L + 1)
        norm = np.array([math.sqrt(math.factorial(k) * math.factorial(L - k))
                         for k in i])
        out.append(np.moveaxis(full_rows(u, L), -1, 0)
                   * (norm[:, None] / norm[None, :]))
    return out, a, b


def test_hyperspherical_harmonics_are_a_unitary_representation():
    """U^j(M1 M2) = U^j(M1) U^j(M2) and U^j unitary: the recursion and its
    mirror-symmetric half give the spin-j representation of SU(2)."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2, 3))  # inside the 6.5 A sphere
    U, a, b = rotation_matrices(vectors, 11)

    def su2(k):
        return np.array([[a[k], b[k]], [-np.conj(b[k]), np.conj(a[k])]])
    product = su2(0) @ su2(1)
    # The product's Cayley-Klein parameters, fed to the same recursion.
    a12, b12 = product[0, 0], product[0, 1]
    shape = (1,)
    U12 = [np.moveaxis(full_rows(u, L), -1, 0)[0] for L, u in enumerate(
        hyperspherical(np.full(shape, a12), np.full(shape, b12), 11))]
    for L in range(11):
        i = np.arange(L + 1)
        norm = np.array([math.sqrt(math.factorial(k) * math.factorial(L - k))
                         for k in i])
        composed = U12[L] * (norm[:, None] / norm[None, :])
        np.testing.assert_allclose(composed, U[L][0] @ U[L][1], atol=1e-13)
        for k in range(2):
            np.testing.assert_allclose(U[L][k] @ np.conj(U[L][k]).T,
                                       np.eye(L + 1), atol=1e-13)


def test_polynomial_cutoff_jmax_per_element_and_physics():
    """Beyond Amp 1.0.1 (NotImplementedError and TypeError): a Polynomial
    cutoff and {element: jmax}; same numbers as single-jmax descriptors,
    derivatives by central differences, forces and stress of a linear
    energy are its gradients, invariances."""
    atoms = rattled_alloy()
    cutoff = Polynomial(4.5, gamma=3)
    Gs = {"Cu": {"Cu": 1.2, "Pt": 0.7}, "Pt": {"Cu": 0.9, "Pt": 1.6}}
    descriptor = Bispectrum(cutoff=cutoff, Gs=Gs, jmax={"Cu": 2, "Pt": 1.5})
    assert descriptor.fingerprint_lengths() == {"Cu": 12, "Pt": 7}
    fp = descriptor.compute(atoms)
    for element, jmax in (("Cu", 2), ("Pt", 1.5)):
        alone = Bispectrum(cutoff=cutoff, Gs=Gs, jmax=jmax).compute(atoms)
        np.testing.assert_array_equal(alone.values[element],
                                      fp.values[element])
    assert_primes_are_finite_differences(descriptor, atoms)
    assert_linear_energy_physics(descriptor, atoms)
    assert_linear_energy_physics(Bispectrum(), atoms)


def test_atoms_without_neighbours():
    assert_atoms_without_neighbours(Bispectrum(jmax=2), 12)


def test_stores_views_and_parameters(tmp_path):
    assert_store_behaviour(Bispectrum, {"cutoff": 5.0, "jmax": 2},
                           {"cutoff": 5.0, "jmax": 1.5}, tmp_path)


def test_derivative_memory_estimate():
    images = [read(os.path.join(WAVE3, name), 1)  # the rattled frames
              for name in ("cu3pt2_cluster.traj", "cu3pt_bulk.traj")]
    assert_estimated_memory(Bispectrum(cutoff=5.0, jmax=2), images)


def test_importname():
    descriptor = Bispectrum(jmax=1.5)
    assert importhelper(descriptor.parameters["importname"]) is Bispectrum
    assert descriptor.parameters["jmax"] == 1.5


@pytest.mark.parametrize("keywords, message", [
    ({"jmax": -0.5}, "jmax must be from 0 to 8"),
    ({"jmax": 8.5}, "jmax must be from 0 to 8"),
    ({"jmax": 1.25}, "jmax must be a whole or half-integer number"),
    ({"jmax": "5"}, "jmax must be a whole or half-integer number"),
    ({"jmax": {"Cu": 1}, "Gs": generate_coefficients(["Cu", "Pt"])},
     "jmax is given per element but not for Pt"),
    ({"Gs": {"Cu": {"Cu": None}}}, "must be a finite number"),
    ({"mode": "image-centered"}, "atom-centered"),
    ({"version": "2015.12"}, "unknown Bispectrum descriptor version"),
])
def test_bad_keywords(keywords, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Bispectrum(**keywords)


def test_trains_on_forces_loads_and_runs_md(tmp_path):
    train_load_and_run_md(Bispectrum(cutoff=4.0, jmax=1.5), tmp_path)
