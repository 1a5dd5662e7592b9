"""Reading and writing sgdml 1.0.x datasets, tasks and models (``.npz``).

The three file kinds are NumPy ``.npz`` archives tagged by the key ``type``
(``'d'``, ``'t'``, ``'m'``). A few model keys (``f_err``, ``e_err``,
``md5_test``) are 0-d *object* arrays, i.e. pickles. :func:`load_npz` reads
them with :class:`SafeUnpickler`, which resolves only the handful of NumPy
names a pickled array of plain data needs and refuses everything else, so
a crafted file cannot run code; every other key is read with
``allow_pickle=False``.

Text fields follow sgdml: in datasets ``name``, ``theory``, ``r_unit``,
``e_unit`` and ``md5`` are bytes; in tasks and models ``dataset_name`` and
``dataset_theory`` are unicode while ``md5_*``, ``r_unit`` and ``e_unit`` are
bytes; ``type`` and ``code_version`` are unicode.
"""

import hashlib
import numbers
import pickle
import zipfile

import numpy as np

from ..store.files import atomic_file

__all__ = [
    "SGDML_FORMAT_VERSION",
    "UnsafeFileError",
    "SafeUnpickler",
    "load_npz",
    "load_dataset",
    "load_task",
    "load_model",
    "save_npz",
    "save_dataset",
    "save_task",
    "save_model",
    "dataset_md5",
    "validate_dataset",
    "validate_model",
    "dataset_from_atoms",
    "to_str",
    "to_bytes",
]

#: sgdml version written into ``code_version`` of the files we create.
SGDML_FORMAT_VERSION = "1.0.3"

_TYPE_NAMES = {"d": "dataset", "t": "task", "m": "model"}


class UnsafeFileError(ValueError):
    """A file asks the unpickler for something other than plain data."""


# (module, name) pairs a pickled object array of plain data refers to.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only NumPy array/dtype/scalar constructors.

    Plain containers (dict, list, tuple), numbers, strings, bytes and None
    need no global lookups; the allowed globals are
    ``numpy.core.multiarray._reconstruct`` (and its ``numpy._core`` twin),
    ``numpy.core.multiarray.scalar``, ``numpy.ndarray`` and ``numpy.dtype``.
    Any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`UnsafeFileError` before anything is called.
    """

    def find_class(self, module, name):
        """Resolve an allowed global or refuse.

        Parameters
        ----------
        module, name : str
            The global the pickle asks for.

        Returns
        -------
        object
            The NumPy function or class.

        Raises
        ------
        UnsafeFileError
            For any name outside the allow-list.
        """
        if (module, name) in _ALLOWED_GLOBALS:
            if module.startswith("numpy._core") or module.startswith(
                    "numpy.core"):
                try:
                    from numpy._core import multiarray as ma
                except ImportError:  # NumPy < 2
                    from numpy.core import multiarray as ma
                return getattr(ma, name)
            return getattr(np, name)
        raise UnsafeFileError(
            "refusing to load pickled object '{}.{}': only plain data "
            "(dicts, lists, numbers, strings, NumPy arrays) is accepted"
            .format(module, name))

    def persistent_load(self, pid):
        """Refuse persistent ids.

        Parameters
        ----------
        pid : object
            Persistent id.

        Raises
        ------
        UnsafeFileError
            Always.
        """
        raise UnsafeFileError("refusing pickled persistent id")


def _check_plain(obj, depth=0):
    """Raise UnsafeFileError unless obj is plain data."""
    if depth > 50:
        raise UnsafeFileError("pickled object nested too deeply")
    if obj is None or isinstance(obj, (bool, numbers.Number, str, bytes)):
        return
    if isinstance(obj, np.generic):
        return
    if isinstance(obj, np.ndarray):
        if type(obj) is not np.ndarray:
            raise UnsafeFileError("array subclass {!r} refused".format(
                type(obj).__name__))
        if obj.dtype.hasobject:
            for item in obj.ravel():
                _check_plain(item, depth + 1)
        return
    if type(obj) in (list, tuple):
        for item in obj:
            _check_plain(item, depth + 1)
        return
    if type(obj) is dict:
        for k, v in obj.items():
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)
        return
    raise UnsafeFileError("pickled object of type {!r} refused".format(
        type(obj).__name__))


def _read_npy_member(fp, key):
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError("unsupported .npy version {} for key '{}'".format(
            version, key))
    if not dtype.hasobject:
        return None  # caller re-reads with allow_pickle=False
    arr = SafeUnpickler(fp).load()
    if not isinstance(arr, np.ndarray) or type(arr) is not np.ndarray:
        raise UnsafeFileError(
            "key '{}': pickled payload is not an array".format(key))
    _check_plain(arr)
    if arr.shape != tuple(shape):
        raise ValueError("key '{}': pickled array has shape {}, header says "
                         "{}".format(key, arr.shape, shape))
    return arr


def load_npz(path):
    """Load an ``.npz`` archive without general unpickling.

    Parameters
    ----------
    path : str or file-like
        The archive.

    Returns
    -------
    dict
        Key to :class:`numpy.ndarray`, as ``dict(np.load(path))`` would give;
        object arrays hold only plain data (dicts, lists, numbers, strings,
        bytes, None, arrays).

    Raises
    ------
    UnsafeFileError
        If an object array asks for anything but plain data.
    ValueError
        If the file is not a readable ``.npz`` archive.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError("{} is not a readable .npz file: {}".format(
            path, err)) from None
    out = {}
    with zf:
        for member in zf.namelist():
            if not member.endswith(".npy"):
                continue
            key = member[:-4]
            with zf.open(member) as fp:
                arr = _read_npy_member(fp, key)
            if arr is None:
                with zf.open(member) as fp:
                    arr = np.lib.format.read_array(fp, allow_pickle=False)
            out[key] = arr
    return out


def to_str(value):
    """Text field (bytes or unicode scalar/array) as a Python ``str``.

    Parameters
    ----------
    value : object
        Bytes, str or 0-d NumPy array.

    Returns
    -------
    str
    """
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def to_bytes(value):
    """Text field as a NumPy bytes scalar array (sgdml's byte fields).

    Parameters
    ----------
    value : object
        Bytes, str or 0-d array.

    Returns
    -------
    numpy.ndarray
        0-d ``|S`` array.
    """
    return np.array(to_str(value).encode("utf-8"))


def _unwrap(value):
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def dataset_md5(dataset):
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
        outer.update(hashlib.md5(arr.ravel().view(np.uint8)).digest())
    return outer.hexdigest().encode("ascii")


def _require(d, keys, what):
    missing = [k for k in keys if k not in d]
    if missing:
        raise ValueError("{} is missing the key(s) {}".format(
            what, ", ".join("'{}'".format(k) for k in missing)))


def _finite(arr, key, what):
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(np.asarray(arr)))
        raise ValueError("{}: '{}' contains NaN or infinite values (first at "
                         "index {})".format(what, key, tuple(bad[0])))


def validate_dataset(dataset, what="dataset"):
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
    _require(dataset, ["R", "z", "F"], what)
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
    if "E" in dataset:
        E = np.asarray(dataset["E"])
        if E.size != R.shape[0] or E.ndim not in (1, 2):
            raise ValueError("{}: 'E' has shape {}, expected ({},) for {} "
                             "geometries".format(what, E.shape, R.shape[0],
                                                 R.shape[0]))
        _finite(E, "E", what)
    _finite(R, "R", what)
    _finite(F, "F", what)
    if "lattice" in dataset:
        from .desc import lattice_and_inverse
        lattice_and_inverse(dataset["lattice"])


_MODEL_KEYS = ["z", "R_desc", "R_d_desc_alpha", "c", "sig", "perms",
               "tril_perms_lin"]


def validate_model(model, what="model"):
    """Check keys and shapes of a model.

    Parameters
    ----------
    model : dict
        sgdml model.
    what : str, optional
        Name used in messages.

    Raises
    ------
    ValueError
        On missing keys, inconsistent shapes or non-finite values.
    """
    _require(model, _MODEL_KEYS, what)
    if "type" in model and to_str(model["type"]) != "m":
        raise ValueError("{} is not a model (type '{}')".format(
            what, to_str(model["type"])))
    N = len(np.asarray(model["z"]))
    D = N * (N - 1) // 2
    R_desc = np.asarray(model["R_desc"])
    if R_desc.ndim != 2 or R_desc.shape[0] != D:
        raise ValueError("{}: 'R_desc' has shape {}, expected ({}, M) for {} "
                         "atoms".format(what, R_desc.shape, D, N))
    M = R_desc.shape[1]
    if np.asarray(model["R_d_desc_alpha"]).shape != (M, D):
        raise ValueError("{}: 'R_d_desc_alpha' has shape {}, expected "
                         "({}, {})".format(
                             what, np.asarray(model["R_d_desc_alpha"]).shape,
                             M, D))
    perms = np.asarray(model["perms"])
    if perms.ndim != 2 or perms.shape[1] != N:
        raise ValueError("{}: 'perms' has shape {}, expected (P, {})".format(
            what, perms.shape, N))
    if np.asarray(model["tril_perms_lin"]).size != perms.shape[0] * D:
        raise ValueError("{}: 'tril_perms_lin' has {} entries, expected "
                         "{}".format(what,
                                     np.asarray(model["tril_perms_lin"]).size,
                                     perms.shape[0] * D))
    sig = float(_unwrap(model["sig"]))
    if not sig > 0:
        raise ValueError("{}: kernel length scale sig must be > 0, got "
                         "{}".format(what, sig))
    for key in ("R_desc", "R_d_desc_alpha", "c"):
        _finite(np.asarray(model[key]), key, what)
    if "alphas_E" in model and np.asarray(model["alphas_E"]).size != M:
        raise ValueError("{}: 'alphas_E' must have {} entries".format(what, M))


def _check_type(data, kind, path):
    if "type" not in data:
        raise ValueError("{} has no 'type' key; it is not an sgdml {} file"
                         .format(path, _TYPE_NAMES[kind]))
    got = to_str(data["type"])
    if got != kind:
        raise ValueError("{} is an sgdml {} file, expected a {} file".format(
            path, _TYPE_NAMES.get(got, repr(got)), _TYPE_NAMES[kind]))


def load_dataset(path):
    """Load and validate an sgdml dataset file.

    Parameters
    ----------
    path : str
        ``.npz`` file with ``type == 'd'``.

    Returns
    -------
    dict
        Key to array.
    """
    data = load_npz(path)
    _check_type(data, "d", path)
    validate_dataset(data, what=str(path))
    return data


def load_task(path):
    """Load an sgdml task file.

    Parameters
    ----------
    path : str
        ``.npz`` file with ``type == 't'``.

    Returns
    -------
    dict
    """
    data = load_npz(path)
    _check_type(data, "t", path)
    _require(data, ["z", "R_train", "F_train", "sig", "lam", "perms",
                    "use_E", "use_E_cstr", "use_sym"], str(path))
    return data


def load_model(path):
    """Load and validate an sgdml model file.

    Parameters
    ----------
    path : str
        ``.npz`` file with ``type == 'm'``.

    Returns
    -------
    dict
    """
    data = load_npz(path)
    _check_type(data, "m", path)
    validate_model(data, what=str(path))
    return data


def save_npz(path, data, overwrite=True):
    """Write a dict with ``np.savez_compressed`` (as the sgdml CLI does).

    Parameters
    ----------
    path : str
        Destination; written to a temporary name then renamed.
    data : dict
        Arrays and plain values; dicts and None become object arrays.
    overwrite : bool, optional
        Refuse to replace an existing file when False.
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


def _normalise(data, kind):
    out = {}
    for key, value in data.items():
        if key in _BYTES_FIELDS[kind] and value is not None:
            value = to_bytes(value)
        elif key in _UNICODE_FIELDS[kind] and value is not None:
            value = np.array(to_str(value))
        out[key] = value
    out["type"] = np.array(kind)
    out.setdefault("code_version", np.array(SGDML_FORMAT_VERSION))
    return out


def save_dataset(path, dataset, overwrite=True):
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
    save_npz(path, _normalise(data, "d"), overwrite=overwrite)


def save_task(path, task, overwrite=True):
    """Write an sgdml task file.

    Parameters
    ----------
    path : str
        Destination ``.npz``.
    task : dict
        As returned by :meth:`amp.gdml.train.GDMLTrain.create_task`.
    overwrite : bool, optional
        Replace an existing file.
    """
    save_npz(path, _normalise(task, "t"), overwrite=overwrite)


def save_model(path, model, overwrite=True):
    """Write an sgdml model file.

    ``f_err``/``e_err`` (dicts) and ``md5_test`` (None or bytes) become 0-d
    object arrays, exactly as sgdml stores them.

    Parameters
    ----------
    path : str
        Destination ``.npz``.
    model : dict
        As returned by :meth:`amp.gdml.train.GDMLTrain.train`.
    overwrite : bool, optional
        Replace an existing file.
    """
    validate_model(model)
    data = _normalise(model, "m")
    for key in ("f_err", "e_err", "md5_test"):
        if key in data:
            value = _unwrap(data[key])
            arr = np.empty((), dtype=object)
            arr[()] = value
            data[key] = arr
    save_npz(path, data, overwrite=overwrite)


def dataset_from_atoms(images, name="dataset", theory="unknown",
                       r_unit="Ang", e_unit="eV"):
    """Build an sgdml dataset dict from ASE Atoms with results.

    Parameters
    ----------
    images : sequence of ase.Atoms
        Same species in the same order in every image, each with a
        calculator (or stored results) giving energy and forces.
    name, theory, r_unit, e_unit : str, optional
        Text fields of the dataset.

    Returns
    -------
    dict
        Dataset with ``R``, ``z``, ``E``, ``F``, text fields, ``md5`` and,
        when every image is periodic in all three directions, ``lattice``
        (cell vectors as columns).
    """
    images = list(images)
    if not images:
        raise ValueError("no images given")
    z = images[0].get_atomic_numbers().astype(np.int64)
    for i, atoms in enumerate(images):
        if not np.array_equal(atoms.get_atomic_numbers(), z):
            raise ValueError("image {} has species {} but image 0 has {}"
                             .format(i, atoms.get_chemical_formula(),
                                     images[0].get_chemical_formula()))
    R = np.array([a.get_positions() for a in images])
    E = np.array([a.get_potential_energy(apply_constraint=False)
                  if _accepts_apply(a) else a.get_potential_energy()
                  for a in images])
    F = np.array([a.get_forces(apply_constraint=False) for a in images])
    data = {"name": name, "theory": theory, "r_unit": r_unit,
            "e_unit": e_unit, "z": z, "R": R, "E": E, "F": F}
    if all(a.pbc.all() for a in images):
        data["lattice"] = np.array(images[0].cell[:]).T
    data["md5"] = dataset_md5(data)
    return _normalise(data, "d")


def _accepts_apply(atoms):
    import inspect
    try:
        return "apply_constraint" in inspect.signature(
            atoms.get_potential_energy).parameters
    except (TypeError, ValueError):
        return False
