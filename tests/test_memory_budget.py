"""The memory budget of force training: estimated from neighbour lists,
logged, and enforced before any fingerprint derivative is computed."""
import os

import numpy as np
import pytest

from amp import Amp
from amp.descriptor import gaussian as gaussian_module
from amp.descriptor.budget import (TrainingMemoryError, derivative_memory,
                                   format_bytes, local_share, parse_bytes)
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.batch import TrainingBatch
from amp.model.neuralnetwork import NeuralNetwork
from amp.utilities import hash_images
from conftest import cu_bulk, rattled_with_emt


def _images(kind, count, seed=0):
    rng = np.random.default_rng(seed)

    def make(k):
        if kind == "pair":  # 2 atoms, periodic images of the same atoms
            return cu_bulk(3.6, (2, 1, 1), pt=[1])
        if kind == "alloy":  # 32 atoms, three elements
            atoms = cu_bulk(3.8, (2, 2, 2), cubic=True)
            atoms.symbols = rng.choice(["Au", "Cu", "Pt"], len(atoms))
            return atoms
        return cu_bulk(3.6, (3, 3, 3), cubic=True)  # 108 atoms
    return hash_images(rattled_with_emt(make, count, 0.05, rng=rng))


@pytest.mark.parametrize("kind", ["pair", "alloy", "cu108"])
def test_estimate_within_20_percent_of_force_data(kind):
    images = _images(kind, 3)
    descriptor = Gaussian()
    estimate = derivative_memory(descriptor, images)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    matrix = TrainingBatch(images, descriptor.arrays, True).force_matrix
    measured = (matrix.data.nbytes + matrix.indices.nbytes
                + matrix.indptr.nbytes)
    assert abs(estimate - measured) <= 0.2 * measured


def test_parse_and_format_bytes():
    assert parse_bytes("4 GB") == 4 * 10 ** 9
    assert parse_bytes("512MiB") == 512 * 2 ** 20
    assert parse_bytes(1e6) == 10 ** 6
    for bad in ("lots", "-1 GB", 0):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    assert format_bytes(5.1e9) == "5.1 GB"
    assert format_bytes(38e6) == "38 MB"
    assert local_share({"localhost": 2, "elsewhere.example": 6}) == 0.25
    assert local_share(4) == 1.0


def test_training_refused_before_anything_is_computed(tmp_path,
                                                      monkeypatch):
    computed = []
    original = gaussian_module.Gaussian._compute
    monkeypatch.setattr(gaussian_module.Gaussian, "_compute",
                        lambda self, *a: computed.append(1) or
                        original(self, *a))
    label = str(tmp_path / "big")
    calc = Amp(descriptor=Gaussian(cutoff=4.0),
               model=NeuralNetwork(hiddenlayers=(2,), randomseed=0),
               label=label, cores=1)
    calc.model.lossfunction = LossFunction(convergence={"energy_rmse": 0.1})
    images = _images("pair", 4)
    with pytest.raises(TrainingMemoryError) as error:
        calc.train(images, memory_limit="1 kB")
    message = str(error.value)
    for part in ("fingerprint derivatives of 4 images",
                 "more than the limit of 1.0 kB (memory_limit)",
                 "fewer images", "force_coefficient=None",
                 "workers on more hosts", "nothing has been computed"):
        assert part in message
    assert computed == []
    assert not os.path.exists(label + "-fingerprint-primes.ampdb")
    with open(label + "-log.txt") as handle:
        assert "Fingerprint derivatives for 4 images: about" in handle.read()
    # Within the limit: logged, and training goes on.
    calc.train(images, memory_limit=1e9, overwrite=True)
    with open(label + "-log.txt") as handle:
        assert "limit 1.0 GB (memory_limit)" in handle.read()
