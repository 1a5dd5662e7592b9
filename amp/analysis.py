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
                          force_coefficient: float | None = 0.04) -> Any:
    """Parity and error plots of the model's energies and forces against
    the reference ones.

    Four panels: energy parity (model against reference), energy error per
    atom against the reference energy per atom, force parity (every
    component) and force error; the RMSEs are in the titles (energy per
    atom as :func:`calc_rmse` and the training log define it, force over
    components).

    Parameters
    ----------
    calc : Amp or str
        A calculator, or the path of a ``.amp`` file.
    images : list of ase.Atoms, str or dict
        Images with reference energies (and forces), a ``.traj``/``.db``
        path or hashed images.
    label : str
        Prefix of the default plot file, ``<label>-plot.pdf``.
    dblabel : str, optional
        Fingerprint databases to reuse (as in :class:`amp.Amp`).
    plot_forces : bool
        Also plot forces (the images then need reference forces).
    plotfile : str, optional
        The plot file; its extension gives the format.
    color : str
        matplotlib format of the points.
    overwrite : bool
        Replace an existing plot file.
    returndata : bool
        Return the plotted data.
    energy_coefficient, force_coefficient : float
        Accepted for Amp's signature; the plot does not depend on them.

    Returns
    -------
    dict or tuple of dict, when ``returndata``
        ``energy_data[hash] = [reference energy, model energy, reference
        energy per atom, |error| per atom]`` and, with ``plot_forces``,
        ``force_data[hash] = [reference forces, model forces, |error|]``
        (arrays of shape (n_atoms, 3)); ``(energy_data, force_data)`` or
        ``energy_data`` alone.
    """
    if plotfile is None:
        plotfile = make_filename(label, "-plot.pdf")
    check_plotfile(plotfile, overwrite)
    figure = new_figure(figsize=(10.0, 10.0 if plot_forces else 5.0))
    calc = _load(calc, dblabel)
    saved_dblabel = calc.dblabel
    if dblabel is not None:
        calc.dblabel = dblabel
    try:
        images = _hashed(images)
        energies, forces = _predictions(calc, images, plot_forces)
    finally:
        calc.dblabel = saved_dblabel
    energy_data, force_data = {}, {}
    for key, image in images.items():
        n_atoms = len(image)
        reference = float(image.get_potential_energy(apply_constraint=False))
        energy_data[key] = [reference, energies[key], reference / n_atoms,
                            abs(energies[key] - reference) / n_atoms]
        if plot_forces:
            reference_forces = np.array(
                image.get_forces(apply_constraint=False))
            force_data[key] = [reference_forces, forces[key],
                               np.abs(forces[key] - reference_forces)]

    table = np.array(list(energy_data.values()))
    energy_rmse = float(np.sqrt(np.mean(table[:, 3] ** 2)))
    rows = 2 if plot_forces else 1
    ax = figure.add_subplot(rows, 2, 1)
    _parity(ax, table[:, 0], table[:, 1], color)
    ax.set_xlabel("reference energy, eV")
    ax.set_ylabel("Amp energy, eV")
    ax.set_title("Energies")
    ax = figure.add_subplot(rows, 2, 2)
    ax.plot(table[:, 2], table[:, 3], color)
    ax.axhline(energy_rmse, color="k", linestyle="--", lw=1)
    ax.set_xlabel("reference energy per atom, eV")
    ax.set_ylabel("|reference - Amp| energy per atom, eV")
    ax.set_title("Energy error (RMSE %.4g eV/atom)" % energy_rmse)
    if plot_forces:
        reference = np.concatenate([d[0].ravel() for d in
                                    force_data.values()])
        model = np.concatenate([d[1].ravel() for d in force_data.values()])
        force_rmse = float(np.sqrt(np.mean((model - reference) ** 2)))
        ax = figure.add_subplot(rows, 2, 3)
        _parity(ax, reference, model, color)
        ax.set_xlabel("reference force, eV/Å")
        ax.set_ylabel("Amp force, eV/Å")
        ax.set_title("Forces")
        ax = figure.add_subplot(rows, 2, 4)
        ax.plot(reference, np.abs(model - reference), color)
        ax.axhline(force_rmse, color="k", linestyle="--", lw=1)
        ax.set_xlabel("reference force, eV/Å")
        ax.set_ylabel("|reference - Amp| force, eV/Å")
        ax.set_title("Force error (RMSE %.4g eV/Å)" % force_rmse)
    figure.tight_layout()
    save_figure(figure, plotfile)
    if returndata:
        return (energy_data, force_data) if plot_forces else energy_data


def _parity(ax, reference, model, color):
    low = min(np.min(reference), np.min(model))
    high = max(np.max(reference), np.max(model))
    ax.plot([low, high], [low, high], "r-", lw=0.5)
    ax.plot(reference, model, color)


# Training logs ---------------------------------------------------------------

def plot_convergence(logfile: Any, plotfile: str | None = "convergence.pdf"
                     ) -> Any:
    """Plot the convergence of a training log.

    The loss, the energy RMSE and maximum residual and, when forces are
    trained, the force RMSE and maximum residual against the loss
    evaluation, on log axes, with the criteria as faint lines; below, the
    shares of the energy and force terms in the loss. Every training run
    of the log is plotted, one after the other, separated by dashed lines.

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
             ("costfxns", "0.5", "-", "loss function", None))
    offset, breaks = 0, []
    for number, run in enumerate(runs):
        x = offset + np.arange(len(run["steps"]))
        for key, color, style, text, criterion in lines:
            if not run[key]:
                continue
            ax.semilogy(x, run[key], color=color, linestyle=style, lw=2,
                        label=text if number == 0 or
                        not runs[0][key] else None)
            goal = run.get(criterion) if criterion else None
            if goal is not None and np.isfinite(goal) and goal > 0:
                ax.semilogy([x[0], x[-1]], [goal, goal], color=color,
                            linestyle=style, alpha=0.5)
        offset += len(run["steps"])
        breaks.append(offset - 0.5)
    for position in breaks[:-1]:
        ax.axvline(position, color="k", linestyle="--")
    ax.set_ylabel("error (eV, eV/Å) and loss")
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
