"""amp.model.kernelridge.KernelRidge: Amp 1.0.1's own files and numbers
(tests/data/amp-reference-wave3), retraining, the kernels and features
against Amp's formulas and dictionary views, the keywords, refusals,
memory, training with MD, and the analysis tools."""
import builtins
import json
import os
import shutil

import ase.io
import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator

from amp import Amp
from amp.descriptor.budget import TrainingMemoryError
from amp.descriptor.gaussian import Gaussian
from amp.model._kernel_features import (force_features, key_counts,
                                        prime_moments)
from amp.model._kernels import KernelMatrixError, kernel_matrix, solve
from amp.model.kernelridge import KernelRidge, PropertyNotTrainedError
from amp.store.modelfile import ModelFileError
from checks import watchdog
from conftest import AMP_REFERENCE, DATA, with_emt_results

WAVE3 = os.path.join(DATA, "amp-reference-wave3")
TRAIN = os.path.join(WAVE3, "krr_cupt_train.traj")
HELDOUT = os.path.join(WAVE3, "krr_cupt_heldout.traj")
CASES = ("krr_cupt_forces", "krr_cupt_energy")


def reference(case):
    with open(os.path.join(WAVE3, case + ".json")) as handle:
        return json.load(handle)


def predict(calc, images, forces=True):
    """Energies, atomic energies and forces of ``calc`` for ``images``."""
    energies, atomic, force = [], [], []
    for atoms in images:
        atoms = atoms.copy()
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        atomic.append(atoms.get_potential_energies())
        if forces:
            force.append(atoms.get_forces())
    return np.array(energies), np.array(atomic), np.array(force)


def assert_relative(actual, expected, rtol):
    """``|actual - expected| <= rtol * max|expected|`` everywhere."""
    expected = np.asarray(expected, dtype=float)
    scale = np.abs(expected).max()
    assert np.abs(np.asarray(actual) - expected).max() <= rtol * scale, \
        np.abs(np.asarray(actual) - expected).max() / scale


def assert_reproduces(calc, case, rtol, key="predictions"):
    expected = reference(case)[key]
    forces = reference(case)["forces_available"]
    for subset, path in (("heldout", HELDOUT), ("train", TRAIN)):
        energies, atomic, force = predict(calc, ase.io.read(path, ":"),
                                          forces)
        assert_relative(energies, expected[subset]["energies"], rtol)
        assert_relative(atomic, expected[subset]["atomic_energies"], rtol)
        if forces:
            assert_relative(force, expected[subset]["forces"], rtol)


@pytest.fixture
def amp_folder(tmp_path, monkeypatch):
    """A folder holding Amp's .amp files and the training images they name
    (relative to the current folder, as Amp reads them)."""
    for name in [c + ".amp" for c in CASES] + ["krr_cupt_train.traj"]:
        shutil.copy(os.path.join(WAVE3, name), tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# Amp 1.0.1's files -----------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_amp_files_give_amps_predictions(amp_folder, case, monkeypatch):
    def no_eval(*args, **kwargs):
        raise AssertionError("eval was called")

    monkeypatch.setattr(builtins, "eval", no_eval)
    calc = Amp.load(case + ".amp")
    assert isinstance(calc.model, KernelRidge)
    assert calc.model.has_force_model == (case == "krr_cupt_forces")
    assert_reproduces(calc, case, 1e-8)
    # What Amp's calculator gave right after training, too.
    assert_reproduces(calc, case, 1e-8, "predictions_trained_calculator")
    saved = reference(case)["saved_parameters"]["model"]
    assert calc.model.parameters.sigma["energy"] == saved["sigma"]["energy"]


def test_energy_only_model_refuses_forces_clearly(amp_folder):
    calc = Amp.load("krr_cupt_energy.amp")
    atoms = ase.io.read(HELDOUT, 0)
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    assert energy == pytest.approx(
        reference("krr_cupt_energy")["predictions"]["heldout"]["energies"][0],
        rel=1e-10)
    for _ in range(2):  # Amp: KeyError, then RuntimeError on a second try
        with pytest.raises(PropertyNotTrainedError,
                           match=r"energies only.*forcetraining=True"):
            atoms.get_forces()
    assert issubclass(PropertyNotTrainedError, PropertyNotImplementedError)
    with pytest.raises(PropertyNotTrainedError, match="no stress"):
        atoms.get_stress()
    assert atoms.get_potential_energy() == energy


def test_amp_file_needs_its_training_images(tmp_path, monkeypatch):
    shutil.copy(os.path.join(WAVE3, "krr_cupt_forces.amp"), tmp_path)
    monkeypatch.chdir(tmp_path)
    calc = Amp.load("krr_cupt_forces.amp")
    atoms = ase.io.read(HELDOUT, 0)
    atoms.calc = calc
    with pytest.raises(ValueError, match=r"krr_cupt_train.traj.*not there"):
        atoms.get_potential_energy()
    # Other images under that name: their atoms do not fit the weights.
    shutil.copy(HELDOUT, tmp_path / "krr_cupt_train.traj")
    with pytest.raises(ValueError, match=r"35 energy weights.*15 atoms.*"
                                         r"trained on"):
        atoms.get_potential_energy()


def test_training_images_are_read_as_a_regular_traj_file(tmp_path,
                                                         monkeypatch):
    shutil.copy(os.path.join(WAVE3, "krr_cupt_energy.amp"), tmp_path)
    monkeypatch.chdir(tmp_path)
    atoms = ase.io.read(HELDOUT, 0)
    # Text that ASE would read in another format is not read.
    ase.io.write("krr_cupt_train.traj.xyz", ase.io.read(TRAIN, ":"))
    os.rename("krr_cupt_train.traj.xyz", "krr_cupt_train.traj")
    atoms.calc = Amp.load("krr_cupt_energy.amp")
    with pytest.raises(ValueError, match="as an ASE .traj file"):
        atoms.get_potential_energy()
    os.remove("krr_cupt_train.traj")
    os.mkfifo("krr_cupt_train.traj")  # would block an ordinary open
    atoms.calc = Amp.load("krr_cupt_energy.amp")
    with watchdog(60), pytest.raises(ValueError, match="refusing"):
        atoms.get_potential_energy()


def test_malformed_amp_files_are_refused(tmp_path):
    with open(os.path.join(WAVE3, "krr_cupt_forces.amp")) as handle:
        text = handle.read()
    bad = tmp_path / "bad.amp"
    for old, new in (("kernel='rbf'", "kernel='poly'"),
                     ("lamda=1e-05", "lamda=-1.0"),
                     ("sum_rule=True", "sum_rule=False"),
                     ("('Pt', [array(", "('Pt', [array([1.0, 2.0]), array(")):
        assert old in text
        bad.write_text(text.replace(old, new, 1))
        with pytest.raises(ModelFileError):
            Amp.load(str(bad))
    bad.write_text(text.replace("lamda=1e-05", "lamda=__import__('os')"))
    with pytest.raises(ModelFileError, match="not allowed"):
        Amp.load(str(bad))


# Retraining -----------------------------------------------------------------

@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """Each case trained here with Amp's keywords on Amp's images."""
    folder = tmp_path_factory.mktemp("retrained")
    calcs = {}
    for case in CASES:
        kwargs = reference(case)["model_kwargs"]
        calc = Amp(Gaussian(), KernelRidge(**kwargs), cores=1,
                   label=str(folder / case))
        calc.train(ase.io.read(TRAIN, ":"))
        calcs[case] = calc
    return folder, calcs


@pytest.mark.parametrize("case", CASES)
def test_retraining_reproduces_amp(retrained, case):
    folder, calcs = retrained
    calc = calcs[case]
    assert_reproduces(calc, case, 1e-6)
    saved = reference(case)["saved_parameters"]["model"]
    weights = calc.model.parameters.weights
    symbols = np.concatenate([a.get_chemical_symbols()
                              for a in ase.io.read(TRAIN, ":")])
    amp_energy = np.array(saved["weights"]["energy"])
    for element in ("Cu", "Pt"):
        assert_relative(weights["energy"][element],
                        amp_energy[symbols == element], 1e-6)
        if case == "krr_cupt_forces":
            assert_relative(weights["forces"][element],
                            saved["weights"]["forces"][element], 1e-6)
    assert ("forces" in weights) == (case == "krr_cupt_forces")
    # This library's file: self-contained (no training images needed).
    loaded = Amp.load(str(folder / case) + ".amp")
    assert loaded.model.todict()["reference"] is not None
    for subset in (HELDOUT, TRAIN):
        images = ase.io.read(subset, ":")
        forces = case == "krr_cupt_forces"
        for a, b in zip(predict(loaded, images, forces),
                        predict(calc, images, forces)):
            np.testing.assert_array_equal(a, b)


def test_training_log_has_amps_table(retrained):
    from amp.analysis import read_trainlog
    from test_analysis import amp1_read_trainlog

    folder, calcs = retrained
    log = str(folder / "krr_cupt_forces") + "-log.txt"
    ours = read_trainlog(log, verbose=False)["convergence"]
    assert ours == amp1_read_trainlog(log)["convergence"]
    assert ours["converged"] is True and ours["steps"] == [0]
    images = ase.io.read(TRAIN, ":")
    energies, _, forces = predict(calcs["krr_cupt_forces"], images)
    n = np.array([len(a) for a in images])
    reference_energies = [a.get_potential_energy() for a in images]
    residual = (energies - reference_energies) / n
    assert ours["es"][0] == pytest.approx(np.sqrt(np.mean(residual ** 2)),
                                          rel=1e-3)
    difference = forces - np.array([a.get_forces() for a in images])
    assert ours["fmrs"][0] == pytest.approx(np.abs(difference).max(),
                                            rel=1e-3)


def test_save_in_amp1_format_is_refused(retrained, tmp_path):
    _, calcs = retrained
    with pytest.raises(ValueError, match="neural-network models only"):
        calcs["krr_cupt_energy"].save(str(tmp_path / "x.amp"),
                                      format="amp1")
    assert not os.path.exists(tmp_path / "x.amp")


# Kernels and features against Amp's definitions ------------------------------

def amp_kernel(kind, x, y, sigma):
    """Amp 1.0.1's kernel functions, one pair at a time, as it states
    them."""
    d = x - y
    if kind == "linear":
        return float(np.dot(x, y))
    if np.ndim(sigma):
        if kind == "rbf":
            return np.exp(-np.sum(d ** 2 / (2.0 * sigma ** 2)))
        if kind == "laplacian":
            return np.exp(-np.sqrt(np.sum((d / sigma) ** 2)))
        return np.exp(-np.sqrt(np.sum((d / (2.0 * sigma ** 2)) ** 2)))
    if kind == "rbf":
        return np.exp(-np.linalg.norm(d) ** 2 / (2.0 * sigma ** 2))
    if kind == "laplacian":
        return np.exp(-np.linalg.norm(d) / sigma)
    return np.exp(-np.linalg.norm(d) / (2.0 * sigma ** 2))


@pytest.mark.parametrize("kind", ["rbf", "laplacian", "exponential",
                                  "linear"])
@pytest.mark.parametrize("sigma", [0.7, np.array([0.5, 1.0, 2.0, 3.0])])
def test_kernels_are_amps(kind, sigma):
    rng = np.random.default_rng(0)
    rows, columns = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    columns[0] = rows[2]  # a zero distance
    expected = np.array([[amp_kernel(kind, x, y, sigma) for y in columns]
                         for x in rows])
    np.testing.assert_allclose(kernel_matrix(rows, columns, kind, sigma),
                               expected, rtol=1e-14, atol=1e-300)
    if kind != "linear":
        assert kernel_matrix(rows, columns, kind, sigma)[2, 0] == 1.0


def cu3pt_bulk():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms[0].symbol = "Pt"
    atoms.rattle(0.05, seed=4)
    return atoms


@pytest.mark.parametrize("system", ["cluster", "bulk"])
def test_force_features_are_amps_summed_primes(system):
    atoms = ase.io.read(TRAIN, 0) if system == "cluster" else cu3pt_bulk()
    descriptor = Gaussian(cutoff=6.5 if system == "cluster" else 4.0)
    fingerprints = descriptor.compute(atoms, True)
    primes = fingerprints.as_amp_primes()
    n = len(atoms)
    summed = np.zeros((n, 3, len(next(iter(primes.values())))))
    keys = np.zeros((n, 3), dtype=int)
    for (moved, _, _, _, x), prime in primes.items():
        summed[moved, x] += prime
        keys[moved, x] += 1
    np.testing.assert_allclose(force_features(fingerprints), summed,
                               rtol=0, atol=1e-12 * np.abs(summed).max())
    np.testing.assert_array_equal(key_counts(fingerprints), keys[:, 0])
    count, mean, m2 = prime_moments(fingerprints)
    table = np.zeros((count, 3, summed.shape[2]))
    for x in range(3):
        table[:, x] = [p for k, p in sorted(primes.items()) if k[4] == x]
    np.testing.assert_allclose(mean, table.mean(axis=0), rtol=0,
                               atol=1e-13 * np.abs(table).max())
    np.testing.assert_allclose(m2, ((table - table.mean(axis=0)) ** 2)
                               .sum(axis=0), rtol=1e-10, atol=1e-20)


def test_kernel_model_on_amps_dictionary_views(retrained):
    _, calcs = retrained
    calc = calcs["krr_cupt_forces"]
    atoms = ase.io.read(HELDOUT, 0)
    fingerprints = calc.descriptor.compute(atoms, True)
    model = calc.model
    energy = model.calculate_energy(fingerprints.as_amp_fingerprints())
    atoms.calc = calc
    assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(
        model.calculate_forces(fingerprints.as_amp_fingerprints(),
                               fingerprints.as_amp_primes()),
        atoms.get_forces(), rtol=0, atol=1e-10)


# Keywords ------------------------------------------------------------------

def train_krr(folder, images=None, **kwargs):
    calc = Amp(Gaussian(), KernelRidge(**kwargs), cores=1,
               label=str(folder / "krr"))
    calc.train(images if images is not None else ase.io.read(TRAIN, ":"),
               overwrite=True)
    return calc


def test_preprocessing_standardises_as_amp(tmp_path):
    calc = train_krr(tmp_path, forcetraining=True, preprocessing=True,
                     lamda=1e-8)
    model = calc.model
    images = ase.io.read(TRAIN, ":")
    views = [calc.descriptor.compute(a, True) for a in images]
    # scikit-learn's StandardScaler on every training fingerprint, and on
    # every fingerprint-prime key per direction (Amp's recipe).
    every = np.concatenate([np.concatenate(list(v.values.values()))
                            for v in views])
    scaler = model._references["energy_scaler"]
    np.testing.assert_allclose(scaler.mean, every.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(scaler.scale, every.std(axis=0), rtol=1e-12)
    primes = [v.as_amp_primes() for v in views]
    force_scaler = model._references["force_scaler"]
    for x in range(3):
        table = np.array([p for keyed in primes for k, p in keyed.items()
                          if k[4] == x])
        std = table.std(axis=0)
        np.testing.assert_allclose(force_scaler.mean[x], table.mean(axis=0),
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(force_scaler.scale[x],
                                   np.where(std == 0, 1.0, std), rtol=1e-10)
    # Amp predicts a force from each key's scaled prime, summed.
    atoms = ase.io.read(HELDOUT, 0)
    fingerprints = calc.descriptor.compute(atoms, True)
    keyed = fingerprints.as_amp_primes()
    scaled = np.zeros((len(atoms), 3, len(force_scaler.mean[0])))
    for (moved, _, _, _, x), prime in keyed.items():
        scaled[moved, x] += (np.array(prime) - force_scaler.mean[x]) / \
            force_scaler.scale[x]
    np.testing.assert_allclose(
        force_scaler.transform(force_features(fingerprints),
                               key_counts(fingerprints)), scaled,
        rtol=0, atol=1e-10 * np.abs(scaled).max())
    # The fit reproduces its targets, and a reload predicts the same.
    energies, _, forces = predict(calc, images)
    np.testing.assert_allclose(energies, [a.get_potential_energy()
                                          for a in images], atol=1e-4)
    np.testing.assert_allclose(forces, [a.get_forces() for a in images],
                               atol=1e-3)
    loaded = Amp.load(str(tmp_path / "krr.amp"))
    np.testing.assert_array_equal(predict(loaded, images[:2])[2],
                                  forces[:2])


def l2_loss(model, images, weights):
    """Amp's L2 loss of energy weights (by element, training order)."""
    references = model._references["energy"]
    sigma = model.parameters.sigma["energy"]
    kernels = {e: kernel_matrix(b, b, model.kernel, sigma[e])
               for e, b in references.items()}
    image = model._training["image"]
    predicted = np.zeros(len(images))
    penalty = 0.0
    for element, kernel in kernels.items():
        predicted += np.bincount(image[element], kernel @ weights[element],
                                 minlength=len(images))
        penalty += weights[element] @ kernel @ weights[element]
    n = np.array([len(a) for a in images])
    energies = np.array([a.get_potential_energy() for a in images])
    return np.sum(((predicted - energies) / n) ** 2) + model.lamda * penalty


def test_cholesky_false_minimises_amps_l2_loss(tmp_path):
    images = ase.io.read(TRAIN, ":")
    calc = train_krr(tmp_path, images, cholesky=False, forcetraining=True,
                     lamda=1e-3)
    model = calc.model
    weights = model.parameters.weights["energy"]
    best = l2_loss(model, images, weights)
    rng = np.random.default_rng(1)
    for _ in range(5):
        direction = {e: rng.normal(size=w.shape) for e, w in weights.items()}
        h = 1e-3
        plus = l2_loss(model, images, {e: w + h * direction[e]
                                       for e, w in weights.items()})
        minus = l2_loss(model, images, {e: w - h * direction[e]
                                        for e, w in weights.items()})
        assert plus > best and minus > best
        assert abs(plus - minus) / (2 * h) < 1e-7 * max(1.0, best / h)
    # Forces: the same (K + lamda I) w = f, here by least squares.
    cholesky = train_krr(tmp_path, images, forcetraining=True, lamda=1e-3)
    for element, w in model.parameters.weights["forces"].items():
        assert_relative(w, cholesky.model.parameters.weights["forces"]
                        [element], 1e-8)


def test_shared_force_weights(tmp_path):
    images = ase.io.read(TRAIN, ":")
    calc = train_krr(tmp_path, images, forcetraining=True,
                     weights_independent=False, lamda=1e-4)
    model = calc.model
    for element, w in model.parameters.weights["forces"].items():
        np.testing.assert_array_equal(w[0], w[1])
        np.testing.assert_array_equal(w[0], w[2])
        features = model._references["forces"][element]
        targets = model._training["force_targets"][element]
        sigma = model.parameters.sigma["forces"][element]

        def loss(vector):
            total = 0.0
            for x in range(3):
                kernel = kernel_matrix(features[:, x], features[:, x],
                                       "rbf", sigma[x])
                total += np.sum((kernel @ vector - targets[:, x]) ** 2) + \
                    1e-4 * vector @ kernel @ vector
            return total

        best = loss(w[0])
        direction = np.random.default_rng(2).normal(size=w[0].shape)
        assert loss(w[0] + 1e-3 * direction) > best
        assert loss(w[0] - 1e-3 * direction) > best
    loaded = Amp.load(str(tmp_path / "krr.amp"))
    assert loaded.model.weights_independent is False
    np.testing.assert_array_equal(predict(loaded, images[:1])[2],
                                  predict(calc, images[:1])[2])


@pytest.mark.parametrize("kind", ["laplacian", "exponential", "linear"])
def test_other_kernels_and_anisotropic_sigma(tmp_path, kind):
    width = list(np.linspace(2.0, 20.0, 20))
    # (Au: an element the images do not have; its width is not used.)
    sigma = {"energy": {"Cu": width, "Pt": 3.0, "Au": [1.0]},
             "forces": {"Cu": {"0": 2.0, "1": 2.5, "2": width},
                        "Pt": 4.0}}
    images = ase.io.read(TRAIN, ":")
    calc = train_krr(tmp_path, images, kernel=kind, sigma=sigma,
                     forcetraining=True, lamda=1e-6)
    table = calc.model.parameters.sigma
    np.testing.assert_array_equal(table["energy"]["Cu"], width)
    assert table["forces"]["Cu"][1] == 2.5 and table["forces"]["Pt"][2] == 4.0
    # An atom's energy is sum_b k(G, G_b) w_b over training atoms of its
    # element, with Amp's kernel.
    atoms = ase.io.read(HELDOUT, 0)
    fingerprints = calc.descriptor.compute(atoms)
    references = calc.model._references["energy"]["Cu"]
    weights = calc.model.parameters.weights["energy"]["Cu"]
    row = fingerprints.values["Cu"][0]
    expected = sum(amp_kernel(kind, row, b, np.array(width)) * w
                   for b, w in zip(references, weights))
    atoms.calc = calc
    first_cu = atoms.get_chemical_symbols().index("Cu")
    assert atoms.get_potential_energies()[first_cu] == pytest.approx(
        expected, rel=1e-9)
    loaded = Amp.load(str(tmp_path / "krr.amp"))
    for a, b in zip(predict(loaded, images[:2]), predict(calc, images[:2])):
        np.testing.assert_array_equal(a, b)


def test_nnpartition_fits_a_networks_atomic_energies(tmp_path):
    network = os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")
    images = ase.io.read(TRAIN, ":")
    calc = train_krr(tmp_path, images, nnpartition=network, lamda=1e-9)
    nn = Amp.load(network)
    weights = calc.model.parameters.weights["energy"]
    image = calc.model._training["image"]
    for number, atoms in enumerate(images[:3]):
        atoms = atoms.copy()
        atoms.calc = nn
        expected = atoms.get_potential_energies()
        atoms.calc = calc
        predicted = atoms.get_potential_energies()
        np.testing.assert_allclose(predicted, expected, rtol=0, atol=1e-3)
        # Exactly the solve's: (K + lamda) w = e, so K w = e - lamda w.
        for element in ("Cu", "Pt"):
            mine = np.array(atoms.get_chemical_symbols()) == element
            np.testing.assert_allclose(
                predicted[mine], expected[mine] - 1e-9 * weights[element][
                    image[element] == number], rtol=0, atol=1e-9)


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": "poly"}, "unknown kernel 'poly'"),
    ({"sum_rule": False}, "sum_rule=False is not provided"),
    ({"mode": "image-centered"}, "only mode='atom-centered'"),
    ({"version": "2020"}, "version '2020' is not supported"),
    ({"sigma": -1.0}, "positive"),
    ({"sigma": "wide"}, "number or a list"),
    ({"sigma": {"width": 1.0}}, "'energy'"),
    ({"lamda": -1.0}, "lamda must be a number >= 0"),
    ({"lamda": {"energy": 1.0, "force": 1.0}}, "'energy' and 'forces'"),
    ({"nnpartition": 3}, "path of a neural-network"),
])
def test_bad_keywords_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KernelRidge(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"sigma": [1.0, 2.0]}, r"sigma\['energy'\]\['Cu'\] has 2 values but"),
    ({"sigma": {"energy": {"Cu": 1.0}}}, r"no value for Pt"),
    ({"sigma": {"energy": 1.0}, "forcetraining": True}, "no 'forces' entry"),
    ({"sigma": {"energy": 1.0, "forces": {"Cu": {0: 1.0}, "Pt": 1.0}},
      "forcetraining": True}, "directions 0, 1 and 2"),
])
def test_sigma_that_does_not_fit_the_images(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_krr(tmp_path, **kwargs)
    assert not os.path.exists(tmp_path / "krr.amp")


def test_forces_need_fingerprints_of_one_length(tmp_path):
    Gs = {"Cu": [{"type": "G2", "element": "Cu", "eta": 0.1},
                 {"type": "G2", "element": "Pt", "eta": 0.1}],
          "Pt": [{"type": "G2", "element": "Cu", "eta": 0.1}]}
    calc = Amp(Gaussian(Gs=Gs), KernelRidge(forcetraining=True), cores=1,
               label=str(tmp_path / "krr"))
    with pytest.raises(ValueError, match=r"one length.*Cu: 2, Pt: 1"):
        calc.train(ase.io.read(TRAIN, ":"))
    energy_only = Amp(Gaussian(Gs=Gs), KernelRidge(), cores=1,
                      label=str(tmp_path / "krr"))
    energy_only.train(ase.io.read(TRAIN, ":"))  # energies need no sum
    assert energy_only.model.feature_counts() == {"Cu": 2, "Pt": 1}


def test_failed_cholesky_says_what_to_do():
    matrix = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    with pytest.raises(KernelMatrixError, match=r"the test matrix \(2 x 2\)"
                                                r".*increase lamda.*"
                                                r"cholesky=False"):
        solve(matrix.copy(), np.ones(2), True, "the test matrix")
    assert issubclass(KernelMatrixError, ValueError)
    np.testing.assert_allclose(matrix @ solve(matrix.copy(), np.ones(2),
                                              False, "x"), np.ones(2))


def test_least_squares_takes_a_singular_kernel(tmp_path):
    # Two training images with the same fingerprints (a cluster in two
    # boxes): with lamda = 0 the energy matrix is singular.
    images = ase.io.read(TRAIN, ":")
    twin = images[0].copy()
    twin.set_cell([30.0, 30.0, 30.0])
    twin.calc = SinglePointCalculator(
        twin, energy=images[0].get_potential_energy())
    calc = train_krr(tmp_path, images + [twin], cholesky=False, lamda=0.0)
    energies, _, _ = predict(calc, images, forces=False)
    np.testing.assert_allclose(energies, [a.get_potential_energy()
                                          for a in images], atol=1e-6)


# Memory --------------------------------------------------------------------

def test_kernel_memory_is_stated_and_refused_before_anything(tmp_path):
    from ase import Atoms

    images = [Atoms("Cu50", positions=np.arange(150.0).reshape(50, 3) + k)
              for k in range(100)]
    model = KernelRidge(forcetraining=True)
    peak, matrices = model.kernel_memory(images)
    assert ("force kernel of Cu (x3)", 5000) in matrices
    assert 8 * 5000 ** 2 <= peak <= 8 * 5000 ** 2 + 2 ** 26
    lines = []
    with pytest.raises(TrainingMemoryError,
                       match=r"force kernel of Cu \(x3\), is 5,000 x 5,000"
                             r".*100 MB"):
        model.check_memory(images, "100 MB", lines.append)
    assert "energy kernel between images 100 x 100" in lines[0]
    assert model.check_memory(images, "1 GB") == peak
    # Energies only: the 100 x 100 image matrix, and blocks of the
    # 5,000 x 5,000 atom kernel of at most 32 MiB each.
    assert KernelRidge().kernel_memory(images)[0] == 8 * 100 ** 2 + 2 ** 26
    # Through the calculator: refused before any fingerprint is made.
    calc = Amp(Gaussian(), KernelRidge(forcetraining=True), cores=1,
               label=str(tmp_path / "krr"))
    with pytest.raises(TrainingMemoryError, match="nothing has been"):
        calc.train(ase.io.read(TRAIN, ":"), memory_limit=1000)
    assert sorted(os.listdir(tmp_path)) == ["krr-log.txt"]


# Training, MD and the analysis tools -----------------------------------------

def cluster_images(count, seed=0):
    from ase.cluster import Icosahedron

    images = []
    rng = np.random.default_rng(seed)
    for _ in range(count):
        atoms = Icosahedron("Cu", 2)
        atoms[0].symbol = "Pt"
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        images.append(with_emt_results(atoms))
    return images


def test_train_load_and_md(tmp_path):
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.verlet import VelocityVerlet

    images = cluster_images(12)
    calc = Amp(Gaussian(), KernelRidge(forcetraining=True, sigma=5.0,
                                       lamda=1e-6),
               cores=1, label=str(tmp_path / "krr"))
    calc.train(images)
    atoms = cluster_images(1, seed=7)[0]
    atoms.calc = Amp.load(str(tmp_path / "krr.amp"))
    emt = EMT()
    errors = []

    def compare():
        forces = emt.get_forces(atoms)
        errors.append((atoms.get_potential_energy()
                       - emt.get_potential_energy(atoms),
                       np.abs(atoms.get_forces() - forces).max()
                       / np.abs(forces).max()))

    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.attach(compare)
    dynamics.run(5)
    assert len(errors) == 6
    energy_error, force_error = np.array(errors).T
    assert np.all(np.abs(energy_error) < 0.2)  # eV, of about 10
    assert np.all(force_error < 0.3)  # of the largest EMT force
    # Forces are a model of their own: close to, not exactly, -dE/dx.
    from checks import energy_of, numerical_forces

    probe = cluster_images(1, seed=8)[0]
    probe.calc = atoms.calc
    gradient = numerical_forces(energy_of(atoms.calc), probe)
    difference = np.abs(probe.get_forces() - gradient).max()
    assert 1e-6 < difference < 5.0


def test_parity_convergence_and_fingerprint_plots(retrained, tmp_path,
                                                  monkeypatch):
    pytest.importorskip("matplotlib")
    from amp.analysis import plot_convergence, plot_parity_and_error
    from amp.descriptor.analysis import FingerprintPlot

    folder, calcs = retrained
    calc = calcs["krr_cupt_forces"]
    images = ase.io.read(HELDOUT, ":")
    png = str(tmp_path / "parity.png")
    energy_data, force_data = plot_parity_and_error(
        calc, images, plotfile=png, returndata=True)
    energies, _, forces = predict(calc, images)
    np.testing.assert_array_equal([d[1] for d in energy_data.values()],
                                  energies)
    np.testing.assert_array_equal([d[1] for d in force_data.values()],
                                  forces)
    with pytest.raises(PropertyNotTrainedError):
        plot_parity_and_error(calcs["krr_cupt_energy"], images,
                              plotfile=str(tmp_path / "e.png"))
    plot_parity_and_error(calcs["krr_cupt_energy"], images,
                          plotfile=str(tmp_path / "e.png"),
                          plot_forces=False)
    for case in CASES:
        plot_convergence(str(folder / case) + "-log.txt",
                         str(tmp_path / (case + ".png")))
    from amp.analysis import calc_rmse, plot_sensitivity

    with pytest.raises(ValueError, match="plot_parity_and_error"):
        calc_rmse(str(folder / "krr_cupt_forces") + ".amp", images)
    with pytest.raises(ValueError, match="has none"):
        plot_sensitivity(calc, images, plotfile=str(tmp_path / "s.png"))
    monkeypatch.chdir(tmp_path)
    fpplot = FingerprintPlot(calc)
    fpplot(images)
    fpplot(images, overlay=images[0])
    fpplot(images, overlay=[images[1][2], images[0][-1]])
    for name in ["parity.png", "e.png", "fingerprints.pdf"] + \
            [case + ".png" for case in CASES]:
        assert os.path.getsize(tmp_path / name) > 1000
    assert sorted(fpplot.data) == ["Cu", "Pt"]


def test_interrupted_fit_leaves_a_checkpoint_a_rerun_completes(
        tmp_path, monkeypatch):
    import amp.model.kernelridge as module

    images = ase.io.read(TRAIN, ":")
    label = str(tmp_path / "krr")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "energy_weights", interrupted)
    calc = Amp(Gaussian(), KernelRidge(), cores=1, label=label)
    with pytest.raises(KeyboardInterrupt):
        calc.train(images)
    # The files written before the solve load (no weights yet).
    for name in ("-checkpoint.amp", "-initial-parameters.amp"):
        loaded = Amp.load(label + name)
        assert loaded.model.parameters.weights is None
        assert loaded.model.vector is None
    monkeypatch.undo()
    calc = Amp(Gaussian(), KernelRidge(), cores=1, label=label)
    calc.train(images)
    assert not os.path.exists(label + "-checkpoint.amp")
    energies, _, _ = predict(calc, ase.io.read(HELDOUT, ":"), forces=False)
    assert_relative(energies, reference("krr_cupt_energy")["predictions"]
                    ["heldout"]["energies"], 1e-6)


def test_tampered_json_files_are_refused(retrained, tmp_path):
    folder, _ = retrained
    with open(str(folder / "krr_cupt_forces") + ".amp") as handle:
        good = json.load(handle)

    def tampered(change):
        d = json.loads(json.dumps(good))
        change(d["model"])
        path = tmp_path / "bad.amp"
        path.write_text(json.dumps(d))
        return str(path)

    changes = [
        lambda m: m["reference"]["energy"]["Cu"].pop(),  # a weight too many
        lambda m: m["weights"]["forces"]["Pt"][0].pop(),
        lambda m: [row.pop() for row in m["reference"]["energy"]["Pt"]],
        lambda m: m["reference"]["forces"]["Cu"][0][0].pop(),
        lambda m: m["reference"].update(energy_scaler={"mean": [0.0],
                                                       "scale": [1.0]}),
        lambda m: m.update(sigma={"energy": {"Cu": 1.0, "Pt": -1.0}}),
        lambda m: m.update(kernel="__import__('os')"),
    ]
    for change in changes:
        with pytest.raises(ModelFileError):
            Amp.load(tampered(change))
    assert Amp.load(tampered(lambda m: None)).model.has_force_model
