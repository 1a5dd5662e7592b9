"""n2p2 potential folders: n2p2's own reference values, every symmetry-
function type against a loop-based implementation and finite differences,
the networks, the file formats read as hostile text, and the writer's
round trip from Amp models."""
import json
import os
import shutil

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import add_adsorbate, fcc111
from ase.calculators.emt import EMT

import n2p2_reference as loops
from amp import Amp
from amp import n2p2
from amp.descriptor.cutoffs import Cosine, Polynomial
from amp.descriptor.fingerprints import entry_forces
from amp.descriptor.gaussian import Gaussian, make_symmetry_functions
from amp.descriptor.n2p2 import N2P2Descriptor, SymmetryFunction, sort_key
from amp.descriptor.n2p2.cutoffs import CompactFunction, CutoffFunction
from amp.model.n2p2 import activation, scaling_map
from amp.model.neuralnetwork import NeuralNetwork
from amp.store import limits
from amp.store import n2p2 as files
from amp.store.files import UnsafeFileError
from amp.utilities import hash_images
from checks import (assert_forces_are_gradients, assert_invariant,
                    assert_stress_is_strain_derivative, energy_of)

HERE = os.path.dirname(os.path.abspath(__file__))
WATER = os.path.join(HERE, "data", "n2p2-reference", "H2O_RPBE-D3")
N2P2FormatError = n2p2.N2P2FormatError


@pytest.fixture(scope="module")
def reference():
    with open(os.path.join(WATER, "reference.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def water_box():
    """n2p2's 1080-atom structure, numbers as in input.data (bohr)."""
    return n2p2.read_structures(os.path.join(WATER, "input.data"))[0]


@pytest.fixture(scope="module")
def water():
    """The potential in ASE's units."""
    return n2p2.load(WATER, cflength=1 / units.Bohr,
                     cfenergy=1 / units.Hartree)


def copy_potential(tmp_path, name="pot"):
    target = tmp_path / name
    shutil.copytree(WATER, target)
    return target


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# n2p2's own numbers ------------------------------------------------------

def test_reproduces_n2p2_reference_values(reference, water_box):
    calc = n2p2.load(WATER)     # bohr and hartree, as input.data
    atoms = water_box.copy()
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    expected = np.array(reference["forces"])
    assert abs(energy - reference["energy"]) <= 1e-10 * abs(
        reference["energy"])
    assert np.abs(forces - expected).max() <= 1e-8 * np.abs(expected).max()
    assert atoms.get_chemical_symbols() == reference["symbols"]
    np.testing.assert_allclose(calc.results["energies"].sum(), energy,
                               rtol=1e-13)


def test_reference_values_in_ase_units(reference, water_box, water):
    atoms = n2p2.read_structures(os.path.join(WATER, "input.data"),
                                 cflength=1 / units.Bohr)[0]
    np.testing.assert_allclose(atoms.positions,
                               water_box.positions * units.Bohr, rtol=1e-15)
    atoms.calc = water
    energy = atoms.get_potential_energy() / units.Hartree
    forces = atoms.get_forces() * units.Bohr / units.Hartree
    expected = np.array(reference["forces"])
    assert abs(energy - reference["energy"]) <= 1e-10 * abs(
        reference["energy"])
    assert np.abs(forces - expected).max() <= 1e-8 * np.abs(expected).max()
    assert atoms.get_stress().shape == (6,)


def test_same_numbers_through_amp_load(reference, water_box):
    calc = Amp.load(WATER, format="n2p2")
    atoms = water_box.copy()
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(
        reference["energy"], rel=1e-12)


# Physics on small systems ------------------------------------------------

def water_cell(water_box, n_molecules=4, box=9.0):
    """The first molecules of the box (made whole), in Angstrom, in a
    periodic cubic cell (``box``) or without one (None)."""
    atoms = water_box[:3 * n_molecules].copy()
    atoms.set_cell(water_box.cell * units.Bohr, scale_atoms=True)
    cell = np.asarray(atoms.cell)
    for k in range(1, len(atoms)):
        oxygen = 3 * (k // 3)
        delta = atoms.positions[k] - atoms.positions[oxygen]
        atoms.positions[k] -= np.round(delta @ np.linalg.inv(cell)) @ cell
    atoms.set_pbc(False)
    atoms.set_cell(None)
    if box is not None:
        atoms.center(vacuum=0.0)
        atoms.set_cell([box, box * 1.05, box * 0.97], scale_atoms=False)
        atoms.center()
        atoms.set_pbc(True)
    return atoms


def test_forces_are_gradients_of_the_energy(water_box, water):
    atoms = water_cell(water_box, 3, box=None)
    atoms.calc = water
    assert_forces_are_gradients(energy_of(water), atoms, atoms.get_forces(),
                                atol=2e-7)


def test_stress_is_the_strain_derivative(water_box, water):
    atoms = water_cell(water_box, 4)
    atoms.calc = water
    assert_stress_is_strain_derivative(energy_of(water), atoms,
                                       atoms.get_stress(), atol=1e-7)


def test_energy_and_atomic_energies_are_invariant(water_box, water):
    atoms = water_cell(water_box, 4)

    def atomic(a):
        a = a.copy()
        a.calc = water
        a.get_potential_energy()
        return water.results["energies"]

    assert_invariant(energy_of(water), atoms, atol=1e-9)
    assert_invariant(atomic, atoms, per_atom=True, atol=1e-9)


def test_isolated_atoms_copies_and_pickles(water):
    import copy
    import pickle

    atoms = Atoms("HOH", positions=[[0, 0, 0], [0.96, 0, 0], [20, 0, 0]])
    atoms.calc = water
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.all(forces[2] == 0.0) and np.abs(forces[:2]).max() > 0.1
    for other in (copy.deepcopy(water), pickle.loads(pickle.dumps(water))):
        atoms.calc = other
        assert atoms.get_potential_energy() == energy


def test_structures_round_trip(tmp_path, water_box):
    path = tmp_path / "input.data"
    small = water_box[:9]
    small.calc = None
    n2p2.write_structures(path, [small, water_cell(water_box, 2, None)])
    first, second = n2p2.read_structures(path)
    np.testing.assert_array_equal(first.positions, small.positions)
    np.testing.assert_array_equal(first.cell, small.cell)
    assert first.get_chemical_symbols() == small.get_chemical_symbols()
    assert not any(second.pbc) and first.pbc.all()
    with pytest.raises(ValueError, match="three directions or in none"):
        n2p2.write_structures(path, [Atoms("H", cell=[3, 3, 3],
                                           pbc=[True, False, False])])


def test_unknown_element_is_named(water):
    atoms = Atoms("H2C", positions=[[0, 0, 0], [0.7, 0, 0], [0, 1.1, 0]])
    atoms.calc = water
    with pytest.raises(ValueError, match="contains C"):
        atoms.get_potential_energy()


# Every symmetry-function type against plain loops ------------------------

SF = SymmetryFunction.from_parameters


def every_type(element):
    """One or two functions of every n2p2 type for ``element``, covering
    shifts, non-integer zeta, |lambda| > 1, compact subtypes and angle
    ranges beyond [0, 180] degrees."""
    return [
        SF(element, 2, {"e1": "O", "eta": 0.3, "rs": 0.5, "rc": 3.5}),
        SF(element, 2, {"e1": "H", "eta": 0.1, "rs": 0.0, "rc": 3.0}),
        SF(element, 12, {"eta": 0.2, "rs": 0.3, "rc": 3.2}),
        SF(element, 3, {"e1": "H", "e2": "O", "eta": 0.05, "lambda": 1.0,
                         "zeta": 4.0, "rc": 3.5, "rs": 0.0}),
        SF(element, 3, {"e1": "O", "e2": "O", "eta": 0.05, "lambda": -1.0,
                         "zeta": 1.0, "rc": 3.5, "rs": 0.4}),
        SF(element, 3, {"e1": "H", "e2": "H", "eta": 0.02, "lambda": -1.0,
                         "zeta": 2.5, "rc": 3.0, "rs": 0.0}),
        SF(element, 9, {"e1": "C", "e2": "H", "eta": 0.03, "lambda": 1.0,
                         "zeta": 2.0, "rc": 3.4, "rs": 0.0}),
        SF(element, 9, {"e1": "O", "e2": "H", "eta": 0.03, "lambda": -0.5,
                         "zeta": 3.0, "rc": 3.4, "rs": 0.2}),
        SF(element, 13, {"eta": 0.04, "rs": 0.1, "lambda": 1.0, "zeta": 1.0,
                          "rc": 3.3}),
        SF(element, 13, {"eta": 0.04, "rs": 0.0, "lambda": 1.5, "zeta": 2.0,
                          "rc": 3.3}),
        SF(element, 20, {"e1": "O", "rl": 0.5, "rc": 3.5, "subtype": "p2"}),
        SF(element, 20, {"e1": "H", "rl": -3.0, "rc": 3.0,
                          "subtype": "p3a"}),
        SF(element, 23, {"rl": 1.0, "rc": 3.5, "subtype": "e"}),
        SF(element, 21, {"e1": "H", "e2": "O", "rl": -3.5, "rc": 3.5,
                          "angle_left": 0.0, "angle_right": 180.0,
                          "subtype": "p2"}),
        SF(element, 21, {"e1": "O", "e2": "O", "rl": 0.5, "rc": 3.5,
                          "angle_left": -135.0, "angle_right": 135.0,
                          "subtype": "p1"}),
        SF(element, 22, {"e1": "H", "e2": "C", "rl": -3.0, "rc": 3.0,
                          "angle_left": 45.0, "angle_right": 315.0,
                          "subtype": "p4"}),
        SF(element, 24, {"rl": -3.2, "rc": 3.2, "angle_left": 30.0,
                          "angle_right": 150.0, "subtype": "p2a"}),
        SF(element, 25, {"rl": 0.8, "rc": 3.4, "angle_left": 0.0,
                          "angle_right": 360.0, "subtype": "e"}),
    ]


def small_system(seed, periodic):
    rng = np.random.default_rng(seed)
    while True:
        positions = rng.random((7, 3)) * 4.0
        d = np.linalg.norm(positions[:, None] - positions[None], axis=2)
        if (d + 10 * np.eye(7)).min() > 0.9:
            break
    return Atoms("HOHCOHC", positions=positions,
                 cell=[4.5, 4.2, 4.8] if periodic else None, pbc=periodic)


ALL_FUNCTIONS = [f for e in ("H", "O", "C") for f in every_type(e)]


@pytest.mark.parametrize("cutoff_type, alpha",
                         [(0, 0.0), (1, 0.3), (2, 0.0), (3, 0.0), (4, 0.2),
                          (5, 0.0), (6, 0.1), (7, 0.5), (8, 0.0)])
def test_every_type_and_cutoff_matches_plain_loops(cutoff_type, alpha):
    for seed, periodic in ((cutoff_type, True), (cutoff_type + 20, False)):
        atoms = small_system(seed, periodic)
        descriptor = N2P2Descriptor(ALL_FUNCTIONS, ["H", "O", "C"],
                                    cutoff_type, alpha)
        values = descriptor.compute(atoms).values
        expected = loops.fingerprints(atoms, descriptor.functions,
                                      cutoff_type, alpha)
        for element, rows in expected.items():
            assert np.count_nonzero(rows) > 0.5 * rows.size
            np.testing.assert_allclose(values[element], rows, rtol=1e-12,
                                       atol=1e-13 * np.abs(rows).max())


@pytest.mark.parametrize("cutoff_type, alpha", [(0, 0.0), (1, 0.3), (2, 0.0),
                                                (4, 0.2), (6, 0.1),
                                                (8, 0.0)])
def test_contracted_gradients_are_finite_differences(cutoff_type, alpha):
    """Forces of ``E = sum_i w . G_i`` (random ``w``) through every
    kernel's contracted gradient, against central differences."""
    atoms = small_system(40 + cutoff_type, True)
    descriptor = N2P2Descriptor(ALL_FUNCTIONS, ["H", "O", "C"], cutoff_type,
                                alpha)
    rng = np.random.default_rng(cutoff_type)
    weights = {e: rng.normal(size=len(f))
               for e, f in descriptor.functions.items()}

    def energy(a):
        values = descriptor.compute(a).values
        return sum((values[e] @ weights[e]).sum() for e in values)

    fingerprints, gradient = descriptor.compute_contracted(
        atoms, lambda e, index, g: np.tile(weights[e], (len(index), 1)))
    assert_forces_are_gradients(energy, atoms,
                                entry_forces(fingerprints.neighbors,
                                             gradient), atol=3e-6)


def test_cutoff_and_compact_slopes_are_derivatives():
    r = np.linspace(0.1, 4.9, 97)
    for kind in range(9):
        for alpha in (0.0, 0.4):
            f = CutoffFunction(kind, 5.0, alpha)
            value, slope = f(r)
            numeric = (f(r + 1e-6)[0] - f(r - 1e-6)[0]) / 2e-6
            smooth = np.abs(r - alpha * 5.0) > 1e-3 if kind not in (
                0, 2, 3) else np.ones_like(r, dtype=bool)
            np.testing.assert_allclose(slope[smooth], numeric[smooth],
                                       atol=2e-7)
            assert value[-1] >= 0.0 and f(np.array([5.0, 6.0]))[0].max() == 0
    for subtype in ("p1", "p2", "p3", "p4", "p2a", "e"):
        compact = CompactFunction(subtype, -1.0, 3.0)
        a = np.linspace(-0.9, 2.9, 77)
        value, slope = compact(a)
        numeric = (compact(a + 1e-6)[0] - compact(a - 1e-6)[0]) / 2e-6
        np.testing.assert_allclose(slope, numeric, atol=1e-6)
        np.testing.assert_allclose(compact(np.array([1.0]))[0], 1.0)


def test_n2p2_sort_order():
    index = {"H": 0, "O": 1}
    scrambled = [
        SF("O", 3, {"e1": "H", "e2": "O", "eta": 0.01, "lambda": -1.0,
                    "zeta": 1.0, "rc": 12.0, "rs": 0.0}),
        SF("O", 2, {"e1": "O", "eta": 0.01, "rs": 0.0, "rc": 12.0}),
        SF("O", 3, {"e1": "O", "e2": "H", "eta": 0.01, "lambda": 1.0,
                    "zeta": 1.0, "rc": 12.0, "rs": 0.0}),
        SF("O", 2, {"e1": "H", "eta": 0.01, "rs": 0.0, "rc": 12.0}),
        SF("O", 2, {"e1": "H", "eta": 0.001, "rs": 0.5, "rc": 12.0}),
        SF("O", 2, {"e1": "H", "eta": 0.01, "rs": 0.0, "rc": 10.0}),
        SF("O", 9, {"e1": "H", "e2": "H", "eta": 0.001, "lambda": 1.0,
                    "zeta": 1.0, "rc": 6.0, "rs": 0.0}),
        SF("O", 3, {"e1": "H", "e2": "H", "eta": 0.01, "lambda": 1.0,
                    "zeta": 4.0, "rc": 12.0, "rs": 0.0}),
    ]
    order = sorted(range(len(scrambled)),
                   key=lambda k: sort_key(scrambled[k], index, 2))
    # type, then rc, eta, rs, (zeta, lambda,) neighbour indices
    assert order == [5, 4, 3, 1, 0, 2, 7, 6]
    assert scrambled[2].e1 == "H" and scrambled[2].e2 == "O"


# Networks ----------------------------------------------------------------

@pytest.mark.parametrize("letter", list(files.ACTIVATIONS))
def test_activations_and_their_slopes(letter):
    x = np.linspace(-40.0, 40.0, 321)
    value, slope = activation(letter, x)
    closed = {"l": x, "t": np.tanh(x), "r": np.maximum(x, 0.0),
              "g": np.exp(-x * x / 2), "c": np.cos(x), "e": np.exp(-x),
              "h": x * x}
    if letter in closed:
        np.testing.assert_allclose(value, closed[letter], rtol=1e-15)
    inner = np.abs(x) < 30.0
    numeric = (activation(letter, x + 1e-6)[0] - activation(
        letter, x - 1e-6)[0]) / 2e-6
    kink = np.abs(x) < 1e-3 if letter == "r" else np.zeros_like(inner)
    np.testing.assert_allclose(slope[inner & ~kink],
                               numeric[inner & ~kink], rtol=2e-6,
                               atol=1e-7)
    if letter == "p":   # n2p2's limits beyond |x| > 35
        assert value[-1] == x[-1] and value[0] == 0.0
        assert slope[-1] == 1.0 and slope[0] == 0.0
    if letter == "s":
        assert value[-1] == 1.0 and value[0] == 0.0 and slope[0] == 0.0


def test_scaling_types_follow_n2p2():
    rows = [[1.0, 5.0, 2.0, 0.5], [-2.0, 2.0, 0.5, 4.0]]
    g = np.array([[3.0, 1.0], [1.0, -1.0]])
    expected = {
        "none": g,
        "center": g - [2.0, 0.5],
        "scale": -1 + 3 * (g - [1.0, -2.0]) / [4.0, 4.0],
        "scalecenter": -1 + 3 * (g - [2.0, 0.5]) / [4.0, 4.0],
        "sigma": -1 + 3 * (g - [2.0, 0.5]) / [0.5, 4.0]}
    for kind, value in expected.items():
        factor, shift = scaling_map(kind, -1.0, 2.0, rows)
        np.testing.assert_allclose(g * factor + shift, value, rtol=1e-15)
    with pytest.raises(ValueError, match="function 2.*max - min"):
        scaling_map("scale", 0.0, 1.0, [[1, 2, 0, 1], [3, 3, 3, 0]])


def test_normalize_nodes_and_atom_energy_offsets(tmp_path, water_box,
                                                 reference):
    folder = copy_potential(tmp_path)
    edit(folder / "input.nn", "#atom_energy                     H "
         "-0.45890771", "atom_energy H -0.45890771")
    edit(folder / "input.nn", "#atom_energy                     O "
         "-74.94518524", "atom_energy O -74.94518524")
    atoms = water_box.copy()
    atoms.calc = n2p2.load(folder)
    shifted = atoms.get_potential_energy()
    assert shifted == pytest.approx(reference["energy"] + 720 * -0.45890771
                                    + 360 * -74.94518524, rel=1e-12)
    edit(folder / "input.nn", "#normalize_nodes", "normalize_nodes")
    calc = n2p2.load(folder)
    small = water_cell(water_box, 2, box=None)
    small.positions /= units.Bohr
    small.calc = calc
    energies = calc.get_potential_energies(small)
    # By hand: each layer's net input divided by the previous width.
    model = calc.model
    fingerprints = calc.descriptor.compute(small)
    for element, g in fingerprints.values.items():
        net = model.networks[element]
        y = g * net.factor + net.shift
        for w, b, letter in zip(net.weights, net.biases, net.letters):
            y = activation(letter, (y @ w + b) / w.shape[0])[0]
        mean, conv = -2.5521343547039809e+01, 2.4265748255366972e+02
        offset = {"H": -0.45890771, "O": -74.94518524}[element]
        rows = fingerprints.atom_index[element]
        np.testing.assert_allclose(energies[rows],
                                   y[:, 0] / conv + mean + offset,
                                   rtol=1e-13)
    assert_forces_are_gradients(energy_of(calc), small, small.get_forces(),
                                h=1e-3, atol=1e-9)


# Files read as hostile text ----------------------------------------------

BAD_SETTINGS = [
    ("cutoff_type                     2", "cutoff_type 2\nmystery_option 3",
     "unknown keyword 'mystery_option'"),
    ("cutoff_type                     2",
     "cutoff_type 2\nfixed_gausswidth H 0.5", "electrostatics"),
    ("cutoff_type                     2",
     "cutoff_type 2\nnnp_type 4G-HDNNP", "not a short-range"),
    ("cutoff_type                     2",
     "cutoff_type 2\nglobal_symfunction_short 2 0.1 0.0 6.0",
     "global symmetry-function"),
    ("cutoff_type                     2", "cutoff_type 2\ncutoff_type 1",
     "appears again"),
    ("cutoff_type                     2", "cutoff_type 2abc", "whole number"),
    ("cutoff_type                     2", "cutoff_type 9",
     "outside"),
    ("cutoff_type                     2", "#", "no 'cutoff_type'"),
    ("mean_energy  -2.5521343547039809E+01", "mean_energy 1.0e99999",
     "out of range"),
    ("conv_length   5.8038448995319847E+00", "#", "all or none"),
    ("number_of_elements              2", "number_of_elements 3",
     "number_of_elements is 3"),
    ("symfunction_short H 2 H 0.001 0.0 12.00",
     "symfunction_short H 2 H 0.001 0.0", "takes 4 fields"),
    ("symfunction_short H 2 H 0.001 0.0 12.00",
     "symfunction_short H 2 H 0.001 0.0 12.00 7.0", "takes 4 fields"),
    ("symfunction_short H 2 H 0.001 0.0 12.00",
     "symfunction_short H 28 H -12.0 12.0", "type 28 is not one of"),
    ("symfunction_short H 2 H 0.001 0.0 12.00",
     "symfunction_short H 2 C 0.001 0.0 12.00", "element C is not"),
    ("symfunction_short H 2 H 0.001 0.0 12.00",
     "symfunction_short H 2 H 0.001 nan 12.00", "not a number"),
    ("symfunction_short H 2 H 0.001 0.0 12.00",
     "symfunction_short H 20 H 0.0 12.0 p7", "subtype 'p7'"),
    ("global_activation_short         t t l",
     "global_activation_short t q l", "unknown activation 'q'"),
    ("global_nodes_short              25 25",
     "global_nodes_short 25 25\nelement_nodes_short H 10 20",
     "global width 25"),
    ("global_nodes_short              25 25",
     "global_nodes_short 25 25\nelement_hidden_layers_short O 3",
     "different numbers of layers"),
    ("global_activation_short         t t l",
     "global_activation_short t t l\nelement_activation_short O p p t",
     "output activation"),
    ("symfunction_short O 3 O O 0.03  1.0 1.0   12.00000",
     "symfunction_short O 3 O O 0.03  1.0 0.0   12.00000",
     "zeta must be positive"),
    ("global_hidden_layers_short      2",
     "global_hidden_layers_short 0", "outside \\[1, 1000\\]"),
]


@pytest.mark.parametrize("old, new, message", BAD_SETTINGS)
def test_bad_settings_are_refused_by_name(tmp_path, old, new, message):
    folder = copy_potential(tmp_path)
    edit(folder / "input.nn", old, new)
    with pytest.raises(N2P2FormatError, match=message):
        n2p2.load(folder)


def test_training_keywords_are_ignored_and_unknown_ones_on_request(tmp_path,
                                                                   water_box):
    folder = copy_potential(tmp_path)
    edit(folder / "input.nn", "cutoff_type                     2",
         "cutoff_type 2\nepochs 10\nkalman_q0 0.01\nrunner_mode 3\n"
         "my_note 1")
    with pytest.raises(N2P2FormatError, match="ignore=\\['my_note'\\]"):
        n2p2.load(folder)
    calc = n2p2.load(folder, ignore=["my_note"])
    ignored = [k for k, _ in calc.potential.settings.ignored]
    assert ignored == ["epochs", "kalman_q0", "runner_mode", "my_note"]


def test_bad_scaling_and_weights_files(tmp_path):
    folder = copy_potential(tmp_path)
    scaling = (folder / "scaling.data").read_text().splitlines()
    (folder / "scaling.data").write_text("\n".join(scaling[:-1]) + "\n")
    with pytest.raises(N2P2FormatError, match="56 rows but input.nn "
                       "defines 57"):
        n2p2.load(folder)
    first = min(k for k, line in enumerate(scaling)
                if not line.startswith("#"))
    swapped = (scaling[:first] + [scaling[first + 1], scaling[first]]
               + scaling[first + 2:])
    (folder / "scaling.data").write_text("\n".join(swapped) + "\n")
    with pytest.raises(N2P2FormatError, match="line %d: row for element 1, "
                       "function 2 where element 1, function 1" % (first + 1)):
        n2p2.load(folder)
    constant = scaling[:first] + [" 1 1 0.5 0.5 0.5 0.0"] + scaling[
        first + 1:]
    (folder / "scaling.data").write_text("\n".join(constant) + "\n")
    with pytest.raises(N2P2FormatError, match="element H, symmetry "
                       "function 1: its max - min"):
        n2p2.load(folder)
    (folder / "scaling.data").write_text("\n".join(
        scaling[:first] + [""] + scaling[first:]) + "\n")
    with pytest.raises(N2P2FormatError, match="empty line"):
        n2p2.load(folder)
    shutil.copy(os.path.join(WATER, "scaling.data"), folder)
    weights = (folder / "weights.008.data").read_text().splitlines()
    (folder / "weights.008.data").write_text("\n".join(
        weights[:30] + ["   "] + weights[30:]))
    with pytest.raises(N2P2FormatError, match="line 31: a line of blanks"):
        n2p2.load(folder)
    (folder / "weights.008.data").write_text("\n".join(weights[:-1]))
    with pytest.raises(N2P2FormatError, match="1450 connections but a "
                       "30-25-25-1 network has 1451"):
        n2p2.load(folder)
    (folder / "weights.008.data").write_text(
        "\n".join(weights + ["1.0 b 1452 3 1"]))
    with pytest.raises(N2P2FormatError, match="more than the 1451"):
        n2p2.load(folder)
    kinds = [line.replace(" a ", " b ", 1) if k == 20 else line
             for k, line in enumerate(weights)]
    (folder / "weights.008.data").write_text("\n".join(kinds))
    with pytest.raises(N2P2FormatError, match="a weight \\(a\\) was "
                       "expected"):
        n2p2.load(folder)
    (folder / "weights.008.data").write_text("\n".join(weights))
    os.remove(folder / "weights.001.data")
    with pytest.raises(FileNotFoundError):
        n2p2.load(folder)


def test_hostile_files_are_refused(tmp_path, monkeypatch):
    folder = copy_potential(tmp_path)
    os.remove(folder / "input.nn")
    os.symlink(os.path.join(WATER, "input.nn"), folder / "input.nn")
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        n2p2.load(folder)
    os.remove(folder / "input.nn")
    (folder / "input.nn").write_bytes(b"elements H O\n\xff\xfe\n")
    with pytest.raises(N2P2FormatError, match="line 2: not UTF-8"):
        n2p2.load(folder)
    shutil.copy(os.path.join(WATER, "input.nn"), folder)
    monkeypatch.setattr(limits, "MAX_MODEL_FILE_BYTES", 4096)
    with pytest.raises(UnsafeFileError, match="cap"):
        n2p2.load(folder)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        n2p2.load(folder / "input.nn")


# Writing -----------------------------------------------------------------

def amp_model(cutoff, activation_name="tanh", hidden=None, seed=3):
    """A Cu/Pt Amp model with G2, G4 and G5 functions, set up on EMT
    images, random weights large enough for sizeable forces, and one
    feature whose range is below Amp's 1e-8 (unscaled)."""
    images = []
    for k in range(3):
        slab = fcc111("Cu", (2, 2, 2), vacuum=5.0)
        add_adsorbate(slab, "Pt", 1.8, "fcc")
        slab.rattle(0.1, seed=k)
        slab.calc = EMT()
        slab.get_potential_energy()
        images.append(slab)
    elements = ["Cu", "Pt"]
    Gs = {e: (make_symmetry_functions(elements, "G2", [0.05, 1.0, 4.0],
                                      offsets=[0.0, 1.5])
              + make_symmetry_functions(elements, "G4", [0.005],
                                        zetas=[1.0, 4.0],
                                        gammas=[1.0, -1.0])
              + make_symmetry_functions(elements, "G5", [0.01],
                                        zetas=[2.0], gammas=[1.0, -0.5]))
          for e in elements}
    calc = Amp(descriptor=Gaussian(cutoff=cutoff, Gs=Gs, elements=elements),
               model=NeuralNetwork(hiddenlayers=hidden or {"Cu": (4, 3),
                                                          "Pt": (2, 5)},
                                   activation=activation_name,
                                   randomseed=seed),
               logging=False)
    hashed = hash_images(images)
    calc.descriptor.calculate_fingerprints(hashed)
    calc.model.fit(hashed, calc.descriptor, only_setup=True)
    rng = np.random.default_rng(seed)
    calc.model.vector = rng.normal(scale=0.5, size=len(calc.model.vector))
    fprange = calc.model.parameters.fprange
    fprange["Pt"][0] = [fprange["Pt"][0][0], fprange["Pt"][0][0]]
    return calc, images


@pytest.mark.parametrize("cutoff, activation_name",
                         [(Cosine(5.0), "tanh"), (Polynomial(5.0, gamma=2),
                                                   "sigmoid"),
                          (Cosine(4.5), "linear")])
def test_amp_model_round_trip(tmp_path, cutoff, activation_name):
    calc, images = amp_model(cutoff, activation_name)
    folder = tmp_path / "exported"
    calc.save(str(folder), format="n2p2")
    back = n2p2.load(folder)
    for image in images:
        atoms = image.copy()
        atoms.calc = calc
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = back
        assert np.abs(forces).max() > 1e-3
        assert atoms.get_potential_energy() == pytest.approx(energy,
                                                             rel=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), forces, rtol=0,
                                   atol=1e-8 * np.abs(forces).max())
    settings = files.read_settings(folder)
    assert settings.scaling == "scale" and settings.normalization is None
    assert settings.cutoff_type == (1 if isinstance(cutoff, Cosine) else 5)
    assert settings.nodes == (4, 5, 1)
    assert settings.activations[-1] == "l"
    # The unscaled feature gets statistics around its value, n2p2 never
    # divides by zero.
    low, high = calc.model.parameters.fprange["Pt"][0]
    half = max(1.0, abs(low))
    rows = files.read_scaling(folder, [30, 30])[1]
    assert sum(r[:2] == (low - half, low + half) for r in rows) == 1


def test_writer_refuses_what_n2p2_cannot_express(tmp_path):
    calc, _ = amp_model(Polynomial(5.0, gamma=4))
    with pytest.raises(ValueError, match="gamma=2"):
        calc.save(str(tmp_path / "a"), format="n2p2")
    calc, _ = amp_model(Cosine(5.0), hidden={"Cu": (3, 3), "Pt": (3,)})
    with pytest.raises(ValueError, match="different numbers of hidden "
                       "layers.*Cu: 2, Pt: 1"):
        calc.save(str(tmp_path / "b"), format="n2p2")
    calc, _ = amp_model(Cosine(5.0))
    calc.descriptor.Gs["Cu"][-1]["gamma"] = 2.0
    with pytest.raises(ValueError, match="\\|gamma\\| > 1"):
        calc.save(str(tmp_path / "c"), format="n2p2")
    calc, _ = amp_model(Cosine(5.0))
    calc.model.parameters.fprange = None
    with pytest.raises(ValueError, match="fingerprint range"):
        calc.save(str(tmp_path / "d"), format="n2p2")
    assert not any(os.path.exists(tmp_path / n) for n in "abcd")


def test_writer_never_overwrites_unasked(tmp_path):
    calc, _ = amp_model(Cosine(5.0))
    folder = tmp_path / "pot"
    calc.save(str(folder), format="n2p2")
    before = (folder / "input.nn").read_text()
    other, _ = amp_model(Cosine(4.0))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save(str(folder), format="n2p2")
    assert (folder / "input.nn").read_text() == before
    other.save(str(folder), format="n2p2", overwrite=True)
    assert (folder / "input.nn").read_text() != before


def test_n2p2_potential_round_trip_is_exact(tmp_path, water_box):
    calc = n2p2.load(WATER)
    calc.save(str(tmp_path / "again"))
    again = n2p2.load(tmp_path / "again")
    small = water_box[:60].copy()
    small.calc = calc
    energy, forces = small.get_potential_energy(), small.get_forces()
    small.calc = again
    assert small.get_potential_energy() == energy
    np.testing.assert_array_equal(small.get_forces(), forces)
    written = files.read_weights(tmp_path / "again", 8, [30, 25, 25, 1])
    original = files.read_weights(WATER, 8, [30, 25, 25, 1])
    assert written == original
    with pytest.raises(ValueError, match="format='n2p2'"):
        calc.save(str(tmp_path / "x.amp"), format="json")


def test_n2p2_calculator_evaluates_only(tmp_path):
    with pytest.raises(ValueError, match="dblabel"):
        n2p2.load(WATER, dblabel=str(tmp_path / "db"))
    calc = n2p2.load(WATER)
    with pytest.raises(NotImplementedError, match="nnp-train"):
        calc.train([])
    with pytest.raises(ValueError, match="cflength"):
        n2p2.load(WATER, cflength=0.0)
