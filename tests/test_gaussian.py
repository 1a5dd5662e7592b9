import copy
import json
import os

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.io import read

from amp.descriptor.base import ElementNotCoveredError
from amp.descriptor.cutoffs import Polynomial
from amp.descriptor.gaussian import (Gaussian, make_default_symmetry_functions,
                                     make_symmetry_functions)
from amp.utilities import hash_images
from checks import (assert_forces_are_gradients, assert_invariant,
                    assert_stress_is_strain_derivative, coo_force_matrix)
from conftest import AMP_REFERENCE

CASES = ["pd3o2_default", "pd4o2_default", "pd3o2_forcecall_gs",
         "pd4o2_forcecall_gs"]


def load_case(case):
    with open(os.path.join(AMP_REFERENCE, "fingerprints_%s.json" % case)) as f:
        return json.load(f)


@pytest.mark.parametrize("case", CASES)
def test_reproduces_amp(case):
    ref = load_case(case)
    images = hash_images(os.path.join(AMP_REFERENCE, ref["images_file"]))
    assert list(images) == ref["image_ids"]
    Gs = None if case.endswith("default") else ref["Gs"]
    descriptor = Gaussian(cutoff=ref["cutoff"], Gs=Gs)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    assert descriptor.Gs == ref["Gs"]
    assert descriptor.elements == ref["elements"]
    worst_fp = worst_prime = 0.0
    for key in ref["image_ids"]:
        ours = descriptor.fingerprints[key]
        theirs = ref["fingerprints"][key]
        assert [s for s, _ in ours] == [s for s, _ in theirs]
        worst_fp = max(worst_fp, max(np.max(np.abs(np.subtract(a, b)))
                                     for (_, a), (_, b) in zip(ours, theirs)))
        primes = {",".join(map(str, k)): v
                  for k, v in descriptor.fingerprintprimes[key].items()}
        assert set(primes) == set(ref["fingerprintprimes"][key])
        worst_prime = max(worst_prime, max(
            np.max(np.abs(np.subtract(primes[k], v)))
            for k, v in ref["fingerprintprimes"][key].items()))
    assert worst_fp < 1e-10
    assert worst_prime < 1e-10


def test_default_symmetry_functions_match_amp():
    ref = load_case("pd3o2_default")
    assert make_default_symmetry_functions(["O", "Pd"]) == ref["Gs"]


def test_make_symmetry_functions_order():
    G2 = make_symmetry_functions(["Cu", "O"], "G2", etas=[1.0, 2.0],
                                 offsets=[0.0, 1.0])
    assert [(g["eta"], g["element"], g["offset"]) for g in G2] == [
        (1.0, "Cu", 0.0), (1.0, "Cu", 1.0), (1.0, "O", 0.0), (1.0, "O", 1.0),
        (2.0, "Cu", 0.0), (2.0, "Cu", 1.0), (2.0, "O", 0.0), (2.0, "O", 1.0)]
    G4 = make_symmetry_functions(["O", "Cu"], "G4", etas=[0.005],
                                 zetas=[1.0, 4.0], gammas=[1.0, -1.0])
    assert len(G4) == 2 * 2 * 3
    assert G4[1]["elements"] == ["Cu", "O"]  # pairs are sorted
    assert [(g["zeta"], g["gamma"]) for g in G4[::3]] == [
        (1.0, 1.0), (1.0, -1.0), (4.0, 1.0), (4.0, -1.0)]


def g5_functions(elements):
    Gs = make_symmetry_functions(elements, "G2", etas=[0.05, 4.0],
                                 offsets=[0.0, 1.5])
    Gs += make_symmetry_functions(elements, "G5", etas=[0.005, 0.1],
                                  zetas=[1.0, 2.0], gammas=[1.0, -1.0])
    Gs += make_symmetry_functions(elements, "G4", etas=[0.01], zetas=[3.0],
                                  gammas=[1.0])
    return {e: Gs for e in elements}


def rattled_alloy():
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 4, 6]] = "Au"
    atoms.set_cell(atoms.cell + [[0, 0.2, 0], [0.1, 0, 0], [0, 0, 0]],
                   scale_atoms=True)
    atoms.rattle(0.1, rng=np.random.default_rng(4))
    return atoms


def finite_difference_primes(descriptor, atoms, h=1e-5):
    """d G_n / d x_{m,l} by central differences, as a dense array."""
    n_atoms = len(atoms)
    out = {}
    for m in range(n_atoms):
        for axis in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[m, axis] += h
            minus.positions[m, axis] -= h
            fp_plus = descriptor.compute(plus).as_amp_fingerprints()
            fp_minus = descriptor.compute(minus).as_amp_fingerprints()
            for n in range(n_atoms):
                out[m, n, axis] = (np.subtract(fp_plus[n][1], fp_minus[n][1])
                                   / (2 * h))
    return out


SYSTEMS = {
    "periodic alloy, G2/G4/G5 with offsets": (
        rattled_alloy, lambda: Gaussian(cutoff=4.5,
                                        Gs=g5_functions(["Au", "Cu"]))),
    "slab, polynomial cutoff": (
        lambda: read(os.path.join(AMP_REFERENCE, "pd4o2.traj")),
        lambda: Gaussian(cutoff=Polynomial(6.0, gamma=4))),
    "molecule, default functions": (
        lambda: molecule("CH3CH2OH"), lambda: Gaussian(cutoff=3.0)),
    # G4 etas with and without a fused Gaussian-cutoff series (eta 8 has
    # none): both derivative paths.
    "periodic alloy, G4 with eta 1 and 8": (
        rattled_alloy, lambda: Gaussian(cutoff=4.5, Gs={
            e: make_symmetry_functions(["Au", "Cu"], "G4", etas=[1.0, 8.0],
                                       zetas=[1.0, 2.0], gammas=[1.0, -1.0])
            for e in ("Au", "Cu")})),
    # Element pairs with different functions, and pairs with none: the
    # value and fused paths take all pairs at once (absent columns).
    "periodic alloy, different functions per element pair": (
        rattled_alloy, lambda: Gaussian(cutoff=4.5, Gs={
            "Au": (make_symmetry_functions(["Cu"], "G2", etas=[0.1])
                   + [{"type": "G4", "elements": ["Au", "Cu"], "eta": 0.005,
                       "zeta": 1.0, "gamma": 1.0},
                      {"type": "G4", "elements": ["Cu", "Cu"], "eta": 0.005,
                       "zeta": 2.0, "gamma": -1.0},
                      {"type": "G5", "elements": ["Cu", "Cu"], "eta": 0.1,
                       "zeta": 1.0, "gamma": 1.0}]),
            "Cu": [{"type": "G4", "elements": ["Au", "Au"], "eta": 1.0,
                    "zeta": 4.0, "gamma": 1.0},
                   {"type": "G4", "elements": ["Au", "Au"], "eta": 0.005,
                    "zeta": 1.0, "gamma": 1.0}]})),
}


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_derivatives_match_finite_differences(name):
    make_atoms, make_descriptor = SYSTEMS[name]
    atoms, descriptor = make_atoms(), make_descriptor()
    descriptor.calculate_fingerprints([atoms], calculate_derivatives=True)
    primes = descriptor.fingerprintprimes[next(iter(descriptor.arrays))]
    fd = finite_difference_primes(descriptor, atoms)
    checked = 0
    for (m, n, axis), expected in fd.items():
        key = (m, atoms[m].symbol, n, atoms[n].symbol, axis)
        got = primes.get(key)
        if got is None:  # no key: not neighbours, derivative must vanish
            assert np.max(np.abs(expected)) < 1e-9
        else:
            np.testing.assert_allclose(got, expected, atol=1e-8, rtol=1e-6)
            checked += 1
    assert checked >= 3 * len(atoms)


def test_forces_and_virial_of_a_linear_energy():
    """forces() and virial() are the gradients of E = sum w . G."""
    atoms = rattled_alloy()
    descriptor = Gaussian(cutoff=4.5, Gs=g5_functions(["Au", "Cu"]))
    fp = descriptor.compute(atoms, derivatives=True)
    rng = np.random.default_rng(0)
    weights = {e: rng.normal(size=v.shape[1]) for e, v in fp.values.items()}

    def energy(a):
        f = descriptor.compute(a)
        return sum(float(np.sum(f.values[e] @ weights[e])) for e in f.values)

    dE_dG = {e: np.tile(weights[e], (len(v), 1)) for e, v in fp.values.items()}
    forces = fp.forces(dE_dG)
    assert_forces_are_gradients(energy, atoms, forces, h=1e-5, atol=1e-7)
    gvec = np.concatenate([dE_dG[e].ravel() for e in sorted(dE_dG)])
    np.testing.assert_allclose(fp.force_matrix() @ gvec, forces.ravel(),
                               atol=1e-12)
    # The matrix built directly equals the plain COO one, without zeros.
    matrix, oracle = fp.force_matrix(), coo_force_matrix(fp)
    np.testing.assert_allclose(matrix.toarray(), oracle.toarray(), rtol=0,
                               atol=1e-15 * abs(oracle).max())
    oracle.eliminate_zeros()
    assert matrix.nnz == oracle.nnz and np.all(matrix.data != 0)
    assert all(np.all(np.diff(matrix.indices[a:b]) > 0) for a, b in
               zip(matrix.indptr[:-1], matrix.indptr[1:]))
    # Virial: dE/d(strain), strain applied to cell and positions together.
    assert_stress_is_strain_derivative(
        energy, atoms, fp.virial(dE_dG) / atoms.get_volume(), h=1e-5,
        atol=1e-6 / atoms.get_volume())


def fingerprint_rows(descriptor, atoms):
    fp = descriptor.compute(atoms)
    return np.array([v for _, v in fp.as_amp_fingerprints()])


def test_invariances():
    atoms = rattled_alloy()
    descriptor = Gaussian(cutoff=4.5, Gs=g5_functions(["Au", "Cu"]))
    assert_invariant(lambda a: fingerprint_rows(descriptor, a), atoms,
                     per_atom=True, atol=1e-12)


def test_small_cell_sees_its_own_images():
    atoms = bulk("Cu", "fcc", a=3.6)  # one atom, cell far below 6.5 A
    descriptor = Gaussian(cutoff=6.5)
    fp = descriptor.compute(atoms, derivatives=True)
    big = atoms * (3, 3, 3)
    fp_big = descriptor.compute(big)
    np.testing.assert_allclose(fp_big.values["Cu"],
                               np.tile(fp.values["Cu"], (27, 1)), rtol=1e-12)
    # The atom's own images move with it: no net derivative.
    primes = fp.as_amp_primes()
    assert np.max(np.abs(primes[(0, "Cu", 0, "Cu", 0)])) < 1e-12


def test_isolated_atom_and_atom_without_neighbours():
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.9, 0, 0], [30, 0, 0]])
    descriptor = Gaussian(cutoff=6.5)
    descriptor.calculate_fingerprints(atoms, calculate_derivatives=True)
    key = next(iter(descriptor.arrays))
    fps = descriptor.fingerprints[key]
    assert fps[2][0] == "O" and fps[2][1] == [0.0] * len(fps[2][1])
    assert max(fps[0][1]) > 0
    primes = descriptor.fingerprintprimes[key]
    assert primes[(2, "O", 2, "O", 0)] == [0.0] * len(fps[2][1])
    assert (2, "O", 0, "H", 0) not in primes
    lonely = Atoms("Cu", positions=[[0, 0, 0]])
    values = Gaussian(cutoff=6.5).compute(lonely, True).values["Cu"]
    assert values.shape == (1, 8) and not values.any()


def test_array_form_and_views():
    images = read(os.path.join(AMP_REFERENCE, "pd4o2.traj"), ":")
    descriptor = Gaussian()
    descriptor.calculate_fingerprints(images)
    key = next(iter(descriptor.arrays))
    fp = descriptor.arrays[key]
    assert set(fp.values) == {"O", "Pd"}
    assert fp.values["Pd"].shape == (len(fp.atom_index["Pd"]), 20)
    assert key in descriptor.fingerprints
    assert key not in descriptor.fingerprintprimes  # no derivatives asked
    neighbors = descriptor.neighborlist[key]
    assert len(neighbors) == len(images[0])
    # Derivatives are added when asked for later.
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    assert key in descriptor.fingerprintprimes
    parameters = descriptor.todict()
    again = Gaussian.fromdict(json.loads(json.dumps(parameters)))
    assert again.todict() == parameters
    np.testing.assert_array_equal(again.compute(images[0]).values["Pd"],
                                  fp.values["Pd"])


def test_derivative_storage_is_compact():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    atoms.rattle(0.05, rng=np.random.default_rng(0))
    fp = Gaussian(cutoff=6.5).compute(atoms, derivatives=True)
    assert fp.nbytes < 5e6


@pytest.mark.parametrize("Gs, message", [
    ({"Cu": []}, "no symmetry functions"),
    ({"Cu": [{"type": "G3", "eta": 1.0}]}, "unknown symmetry function type"),
    ({"Cu": [{"type": "G2", "element": "Cu"}]}, "misses eta"),
    ({"Cu": [{"type": "G4", "elements": ["Cu", "Cu"], "eta": 1.0,
              "zeta": 1.0}]}, "misses gamma"),
    ({"Cu": [{"type": "G2", "element": "Cu", "eta": "big"}]}, "finite number"),
])
def test_bad_symmetry_functions(Gs, message):
    with pytest.raises(ValueError, match=message):
        Gaussian(Gs=Gs)


def test_bad_input_leaves_nothing_stored(tmp_path):
    descriptor = Gaussian(cutoff=6.5, Gs={"Cu": make_symmetry_functions(
        ["Cu"], "G2", etas=[1.0])})
    good = bulk("Cu", "fcc", a=3.6)
    with pytest.raises(ElementNotCoveredError,
                       match=r"image 1 \(hash [0-9a-f]{32}\) has O, but the "
                       "descriptor covers Cu only"):
        descriptor.calculate_fingerprints([good, molecule("H2O")[:1]])
    assert len(descriptor.arrays) == 0
    with pytest.raises(ValueError, match="no atoms"):
        descriptor.calculate_fingerprints([good, Atoms()])
    nan = good.copy()
    nan.positions[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        descriptor.calculate_fingerprints([good, nan])
    with pytest.raises(ValueError, match="does not exist"):
        descriptor.calculate_fingerprints(str(tmp_path / "none.traj"))
    assert len(descriptor.arrays) == 0
    with pytest.raises(ValueError, match="cutoff radius"):
        Gaussian(cutoff=0.0)
    with pytest.raises(ValueError, match="atom-centered"):
        Gaussian(mode="image-centered")


def water_and_lonely_oxygen():
    return Atoms("H2O", positions=[[0, 0, 0], [0.9, 0, 0], [30, 0, 0]])


@pytest.mark.parametrize("name", list(SYSTEMS) + ["atom without neighbours"])
def test_contracted_path_equals_stored_derivatives(name):
    """compute_contracted (inference's fused path) gives the same values and
    dE/dr_e as compute(derivatives=True) contracted afterwards, with a
    dE/dG that depends on the fingerprints (as a network's does)."""
    if name == "atom without neighbours":
        atoms, descriptor = water_and_lonely_oxygen(), Gaussian(cutoff=6.5)
    else:
        make_atoms, make_descriptor = SYSTEMS[name]
        atoms, descriptor = make_atoms(), make_descriptor()
    stored = descriptor.compute(atoms, derivatives=True)

    def dE_dG_of(element, values):
        return np.sin(values + np.arange(values.shape[1]))

    seen = np.zeros(len(atoms), dtype=int)

    def evaluate(element, index, values):
        seen[index] += 1
        np.testing.assert_array_equal(
            values, stored.values[element][np.searchsorted(
                stored.atom_index[element], index)])
        return dE_dG_of(element, values)

    fingerprints, gradient = descriptor.compute_contracted(atoms, evaluate)
    assert (seen == 1).all()  # every atom evaluated once, isolated included
    assert not fingerprints.has_derivatives
    expected = stored.entry_gradients(
        {e: dE_dG_of(e, v) for e, v in stored.values.items()})
    scale = np.abs(expected).max()
    np.testing.assert_allclose(gradient, expected, rtol=0,
                               atol=1e-13 * scale)
    for element in stored.values:
        np.testing.assert_array_equal(fingerprints.values[element],
                                      stored.values[element])


@pytest.mark.parametrize("name", list(SYSTEMS) + ["large G4 eta"])
def test_values_alone_equal_values_with_derivatives(name):
    """The value-only path fuses each G4 Gaussian with the R_jk cutoff into
    one series (when the cutoff allows); it agrees with the derivative
    path's separate factors."""
    if name == "large G4 eta":
        atoms = rattled_alloy()
        Gs = make_symmetry_functions(["Au", "Cu"], "G4", etas=[0.005, 400.0],
                                     zetas=[1.0], gammas=[1.0, -1.0])
        descriptor = Gaussian(cutoff=4.5, Gs={"Au": Gs, "Cu": Gs})
    else:
        make_atoms, make_descriptor = SYSTEMS[name]
        atoms, descriptor = make_atoms(), make_descriptor()
    alone = descriptor.compute(atoms).values
    with_derivatives = descriptor.compute(atoms, True).values
    for element, block in with_derivatives.items():
        np.testing.assert_allclose(alone[element], block, rtol=1e-13,
                                   atol=1e-14)


def all_results(descriptor, atoms):
    """Values, stored derivatives and the contracted gradient of one image,
    as a flat dict of arrays."""
    results = {}
    for element, block in descriptor.compute(atoms).values.items():
        results["values", element] = block
    stored = descriptor.compute(atoms, True)
    for element, block in stored.derivatives.items():
        results["derivatives", element] = block

    def evaluate(element, index, values):
        return np.cos(values) * (1.0 + index[:, None] % 3)

    _, results["gradient"] = descriptor.compute_contracted(atoms, evaluate)
    return results


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_reused_workspace_gives_the_same_bits(name):
    """The kernels keep their scratch memory from call to call, sized to the
    largest chunk seen: a big image, then a small one, then the big one
    again give exactly what a fresh descriptor gives for each."""
    make_atoms, make_descriptor = SYSTEMS[name]
    big = make_atoms()
    big = big * (2, 2, 2) if big.pbc.all() else big
    small = big[:3]
    small.pbc = False
    # the elements (and default functions) of big
    descriptor = make_descriptor().resolve([big])
    # Copies get new, empty workspaces.
    fresh = {key: all_results(copy.deepcopy(descriptor), atoms)
             for key, atoms in (("big", big), ("small", small))}
    for key, atoms in (("big", big), ("small", small), ("big", big),
                       ("small", small)):
        results = all_results(descriptor, atoms)
        assert results.keys() == fresh[key].keys()
        for part, expected in fresh[key].items():
            np.testing.assert_array_equal(results[part], expected)
    plans = descriptor._element_plans()[0].values()
    assert max(plan.workspace.nbytes for plan in plans) > 0


def test_workspace_views_and_growth():
    from amp.descriptor.symmetry.workspace import Workspace

    workspace = Workspace()
    first = workspace.empty(10)  # nothing held yet: a new array
    workspace.empty((2, 3), np.int64)
    workspace.empty(5)
    assert workspace.nbytes == 0
    workspace.reset()  # grows to what that chunk needed
    assert workspace.nbytes >= first.nbytes + 48 + 40
    a, b = workspace.empty(10), workspace.empty((2, 3), np.int64)
    assert not np.shares_memory(a, b)
    assert np.shares_memory(a, workspace._buffer)
    a[:] = 1.0
    b[:] = 7
    assert (a == 1.0).all() and (b == 7).all()
    mark = workspace.mark()
    c = workspace.empty(5)
    workspace.release(mark)
    assert np.shares_memory(c, workspace.empty(5))  # released space reused
    big = workspace.empty(10_000)  # does not fit: a new array
    assert not np.shares_memory(big, workspace._buffer)
    workspace.reset()
    assert workspace.nbytes >= big.nbytes


def test_workspace_is_lent_once_at_a_time():
    """A call made while the workspace is in use (another thread, or a
    re-entrant call) gets a workspace of its own."""
    import pickle

    from amp.descriptor.symmetry.workspace import Workspace

    workspace = Workspace()
    with workspace.lend() as outer:
        assert outer is workspace
        with workspace.lend() as inner:
            assert inner is not workspace
    with workspace.lend() as again:
        assert again is workspace
    assert isinstance(pickle.loads(pickle.dumps(workspace)), Workspace)
    workspace.empty(100)
    workspace.reset()
    assert copy.deepcopy(workspace).nbytes == 0


def test_evaluate_that_reenters_the_descriptor():
    """dE/dG callbacks may compute other images with the same descriptor
    while a chunk's temporaries are alive."""
    atoms = rattled_alloy()
    descriptor = Gaussian(cutoff=4.5, Gs=g5_functions(["Au", "Cu"]))
    expected = all_results(Gaussian(cutoff=4.5,
                                     Gs=g5_functions(["Au", "Cu"])), atoms)
    other = atoms * (1, 2, 1)

    def evaluate(element, index, values):
        descriptor.compute(other, True)
        return np.cos(values) * (1.0 + index[:, None] % 3)

    _, gradient = descriptor.compute_contracted(atoms, evaluate)
    np.testing.assert_array_equal(gradient, expected["gradient"])
