"""Ensemble inference: one call of a 10-member BootStrap vs one Amp call.

Ten members (default ``Gaussian()`` + ``NeuralNetwork(hiddenlayers=(5, 5))``,
each set up on 5 thermally displaced 108-atom fcc Cu cells with its own
random weights; the cost of a call does not depend on the weights) are
written to an ensemble file and loaded with ``BootStrap.load`` as a user
would. The calls take turns on 30 fresh cells (new positions every call,
so nothing is cached); each figure is a median, one core. Prints
``name value unit`` lines:

* ``amp_force_call_108_atoms`` ms: ``get_forces`` of one member loaded with
  ``Amp.load`` (energy, forces and stress in one pass);
* ``ensemble_force_call_108_atoms`` ms: ``get_forces`` through
  ``BootStrap.calculator()`` (mean energy, forces and stress of the 10
  members, with ``energy_std`` and ``forces_std``);
* ``ensemble_over_amp`` ratio: the two above (10 separate calls would be
  about 10);
* ``ensemble_percentiles_call_108_atoms`` ms: ``BootStrap.get_forces(atoms,
  output=(.05, .5, .95))``.

Run ``python bench/ensemble.py``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchdata  # noqa: E402
from benchdata import report  # noqa: E402

from amp import Amp  # noqa: E402
from amp.descriptor.gaussian import Gaussian  # noqa: E402
from amp.model.neuralnetwork import NeuralNetwork  # noqa: E402
from amp.stats.bootstrap import BootStrap  # noqa: E402
from amp.stats.ensemble import write_ensemble  # noqa: E402
from amp.store import modelfile  # noqa: E402
from amp.utilities import Logger, hash_images  # noqa: E402

MEMBERS = 10
CELL_SEED = 100


def member_texts(images, count):
    """``count`` model-file texts set up on ``images`` (random weights)."""
    images = hash_images(images)
    descriptor = Gaussian()
    descriptor.calculate_fingerprints(images, calculate_derivatives=False)
    texts = []
    for seed in range(count):
        model = NeuralNetwork(hiddenlayers=(5, 5), randomseed=seed)
        model.fit(images, descriptor, only_setup=True)
        texts.append(modelfile.dumps(descriptor.todict(), model.todict()))
    return texts


def interleaved_ms(calls, rng, repeats=30):
    """Median and minimum ms of each call, the calls taking turns on the
    same fresh cells (so a busy period slows them alike)."""
    times = {name: [] for name in calls}
    for _ in range(repeats):
        cell = benchdata.copper_cell(rng)
        for name, call in calls.items():
            atoms = cell.copy()
            start = time.perf_counter()
            call(atoms)
            times[name].append(time.perf_counter() - start)
    return {name: (1e3 * np.median(t), 1e3 * np.min(t))
            for name, t in times.items()}


def main():
    folder = tempfile.mkdtemp(prefix="amp-bench-ensemble-")
    texts = member_texts(benchdata.copper_images(5), MEMBERS)
    path = os.path.join(folder, "cu.ensemble")
    write_ensemble(path, texts)
    single_path = os.path.join(folder, "cu.amp")
    with open(single_path, "w") as handle:
        handle.write(texts[0])
    single = Amp.load(single_path)
    ensemble = BootStrap.load(path, log=Logger(None))
    view = ensemble.calculator()

    def amp_call(atoms):
        atoms.calc = single
        atoms.get_forces()

    def ensemble_call(atoms):
        atoms.calc = view
        atoms.get_forces()

    def percentiles_call(atoms):
        ensemble.get_forces(atoms, output=(.05, .5, .95))

    rng = np.random.default_rng(CELL_SEED)
    calls = {"amp": amp_call, "ensemble": ensemble_call}
    for call in calls.values():  # warm up
        call(benchdata.copper_cell(rng))
    ms = interleaved_ms(calls, rng)
    # Alone: after a call on the same cell the ensemble's predictions are
    # reused and only the quantiles would be timed.
    ms.update(interleaved_ms({"percentiles": percentiles_call}, rng))
    report("amp_force_call_108_atoms", "%.2f" % ms["amp"][0], "ms",
           "median of 30 fresh cells, min %.2f" % ms["amp"][1])
    report("ensemble_force_call_108_atoms", "%.2f" % ms["ensemble"][0], "ms",
           "%d members, same cells, min %.2f" % (MEMBERS, ms["ensemble"][1]))
    report("ensemble_over_amp", "%.2f" % (ms["ensemble"][0] / ms["amp"][0]),
           "ratio", "minima %.2f; %d separate Amp calls would be about %d"
           % (ms["ensemble"][1] / ms["amp"][1], MEMBERS, MEMBERS))
    report("ensemble_percentiles_call_108_atoms",
           "%.2f" % ms["percentiles"][0], "ms",
           "get_forces(output=(.05, .5, .95)), min %.2f"
           % ms["percentiles"][1])


if __name__ == "__main__":
    main()
