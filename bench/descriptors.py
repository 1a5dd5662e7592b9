"""Per-image cost of the three descriptors on the 108-atom Cu cell, one core.

Prints ``name value unit`` lines, in milliseconds of CPU time (minimum over
interleaved rounds: the machine is shared), for one thermally displaced
108-atom fcc Cu cell (``bench/benchdata.py``), neighbour search included:

* ``gaussian8``: Amp's default Gaussian functions (8 features);
  ``gaussian12`` and ``gaussian51``: Gaussian sets with as many features as
  Zernike's and Bispectrum's defaults (G2 with log-spaced etas, then G4 with
  gamma +-1 over a grid of eta and zeta);
* ``zernike``: ``Zernike()`` (nmax 5, 12 features);
* ``bispectrum``: ``Bispectrum()`` (jmax 5, 51 features), and
  ``bispectrum_jmax3`` (22 features);

each as ``<name>_fingerprints_108_atoms`` and
``<name>_fingerprints_with_derivatives_108_atoms``, then the ratios to the
Gaussian of comparable size (``zernike_vs_gaussian12_*``,
``bispectrum_vs_gaussian51_*``; target <= 3).

With ``--original PYTHON`` (an interpreter where Amp 1.0.1 is installed,
see ``bench/original_amp.py``) Amp's own Zernike and Bispectrum are timed on
the same cell in the same run (``original_*`` lines, seconds; a call still
running after ``--original-time-limit`` seconds is stopped and reported as
a lower bound), followed by the ratios of this library's time to Amp's
(``*_vs_amp``; targets <= 0.01 for fingerprints, <= 0.001 with
derivatives). Amp's Bispectrum has no derivatives.

Usage: ``python bench/descriptors.py [--rounds 7] [--original PYTHON]``.
"""
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchdata  # noqa: E402
from benchdata import report  # noqa: E402

CELL_SEED = 100  # the cell of bench/original_amp.py's descriptors


def gaussian_functions(n_g2, etas, zetas):
    """A Gaussian set for Cu: ``n_g2`` G2 (log-spaced etas 0.05-5), then
    G4 for every (eta, zeta) and gamma +-1."""
    from amp.descriptor.gaussian import make_symmetry_functions

    Gs = make_symmetry_functions(["Cu"], "G2", etas=list(
        np.logspace(np.log10(0.05), np.log10(5.0), n_g2)))
    Gs += make_symmetry_functions(["Cu"], "G4", etas=etas, zetas=zetas,
                                  gammas=[1.0, -1.0])
    return {"Cu": Gs}


def descriptors():
    """``{name: descriptor}`` in the order they are timed."""
    from amp.descriptor.bispectrum import Bispectrum
    from amp.descriptor.gaussian import Gaussian
    from amp.descriptor.zernike import Zernike

    return {
        "gaussian8": Gaussian(),
        "gaussian12": Gaussian(Gs=gaussian_functions(6, [0.005],
                                                     [1.0, 2.0, 4.0])),
        "gaussian51": Gaussian(Gs=gaussian_functions(
            11, [0.005, 0.05, 0.2, 0.5, 1.0], [1.0, 2.0, 4.0, 8.0])),
        "zernike": Zernike(),
        "bispectrum": Bispectrum(),
        "bispectrum_jmax3": Bispectrum(jmax=3),
    }


def measure(atoms, rounds):
    """``{(name, derivatives): (best CPU seconds, features)}``."""
    timed = descriptors()
    best = {}
    for name, descriptor in timed.items():  # set-up and warm-up
        for derivatives in (False, True):
            descriptor.compute(atoms, derivatives)
    for _ in range(rounds):
        for name, descriptor in timed.items():
            for derivatives in (False, True):
                start = time.process_time()
                fp = descriptor.compute(atoms, derivatives)
                seconds = time.process_time() - start
                key = (name, derivatives)
                features = fp.values["Cu"].shape[1]
                if key not in best or seconds < best[key][0]:
                    best[key] = (seconds, features)
    return best


def parse(lines):
    """``{name: float}`` of ``name value unit`` lines."""
    out = {}
    for line in lines.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7,
                        help="interleaved rounds; the minimum is printed")
    parser.add_argument("--original", metavar="PYTHON",
                        help="an interpreter with Amp 1.0.1, to time its "
                        "Zernike and Bispectrum on the same cell")
    parser.add_argument("--original-time-limit", type=float, default=600.0,
                        help="seconds allowed to each of Amp's calls")
    args = parser.parse_args()
    atoms = benchdata.copper_cell(np.random.default_rng(CELL_SEED))
    best = measure(atoms, args.rounds)
    kinds = {False: "fingerprints", True: "fingerprints_with_derivatives"}
    for (name, derivatives), (seconds, features) in best.items():
        report("%s_%s_108_atoms" % (name, kinds[derivatives]),
               "%.1f" % (1e3 * seconds), "ms",
               "%d features, CPU time, best of %d" % (features, args.rounds))
    for ours, theirs in (("zernike", "gaussian12"),
                         ("bispectrum", "gaussian51")):
        for derivatives, kind in kinds.items():
            ratio = best[ours, derivatives][0] / best[theirs, derivatives][0]
            report("%s_vs_%s_%s" % (ours, theirs, kind), "%.2f" % ratio,
                   "x", "target <= 3")
    if not args.original:
        return
    found = parse(benchdata.run_original(
        args.original, "descriptors", "--time-limit",
        args.original_time_limit) or "")
    targets = {False: 0.01, True: 0.001}
    for ours in ("zernike", "bispectrum"):
        for derivatives, kind in kinds.items():
            name = "original_%s_%s_108_atoms" % (ours, kind)
            mine = best[ours, derivatives][0]
            if name in found:
                ratio, relation = mine / found[name], ""
            elif name + "_lower_bound" in found:
                ratio = mine / found[name + "_lower_bound"]
                relation = "at most; Amp's call was stopped unfinished"
            else:
                continue
            report("%s_%s_vs_amp" % (ours, kind), "%.2g" % ratio, "x",
                   "target <= %g %s" % (targets[derivatives], relation))


if __name__ == "__main__":
    main()
