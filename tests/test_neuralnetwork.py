"""NeuralNetwork: Amp 1.0.1 reference predictions, forces against finite
differences, parameter vector, serialisation, initialisation."""
import json
import os

import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from amp.descriptor.gaussian import Gaussian
from amp.model import Raveler, calculate_fingerprints_range
from amp.model.neuralnetwork import NeuralNetwork
from amp.utilities import Logger, hash_images

from checks import assert_forces_are_gradients
from conftest import AMP_REFERENCE


def _load(name):
    with open(os.path.join(AMP_REFERENCE, name)) as handle:
        return json.load(handle)


def _relative(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("name", ["pd4o2", "pd3o2"])
def test_forcecall_reference(name):
    data = _load("forcecall_nn.json")
    model = NeuralNetwork.fromdict(data["model"])
    descriptor = Gaussian(cutoff=data["descriptor"]["cutoff"],
                          Gs=data["descriptor"]["Gs"])
    reference = data["predictions"][name]
    images = ase.io.read(os.path.join(AMP_REFERENCE, name + ".traj"), ":")
    assert len(images) == len(reference["energies"]) == 3
    for k, atoms in enumerate(images):
        fp = descriptor.compute(atoms, True)
        atomic, dE_dG = model.evaluate(fp)
        forces = fp.forces(dE_dG)
        assert _relative(atomic.sum(), reference["energies"][k]) < 1e-9
        assert _relative(atomic, reference["atomic_energies"][k]) < 1e-9
        assert _relative(forces, reference["forces"][k]) < 1e-9
        # Amp's dictionary views give the same numbers.
        amp_fp, amp_primes = fp.as_amp_fingerprints(), fp.as_amp_primes()
        energy = model.calculate_energy(amp_fp)
        assert _relative(energy, reference["energies"][k]) < 1e-9
        assert _relative(model.atomic_energies,
                         reference["atomic_energies"][k]) < 1e-9
        assert _relative(model.calculate_forces(amp_fp, amp_primes),
                         reference["forces"][k]) < 1e-9
        assert _relative(
            [model.calculate_atomic_energy(afp, i, s)
             for i, (s, afp) in enumerate(amp_fp)],
            reference["atomic_energies"][k]) < 1e-9


def test_ptcu_nn33_reference():
    data = _load("ptcu_nn33_model.json")
    reference = _load("ptcu_nn33_predictions.json")
    model = NeuralNetwork.fromdict(data["model"])
    descriptor = Gaussian.fromdict(data["descriptor"])
    images = ase.io.read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"), ":")
    for k, atoms in enumerate(images):
        fp = descriptor.compute(atoms, True)
        atomic, dE_dG = model.evaluate(fp)
        assert _relative(atomic.sum(), reference["energies"][k]) < 1e-9
        assert _relative(atomic, reference["atomic_energies"][k]) < 1e-9
        assert _relative(fp.forces(dE_dG), reference["forces"][k]) < 1e-9
        # Amp's fingerprints as stored in the fixture, through the list view.
        amp_fp = reference["fingerprints"][reference["image_ids"][k]]
        assert _relative(model.calculate_energy(amp_fp),
                         reference["energies"][k]) < 1e-9
        primes = fp.as_amp_primes()
        assert _relative(model.calculate_forces(amp_fp, primes),
                         reference["forces"][k]) < 1e-9


SMALL_GS = {"O": [{"type": "G2", "element": "O", "eta": 0.5},
                  {"type": "G2", "element": "Pd", "eta": 1.0},
                  {"type": "G4", "elements": ["O", "Pd"], "eta": 0.005,
                   "zeta": 1.0, "gamma": -1.0},
                  {"type": "G4", "elements": ["Pd", "Pd"], "eta": 0.005,
                   "zeta": 2.0, "gamma": 1.0}],
            "Pd": [{"type": "G2", "element": "O", "eta": 0.3},
                   {"type": "G2", "element": "Pd", "eta": 2.0},
                   {"type": "G5", "elements": ["O", "Pd"], "eta": 0.01,
                    "zeta": 1.0, "gamma": 1.0}]}


def _random_model(activation, seed, descriptor, images):
    """A network with random weights, scalings and a training fprange."""
    model = NeuralNetwork(hiddenlayers={"O": (4, 3), "Pd": (5,)},
                          activation=activation, randomseed=seed,
                          scalings={"O": {"intercept": -1.0, "slope": 2.0},
                                    "Pd": {"intercept": 0.5, "slope": -3.0}})
    hashed = hash_images(images)
    descriptor.calculate_fingerprints(hashed)
    for atoms in hashed.values():
        atoms.calc = SinglePointCalculator(atoms, energy=0.0)
    model.fit(hashed, descriptor, Logger(None), {"cores": 1},
              only_setup=True)
    return model


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("periodic", [True, False])
def test_forces_are_minus_energy_gradient(activation, periodic):
    atoms = ase.io.read(os.path.join(AMP_REFERENCE, "pd3o2.traj"), 0)
    if not periodic:
        atoms.pbc = False
    descriptor = Gaussian(cutoff=4.0, Gs=SMALL_GS)
    model = _random_model(activation, 7, descriptor, [atoms])
    fp = descriptor.compute(atoms, True)
    _, dE_dG = model.evaluate(fp)
    forces = fp.forces(dE_dG)

    def energy(moved):
        return model.evaluate(descriptor.compute(moved), forces=False)[0].sum()
    assert np.abs(forces).max() > 1e-3
    # Central differences with h = 1e-5: truncation ~1e-9 relative.
    scale = max(1.0, np.abs(forces).max())
    assert_forces_are_gradients(energy, atoms, forces, h=1e-5,
                                atol=1e-7 * scale)


def test_vector_round_trip_and_layout():
    data = _load("forcecall_nn.json")["model"]
    model = NeuralNetwork.fromdict(data)
    vector = model.vector
    # Amp's order: element weights (sorted, layers ascending, row-major),
    # then intercept and slope per element.
    expected = np.concatenate(
        [np.ravel(data["weights"][e][k]) for e in sorted(data["weights"])
         for k in sorted(data["weights"][e], key=int)]
        + [[data["scalings"][e]["intercept"], data["scalings"][e]["slope"]]
           for e in sorted(data["scalings"])])
    np.testing.assert_array_equal(vector, expected)
    assert vector.dtype == np.float64
    changed = vector + np.arange(len(vector)) * 1e-3
    model.vector = changed
    np.testing.assert_array_equal(model.vector, changed)
    assert model.parameters.weights["O"][1].shape == (33, 5)
    with pytest.raises(ValueError):
        model.vector = changed[:-1]
    raveler = Raveler(model.parameters.weights, model.parameters.scalings)
    mask = raveler.weight_mask()
    # Weights only: 32*5 + 5*5 + 5*1 per element, no bias rows or scalings.
    assert mask.sum() == 2 * (32 * 5 + 5 * 5 + 5)


def test_todict_fromdict_exact_round_trip():
    data = _load("ptcu_nn33_model.json")["model"]
    model = NeuralNetwork.fromdict(data)
    model.vector = model.vector * (1 + 1e-13) + 1e-17  # awkward floats
    text = json.dumps(model.todict())
    again = NeuralNetwork.fromdict(json.loads(text))
    np.testing.assert_array_equal(again.vector, model.vector)
    assert again.parameters.fprange == model.parameters.fprange
    assert again.parameters.hiddenlayers == {"Cu": (3, 3), "Pt": (3, 3)}
    assert json.loads(again.tostring()) == json.loads(text)
    assert again.parameters.importname == \
        ".model.neuralnetwork.NeuralNetwork"
    # Amp's legacy layout: integer layer keys, arrays, tuples.
    legacy = {"importname": ".model.neuralnetwork.NeuralNetwork",
              "mode": "atom-centered", "version": "2015.12",
              "hiddenlayers": {e: tuple(h) for e, h in
                               data["hiddenlayers"].items()},
              "activation": "tanh",
              "weights": {e: {int(k): np.array(w) for k, w in layers.items()}
                          for e, layers in data["weights"].items()},
              "scalings": data["scalings"],
              "fprange": {e: np.array(r) for e, r in
                          data["fprange"].items()}}
    old = NeuralNetwork.fromdict(legacy)
    np.testing.assert_array_equal(old.vector,
                                  NeuralNetwork.fromdict(data).vector)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="activation"):
        NeuralNetwork(activation="relu")
    with pytest.raises(ValueError, match="version"):
        NeuralNetwork(version="2099.1")
    weights = {"Cu": {1: np.zeros((4, 2)), 2: np.zeros((2, 1))}}
    with pytest.raises(ValueError, match="input rows"):
        NeuralNetwork(weights=weights)
    weights = {"Cu": {1: np.zeros((4, 2)), 2: np.zeros((3, 1))}}
    with pytest.raises(ValueError, match="hidden layers"):
        NeuralNetwork(hiddenlayers=(5,), weights=weights)
    with pytest.raises(ValueError, match="importname"):
        NeuralNetwork.fromdict({"importname": ".descriptor.gaussian.Gaussian"})


def test_evaluate_errors_name_the_problem():
    data = _load("forcecall_nn.json")
    model = NeuralNetwork.fromdict(data["model"])
    atoms = ase.io.read(os.path.join(AMP_REFERENCE, "ptcu_train.traj"), 0)
    fp = Gaussian().compute(atoms)
    with pytest.raises(ValueError, match="no network for element Cu"):
        model.evaluate(fp)
    atoms = ase.io.read(os.path.join(AMP_REFERENCE, "pd3o2.traj"), 0)
    fp = Gaussian().compute(atoms)  # 20 features, the model takes 32
    with pytest.raises(ValueError, match="features"):
        model.evaluate(fp)


def _training_images():
    images = hash_images(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    descriptor = Gaussian()
    descriptor.calculate_fingerprints(images)
    return images, descriptor


def test_randomseed_reproducible_and_fit_setup():
    images, descriptor = _training_images()
    models = []
    for seed in (5, 5, 6):
        model = NeuralNetwork(hiddenlayers=(3, 2), randomseed=seed)
        model.fit(images, descriptor, Logger(None), {"cores": 1},
                  only_setup=True)
        models.append(model)
    np.testing.assert_array_equal(models[0].vector, models[1].vector)
    assert not np.allclose(models[0].vector, models[2].vector)
    p = models[0].parameters
    assert p.hiddenlayers == {"Cu": (3, 2), "Pt": (3, 2)}
    assert p.fprange == calculate_fingerprints_range(descriptor, images)
    for element in ("Cu", "Pt"):
        shapes = [w.shape for _, w in sorted(p.weights[element].items())]
        assert shapes == [(21, 3), (4, 2), (3, 1)]
        bound = np.sqrt(6.0 / (20 + 3))
        assert np.abs(p.weights[element][1]).max() <= bound
    # The range is the training fingerprints' min and max per component.
    stacked = np.concatenate([descriptor.arrays[k].values["Cu"]
                              for k in images])
    np.testing.assert_array_equal(np.array(p.fprange["Cu"]),
                                  np.column_stack([stacked.min(0),
                                                   stacked.max(0)]))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
def test_initial_scalings(activation):
    images, descriptor = _training_images()
    model = NeuralNetwork(hiddenlayers=(2,), activation=activation,
                          randomseed=0)
    model.fit(images, descriptor, Logger(None), None, only_setup=True)
    per_atom = [a.get_potential_energy() / len(a) for a in images.values()]
    low, high = min(per_atom), max(per_atom)
    expected = {"tanh": ((high + low) / 2, (high - low) / 2),
                "sigmoid": (low, high - low),
                "linear": ((high + low) / 2, 1e-10 * (high - low) / 2)}
    for element in ("Cu", "Pt"):
        scaling = model.parameters.scalings[element]
        assert scaling["intercept"] == pytest.approx(expected[activation][0],
                                                     rel=1e-15)
        assert scaling["slope"] == pytest.approx(expected[activation][1],
                                                 rel=1e-15)


def test_prescale_fits_element_reference_energies():
    images, descriptor = _training_images()
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0, prescale=True)
    model.fit(images, descriptor, Logger(None), None, only_setup=True)
    s = model.parameters.scalings
    counts = np.array([[a.get_chemical_symbols().count(e) for e in
                        ("Cu", "Pt")] for a in images.values()])
    energies = np.array([a.get_potential_energy() for a in images.values()])
    reference = np.linalg.lstsq(counts, energies, rcond=None)[0]
    # Intercepts differ between the elements by the fitted references.
    assert s["Cu"]["intercept"] - s["Pt"]["intercept"] == pytest.approx(
        reference[0] - reference[1], rel=1e-12)
    assert s["Cu"]["slope"] == s["Pt"]["slope"] > 0
