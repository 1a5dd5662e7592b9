"""Checks shared by tests/test_zernike.py and tests/test_bispectrum.py.

The two neighbour-density descriptors (:mod:`amp.descriptor.density`)
are held to the same contracts: Amp 1.0.1's reference numbers
(``tests/data/amp-reference-wave3``), derivatives equal to central
differences, the physics checks of :mod:`checks`, the fingerprint
stores, and a model trained on forces that loads and runs MD.
"""
import json
import os

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

from amp.descriptor.cutoffs import dict2cutoff
from amp.utilities import hash_images
from checks import (assert_forces_are_gradients, assert_invariant,
                    assert_stress_is_strain_derivative)
from conftest import DATA
from test_amp import emt_images

WAVE3 = os.path.join(DATA, "amp-reference-wave3")


def load_case(case):
    """One ``zernike_*.json`` / ``bispectrum_*.json`` reference file."""
    with open(os.path.join(WAVE3, case + ".json")) as handle:
        return json.load(handle)


def subsets(cases):
    """``(case, subset)`` of every system of the reference files."""
    return [(case, name) for case in cases
            for name in load_case(case)["subsets"]]


def amp_keywords(case):
    """The keywords Amp was called with, cutoffs as objects."""
    keywords = dict(load_case(case)["descriptor_kwargs"])
    if isinstance(keywords.get("cutoff"), dict):
        keywords["cutoff"] = dict2cutoff(keywords["cutoff"])
    return keywords


def prime_key(text):
    """``'i,sym_i,j,sym_j,x'`` -> Amp's tuple key."""
    i, symbol_i, j, symbol_j, axis = text.split(",")
    return (int(i), symbol_i, int(j), symbol_j, int(axis))


def reproduce_amp(cls, case, subset, derivatives=True):
    """Fingerprints of a reference system by ``cls(**Amp's keywords)``.

    Asserts the images, parameters and fingerprints equal Amp's (the
    latter to 1e-10 of the system's largest value) and returns
    ``(descriptor, reference subset, scale)``.
    """
    reference = load_case(case)["subsets"][subset]
    images = hash_images(os.path.join(WAVE3, reference["images_file"]))
    assert list(images) == reference["image_ids"]
    descriptor = cls(**amp_keywords(case))
    descriptor.calculate_fingerprints(images,
                                      calculate_derivatives=derivatives)
    assert descriptor.parameters == reference["parameters"]
    assert descriptor.fingerprint_lengths() == \
        reference["fingerprint_lengths"]
    theirs = {key: np.array([v for _, v in reference["fingerprints"][key]])
              for key in images}
    scale = max(np.abs(v).max() for v in theirs.values())
    for key in images:
        ours = descriptor.fingerprints[key]
        assert [s for s, _ in ours] == \
            [s for s, _ in reference["fingerprints"][key]]
        np.testing.assert_allclose(np.array([v for _, v in ours]),
                                   theirs[key], rtol=0, atol=1e-10 * scale)
    return descriptor, reference, scale


def finite_difference_primes(descriptor, atoms, h=1e-5):
    """``{(m, n, axis): d G_n / d x_{m,axis}}`` by central differences."""
    out = {}
    for m in range(len(atoms)):
        for axis in range(3):
            rows = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[m, axis] += sign * h
                rows.append([v for _, v in
                             descriptor.compute(moved).as_amp_fingerprints()])
            for n in range(len(atoms)):
                out[(m, n, axis)] = (np.array(rows[0][n])
                                     - np.array(rows[1][n])) / (2 * h)
    return out


def assert_primes_are_finite_differences(descriptor, atoms, rtol=1e-7):
    """Every ``fingerprintprimes`` entry, and every absent one (which must
    vanish), equals central differences, to ``rtol`` of the largest."""
    primes = descriptor.compute(atoms, derivatives=True).as_amp_primes()
    fd = finite_difference_primes(descriptor, atoms)
    scale = max(np.abs(v).max() for v in fd.values())
    assert scale > 0
    checked = 0
    for (m, n, axis), expected in fd.items():
        key = (m, atoms[m].symbol, n, atoms[n].symbol, axis)
        got = primes.get(key, np.zeros_like(expected))
        np.testing.assert_allclose(got, expected, rtol=0, atol=rtol * scale,
                                   err_msg="d G_%d / d x_%d,%d" % (n, m, axis))
        checked += key in primes
    assert checked >= 3 * len(atoms)
    return primes


def rattled_alloy():
    """A sheared, rattled periodic Cu3Pt cell (4 atoms)."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.symbols[0] = "Pt"
    atoms.set_cell(atoms.cell @ [[1, 0.03, 0], [0, 1, 0.02], [0.01, 0, 1]],
                   scale_atoms=True)
    atoms.rattle(0.08, rng=np.random.default_rng(7))
    return atoms


def assert_linear_energy_physics(descriptor, atoms):
    """forces(), force_matrix() and virial() of ``E = sum_i w . G_i`` are
    its gradients; fingerprints are invariant under symmetry operations."""
    fp = descriptor.compute(atoms, derivatives=True)
    rng = np.random.default_rng(0)
    # Weights scaled so that E is of order one whatever the magnitudes.
    weights = {e: rng.normal(size=v.shape[1]) / (np.abs(v).max(axis=0) + 1)
               for e, v in fp.values.items()}

    def energy(a):
        f = descriptor.compute(a)
        return sum(float(np.sum(f.values[e] @ weights[e])) for e in f.values)

    dE_dG = {e: np.tile(weights[e], (len(v), 1))
             for e, v in fp.values.items()}
    forces = fp.forces(dE_dG)
    assert_forces_are_gradients(energy, atoms, forces, h=1e-5, atol=1e-7)
    g = np.concatenate([dE_dG[e].ravel() for e in sorted(dE_dG)])
    np.testing.assert_allclose(fp.force_matrix() @ g, forces.ravel(),
                               atol=1e-12)
    assert_stress_is_strain_derivative(
        energy, atoms, fp.virial(dE_dG) / atoms.get_volume(), h=1e-6,
        atol=1e-6 / atoms.get_volume())
    scale = max(np.abs(v).max() for v in fp.values.values())

    width = max(v.shape[1] for v in fp.values.values())

    def rows(a):  # zero-padded when the elements' lengths differ
        return np.array([v + [0.0] * (width - len(v)) for _, v in
                         descriptor.compute(a).as_amp_fingerprints()])
    assert_invariant(rows, atoms, per_atom=True, atol=1e-12 * scale)


def assert_store_behaviour(cls, keywords, other_keywords, tmp_path):
    """Databases: a second descriptor reads what the first stored, the
    views are Amp's, and a database built with other parameters (or by
    Gaussian) is refused, naming them."""
    from amp.descriptor.gaussian import Gaussian

    images = read(os.path.join(WAVE3, "cu3pt2_cluster.traj"), ":")
    label = str(tmp_path / "db")
    first = cls(dblabel=label, **keywords)
    computed = first.calculate_fingerprints(images,
                                            calculate_derivatives=True)
    assert len(computed) == 2
    second = cls(dblabel=label, **keywords)
    assert second.calculate_fingerprints(images,
                                         calculate_derivatives=True) == []
    for key in hash_images(images):
        assert second.fingerprints[key] == first.fingerprints[key]
        assert second.fingerprintprimes[key] == first.fingerprintprimes[key]
        assert len(second.neighborlist[key]) == 5
        assert key in second.fingerprintprimes
    in_memory = cls(**keywords)
    in_memory.calculate_fingerprints(images)
    key = next(iter(hash_images(images)))
    assert key in in_memory.fingerprints
    assert key not in in_memory.fingerprintprimes
    for stranger, named in ((cls(dblabel=label, **other_keywords),
                             cls.degree_name),
                            (Gaussian(cutoff=keywords.get("cutoff", 6.5),
                                      dblabel=label), "Gs")):
        with pytest.raises(ValueError, match="built with different "
                           "parameters(.|\n)*  %s: the database has" % named):
            stranger.calculate_fingerprints(images)
    parameters = first.todict()
    again = cls.fromdict(json.loads(json.dumps(parameters)))
    assert again.todict() == parameters
    np.testing.assert_array_equal(again.compute(images[0]).values["Cu"],
                                  first.arrays[key].values["Cu"])


def assert_atoms_without_neighbours(descriptor, length):
    """An atom far from the others has zero fingerprints and derivatives,
    and no derivative keys with the others."""
    from ase import Atoms

    atoms = Atoms("CuPtCu", positions=[[0, 0, 0], [2.5, 0, 0], [30, 0, 0]])
    descriptor.calculate_fingerprints(atoms, calculate_derivatives=True)
    key = next(iter(descriptor.arrays))
    fingerprints = descriptor.fingerprints[key]
    assert fingerprints[2] == ("Cu", [0.0] * length)
    assert max(fingerprints[0][1]) > 0
    primes = descriptor.fingerprintprimes[key]
    assert primes[(2, "Cu", 2, "Cu", 0)] == [0.0] * length
    assert (2, "Cu", 0, "Cu", 0) not in primes
    lonely = descriptor.compute(Atoms("Cu"), True).values["Cu"]
    assert lonely.shape == (1, length) and not lonely.any()


def assert_estimated_memory(descriptor, images):
    """derivative_memory() within 5 % of the force matrices' bytes (for
    rattled images: a symmetric one has exact zeros, which the matrices
    leave out and the estimate counts)."""
    hashed = hash_images(images)
    estimate = descriptor.derivative_memory(hashed)
    measured = 0
    for atoms in hashed.values():
        matrix = descriptor.compute(atoms, derivatives=True).force_matrix()
        measured += (matrix.data.nbytes + matrix.indices.nbytes
                     + matrix.indptr.nbytes)
    assert abs(estimate - measured) <= 0.05 * measured


def train_load_and_run_md(descriptor, tmp_path):
    """Train a network on energies and forces, load it back, check its
    forces are gradients, and run a few MD steps."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    from amp import Amp
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork

    images = emt_images(5)
    label = str(tmp_path / "fit")
    calc = Amp(descriptor=descriptor,
               model=NeuralNetwork(hiddenlayers=(3,), randomseed=1),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.02, "force_rmse": 0.5},
        force_coefficient=0.04)
    assert calc.train(images) is True
    assert os.path.isdir(label + "-fingerprint-primes.ampdb")
    loaded = Amp.load(label + ".amp")  # the class named by the file
    assert type(loaded.descriptor) is type(descriptor)
    assert loaded.descriptor.todict() == descriptor.todict()
    atoms = images[0].copy()
    atoms.calc = loaded
    trained = images[0].copy()
    trained.calc = calc
    assert atoms.get_potential_energy() == trained.get_potential_energy()
    np.testing.assert_allclose(atoms.get_forces(), trained.get_forces(),
                               rtol=0, atol=1e-12)
    # Amp 1.x's text layout, read back through the restricted reader.
    calc.save(label + "-amp1.amp", format="amp1")
    legacy = Amp.load(label + "-amp1.amp")
    assert type(legacy.descriptor) is type(descriptor)
    assert legacy.descriptor.todict() == descriptor.todict()
    assert legacy.get_potential_energy(images[1]) == pytest.approx(
        loaded.get_potential_energy(images[1]), rel=1e-12)

    def energy(a):
        a = a.copy()
        a.calc = loaded
        return a.get_potential_energy()
    assert_forces_are_gradients(energy, atoms, atoms.get_forces(), atol=1e-6)
    # The fitted model is steep (the FD error goes as h^2, 1e-6 at h 1e-6).
    assert_stress_is_strain_derivative(energy, atoms, atoms.get_stress(),
                                       h=1e-7, atol=1e-6)
    start = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=1.0 * units.fs).run(5)
    assert np.all(np.isfinite(atoms.positions))
    assert abs(atoms.get_total_energy() - start) < 0.01
