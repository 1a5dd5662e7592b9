"""Look at a fit: parity and error plots, the convergence of a training
log, the loss's sensitivity to each parameter, and RMSEs of saved models.

Amp 1.x's :mod:`amp.analysis` names, keywords and return values:
:func:`plot_parity_and_error`, :func:`plot_convergence`,
:func:`read_trainlog`, :func:`plot_sensitivity` and :func:`calc_rmse`.
:func:`read_trainlog` (from :mod:`amp.trainlog`) reads the logs this
library writes and those written by Amp 1.x alike.

Plots need matplotlib (installed with ASE), imported only when a plot is
made. Figures are drawn on matplotlib's Agg canvas directly
(:class:`matplotlib.figure.Figure`), so the user's backend and pyplot's
state are never touched. The file format follows the file name: PDF by
default, as in Amp; ``.png``, ``.svg``, ... as named.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .descriptor.analysis import fingerprints_of
from .plotting import check_plotfile, draw_violins, new_figure, save_figure
from .trainlog import read_trainlog
from .utilities import make_filename

__all__ = ["plot_parity_and_error", "plot_convergence", "read_trainlog",
           "plot_sensitivity", "calc_rmse"]

def _load(calc, dblabel=None):
    """An Amp calculator from a calculator or a ``.amp`` path."""
    if isinstance(calc, (str, os.PathLike)):
        from . import Amp

        return Amp.load(os.fspath(calc), dblabel=dblabel)
    return calc


def _hashed(images):
    from .utilities import hash_images

    return hash_images(images)


# Parity and error ----------------------------------------------------------

def _predictions(calc, images, forces):
    """The calculator's own energies (and forces) for each image."""
    energies, predicted_forces = {}, {}
    for key, image in images.items():
        atoms = image.copy()
        atoms.calc = calc
        energies[key] = float(atoms.get_potential_energy())
        if forces:
            # Unconstrained, like the reference forces they are compared
            # with (fixed atoms would otherwise show zero).
            predicted_forces[key] = np.array(
                atoms.get_forces(apply_constraint=False))
    return energies, predicted_forces


def plot_parity_and_error(calc: Any, images: Any, label: str = "parity_error",
                          dblabel: str | None = None, plot_forces: bool = True,
                          plotfile: str | None = None, color: str = "b.",
                          overwrite: bool = False, returndata: bool = False,
                          energy_coefficient: float = 1.0,
                          force_coefficient: float | None = 0.04,
                          validation: Any = None) -> Any:
    """Parity and error plots of the model's energies and forces against
    the reference ones.

    Four panels: energy parity (model against reference, eV), energy error
    per atom against the reference energy per atom (eV/atom), force parity
    (every component, eV/Å) and force error. RMSE and MAE are given for
    each set (energy per atom as :func:`calc_rmse` and the training log
    define it, force over components) and, for forces, for each element
    (one marker per element). With ``validation``, the held-out images are
    drawn in a second colour (orange) beside the training images.

    Parameters
    ----------
    calc : Amp or str
        A calculator, or the path of a ``.amp`` file.
    images : list of ase.Atoms, str or dict
        Images with reference energies (and forces), a ``.traj``/``.db``
        path or hashed images (the training images).
    label : str
        Prefix of the default plot file, ``<label>-plot.pdf``.
    dblabel : str, optional
        Fingerprint databases to reuse (as in :class:`amp.Amp`).
    plot_forces : bool
        Also plot forces (the images then need reference forces).
    plotfile : str, optional
        The plot file; its extension gives the format.
    color : str
        matplotlib format of the training points (colour and marker of
        the first element).
    overwrite : bool
        Replace an existing plot file.
    returndata : bool
        Return the plotted data.
    energy_coefficient, force_coefficient : float
        Accepted for Amp's signature; the plot does not depend on them.
    validation : list of ase.Atoms, str or dict, optional
        Held-out images, drawn in orange.

    Returns
    -------
    dict or tuple of dict, when ``returndata``
        ``energy_data[hash] = [reference energy, model energy, reference
        energy per atom, |error| per atom]`` and, with ``plot_forces``,
        ``force_data[hash] = [reference forces, model forces, |error|]``
        (arrays of shape (n_atoms, 3)); ``(energy_data, force_data)`` or
        ``energy_data`` alone, as Amp returns them, for ``images``; with
        ``validation``, the same again for the held-out images, appended.
    """
    if plotfile is None:
        plotfile = make_filename(label, "-plot.pdf")
    check_plotfile(plotfile, overwrite)
    figure = new_figure(figsize=(10.0, 10.0 if plot_forces else 5.0))
    calc = _load(calc, dblabel)
    saved_dblabel = calc.dblabel
    if dblabel is not None:
        calc.dblabel = dblabel
    sets = [("training", images, color)]
    if validation is not None:
        sets.append(("validation", validation, "C1."))
    try:
        data = [(name, _parity_data(calc, _hashed(given), plot_forces),
                 style) for name, given, style in sets]
    finally:
        calc.dblabel = saved_dblabel
    rows = 2 if plot_forces else 1
    panels = [figure.add_subplot(rows, 2, k + 1) for k in range(2 * rows)]
    _draw_energies(panels[:2], data)
    if plot_forces:
        _draw_forces(panels[2:], data)
    figure.tight_layout()
    save_figure(figure, plotfile)
    if returndata:
        out = ()
        for _, (energy_data, force_data, _), _ in data:
            out += (energy_data, force_data) if plot_forces else \
                (energy_data,)
        return out[0] if len(out) == 1 else out


def _parity_data(calc, images, forces):
    """Amp's energy and force data of ``images``, and each force
    component's element."""
    energies, predicted_forces = _predictions(calc, images, forces)
    energy_data, force_data, elements = {}, {}, []
    for key, image in images.items():
        n_atoms = len(image)
        reference = float(image.get_potential_energy(apply_constraint=False))
        energy_data[key] = [reference, energies[key], reference / n_atoms,
                            abs(energies[key] - reference) / n_atoms]
        if forces:
            reference_forces = np.array(
                image.get_forces(apply_constraint=False))
            force_data[key] = [reference_forces, predicted_forces[key],
                               np.abs(predicted_forces[key]
                                      - reference_forces)]
            elements += [s for s in image.get_chemical_symbols()
                         for _ in range(3)]
    return energy_data, force_data, np.array(elements)


def _errors_text(errors, unit):
    return "RMSE %.3g, MAE %.3g %s" % (float(np.sqrt(np.mean(errors ** 2))),
                                       float(np.mean(np.abs(errors))), unit)


def _draw_energies(panels, data):
    parity, error = panels
    for name, (energy_data, _, _), style in data:
        table = np.array(list(energy_data.values()))
        text = "%s: %s" % (name, _errors_text(table[:, 3], "eV/atom"))
        _parity(parity, table[:, 0], table[:, 1], style, label=text)
        error.plot(table[:, 2], table[:, 3], style, label=text)
        error.axhline(float(np.sqrt(np.mean(table[:, 3] ** 2))),
                      color=style[:-1] or "k", linestyle="--", lw=1)
    parity.set_xlabel("reference energy, eV")
    parity.set_ylabel("Amp energy, eV")
    parity.set_title("Energies")
    parity.legend(loc="best", fontsize=8.0)
    error.set_xlabel("reference energy per atom, eV/atom")
    error.set_ylabel("|reference - Amp| energy per atom, eV/atom")
    error.set_title("Energy error per atom (dashed: RMSE)")
    error.legend(loc="best", fontsize=8.0)


_MARKERS = ".^sDv<>p*h"


def _draw_forces(panels, data):
    parity, error = panels
    every = sorted({e for _, (_, _, elements), _ in data for e in elements})
    lows, highs = [], []
    for name, (_, force_data, elements), style in data:
        colour = style[:-1] or "b"
        reference = np.concatenate([d[0].ravel() for d in
                                    force_data.values()])
        model = np.concatenate([d[1].ravel() for d in force_data.values()])
        lows.append(min(reference.min(), model.min()))
        highs.append(max(reference.max(), model.max()))
        for number, element in enumerate(every):
            mask = elements == element
            if not mask.any():
                continue
            marker = style[-1] if number == 0 else \
                _MARKERS[number % len(_MARKERS)]
            text = "%s %s: %s" % (element, name, _errors_text(
                model[mask] - reference[mask], "eV/Å"))
            parity.plot(reference[mask], model[mask], linestyle="none",
                        color=colour, marker=marker, markersize=3,
                        label=text)
            error.plot(reference[mask], np.abs(model[mask] - reference[mask]),
                       linestyle="none", color=colour, marker=marker,
                       markersize=3, label=text)
        error.axhline(float(np.sqrt(np.mean((model - reference) ** 2))),
                      color=colour, linestyle="--", lw=1)
    parity.plot([min(lows), max(highs)], [min(lows), max(highs)], "r-",
                lw=0.5)
    parity.set_xlabel("reference force, eV/Å")
    parity.set_ylabel("Amp force, eV/Å")
    parity.set_title("Forces, by element")
    parity.legend(loc="best", fontsize=7.0)
    error.set_xlabel("reference force, eV/Å")
    error.set_ylabel("|reference - Amp| force, eV/Å")
    error.set_title("Force error (dashed: RMSE)")
    error.legend(loc="best", fontsize=7.0)


def _parity(ax, reference, model, color, label=None):
    low = min(np.min(reference), np.min(model))
    high = max(np.max(reference), np.max(model))
    ax.plot([low, high], [low, high], "r-", lw=0.5)
    ax.plot(reference, model, color, label=label)


# Training logs ---------------------------------------------------------------

def plot_convergence(logfile: Any, plotfile: str | None = "convergence.pdf"
                     ) -> Any:
    """Plot the convergence of a training log.

    The loss, the energy RMSE and maximum residual and, when forces are
    trained, the force RMSE and maximum residual against the loss
    evaluation, on log axes, with the criteria as faint lines; below, the
    shares of the energy and force terms in the loss. Every training run
    of the log is plotted, one after the other, separated by dashed lines.
    When stress was trained, its RMSE and maximum residual (eV/A^3, in
    magenta); when images were held out, their energy, force (and stress)
    RMSEs as a second set of curves (dashed, ``validation ...``) and the
    step of their lowest loss (a dotted vertical line).

    Parameters
    ----------
    logfile : str or dict or list of dict
        The log's path, or what :func:`read_trainlog` returned.
    plotfile : str or None
        The plot file (its extension gives the format); None returns the
        figure instead.

    Returns
    -------
    matplotlib.figure.Figure or None
        The figure when ``plotfile`` is None.

    Raises
    ------
    ValueError
        The log has no convergence table (training not started, or a
        truncated file); the message names it.
    """
    if isinstance(logfile, dict):
        runs, name = [logfile], "the data"
    elif isinstance(logfile, list):
        runs, name = logfile, "the data"
    else:
        runs = read_trainlog(logfile, verbose=False, multiple=True)
        name = logfile
    held_out = [r.get("validation") for r in runs
                if r.get("convergence", {}).get("steps")]
    runs = [r["convergence"] for r in runs
            if r.get("convergence", {}).get("steps")]
    if not runs:
        raise ValueError("%s has no convergence table to plot (training has "
                         "not started, or the log is truncated)" % name)
    figure = new_figure(figsize=(6.0, 8.0))
    forces = any(r["force_rmse"] is not None for r in runs)
    ax = figure.add_axes((0.12, 0.32, 0.83, 0.65))
    lines = (("es", "b", "-", "energy rmse", "energy_rmse"),
             ("emrs", "b", ":", "energy maxresid", "energy_maxresid"),
             ("fs", "g", "-", "force rmse", "force_rmse"),
             ("fmrs", "g", ":", "force maxresid", "force_maxresid"),
             ("ss", "m", "-", "stress rmse", "stress_rmse"),
             ("smrs", "m", ":", "stress maxresid", "stress_maxresid"),
             ("costfxns", "0.5", "-", "loss function", None))
    labelled = set()

    def draw(x, values, color, style, text, **kwargs):
        ax.semilogy(x, values, color=color, linestyle=style, lw=2,
                    label=None if text in labelled else text, **kwargs)
        labelled.add(text)

    offset, breaks = 0, []
    for run, validation in zip(runs, held_out):
        x = offset + np.arange(len(run["steps"]))
        for key, color, style, text, criterion in lines:
            if not run.get(key):
                continue
            draw(x, run[key], color, style, text)
            goal = run.get(criterion) if criterion else None
            if goal is not None and np.isfinite(goal) and goal > 0:
                ax.semilogy([x[0], x[-1]], [goal, goal], color=color,
                            linestyle=style, alpha=0.5)
        if validation:
            # Rows by step: the block and the table have the same steps.
            where = {step: k for k, step in enumerate(run["steps"])}
            vx = np.array([offset + where.get(step, np.nan)
                           for step in validation["steps"]])
            for key, color, text in (("es", "b", "energy"),
                                     ("fs", "g", "force"),
                                     ("ss", "m", "stress")):
                if validation.get(key):
                    draw(vx, validation[key], color, "--",
                         "validation %s rmse" % text, alpha=0.8)
            if validation.get("best_step") in where:
                ax.axvline(offset + where[validation["best_step"]],
                           color="0.3", linestyle=":", lw=1)
        offset += len(run["steps"])
        breaks.append(offset - 0.5)
    for position in breaks[:-1]:
        ax.axvline(position, color="k", linestyle="--")
    ax.set_ylabel("error (eV/atom, eV/Å, eV/Å³) and loss")
    ax.set_xlim(-0.5, offset - 0.5)
    ax.legend(loc="best", fontsize=9.0)
    axf = figure.add_axes((0.12, 0.07, 0.83, 0.18), sharex=ax)
    x = np.arange(offset)
    shares_e = np.concatenate([r["costfxnEs"] for r in runs])
    axf.fill_between(x, shares_e, color="blue", label="energy")
    if forces:
        shares_f = np.concatenate([r["costfxnFs"] or [0.0] * len(r["steps"])
                                   for r in runs])
        axf.fill_between(x, shares_e, shares_e + shares_f, color="green",
                         label="force")
    for position in breaks[:-1]:
        axf.axvline(position, color="k", linestyle="--")
    axf.set_ylim(0, 1)
    axf.set_ylabel("loss share")
    axf.set_xlabel("loss function call")
    if plotfile is None:
        return figure
    save_figure(figure, plotfile)


# Sensitivity and RMSEs -------------------------------------------------------

class _AttachedLoss:
    """A :class:`~amp.model.LossFunction` on ``images`` for ``calc``'s
    model, with the model's training state restored on exit."""

    def __init__(self, calc, images, energy_coefficient, force_coefficient,
                 dblabel=None):
        from .model import LossFunction

        if getattr(type(calc.model), "separate_forces", False):
            raise ValueError(
                "calc_rmse and plot_sensitivity evaluate a neural network's "
                "loss function over its parameters; a %s model has none. "
                "Its errors on images: plot_parity_and_error(calc, images, "
                "returndata=True)" % type(calc.model).__name__)
        self.calc = calc
        self.images = images
        self.dblabel = dblabel
        forces = force_coefficient is not None and force_coefficient != 0
        self.loss = LossFunction(
            energy_coefficient=energy_coefficient,
            force_coefficient=force_coefficient if forces else None,
            raise_ConvergenceOccurred=False, log_losses=False,
            parallel={"cores": 1})
        self.forces = forces

    def __enter__(self):
        model = self.calc.model
        self.saved = (model.trainingparameters, model.lossfunction,
                      np.array(model.vector, dtype=float))
        store = fingerprints_of(self.calc, self.images, self.forces,
                                self.dblabel)
        model.trainingparameters = {"images": self.images, "store": store}
        model.lossfunction = self.loss
        self.loss.attach_model(model, images=self.images)
        return self.loss

    def __exit__(self, *exc):
        model = self.calc.model
        self.loss.close()
        model.trainingparameters, model.lossfunction, model.vector = \
            self.saved
        return False


def plot_sensitivity(calc: Any, images: Any, d: float = 0.0001,
                     label: str = "sensitivity", dblabel: str | None = None,
                     plotfile: str | None = None, overwrite: bool = False,
                     energy_coefficient: float = 1.0,
                     force_coefficient: float | None = 0.04
                     ) -> dict[str, Any]:
    """Plot the change of the loss when each parameter is moved by ``+-d``.

    A flat curve means the parameter hardly matters on these images; a
    large change, that the fit is sensitive to it.

    Parameters
    ----------
    calc : Amp or str
        A calculator, or the path of a ``.amp`` file.
    images : list of ase.Atoms, str or dict
        Images with reference energies (and forces).
    d : float
        The perturbation of each parameter.
    label : str
        Prefix of the default plot file, ``<label>-plot.pdf``.
    dblabel : str, optional
        Fingerprint databases to reuse.
    plotfile : str, optional
    overwrite : bool
        Replace an existing plot file.
    energy_coefficient, force_coefficient : float
        The loss function's coefficients (``force_coefficient`` None or 0
        for energies only).

    Returns
    -------
    dict
        ``loss`` (at the model's parameters), ``parameters`` and
        ``losses``: arrays of shape (n_parameters, 3) with each parameter
        at ``p - d``, ``p``, ``p + d`` and the loss there.
    """
    if plotfile is None:
        plotfile = make_filename(label, "-plot.pdf")
    check_plotfile(plotfile, overwrite)
    figure = new_figure(figsize=(8.0, 5.0))
    calc = _load(calc, dblabel)
    images = _hashed(images)
    with _AttachedLoss(calc, images, energy_coefficient,
                       force_coefficient, dblabel) as lossfunction:
        vector = np.array(calc.model.vector, dtype=float)
        original = lossfunction.calculate_loss(vector, False)["loss"]
        parameters = np.empty((len(vector), 3))
        losses = np.empty((len(vector), 3))
        for k in range(len(vector)):
            for column, step in enumerate((-d, 0.0, d)):
                shifted = vector.copy()
                shifted[k] += step
                parameters[k, column] = shifted[k]
                losses[k, column] = original if step == 0.0 else \
                    lossfunction.calculate_loss(shifted, False)["loss"]
    index = np.arange(len(vector))
    ax = figure.add_subplot(1, 1, 1)
    ax.plot(index, losses[:, 0] - original, "b.", label="parameter - d")
    ax.plot(index, losses[:, 2] - original, "r.", label="parameter + d")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_yscale("symlog", linthresh=max(
        float(np.min(np.abs(losses[:, [0, 2]] - original)[
            np.abs(losses[:, [0, 2]] - original) > 0], initial=1e-12)),
        1e-12))
    ax.set_xlabel("parameter number")
    ax.set_ylabel("loss change (loss %.4g, d = %g)" % (original, d))
    ax.set_title("Sensitivity of the loss to each parameter")
    ax.legend(loc="best", fontsize=9.0)
    figure.tight_layout()
    save_figure(figure, plotfile)
    return {"loss": original, "parameters": parameters, "losses": losses}


def calc_rmse(calc_paths: str | list[str], images: Any,
              cores: int | dict[str, int] | None = None,
              dblabel: str | None = None, energy_coefficient: float = 1.0,
              force_coefficient: float | None = 0.04) -> dict[str, Any]:
    """Energy and force RMSEs of one or several saved calculators.

    The RMSEs are the training log's: energy per atom, force per
    component (see :class:`amp.model.LossFunction`).

    Parameters
    ----------
    calc_paths : str or list of str
        ``.amp`` files (all with the same descriptor settings; the
        fingerprints are computed once).
    images : list of ase.Atoms, str or dict
        Images with reference energies (and forces).
    cores : int, optional
        Accepted for Amp's signature; the evaluation is serial.
    dblabel : str, optional
        Fingerprint databases to reuse.
    energy_coefficient, force_coefficient : float
        The loss function's coefficients (``force_coefficient`` None or 0
        for energies only; ``force_rmse`` is then left out).

    Returns
    -------
    dict
        Lists in the order of ``calc_paths``: ``steps`` (the file name's
        number for checkpoint files named like ``100.amp``, else the
        position), ``loss``, ``energy_loss``, ``force_loss``,
        ``energy_maxresid``, ``force_maxresid``, ``energy_rmse`` and
        ``force_rmse``.
    """
    from . import Amp

    if isinstance(calc_paths, (str, os.PathLike)):
        calc_paths = [calc_paths]
    images = _hashed(images)
    keys = ("loss", "energy_loss", "force_loss", "energy_maxresid",
            "force_maxresid", "energy_rmse", "force_rmse")
    data: dict[str, list[Any]] = {key: [] for key in ("steps",) + keys}
    first = Amp.load(os.fspath(calc_paths[0]))
    with _AttachedLoss(first, images, energy_coefficient,
                       force_coefficient, dblabel) as lossfunction:
        for position, path in enumerate(calc_paths):
            stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
            data["steps"].append(int(stem) if stem.isdigit() else position)
            vector = Amp.load(os.fspath(path)).model.vector
            result = lossfunction.calculate_loss(vector, False)
            for key in keys:
                data[key].append(float(result[key]))
        forces = lossfunction.train_forces
    if not forces:
        del data["force_rmse"]
    return data
