"""Zernike descriptor: Amp 1.0.1's numbers, exact derivatives, physics,
stores, per-element nmax and Polynomial cutoffs, training with forces."""
import math
import os

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read
from scipy.special import binom, lpmv

from amp.descriptor.cutoffs import Cosine, Polynomial
from amp.descriptor.fingerprints import ImageFingerprints
from amp.descriptor.zernike import Zernike, generate_coefficients
from amp.importing import importhelper
from amp.parallel.worker import Fingerprints
from amp.utilities import hash_images
from density_checks import (WAVE3, assert_atoms_without_neighbours,
                            assert_estimated_memory,
                            assert_linear_energy_physics,
                            assert_primes_are_finite_differences,
                            assert_store_behaviour, load_case, prime_key,
                            rattled_alloy, reproduce_amp, subsets,
                            train_load_and_run_md)

CASES = ["zernike_default", "zernike_nmax3_cosine4",
         "zernike_nmax4_cosine5_gs"]


@pytest.mark.parametrize("case, subset", subsets(CASES))
def test_reproduces_amp(case, subset):
    """Values, parameters, prime keys and primes equal Amp's to 1e-10 of
    the system's largest fingerprint; where Amp's Fortran primes are not
    derivatives (custom Gs) the comparison is with its Python path's."""
    descriptor, reference, scale = reproduce_amp(Zernike, case, subset)
    primes = reference.get("fingerprintprimes_python",
                           reference["fingerprintprimes"])
    for key in reference["image_ids"]:
        ours = descriptor.fingerprintprimes[key]
        theirs = {prime_key(k): v for k, v in primes[key].items()}
        assert set(ours) == set(theirs)
        worst = max(np.abs(np.subtract(ours[k], v)).max()
                    for k, v in theirs.items())
        assert worst <= 1e-10 * scale


@pytest.mark.parametrize("subset", ["cupt2_molecule", "cu3pt2_cluster",
                                    "cupt_box"])
def test_true_derivatives_where_amp_fortran_primes_are_wrong(subset):
    """With custom Gs, Amp's default (Fortran) primes differ from the
    derivatives of its own fingerprints by the order of the values; these
    primes are the derivatives (central differences)."""
    case = "zernike_nmax4_cosine5_gs"
    descriptor, reference, _ = reproduce_amp(Zernike, case, subset)
    images = read(os.path.join(WAVE3, reference["images_file"]), ":")
    for key, atoms in zip(reference["image_ids"], images):
        ours = assert_primes_are_finite_differences(descriptor, atoms)
        fortran = {prime_key(k): v for k, v in
                   reference["fingerprintprimes"][key].items()}
        largest = max(np.abs(v).max() for v in ours.values())
        worst = max(np.abs(np.subtract(ours[k], v)).max()
                    for k, v in fortran.items())
        assert worst > 0.1 * largest


def test_default_coefficients_are_amps():
    reference = load_case("zernike_default")["subsets"]["cupt_box"]
    assert generate_coefficients(["Cu", "Pt"]) == \
        reference["parameters"]["Gs"]


def reference_fingerprints(atoms, cutoff, Gs, nmax):
    """The definition, term by term (slow): R_nl(rho) Y_lm summed over
    neighbours (all periodic images, by brute force), |c_nlm|^2 summed
    over m = -l..l."""
    Rc = cutoff.Rc
    cell = np.asarray(atoms.cell)
    shifts = [np.array(s) for s in np.ndindex(5, 5, 5)]
    out = []
    for i, centre in enumerate(atoms):
        vectors, weights = [], []
        for j, other in enumerate(atoms):
            for s in shifts:
                s = (s - 2) * atoms.pbc
                r = other.position + s @ cell - centre.position
                R = np.linalg.norm(r)
                if 0 < R < Rc and not (i == j and not s.any()):
                    vectors.append(r / Rc)
                    weights.append(Gs[centre.symbol][other.symbol]
                                   * float(cutoff(R)))
        u, w = np.array(vectors), np.array(weights)
        rho = np.linalg.norm(u, axis=1)
        cos_theta, phi = u[:, 2] / rho, np.arctan2(u[:, 1], u[:, 0])
        row = []
        for n in range(nmax + 1):
            for l in range(n % 2, n + 1, 2):
                k = (n - l) // 2
                radial = math.sqrt(2 * n + 3) * sum(
                    (-1) ** s * binom(k, s) * binom(n - s + 0.5, k)
                    * rho ** (n - 2 * s) for s in range(k + 1))
                total = 0.0
                for m in range(-l, l + 1):
                    a = abs(m)
                    norm = math.sqrt((2 * l + 1) / (4 * math.pi)
                                     * math.factorial(l - a)
                                     / math.factorial(l + a))
                    Y = norm * lpmv(a, l, cos_theta) * np.exp(1j * a * phi)
                    if m < 0:
                        Y = (-1) ** a * np.conj(Y)
                    total += abs(np.sum(w * radial * Y)) ** 2
                row.append(total)
        out.append(row)
    return np.array(out)


def test_polynomial_cutoff_and_nmax_per_element_follow_the_definition():
    """Beyond Amp 1.0.1 (which raises TypeError for both): a Polynomial
    cutoff and {element: nmax}, checked against the definition evaluated
    term by term, and against single-nmax descriptors."""
    atoms = rattled_alloy()
    cutoff = Polynomial(4.5, gamma=5)
    Gs = {"Cu": {"Cu": 1.2, "Pt": 0.7}, "Pt": {"Cu": 0.9, "Pt": 1.6}}
    descriptor = Zernike(cutoff=cutoff, Gs=Gs, nmax={"Cu": 4, "Pt": 3})
    assert descriptor.fingerprint_lengths() == {"Cu": 9, "Pt": 6}
    fp = descriptor.compute(atoms)
    for element, nmax in (("Cu", 4), ("Pt", 3)):
        index = fp.atom_index[element]
        expected = reference_fingerprints(atoms, cutoff, Gs, nmax)[index]
        np.testing.assert_allclose(fp.values[element], expected, rtol=1e-12,
                                   atol=1e-12 * np.abs(expected).max())
        alone = Zernike(cutoff=cutoff, Gs=Gs, nmax=nmax).compute(atoms)
        np.testing.assert_array_equal(alone.values[element],
                                      fp.values[element])
    assert_primes_are_finite_differences(descriptor, atoms)


def test_physics_checks():
    assert_linear_energy_physics(
        Zernike(cutoff=Polynomial(5.0), nmax={"Cu": 5, "Pt": 4}),
        rattled_alloy())
    assert_linear_energy_physics(Zernike(cutoff=6.5), rattled_alloy())


def test_molecule_and_own_periodic_images():
    molecule = read(os.path.join(WAVE3, "cu3pt2_cluster.traj"))
    assert_primes_are_finite_differences(Zernike(cutoff=5.0, nmax=6),
                                         molecule)
    atoms = bulk("Cu", "fcc", a=3.6)  # one atom: it sees only itself
    descriptor = Zernike()
    fp = descriptor.compute(atoms, derivatives=True)
    big = descriptor.compute(atoms * (2, 2, 2))
    scale = np.abs(fp.values["Cu"]).max()
    np.testing.assert_allclose(big.values["Cu"],
                               np.tile(fp.values["Cu"], (8, 1)), rtol=0,
                               atol=1e-12 * scale)
    primes = fp.as_amp_primes()
    assert np.abs(primes[(0, "Cu", 0, "Cu", 0)]).max() < 1e-12 * scale


def test_atoms_without_neighbours():
    assert_atoms_without_neighbours(Zernike(), 12)


def test_stores_views_and_parameters(tmp_path):
    assert_store_behaviour(Zernike, {"cutoff": 5.0, "nmax": 3},
                           {"cutoff": 5.0, "nmax": 4}, tmp_path)


def test_derivative_memory_estimate():
    images = [read(os.path.join(WAVE3, name), 1)  # the rattled frames
              for name in ("cu3pt2_cluster.traj", "cu3pt_bulk.traj")]
    assert_estimated_memory(Zernike(cutoff=5.0), images)


def test_importname_and_worker_job():
    descriptor = Zernike(cutoff=Polynomial(4.0), nmax=4,
                         Gs=generate_coefficients(["Cu", "Pt"]))
    assert importhelper(descriptor.parameters["importname"]) is Zernike
    atoms = rattled_alloy()
    job = Fingerprints({"descriptor": descriptor.todict(),
                        "derivatives": True})
    result = job("key", atoms)
    again = ImageFingerprints.fromdict(result, result)
    direct = descriptor.compute(atoms, derivatives=True)
    for element in direct.values:
        np.testing.assert_array_equal(again.values[element],
                                      direct.values[element])
        np.testing.assert_array_equal(again.derivatives[element],
                                      direct.derivatives[element])


@pytest.mark.parametrize("keywords, message", [
    ({"nmax": -1}, "nmax must be from 0 to 20"),
    ({"nmax": 21}, "nmax must be from 0 to 20"),
    ({"nmax": 2.5}, "nmax must be a whole number"),
    ({"nmax": True}, "nmax must be a whole number"),
    ({"nmax": {"Cu": 3, "Pt": "4"}}, "nmax of Pt must be a whole number"),
    ({"nmax": {"Cu": 3}, "Gs": generate_coefficients(["Cu", "Pt"])},
     "nmax is given per element but not for Pt"),
    ({"Gs": {"Cu": {"Cu": 29}, "Pt": {"Cu": 29}}},
     "Gs\\['Cu'\\] has no coefficient for neighbour element Pt"),
    ({"Gs": {"Cu": {"Cu": "big"}}}, "must be a finite number"),
    ({"Gs": {"Cu": {"Cu": float("nan")}}}, "must be a finite number"),
    ({"Gs": [1, 2]}, "Gs must be a dict"),
    ({"elements": ["Cu", "Pt"], "Gs": {"Cu": {"Cu": 1, "Pt": 2}}},
     "no coefficients for centre element Pt"),
    ({"Gs": {"Qq": {"Qq": 1}}}, "elements must be chemical symbols"),
    ({"elements": ["Cu", 29]}, "elements must be chemical symbols"),
    ({"mode": "image-centered"}, "atom-centered"),
    ({"version": "2015.12"}, "unknown Zernike descriptor version"),
    ({"cutoff": 0.0}, "cutoff radius"),
])
def test_bad_keywords(keywords, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Zernike(**keywords)


def test_image_with_an_element_not_covered():
    descriptor = Zernike(Gs={"Cu": {"Cu": 29}})
    good = bulk("Cu", "fcc", a=3.6)
    with pytest.raises(ValueError, match="contains Pt, which this descriptor does not cover"):
        descriptor.calculate_fingerprints([good, Atoms("Pt")])
    assert len(descriptor.arrays) == 0
    hashed = hash_images([good])
    assert descriptor.calculate_fingerprints(hashed) == list(hashed)


def test_default_nmax_amp_keywords_and_cosine():
    descriptor = Zernike(fortran=False)
    assert descriptor.nmax == 5 and descriptor.cutoff == Cosine(6.5)
    assert descriptor.parameters["version"] == "2016.02"


def test_trains_on_forces_loads_and_runs_md(tmp_path):
    train_load_and_run_md(Zernike(cutoff=4.0, nmax=3), tmp_path)
