"""Stress in the loss: the virial map of the fingerprint derivatives, the
stress term against its definition (the calculator's own stress), its
gradient against finite differences, and the same numbers with workers."""
import os

import numpy as np
import pytest
from ase.stress import full_3x3_to_voigt_6_stress

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.batch import TrainingBatch
from amp.model.neuralnetwork import NeuralNetwork
from amp.potential import evaluate
from amp.utilities import Logger, hash_images
from conftest import strained_cell, with_emt_results


@pytest.fixture(scope="module")
def fingerprinted():
    """Four periodic cells (one without a stress) and a slab (no stress:
    not 3-D periodic), fingerprinted with derivatives."""
    from ase.build import fcc111

    slab = fcc111("Cu", (2, 2, 2), vacuum=4.0)
    slab.rattle(0.05, seed=1)
    cells = [strained_cell(k, stress=k != 2) for k in range(4)]
    images = hash_images(cells + [with_emt_results(slab)])
    descriptor = Gaussian(cutoff=4.5)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    return images, descriptor


def stress_model(fingerprinted, parallel=None, **loss):
    images, descriptor = fingerprinted
    model = NeuralNetwork((3,), randomseed=1)
    kwargs = dict(energy_coefficient=0.5, force_coefficient=0.04,
                  stress_coefficient=100.0, raise_ConvergenceOccurred=False,
                  log_losses=False)
    kwargs.update(loss)
    model.lossfunction = LossFunction(**kwargs)
    model.fit(images, descriptor, Logger(None), parallel or {"cores": 1},
              only_setup=True)
    # Off the initial point, so that every term is sizeable.
    model.vector = model.vector + np.random.default_rng(0).normal(
        0, 0.2, len(model.vector))
    return model


def test_virial_matrix_gives_the_virial(fingerprinted):
    images, descriptor = fingerprinted
    rng = np.random.default_rng(3)
    for key in list(images)[:2]:
        fp = descriptor.arrays[key]
        dE_dG = {e: rng.normal(size=b.shape) for e, b in fp.values.items()}
        g = np.concatenate([dE_dG[e].ravel() for e in sorted(fp.values)])
        expected = full_3x3_to_voigt_6_stress(fp.virial(dE_dG))
        np.testing.assert_allclose(fp.virial_matrix() @ g, expected,
                                   rtol=0, atol=1e-12 * np.abs(expected)
                                   .max())


def test_stress_term_is_the_calculators_stress_error(fingerprinted):
    images, descriptor = fingerprinted
    model = stress_model(fingerprinted)
    result = model.lossfunction.calculate_loss(model.vector, False)
    stress_loss, largest, counted = 0.0, 0.0, 0
    for atoms in images.values():
        try:
            reference = atoms.get_stress()
        except Exception:  # no stress: the slab, and cell 2
            continue
        predicted = evaluate(descriptor, model, atoms)["stress"]
        stress_loss += np.sum((predicted - reference) ** 2) / 6
        largest = max(largest, np.abs(predicted - reference).max())
        counted += 1
    assert counted == 3
    assert result["stress_loss"] == pytest.approx(stress_loss, rel=1e-12)
    assert result["stress_maxresid"] == pytest.approx(largest, rel=1e-12)
    assert result["stress_rmse"] == pytest.approx(
        np.sqrt(stress_loss / 3), rel=1e-12)
    plain = stress_model(fingerprinted, stress_coefficient=None)
    plain.vector = model.vector
    without = plain.lossfunction.calculate_loss(model.vector, False)
    assert "stress_rmse" not in without
    assert result["loss"] == pytest.approx(
        without["loss"] + 100.0 * stress_loss, rel=1e-12)


@pytest.mark.parametrize("coefficients", [
    {}, {"energy_coefficient": 0.0, "force_coefficient": 0.0,
         "stress_coefficient": 1.0}], ids=["all-terms", "stress-alone"])
def test_stress_gradient_is_the_finite_difference(fingerprinted,
                                                  coefficients):
    model = stress_model(fingerprinted, overfit=1e-3, **coefficients)
    lossfunction = model.lossfunction
    vector = model.vector
    analytic = lossfunction.calculate_loss(vector)["dloss_dparameters"]
    lossfunction.d = 1e-6
    numeric = lossfunction.calculate_loss(vector)["dloss_dparameters"]
    lossfunction.d = None
    scale = np.abs(analytic).max()
    assert scale > 1e-2
    assert np.abs(analytic - numeric).max() <= 1e-6 * scale


def test_stress_with_workers_equals_serial(fingerprinted):
    serial = stress_model(fingerprinted)
    vector = serial.vector
    expected = serial.lossfunction.calculate_loss(vector)
    model = stress_model(fingerprinted, parallel={"cores": 2},
                         use_workers=True)
    lossfunction = model.lossfunction
    with lossfunction.evaluator({"cores": 2}):
        assert lossfunction._workers.job is not None
        result = lossfunction.calculate_loss(vector)
    for key in ("loss", "stress_loss", "stress_rmse", "stress_maxresid",
                "force_loss", "energy_loss"):
        assert result[key] == pytest.approx(expected[key], rel=1e-12)
    np.testing.assert_allclose(result["dloss_dparameters"],
                               expected["dloss_dparameters"], rtol=0,
                               atol=1e-12 * np.abs(
                                   expected["dloss_dparameters"]).max())


def test_shares_concatenate_and_travel_with_their_stress(fingerprinted):
    model = stress_model(fingerprinted)
    lossfunction = model.lossfunction
    whole = lossfunction.batches()[0]
    lossfunction.split_images(3)
    shares = [TrainingBatch.fromdict(batch.todict())
              for batch in lossfunction.batches()]
    merged = TrainingBatch.concatenate(shares)
    for name in ("reference_stress", "stress_row_weight"):
        np.testing.assert_array_equal(getattr(merged, name),
                                      getattr(whole, name))
    assert merged.n_stress_images == whole.n_stress_images == 3
    assert (merged.stress_matrix != whole.stress_matrix).nnz == 0


def test_stress_needs_derivatives_and_stresses(tmp_path):
    with pytest.raises(ValueError, match="force_coefficient"):
        LossFunction(force_coefficient=None, stress_coefficient=1.0)
    calc = Amp(Gaussian(cutoff=4.0), NeuralNetwork((2,)),
               label=str(tmp_path / "x"), cores=1)
    calc.model.lossfunction = LossFunction(stress_coefficient=1.0)
    no_stress = [strained_cell(k, stress=False) for k in range(2)]
    with pytest.raises(ValueError, match="no training image carries a "
                       "stress"):
        calc.train(no_stress)


def test_stress_trains_in_memory_never_streamed(tmp_path):
    """Chunk files carry no stress rows: over the memory limit, a loss
    with a stress term is refused before anything is computed, where
    without one the same limit streams the batches."""
    from amp.descriptor.budget import TrainingMemoryError, derivative_memory

    images = hash_images([strained_cell(k) for k in range(8)])
    limit = derivative_memory(Gaussian(cutoff=4.0), images) // 2
    for stress in (None, 1.0):
        label = str(tmp_path / ("stress" if stress else "plain"))
        calc = Amp(Gaussian(cutoff=4.0), NeuralNetwork((2,)), label=label,
                   cores=1)
        calc.model.lossfunction = LossFunction(stress_coefficient=stress,
                                               maxiter=2)
        if stress is None:
            with pytest.raises(Exception, match="did not converge"):
                calc.train(images, memory_limit=limit)
            assert "Streaming: the force data do not fit" in open(
                label + "-log.txt").read()
        else:
            with pytest.raises(TrainingMemoryError,
                               match="nothing has been computed"):
                calc.train(images, memory_limit=limit)
            assert not os.path.exists(label + "-fingerprints.ampdb")
