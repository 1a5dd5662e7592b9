"""What the command line prints about datasets, tasks, models and errors.

Plain text on standard output, one fact per line, in the dataset's units,
so that it reads well in a terminal and in a log file alike.
"""

import numpy as np

from . import io as gdml_io
from .io import energy_mode, scalar

__all__ = ["units", "print_dataset", "print_task", "print_model",
           "print_errors", "print_file"]


def units(data):
    """``(energy unit, length unit, force unit)`` labels of a file.

    Parameters
    ----------
    data : dict
        Dataset, task or model.

    Returns
    -------
    tuple of str
    """
    if "e_unit" in data and "r_unit" in data:
        e = gdml_io.to_str(data["e_unit"])
        r = gdml_io.to_str(data["r_unit"])
        return e, r, "{}/{}".format(e, r)
    return "unknown unit", "unknown unit", "unknown unit"


def _lattice_lines(data, indent):
    if "lattice" not in data:
        return ["{}{:<16} {}".format(indent, "Lattice:", "none (molecule)")]
    lat = np.asarray(data["lattice"], dtype=float)
    lines = ["{}{:<16} vectors as columns".format(indent, "Lattice:")]
    for row in lat:
        lines.append(indent + "  " + "  ".join("{:10.4f}".format(x)
                                             for x in row))
    return lines


def _range(values):
    values = np.asarray(values, dtype=float)
    return "{:.4f} .. {:.4f} (mean {:.4f}, variance {:.4f})".format(
        values.min(), values.max(), values.mean(), values.var())


def print_dataset(data, title="Dataset", write=print):
    """Print name, size, atoms, units and label statistics of a dataset.

    Parameters
    ----------
    data : dict
        The dataset.
    title : str, optional
        First line.
    write : callable, optional
        Line printer.
    """
    e_unit, r_unit, f_unit = units(data)
    R = np.asarray(data["R"])
    z = np.asarray(data["z"])
    write(title)
    write("  {:<16} '{}'".format("Name:", gdml_io.to_str(
        data.get("name", "unnamed"))))
    write("  {:<16} '{}'".format("Theory:", gdml_io.to_str(
        data.get("theory", "unknown"))))
    write("  {:<16} {} ({})".format("Atoms:", len(z), "".join(
        "{}{}".format(s, n if n > 1 else "") for s, n in _counts(z))))
    write("  {:<16} {:,} geometries".format("Size:", R.shape[0]))
    for line in _lattice_lines(data, "  "):
        write(line)
    if "perms" in data:
        write("  {:<16} {} (given)".format("Symmetries:",
                                           len(np.atleast_2d(data["perms"]))))
    if "E" in data:
        write("  {:<16} {} [{}]".format("Energies:", _range(data["E"]),
                                        e_unit))
    else:
        write("  {:<16} none".format("Energies:"))
    write("  {:<16} {} [{}]".format("Forces:", _range(data["F"]), f_unit))
    write("  {:<16} [{}]".format("Positions:", r_unit))
    write("  {:<16} {}".format("Fingerprint:", gdml_io.to_str(
        data["md5"]) if "md5" in data else gdml_io.to_str(
            gdml_io.dataset_md5(data))))


#: What the "Energy offset:" line says for each energy mode.
_ENERGY_OFFSET = {"none": "none (forces only)",
                  "constant": "global integration constant",
                  "constraints": "pointwise energy constraints"}


def _counts(z):
    from ase.data import chemical_symbols
    values, counts = np.unique(np.asarray(z), return_counts=True)
    return [(chemical_symbols[int(v)], int(c)) for v, c in zip(values,
                                                              counts)]


def _common(data, write):
    write("  {:<16} '{}' ('{}')".format(
        "Dataset:", gdml_io.to_str(data.get("dataset_name", "unknown")),
        gdml_io.to_str(data.get("dataset_theory", "unknown"))))
    write("  {:<16} {}".format("Atoms:", len(np.atleast_1d(data["z"]))))
    for line in _lattice_lines(data, "  "):
        write(line)
    write("  {:<16} {}".format("Symmetries:",
                               np.atleast_2d(data["perms"]).shape[0]))
    write("  {:<16} {:g}".format("Length scale:",
                                 float(scalar(data["sig"]))))
    if "lam" in data:
        write("  {:<16} {:.0e}".format("Regulariser:",
                                       float(scalar(data["lam"]))))


def print_task(data, title="Task", write=print):
    """Print the hyperparameters and samples of a task.

    Parameters
    ----------
    data : dict
        The task.
    title : str, optional
        First line.
    write : callable, optional
        Line printer.
    """
    write(title)
    _common(data, write)
    write("  {:<16} {}".format("Energy offset:", _ENERGY_OFFSET[
        energy_mode(data)]))
    write("  {:<16} {:,} points from '{}'".format(
        "Train on:", len(np.atleast_1d(data["idxs_train"])),
        gdml_io.to_str(data.get("md5_train", ""))))
    write("  {:<16} {:,} points from '{}'".format(
        "Validate on:", len(np.atleast_1d(data.get("idxs_valid", []))),
        gdml_io.to_str(data.get("md5_valid", ""))))


def _err(data, key):
    if key not in data:
        return None
    value = scalar(data[key])
    if isinstance(value, dict) and not (np.isnan(value.get("mae", np.nan))
                                        or np.isnan(value.get("rmse",
                                                              np.nan))):
        return value
    return None


def print_model(data, title="Model", write=print):
    """Print hyperparameters, solver, samples and recorded errors of a model.

    Parameters
    ----------
    data : dict
        The model.
    title : str, optional
        First line.
    write : callable, optional
        Line printer.
    """
    write(title)
    _common(data, write)
    solver = gdml_io.to_str(data.get("solver_name", "unknown"))
    write("  {:<16} {}".format("Solver:", solver))
    if solver == "cg" and "solver_resid" in data:
        tol = float(scalar(data.get("solver_tol", np.nan)))
        resid = float(scalar(data["solver_resid"]))
        norm = float(scalar(data.get("norm_y_train", np.nan)))
        write("  {:<16} {} iterations, residual {:.1e}{}".format(
            "", int(scalar(data.get("solver_iters", 0))), resid,
            "" if resid <= tol * norm else " (NOT CONVERGED; run "
            "'amp-gdml resume')"))
    write("  {:<16} {:,} points from '{}'".format(
        "Trained on:", len(np.atleast_1d(data["idxs_train"])),
        gdml_io.to_str(data.get("md5_train", ""))))
    write("  {:<16} {}".format("Energy offset:", _ENERGY_OFFSET[
        energy_mode(data)]))
    f_err, e_err = _err(data, "f_err"), _err(data, "e_err")
    n_test = int(scalar(data.get("n_test", 0)))
    write("  {:<16} {}{:,} points from '{}'".format(
        "Validated on:", "" if f_err or n_test else "[pending] ",
        len(np.atleast_1d(data.get("idxs_valid", []))),
        gdml_io.to_str(data.get("md5_valid", ""))))
    if n_test > 0:
        write("  {:<16} {:,} points from '{}'".format(
            "Tested on:", n_test, gdml_io.to_str(scalar(
                data.get("md5_test")))))
    else:
        write("  {:<16} [pending]".format("Test:"))
    if f_err:
        print_errors("{} errors (MAE/RMSE)".format(
            "Test" if n_test > 0 else "Validation"), e_err, f_err,
            data, write=write)


def print_errors(title, e_err, f_err, data, write=print, extra=None):
    """Print energy and force MAE/RMSE in the units of `data`.

    Parameters
    ----------
    title : str
        First line.
    e_err, f_err : dict or None
        ``{'mae': ..., 'rmse': ...}``.
    data : dict
        Dataset or model giving the units.
    write : callable, optional
        Line printer.
    extra : dict, optional
        More rows (name to ``(mae, rmse, unit)``).
    """
    e_unit, _, f_unit = units(data)
    write(title)
    if e_err:
        write("  {:<16} {:.4f}/{:.4f} [{}]".format("Energy:", e_err["mae"],
                                                   e_err["rmse"], e_unit))
    write("  {:<16} {:.4f}/{:.4f} [{}]".format("Forces:", f_err["mae"],
                                               f_err["rmse"], f_unit))
    for name, (mae, rmse, unit) in (extra or {}).items():
        write("    {:<14} {:.4f}/{:.4f} [{}]".format(name + ":", mae, rmse,
                                                     unit))


def print_file(path, write=print):
    """Print what an sgdml dataset, task or model file holds.

    Parameters
    ----------
    path : str
        The file.
    write : callable, optional
        Line printer.

    Returns
    -------
    str
        ``'d'``, ``'t'`` or ``'m'``.
    """
    kind, data = gdml_io.load_any(path)
    title = {"d": "Dataset", "t": "Task", "m": "Model"}[kind]
    {"d": print_dataset, "t": print_task, "m": print_model}[kind](
        data, title="{} '{}'".format(title, path), write=write)
    return kind
