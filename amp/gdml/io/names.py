"""Element symbols, XYZ geometry files and the file names of sgdml runs.

The names follow the sgdml command line, so that its users find their files
where they expect them: a cross-validation folder
``sgdml_cv_<name>-<theory>-train<M>[-sym][-noE][-Ecstr]`` holding tasks
``task-train<M>-sym<P>-sig<sig:04d>.npz`` and models
``model-train<M>-sym<P>-sig<sig:04d>.npz``; the selected model is
``<name>-<theory>-train<M>-sym<P>.npz``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from .fields import scalar
from .safe import open_regular_file, to_str

__all__ = ["z_to_z_str", "z_str_to_z", "read_xyz", "write_geometry",
           "generate_xyz_str", "train_dir_name", "task_file_name",
           "model_file_name", "parse_list_or_range"]

#: Largest XYZ file :func:`read_xyz` reads [bytes].
MAX_XYZ_BYTES = 2 * 2 ** 30


def z_to_z_str(z: Any) -> list[str]:
    """Element symbols of atomic numbers.

    Parameters
    ----------
    z : array_like of int

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        For a number that is not an element.
    """
    z = np.atleast_1d(np.asarray(z))
    bad = z[(z < 1) | (z >= len(chemical_symbols))]
    if bad.size:
        raise ValueError("{} is not an atomic number".format(bad[0]))
    return [chemical_symbols[int(n)] for n in z]


def z_str_to_z(z_str: Any) -> np.ndarray:
    """Atomic numbers of element symbols.

    Parameters
    ----------
    z_str : sequence of str

    Returns
    -------
    numpy.ndarray
        int64 atomic numbers.

    Raises
    ------
    ValueError
        For an unknown symbol.
    """
    out = []
    for symbol in z_str:
        if symbol not in atomic_numbers or symbol == "X":
            raise ValueError("unknown element symbol '{}'".format(symbol))
        out.append(atomic_numbers[symbol])
    return np.array(out, dtype=np.int64)


def read_xyz(file_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Geometries of a plain XYZ file (all frames, same atoms).

    Parameters
    ----------
    file_path : str
        XYZ file: an atom count line, a comment line, then one
        ``symbol x y z`` line per atom, repeated for every frame.

    Returns
    -------
    R : numpy.ndarray
        ``(M, 3N)`` positions.
    z : numpy.ndarray
        ``(N,)`` atomic numbers (of the first frame).

    Raises
    ------
    ValueError
        If the file is malformed or frames hold different atoms (naming the
        line or frame).
    """
    with open_regular_file(file_path, MAX_XYZ_BYTES) as handle:
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError("'{}' is empty".format(file_path))
    try:
        n_atoms = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise ValueError("'{}' line 1: expected the number of atoms, got "
                         "'{}'".format(file_path, lines[0][:40])) from None
    if n_atoms < 1 or len(lines) % (n_atoms + 2):
        raise ValueError("'{}' has {} lines, not a whole number of frames "
                         "of {} atoms".format(file_path, len(lines), n_atoms))
    n_frames = len(lines) // (n_atoms + 2)
    R = np.empty((n_frames, n_atoms, 3))
    symbols = None
    for m in range(n_frames):
        first = m * (n_atoms + 2)
        block = lines[first + 2:first + 2 + n_atoms]
        try:
            cols = [line.split() for line in block]
            frame_symbols = [c[0] for c in cols]
            R[m] = [[float(x) for x in c[1:4]] for c in cols]
        except (ValueError, IndexError):
            raise ValueError("'{}' frame {}: each atom line needs a symbol "
                             "and three coordinates".format(
                                 file_path, m)) from None
        if symbols is None:
            symbols = frame_symbols
        elif frame_symbols != symbols:
            raise ValueError("'{}' frame {} has other atoms than frame 0"
                             .format(file_path, m))
    return R.reshape(n_frames, -1), z_str_to_z(symbols)


def generate_xyz_str(r: Any, z: Any, e: Any = None, f: Any = None,
                     lattice: Any = None) -> str:
    """One geometry as extended-XYZ text.

    Parameters
    ----------
    r : numpy.ndarray
        ``(N, 3)`` or ``(3N,)`` positions.
    z : array_like of int
        Atomic numbers.
    e : float, optional
        Energy (written as ``Energy=`` in the comment line).
    f : numpy.ndarray, optional
        Forces (a ``force`` column).
    lattice : numpy.ndarray, optional
        Lattice vectors as columns.

    Returns
    -------
    str
    """
    r = np.asarray(r, dtype=float).reshape(-1, 3)
    comment = ""
    if lattice is not None:
        comment += 'Lattice="{}" '.format(" ".join(
            repr(float(x)) for x in np.asarray(lattice).T.ravel()))
    if e is not None:
        comment += 'Energy="{:.8f}" '.format(float(e))
    comment += "Properties=species:S:1:pos:R:3"
    cols = [r]
    if f is not None:
        comment += ":force:R:3"
        cols.append(np.asarray(f, dtype=float).reshape(-1, 3))
    values = np.hstack(cols)
    lines = [str(len(r)), comment]
    for symbol, row in zip(z_to_z_str(z), values):
        lines.append(symbol + "\t" + "\t".join(
            "{: .8f}".format(x) for x in row))
    return "\n".join(lines)


def write_geometry(filename: str, r: Any, z: Any,
                   comment_str: str = "") -> None:
    """Write one geometry as a plain XYZ file.

    Parameters
    ----------
    filename : str
        Destination.
    r : numpy.ndarray
        ``(N, 3)`` or ``(3N,)`` positions.
    z : array_like of int
        Atomic numbers.
    comment_str : str, optional
        The comment line.
    """
    r = np.asarray(r, dtype=float).reshape(-1, 3)
    symbols = z_to_z_str(z)
    if len(symbols) != len(r):
        raise ValueError("{} positions but {} atomic numbers".format(
            len(r), len(symbols)))
    lines = [str(len(r)), comment_str.replace("\n", " ")]
    lines += ["{}\t{}".format(s, "\t".join(repr(float(x)) for x in row))
              for s, row in zip(symbols, r)]
    with open(filename, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def _label(text):
    text = re.sub(r"[^\w\-_\.]", ".", to_str(text))
    return re.sub(r"\.\.", ".", text)


def train_dir_name(dataset: dict[str, Any], n_train: int, use_sym: bool,
                   use_E: bool, use_E_cstr: bool) -> str:
    """Folder name of a cross-validation run, as sgdml names it.

    Parameters
    ----------
    dataset : dict
        The dataset (its ``name`` and ``theory``).
    n_train : int
        Training points.
    use_sym, use_E, use_E_cstr : bool
        Task options.

    Returns
    -------
    str
    """
    return "sgdml_cv_{}-{}-train{}{}{}{}".format(
        to_str(dataset["name"]), _label(dataset["theory"]), int(n_train),
        "-sym" if use_sym else "", "" if use_E else "-noE",
        "-Ecstr" if use_E_cstr else "")


def _n_perms_and_sig(task_or_model):
    n_train = len(np.atleast_1d(task_or_model["idxs_train"]))
    n_perms = np.atleast_2d(task_or_model["perms"]).shape[0]
    sig = float(scalar(task_or_model["sig"]))
    return n_train, n_perms, sig


def task_file_name(task: dict[str, Any]) -> str:
    """File name of a task, as sgdml names it.

    Parameters
    ----------
    task : dict

    Returns
    -------
    str
        ``task-train<M>-sym<P>-sig<sig:04d>.npz``.
    """
    n_train, n_perms, sig = _n_perms_and_sig(task)
    return "task-train{:d}-sym{:d}-sig{:04d}.npz".format(n_train, n_perms,
                                                         int(sig))


def model_file_name(task_or_model: dict[str, Any],
                    is_extended: bool = False) -> str:
    """File name of a model, as sgdml names it.

    Parameters
    ----------
    task_or_model : dict
    is_extended : bool, optional
        The name of a selected model (dataset name and theory, no sig).

    Returns
    -------
    str
    """
    n_train, n_perms, sig = _n_perms_and_sig(task_or_model)
    if is_extended:
        return "{}-{}-train{:d}-sym{:d}.npz".format(
            to_str(scalar(task_or_model["dataset_name"])),
            _label(scalar(task_or_model["dataset_theory"])), n_train,
            n_perms)
    return "model-train{:d}-sym{:d}-sig{:04d}.npz".format(n_train, n_perms,
                                                          int(sig))


def parse_list_or_range(arg: str) -> list[int]:
    """An integer, or a range ``start:stop`` / ``start:step:stop`` (stop
    included), as the ``-s/--sig`` option takes them.

    Parameters
    ----------
    arg : str

    Returns
    -------
    list of int

    Raises
    ------
    ValueError
        If `arg` is neither a positive integer nor a non-empty range.
    """
    text = str(arg).strip()
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value < 1:
            raise ValueError("sigma must be a positive integer, got "
                             "'{}'".format(arg))
        return [value]
    if re.fullmatch(r"\d+:\d+(:\d+)?", text):
        parts = [int(p) for p in text.split(":")]
        start, step, stop = ((parts[0], 1, parts[1]) if len(parts) == 2
                             else parts)
        values = list(range(start, stop + 1, step)) if step > 0 else []
        if not values or values[0] < 1:
            raise ValueError("'{}' is an empty range of positive integers"
                             .format(arg))
        return values
    raise ValueError("'{}' is neither a positive integer nor a range "
                     "<start>:[<step>:]<stop>".format(arg))
