"""What the extrapolation check costs in a force call, one core.

The model of ``bench/inference.py`` (default ``Gaussian()`` +
``NeuralNetwork(hiddenlayers=(5, 5), randomseed=42)`` set up on five
thermally displaced 108-atom fcc Cu cells), loaded with ``Amp.load``. On
fresh displaced cells, force calls through :func:`amp.potential.evaluate`
with the check (:class:`amp.potential.FingerprintRange`, what
``Amp.calculate`` runs) and without it are timed alternately, and the
minimum of each is taken (the least disturbed on a shared machine).
Prints ``name value unit`` lines:

* ``force_call_108_atoms_unchecked`` ms, ``force_call_108_atoms_checked``
  ms, and ``extrapolation_check_108_atoms`` ms: the check alone, on the
  fingerprints of a call (minimum of many);
* ``extrapolation_overhead_108_atoms`` %: the check alone over the
  unchecked call (target <= 3 %); ``..._difference`` %: the two calls'
  minima compared (noisier: two minima of ~20 ms calls).

Run ``python bench/extrapolation.py [--repeats 40]``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchdata  # noqa: E402
from benchdata import report  # noqa: E402
from inference import build_model  # noqa: E402

from amp import Amp  # noqa: E402
from amp.potential import FingerprintRange, evaluate  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=40,
                        help="force calls of each kind (default 40)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = build_model(benchdata.copper_images(5),
                           os.path.join(folder, "cu.amp"))
        calc = Amp.load(path)
    checker = FingerprintRange(calc.model.parameters.fprange)
    rng = np.random.default_rng(7)
    cells = [benchdata.copper_cell(rng) for _ in range(args.repeats)]
    for atoms in cells[:3]:  # warm-up
        evaluate(calc.descriptor, calc.model, atoms, None, checker.check)
    times = {"unchecked": [], "checked": []}
    for number, atoms in enumerate(cells):
        order = (("unchecked", None), ("checked", checker.check))
        for name, check in order if number % 2 else order[::-1]:
            start = time.perf_counter()
            results = evaluate(calc.descriptor, calc.model, atoms, None,
                               check)
            times[name].append(time.perf_counter() - start)
    assert "extrapolation" in results
    fingerprints = calc.descriptor.compute(cells[0], False)
    check_times = []
    for _ in range(200):
        start = time.perf_counter()
        checker.check(fingerprints)
        check_times.append(time.perf_counter() - start)
    unchecked, checked = min(times["unchecked"]), min(times["checked"])
    alone = min(check_times)
    report("force_call_108_atoms_unchecked", "%.2f" % (1e3 * unchecked),
           "ms", "minimum of %d" % args.repeats)
    report("force_call_108_atoms_checked", "%.2f" % (1e3 * checked), "ms",
           "minimum of %d, interleaved with the above" % args.repeats)
    report("extrapolation_check_108_atoms", "%.3f" % (1e3 * alone), "ms",
           "the check alone, minimum of 200")
    report("extrapolation_overhead_108_atoms",
           "%.2f" % (100 * alone / unchecked), "%", "the check over an unchecked force call; target <= 3")
    report("extrapolation_overhead_108_atoms_difference",
           "%.2f" % (100 * (checked - unchecked) / unchecked), "%",
           "checked minus unchecked call, over the unchecked call")


if __name__ == "__main__":
    main()
