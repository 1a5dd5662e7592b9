"""``amp-eval MODEL DATA``: a model's errors on a data set, and its
predictions written to extended XYZ.

Every frame is evaluated with :func:`amp.potential.evaluate` on the fused
path (fingerprint derivatives contracted as they are made, nothing stored),
without a calculator around it. The errors are mean absolute and
root-mean-square deviations from the energies, forces and stresses stored
with the frames: energy per atom over the frames, force components over
all atoms and for the atoms of each element, stress components (Voigt)
over the periodic frames.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import DataFileError, read_images, reference

if TYPE_CHECKING:
    from ase import Atoms

    from .. import Amp

__all__ = ["predict", "error_table", "format_table", "extrapolation_summary",
           "write_predictions", "main"]


def predict(calc: Amp, images: list[Atoms],
            progress: bool | None = None) -> list[dict[str, Any]]:
    """The model's results for each image.

    Parameters
    ----------
    calc : amp.Amp
        A loaded calculator (its descriptor and model are used).
    images : list of ase.Atoms
    progress : bool or None
        A progress line on standard error (None: when it is a terminal).

    Returns
    -------
    list of dict
        ASE's results per image: ``energy``, ``energies``, ``forces``,
        for 3-D periodic cells ``stress``, and, when the model has a
        fingerprint range, ``extrapolation`` (the atoms outside it; see
        :class:`amp.potential.FingerprintRange`, with the calculator's
        ``extrapolation_tolerance``).
    """
    from ..potential import FingerprintRange, evaluate
    from ..progress import Progress

    fprange = getattr(getattr(calc.model, "parameters", None), "fprange",
                      None)
    check = FingerprintRange(fprange, calc.extrapolation_tolerance).check \
        if fprange else None
    results = []
    with Progress(len(images), "evaluating", enabled=progress,
                  unit="frames") as line:
        for done, atoms in enumerate(images, 1):
            results.append(evaluate(calc.descriptor, calc.model, atoms,
                                    extrapolation=check))
            line.update(done)
    return results


def _stats(deviations):
    deviations = np.asarray(deviations, dtype=float).ravel()
    return {"count": int(deviations.size),
            "mae": float(np.mean(np.abs(deviations))),
            "rmse": float(np.sqrt(np.mean(deviations ** 2)))}


def error_table(images: list[Atoms], predictions: list[dict[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """Errors of ``predictions`` against the references stored with
    ``images``.

    Parameters
    ----------
    images : list of ase.Atoms
        With stored energies, forces and stresses (any may be missing;
        frames without one are left out of its rows).
    predictions : list of dict
        From :func:`predict`.

    Returns
    -------
    dict
        ``{row: {'unit', 'count', 'mae', 'rmse'}}`` for the rows
        ``'energy'`` (eV/atom), ``'energy (total)'`` (eV), ``'forces'``
        (eV/Å, every component), ``'forces <element>'`` for each element,
        and ``'stress'`` (eV/Å³, Voigt components); a row with no
        reference is absent.
    """
    energy, energy_total, stress = [], [], []
    forces: dict[str, list[np.ndarray]] = {}
    for atoms, result in zip(images, predictions):
        e_ref = reference(atoms, "energy")
        if e_ref is not None:
            energy_total.append(result["energy"] - float(e_ref))
            energy.append(energy_total[-1] / len(atoms))
        f_ref = reference(atoms, "forces")
        if f_ref is not None:
            deviation = result["forces"] - np.asarray(f_ref, dtype=float)
            for symbol in sorted(set(atoms.get_chemical_symbols())):
                mask = np.array(atoms.get_chemical_symbols()) == symbol
                forces.setdefault(symbol, []).append(deviation[mask].ravel())
        s_ref = reference(atoms, "stress")
        if s_ref is not None and "stress" in result:
            s_ref = np.asarray(s_ref, dtype=float)
            if s_ref.shape == (3, 3):
                s_ref = s_ref[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            stress.append(result["stress"] - s_ref)
    table = {}
    if energy:
        table["energy"] = dict(_stats(energy), unit="eV/atom")
        table["energy (total)"] = dict(_stats(energy_total), unit="eV")
    if forces:
        table["forces"] = dict(_stats(np.concatenate(
            [d for parts in forces.values() for d in parts])), unit="eV/Å")
        for symbol in sorted(forces):
            table["forces %s" % symbol] = dict(
                _stats(np.concatenate(forces[symbol])), unit="eV/Å")
    if stress:
        table["stress"] = dict(_stats(np.concatenate(stress)), unit="eV/Å³")
    return table


def extrapolation_summary(predictions: list[dict[str, Any]]) -> str:
    """A line saying how many frames have atoms outside the model's
    training range (empty when none has, or the model has no range)."""
    found = [r["extrapolation"] for r in predictions
             if r.get("extrapolation") is not None]
    frames = [f for f in found if f["count"]]
    if not frames:
        return ""
    worst = max(frames, key=lambda f: f["worst"])
    return ("extrapolating: %d of %d frames have atoms outside the "
            "model's training range (%d atoms; largest scaled "
            "fingerprint %.3g, where training spans [-1, 1]): their errors "
            "are not those of the model's domain" % (
                len(frames), len(found), sum(f["count"] for f in frames),
                worst["worst"]))


def format_table(table: dict[str, dict[str, Any]]) -> str:
    """The error table as aligned text lines (what ``amp-eval`` prints)."""
    lines = ["%-16s %-8s %8s %12s %12s" % ("quantity", "unit", "count",
                                           "MAE", "RMSE")]
    for name, row in table.items():
        lines.append("%-16s %-8s %8d %12.4e %12.4e" % (
            name, row["unit"], row["count"], row["mae"], row["rmse"]))
    if len(lines) == 1:
        lines.append("(no reference energies, forces or stresses in the "
                     "data: nothing to compare)")
    return "\n".join(lines)


def write_predictions(path: str, images: list[Atoms],
                      predictions: list[dict[str, Any]],
                      overwrite: bool = False) -> None:
    """Write the frames with the model's results to extended XYZ.

    Each frame keeps its own reference results (``energy``, ``forces``,
    ...) and gains ``amp_energy`` and ``amp_stress`` (info) and
    ``amp_forces`` and ``amp_energies`` (per-atom arrays), as
    ``mace_eval_configs`` adds ``MACE_energy``, ``MACE_forces``.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False (it is left alone).
    """
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from ..store.files import atomic_file

    if os.path.exists(path) and not overwrite:
        raise FileExistsError("%s exists; pass --overwrite to replace it or "
                              "-o to choose another file" % path)
    frames = []
    for atoms, result in zip(images, predictions):
        frame = atoms.copy()
        stored = {name: reference(atoms, name)
                  for name in ("energy", "forces", "stress")}
        stored = {k: v for k, v in stored.items() if v is not None}
        if stored:  # the reference results are written too
            frame.calc = SinglePointCalculator(frame, **stored)
        frame.info["amp_energy"] = result["energy"]
        frame.arrays["amp_forces"] = np.array(result["forces"])
        frame.arrays["amp_energies"] = np.array(result["energies"])
        if "stress" in result:
            frame.info["amp_stress"] = np.array(result["stress"])
        if result.get("extrapolation") is not None:
            frame.info["amp_extrapolating_atoms"] = int(
                result["extrapolation"]["count"])
        frames.append(frame)
    text = io.StringIO()
    ase.io.write(text, frames, format="extxyz")
    with atomic_file(path) as handle:
        handle.write(text.getvalue().encode("utf-8"))


def _parser():
    parser = argparse.ArgumentParser(
        prog="amp-eval",
        description="Evaluate a trained model on a data set: print the "
        "energy, force and stress errors (MAE and RMSE, forces per "
        "element) against the references stored in the file, and write "
        "the predictions to extended XYZ.")
    parser.add_argument("model", metavar="MODEL",
                        help="the model file (<label>.amp, this package's "
                        "or Amp 1.x's)")
    parser.add_argument("data", metavar="DATA",
                        help="frames to evaluate: any file ase.io.read "
                        "reads (extended XYZ, .traj, ASE .db)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="extended XYZ file for the predictions "
                        "(default: <DATA without extension>-predictions.xyz)")
    parser.add_argument("--no-output", action="store_true",
                        help="write no predictions, print the errors only")
    parser.add_argument("--index", default=":",
                        help="frames to read, in ASE's index syntax "
                        "(default ':', every frame)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing predictions file")
    parser.add_argument("--progress", action="store_true", default=None,
                        help="always show the progress line on standard "
                        "error (default: only on a terminal)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``amp-eval``; return the exit code (0 on success, 1 when the
    model or data cannot be used, 2 for bad arguments).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).
    """
    args = _parser().parse_args(argv)
    from .. import Amp

    output = None
    if not args.no_output:
        output = args.output or (os.path.splitext(args.data)[0]
                                 + "-predictions.xyz")
        if os.path.exists(output) and not args.overwrite:
            print("amp-eval: error: %s exists; pass --overwrite to replace "
                  "it or -o to choose another file" % output,
                  file=sys.stderr)
            return 1
    try:
        calc = Amp.load(args.model)
        images = read_images(args.data, args.index)
        predictions = predict(calc, images, args.progress)
    except (OSError, ValueError) as error:
        # a missing or bad model file, DataFileError, an element the
        # model does not cover: one line naming the problem
        print("amp-eval: error: %s" % _named(error, args), file=sys.stderr)
        return 1
    table = error_table(images, predictions)
    n_atoms = sum(len(a) for a in images)
    print("%s on %s: %d frames, %d atoms" % (args.model, args.data,
                                             len(images), n_atoms))
    print(format_table(table))
    extrapolating = extrapolation_summary(predictions)
    if extrapolating:
        print(extrapolating)
    if output is not None:
        write_predictions(output, images, predictions,
                          overwrite=args.overwrite)
        print("predictions written to %s" % output)
    return 0


def _named(error, args):
    """The message of ``error``, with the file it concerns when it does
    not name one."""
    text = str(error)
    if isinstance(error, DataFileError) or args.model in text or \
            args.data in text:
        return text
    if isinstance(error, OSError) or "model" in text.lower():
        return "%s: %s" % (args.model, text)
    return "%s: %s" % (args.data, text)
