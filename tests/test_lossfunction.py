"""LossFunction: the definitions of docs/model.md, analytic gradient against
finite differences, independence of the image split, duplicates, energy-only."""
import os

import numpy as np
import pytest

from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction, combine_partials
from amp.model.batch import TrainingBatch
from amp.model.neuralnetwork import NeuralNetwork
from amp.utilities import Logger, hash_images

from conftest import AMP_REFERENCE

TRAIN = os.path.join(AMP_REFERENCE, "ptcu_train.traj")
SMALL_GS = {element: [
    {"type": "G2", "element": "Cu", "eta": 0.05},
    {"type": "G2", "element": "Pt", "eta": 0.5},
    {"type": "G4", "elements": ["Cu", "Pt"], "eta": 0.005, "zeta": 1.0,
     "gamma": 1.0},
    {"type": "G4", "elements": ["Pt", "Pt"], "eta": 0.005, "zeta": 2.0,
     "gamma": -1.0}] for element in ("Cu", "Pt")}


@pytest.fixture(scope="module")
def training():
    """The five Pt/Cu images with fingerprints and derivatives."""
    images = hash_images(TRAIN)
    descriptor = Gaussian(cutoff=5.0, Gs=SMALL_GS)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    return images, descriptor


def _model(training, activation="tanh", hiddenlayers=None, seed=1,
           **loss_kwargs):
    images, descriptor = training
    hiddenlayers = hiddenlayers or {"Cu": (3, 2), "Pt": (4,)}
    model = NeuralNetwork(hiddenlayers=hiddenlayers, activation=activation,
                          randomseed=seed)
    kwargs = dict(convergence={"energy_rmse": 1e-6, "force_rmse": 1e-6},
                  raise_ConvergenceOccurred=False, log_losses=False)
    kwargs.update(loss_kwargs)
    model.lossfunction = LossFunction(**kwargs)
    model.fit(images, descriptor, Logger(None), {"cores": 1},
              only_setup=True)
    # Move off the initial point so every term is sizeable.
    rng = np.random.default_rng(seed)
    model.vector = model.vector + rng.normal(0, 0.2, len(model.vector))
    return model


def test_loss_matches_spec_definitions(training):
    images, descriptor = training
    model = _model(training, overfit=0.03, energy_coefficient=1.5,
                   force_coefficient=0.07)
    vector = model.vector
    result = model.lossfunction.get_loss(vector, lossprime=False)
    energy_loss = force_loss = 0.0
    energy_max = force_max = 0.0
    for key, atoms in images.items():
        fp = descriptor.arrays[key]
        atomic, dE_dG = model.evaluate(fp)
        n = len(atoms)
        residual = (atomic.sum() - atoms.get_potential_energy()) / n
        energy_loss += residual ** 2
        energy_max = max(energy_max, abs(residual))
        dF = fp.forces(dE_dG) - atoms.get_forces()
        force_loss += np.sum(dF ** 2) / (3 * n)
        force_max = max(force_max, np.abs(dF).max())
    weights = [w for e in sorted(model.parameters.weights)
               for _, w in sorted(model.parameters.weights[e].items())]
    penalty = sum(np.sum(w[:-1] ** 2) for w in weights)
    assert result["energy_loss"] == pytest.approx(energy_loss, rel=1e-12)
    assert result["force_loss"] == pytest.approx(force_loss, rel=1e-12)
    assert result["energy_maxresid"] == pytest.approx(energy_max, rel=1e-12)
    assert result["force_maxresid"] == pytest.approx(force_max, rel=1e-12)
    assert result["loss"] == pytest.approx(
        1.5 * energy_loss + 0.07 * force_loss + 0.03 * penalty, rel=1e-12)
    assert not result["dloss_dparameters"].any()  # lossprime=False
    full = model.lossfunction.calculate_loss(vector)
    assert full["energy_rmse"] == pytest.approx(np.sqrt(energy_loss / 5),
                                                rel=1e-12)
    assert full["force_rmse"] == pytest.approx(np.sqrt(force_loss / 5),
                                               rel=1e-12)


def _check_gradient(model):
    lossfunction = model.lossfunction
    vector = model.vector
    analytic = lossfunction.get_loss(vector)["dloss_dparameters"]
    lossfunction.d = 1e-6
    numeric = lossfunction.get_loss(vector)["dloss_dparameters"]
    lossfunction.d = None
    scale = np.abs(analytic).max()
    assert scale > 1e-2
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=1e-7 * scale)
    np.testing.assert_array_equal(model.vector, vector)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "linear"])
def test_gradient_energy_and_forces_with_overfit(training, activation):
    model = _model(training, activation=activation, overfit=0.05)
    assert model.lossfunction.train_forces
    _check_gradient(model)


def test_gradient_energy_only_and_tuple_layers(training):
    model = _model(training, hiddenlayers=(3, 3, 2), force_coefficient=None,
                   convergence={"energy_rmse": 1e-6})
    assert not model.lossfunction.train_forces
    assert model.lossfunction.get_loss(model.vector)["force_loss"] == 0.0
    _check_gradient(model)


def test_gradient_forces_only_term(training):
    model = _model(training, energy_coefficient=0.0, force_coefficient=1.0)
    _check_gradient(model)


def test_split_into_subsets_gives_the_same_loss(training):
    model = _model(training, overfit=0.01)
    lossfunction = model.lossfunction
    vector = model.vector
    whole = lossfunction.get_loss(vector)
    for n_batches in (2, 3, 5):
        lossfunction.split_images(n_batches)
        assert len(lossfunction.batches()) == n_batches
        split = lossfunction.get_loss(vector)
        for key in ("loss", "energy_loss", "force_loss", "energy_maxresid",
                    "force_maxresid"):
            assert split[key] == pytest.approx(whole[key], rel=1e-12)
        np.testing.assert_allclose(split["dloss_dparameters"],
                                   whole["dloss_dparameters"], rtol=1e-12,
                                   atol=1e-12 * np.abs(
                                       whole["dloss_dparameters"]).max())
    # The same by hand: batches on disjoint subsets, partial sums added.
    images, descriptor = training
    keys = list(images)
    networks, raveler = model.element_networks(), model.raveler
    parts = [TrainingBatch({k: images[k] for k in group}, descriptor.arrays,
                           True).partial(networks, True, 1.0, 0.04, raveler)
             for group in (keys[:1], keys[1:3], keys[3:])]
    total = combine_partials(parts)
    reference = TrainingBatch(images, descriptor.arrays, True).partial(
        networks, True, 1.0, 0.04, raveler)
    assert total["n_images"] == 5
    for key in ("energy_loss", "force_loss"):
        assert total[key] == pytest.approx(reference[key], rel=1e-12)
    np.testing.assert_allclose(total["gradient"], reference["gradient"],
                               rtol=1e-12, atol=1e-14)


def test_weight_duplicates(training):
    images, descriptor = training
    keys = list(images)
    duplicated = hash_images([images[keys[0]]] * 3
                             + [images[k] for k in keys[1:]])
    assert duplicated.metadata["duplicates"] == {keys[0]: 3}
    results = {}
    for weight in (False, True):
        model = NeuralNetwork(hiddenlayers=(2,), randomseed=3)
        model.lossfunction = LossFunction(
            weight_duplicates=weight, raise_ConvergenceOccurred=False,
            log_losses=False, convergence={"force_rmse": 1.0})
        model.fit(duplicated, descriptor, Logger(None), None,
                  only_setup=True)
        results[weight] = model.lossfunction.calculate_loss(model.vector)
        first = TrainingBatch({keys[0]: images[keys[0]]}, descriptor.arrays,
                              True).partial(model.element_networks(), False,
                                            1.0, 0.04)
    assert results[True]["energy_loss"] == pytest.approx(
        results[False]["energy_loss"] + 2 * first["energy_loss"], rel=1e-12)
    assert results[True]["force_loss"] == pytest.approx(
        results[False]["force_loss"] + 2 * first["force_loss"], rel=1e-12)
    assert results[True]["energy_rmse"] == pytest.approx(
        np.sqrt(results[True]["energy_loss"] / 7), rel=1e-12)


def test_energy_only_never_needs_derivatives():
    images = hash_images(TRAIN)
    descriptor = Gaussian(cutoff=5.0, Gs=SMALL_GS)
    descriptor.calculate_fingerprints(images)  # no derivatives
    for kwargs in ({"force_coefficient": None},
                   {"force_coefficient": None,
                    "convergence": {"energy_rmse": 0.1, "force_rmse": 0.2}}):
        model = NeuralNetwork(hiddenlayers=(2,), randomseed=0)
        model.lossfunction = LossFunction(raise_ConvergenceOccurred=False,
                                          log_losses=False, **kwargs)
        assert not model.forcetraining
        model.fit(images, descriptor, Logger(None), None, only_setup=True)
        result = model.lossfunction.get_loss(model.vector)
        assert result["force_loss"] == 0.0 and result["loss"] > 0
    # Only force_coefficient=None turns force training off; the
    # default coefficient trains forces even without a force criterion.
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0)
    model.lossfunction = LossFunction()
    assert model.forcetraining
    model.fit(images, descriptor, Logger(None), None, only_setup=True)
    with pytest.raises(ValueError, match="no fingerprint derivatives"):
        model.lossfunction.get_loss(model.vector)


def test_bad_convergence_key():
    with pytest.raises(ValueError, match="unknown convergence"):
        LossFunction(convergence={"energy_rsme": 0.1})


def test_force_matrix_of_images_of_different_sizes(monkeypatch):
    """The batch's force matrix is filled image by image into arrays sized
    from the first image and grown when a later one is larger: it must map
    dE/dG to every image's forces, whatever the order of sizes."""
    import amp.model.batch as network
    from conftest import cu_bulk, rattled_with_emt

    grown = []
    original = network._grown
    monkeypatch.setattr(network, "_grown", lambda *args: grown.append(
        args[1]) or original(*args))

    rng = np.random.default_rng(11)
    repeats = ((1, 1, 1), (2, 1, 1), (1, 1, 1), (2, 2, 1))
    images = hash_images(rattled_with_emt(
        lambda k: cu_bulk(3.7, repeats[k], cubic=True, pt=[1]), 4, 0.1,
        rng=rng))
    descriptor = Gaussian(cutoff=4.0, Gs=SMALL_GS)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    batch = TrainingBatch(images, descriptor.arrays, True)
    dE_dG = {e: rng.normal(size=block.shape)
             for e, block in batch.fingerprints.items()}
    g = np.concatenate([dE_dG[e].ravel() for e in batch.elements])
    expected = []
    for n, key in enumerate(images):
        fp = descriptor.arrays[key]
        mine = {e: dE_dG[e][batch.image_of_atom[e] == n] for e in fp.values}
        expected.append(fp.forces(mine).ravel())
    np.testing.assert_allclose(batch.force_matrix @ g,
                               np.concatenate(expected), rtol=1e-13,
                               atol=1e-13)
    # Exact zeros (derivatives of functions of the other element) dropped.
    assert batch.force_matrix.nnz == sum(
        np.count_nonzero(descriptor.arrays[key].force_matrix().data)
        for key in images)
    assert len(grown) == 4 and grown[2] > 0  # sized once, grown once
