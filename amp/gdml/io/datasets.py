"""sgdml datasets: validation, md5 fingerprint, files, and building them.

A dataset is a dict (or ``.npz`` file with ``type == 'd'``) with ``R``
(M, N, 3), ``z`` (N,), ``F`` (M, N, 3), usually ``E`` (M,), the byte
labels ``name``, ``theory``, ``r_unit``, ``e_unit``, ``md5`` and optionally
``lattice`` (3, 3, vectors as columns). :func:`dataset_from_traj` builds
one from anything :func:`ase.io.read` reads.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterable

import numpy as np

from ...store.files import atomic_file
from .safe import to_bytes, to_str

__all__ = [
    "SGDML_FORMAT_VERSION",
    "dataset_md5",
    "validate_dataset",
    "save_dataset",
    "save_npz",
    "dataset_from_atoms",
    "dataset_from_traj",
    "normalise",
]

#: sgdml version written into ``code_version`` of the files we create.
SGDML_FORMAT_VERSION = "1.0.3"


def dataset_md5(dataset: dict[str, Any]) -> bytes:
    """Fingerprint of a dataset, as sgdml computes it.

    MD5 of the concatenated binary MD5 digests of the raw bytes of ``z``,
    ``R``, ``E`` (if present) and ``F``.

    Parameters
    ----------
    dataset : dict
        Dataset with ``z``, ``R``, ``F`` and optionally ``E``.

    Returns
    -------
    bytes
        32 lowercase hex characters as ASCII bytes.
    """
    outer = hashlib.md5()
    keys = ["z", "R"] + (["E"] if "E" in dataset else []) + ["F"]
    for key in keys:
        arr = np.ascontiguousarray(dataset[key])
        outer.update(hashlib.md5(
            arr.ravel().view(np.uint8)).digest())  # type: ignore[arg-type]
    return outer.hexdigest().encode("ascii")


def require_keys(d: dict[str, Any], keys: Iterable[str], what: str) -> None:
    """Raise ValueError naming the keys of `keys` missing from `d`."""
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError("{} is missing the key(s) {}".format(
            what, ", ".join("'{}'".format(k) for k in missing)))


def require_finite(arr: Any, key: str, what: str) -> None:
    """Raise ValueError naming the first non-finite entry of `arr`."""
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(np.asarray(arr)))
        raise ValueError("{}: '{}' contains NaN or infinite values (first at "
                         "index {})".format(what, key, tuple(bad[0])))


def validate_dataset(dataset: dict[str, Any], what: str = "dataset") -> None:
    """Check keys, shapes and values of a dataset.

    Parameters
    ----------
    dataset : dict
        Dataset with ``R`` (M, N, 3), ``z`` (N,), ``F`` (M, N, 3) and
        optionally ``E`` (M,) or (M, 1) and ``lattice`` (3, 3).
    what : str, optional
        Name used in messages.

    Raises
    ------
    ValueError
        On missing keys, inconsistent shapes or non-finite values.
    """
    require_keys(dataset, ["R", "z", "F"], what)
    R = np.asarray(dataset["R"])
    z = np.asarray(dataset["z"])
    F = np.asarray(dataset["F"])
    if z.ndim != 1:
        raise ValueError("{}: 'z' must be 1-D (N,), got shape {}".format(
            what, z.shape))
    N = len(z)
    if R.ndim != 3 or R.shape[1:] != (N, 3):
        raise ValueError("{}: 'R' must have shape (M, {}, 3) for {} atoms, "
                         "got {}".format(what, N, N, R.shape))
    if F.shape != R.shape:
        raise ValueError("{}: 'F' has shape {} but 'R' has shape {}".format(
            what, F.shape, R.shape))
    for key, arr in (("R", R), ("F", F), ("z", z)):
        if arr.dtype.kind not in "fiu":
            raise ValueError("{}: '{}' must hold numbers, got dtype {}"
                             .format(what, key, arr.dtype))
    if "E" in dataset:
        E = np.asarray(dataset["E"])
        if E.size != R.shape[0] or E.ndim not in (1, 2) \
                or E.dtype.kind not in "fiu":
            raise ValueError("{}: 'E' has shape {}, expected ({},) for {} "
                             "geometries".format(what, E.shape, R.shape[0],
                                                 R.shape[0]))
        require_finite(E, "E", what)
    require_finite(R, "R", what)
    require_finite(F, "F", what)
    if "lattice" in dataset:
        from ..desc import lattice_and_inverse
        lattice_and_inverse(dataset["lattice"])


def save_npz(path: Any, data: dict[str, Any], overwrite: bool = True) -> None:
    """Write a dict with ``np.savez_compressed`` (as the sgdml CLI does).

    Parameters
    ----------
    path : str
        Destination; written to a temporary name, flushed to disk, then
        renamed (:func:`amp.store.files.atomic_file`), so a kill or a
        power loss leaves the old file or the new one.
    data : dict
        Arrays and plain values; dicts and None become object arrays.
    overwrite : bool, optional
        Refuse to replace an existing file when False (also one another
        process creates meanwhile: ``FileExistsError``).
    """
    with atomic_file(path, overwrite=overwrite) as handle:
        np.savez_compressed(handle, **data)


_BYTES_FIELDS = {
    "d": ("name", "theory", "r_unit", "e_unit", "md5"),
    "t": ("md5_train", "md5_valid", "r_unit", "e_unit"),
    "m": ("md5_train", "md5_valid", "r_unit", "e_unit"),
}
_UNICODE_FIELDS = {
    "d": ("type", "code_version"),
    "t": ("type", "code_version", "dataset_name", "dataset_theory"),
    "m": ("type", "code_version", "dataset_name", "dataset_theory",
          "solver_name"),
}


def normalise(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """Text fields as sgdml stores them (bytes or unicode), ``type`` set."""
    out = {}
    for key, value in data.items():
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            pass  # f_err, e_err, md5_test: kept as they are
        elif key in _BYTES_FIELDS[kind] and value is not None:
            value = to_bytes(value)
        elif key in _UNICODE_FIELDS[kind] and value is not None:
            value = np.array(to_str(value))
        out[key] = value
    out["type"] = np.array(kind)
    out.setdefault("code_version", np.array(SGDML_FORMAT_VERSION))
    return out


def save_dataset(path: Any, dataset: dict[str, Any],
                 overwrite: bool = True) -> None:
    """Write an sgdml dataset, filling ``md5`` and the statistics.

    Parameters
    ----------
    path : str
        Destination ``.npz``.
    dataset : dict
        At least ``R``, ``z``, ``F`` (and usually ``E``, ``name``,
        ``theory``, ``r_unit``, ``e_unit``, optionally ``lattice``).
    overwrite : bool, optional
        Replace an existing file.
    """
    validate_dataset(dataset)
    data = dict(dataset)
    data["z"] = np.asarray(data["z"], dtype=np.int64)
    data["R"] = np.asarray(data["R"], dtype=np.float64)
    data["F"] = np.asarray(data["F"], dtype=np.float64)
    data.setdefault("name", "dataset")
    data.setdefault("theory", "unknown")
    data.setdefault("r_unit", "Ang")
    data.setdefault("e_unit", "eV")
    if "E" in data:
        E = np.asarray(data["E"], dtype=np.float64)
        data["E"] = E
        data["E_min"], data["E_max"] = np.min(E), np.max(E)
        data["E_mean"], data["E_var"] = np.mean(E), np.var(E)
    F = data["F"]
    data["F_min"], data["F_max"] = np.min(F), np.max(F)
    data["F_mean"], data["F_var"] = np.mean(F), np.var(F)
    data["md5"] = dataset_md5(data)
    save_npz(path, normalise(data, "d"), overwrite=overwrite)


def _frame_results(atoms, index, where):
    """Energy and forces stored with one frame, or a ValueError naming it."""
    calc = atoms.calc
    results = getattr(calc, "results", None) or {}
    energy = results.get("energy", results.get("free_energy"))
    forces = results.get("forces")
    if (energy is None or forces is None) and calc is not None:
        try:
            if energy is None:
                energy = atoms.get_potential_energy()
            if forces is None:
                forces = atoms.get_forces(apply_constraint=False)
        except Exception:  # no results and no way to compute them
            pass
    missing = [name for name, value in (("energy", energy),
                                        ("forces", forces)) if value is None]
    if missing:
        raise ValueError(
            "{}frame {} has no {}; every frame needs the energy and the "
            "forces of its reference calculation (extxyz: an energy= "
            "comment and a forces column; ASE trajectories and databases: "
            "stored results)".format(where, index, " and no ".join(missing)))
    return float(energy), np.asarray(forces, dtype=float)


def dataset_from_atoms(images: Iterable[Any], name: str = "dataset",
                       theory: str = "unknown", r_unit: str = "Ang",
                       e_unit: str = "eV", where: str = "") -> dict[str, Any]:
    """Build an sgdml dataset dict from ASE Atoms with results.

    Parameters
    ----------
    images : sequence of ase.Atoms
        Same species in the same order in every image, each with stored
        results (or a calculator) giving energy and forces.
    name, theory, r_unit, e_unit : str, optional
        Text fields of the dataset; positions, energies and forces are
        stored as they are (in `r_unit` and `e_unit`).
    where : str, optional
        Prefix of error messages (e.g. the file name).

    Returns
    -------
    dict
        Dataset with ``R``, ``z``, ``E``, ``F``, text fields, ``md5`` and,
        when every image is periodic in all three directions, ``lattice``
        (cell vectors as columns).

    Raises
    ------
    ValueError
        For no images, a frame without energy or forces, or a frame whose
        atom count or species order differs from the first frame (the
        message names the first such frame).
    """
    images = list(images)
    if not images:
        raise ValueError("{}no frames given".format(where))
    z = images[0].get_atomic_numbers().astype(np.int64)
    for i, atoms in enumerate(images):
        numbers = atoms.get_atomic_numbers()
        if len(numbers) != len(z):
            raise ValueError(
                "{}frame {} has {} atoms but frame 0 has {}; a GDML dataset "
                "holds one molecule with the same atoms in every frame"
                .format(where, i, len(numbers), len(z)))
        if not np.array_equal(numbers, z):
            bad = int(np.flatnonzero(numbers != z)[0])
            raise ValueError(
                "{}frame {} has the atoms {} but frame 0 has {} (first "
                "difference at atom {}); every frame needs the same species "
                "in the same order".format(
                    where, i, atoms.get_chemical_formula("all"),
                    images[0].get_chemical_formula("all"), bad))
    labels = [_frame_results(a, i, where) for i, a in enumerate(images)]
    R = np.array([a.get_positions() for a in images])
    E = np.array([e for e, _ in labels])
    F = np.array([f for _, f in labels])
    if F.shape != R.shape:
        raise ValueError("{}forces have shape {}, positions {}".format(
            where, F.shape, R.shape))
    data = {"name": name, "theory": theory, "r_unit": r_unit,
            "e_unit": e_unit, "z": z, "R": R, "E": E, "F": F}
    periodic = [bool(a.pbc.all()) for a in images]
    for i, atoms in enumerate(images):
        if atoms.pbc.any() and not atoms.pbc.all():
            raise ValueError(
                "{}frame {} is periodic along {} only; a GDML dataset holds "
                "molecules (no periodicity) or cells periodic in all three "
                "directions".format(where, i, "".join(
                    "xyz"[k] for k in range(3) if atoms.pbc[k])))
        if periodic[i] != periodic[0]:
            raise ValueError(
                "{}frame {} is {} but frame 0 is {}; a GDML dataset is "
                "either molecules or periodic cells, not both: split the "
                "file (ASE's index syntax selects frames)".format(
                    where, i, *("periodic", "a molecule (not periodic)")
                    if periodic[i] else ("a molecule (not periodic)",
                                         "periodic")))
    if all(periodic):
        cell = np.array(images[0].cell[:])
        for i, atoms in enumerate(images):
            if not np.allclose(atoms.cell[:], cell):
                raise ValueError(
                    "{}frame {} has a different cell than frame 0; a "
                    "periodic GDML dataset has one lattice".format(where, i))
        data["lattice"] = cell.T.copy()
    validate_dataset(data, what=where.rstrip(": ") or "dataset")
    data["md5"] = dataset_md5(data)
    return normalise(data, "d")


def dataset_from_traj(path_or_atoms_list: Any, name: str | None = None,
                      theory: str = "unknown", energy_unit: str = "eV",
                      length_unit: str = "Ang",
                      index: str | int = ":") -> dict[str, Any]:
    """Build an sgdml dataset from a trajectory file or a list of Atoms.

    Parameters
    ----------
    path_or_atoms_list : str, path-like or sequence of ase.Atoms
        Anything :func:`ase.io.read` reads with energies and forces (ASE
        ``.traj``, extended XYZ, ASE databases, ...), or the frames.
    name : str, optional
        Dataset name; default: the file name without extension.
    theory : str, optional
        Level of theory (a label).
    energy_unit, length_unit : str, optional
        Units of the stored energies and positions (labels; the numbers are
        not converted, forces are in energy unit per length unit).
    index : str or int, optional
        Frames to read (ASE's index syntax), all by default.

    Returns
    -------
    dict
        The dataset (save it with :func:`save_dataset`).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be read as a trajectory, or any frame lacks
        energy or forces or has other atoms than the first frame.
    """
    where = ""
    if isinstance(path_or_atoms_list, (str, os.PathLike)):
        import ase.io
        path = os.fspath(path_or_atoms_list)
        if not os.path.exists(path):
            raise FileNotFoundError("no such file: '{}'".format(path))
        if not os.path.isfile(path):
            raise ValueError("'{}' is not a regular file".format(path))
        where = "{}: ".format(path)
        try:
            images = ase.io.read(path, index=index)
        except Exception as err:
            raise ValueError(
                "{}cannot be read as a trajectory by ase.io.read ({}: {}); "
                "give an ASE .traj, extended XYZ or ASE database with "
                "energies and forces".format(where, type(err).__name__,
                                             err)) from None
        if not isinstance(images, list):
            images = [images]
        if name is None:
            name = os.path.splitext(os.path.basename(path))[0]
    else:
        images = list(path_or_atoms_list)
    return dataset_from_atoms(images, name=name or "dataset", theory=theory,
                              r_unit=length_unit, e_unit=energy_unit,
                              where=where)
