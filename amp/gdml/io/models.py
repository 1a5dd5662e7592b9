"""sgdml task and model files: validation and saving.

Text fields follow sgdml: in tasks and models ``dataset_name`` and
``dataset_theory`` are unicode while ``md5_*``, ``r_unit`` and ``e_unit``
are bytes; ``type`` and ``code_version`` are unicode. A model's ``f_err``,
``e_err`` (dicts) and ``md5_test`` (None or bytes) are 0-d object arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .datasets import normalise, require_finite, require_keys, save_npz
from .fields import scalar
from .safe import to_bytes, to_str

__all__ = ["validate_task", "validate_model", "save_task", "save_model"]

_MODEL_KEYS = ["z", "R_desc", "R_d_desc_alpha", "c", "sig", "perms",
               "tril_perms_lin"]
_TASK_KEYS = ["z", "R_train", "F_train", "sig", "lam", "perms", "use_E",
              "use_E_cstr", "use_sym"]


def _numeric(model, key, what):
    arr = np.asarray(model[key])
    if arr.dtype.kind not in "fiub":
        raise ValueError("{}: '{}' must hold numbers, got dtype {}".format(
            what, key, arr.dtype))
    return arr


def validate_model(model: dict[str, Any], what: str = "model") -> None:
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
    require_keys(model, _MODEL_KEYS, what)
    if "type" in model and to_str(model["type"]) != "m":
        raise ValueError("{} is not a model (type '{}')".format(
            what, to_str(model["type"])))
    for key in _MODEL_KEYS:
        _numeric(model, key, what)
    z = np.asarray(model["z"])
    if z.ndim != 1:
        raise ValueError("{}: 'z' must be 1-D, got shape {}".format(
            what, z.shape))
    N = len(z)
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
    tpl = np.asarray(model["tril_perms_lin"])
    if tpl.size != perms.shape[0] * D:
        raise ValueError("{}: 'tril_perms_lin' has {} entries, expected "
                         "{}".format(what, tpl.size, perms.shape[0] * D))
    if tpl.size and (tpl.dtype.kind not in "iu" or tpl.min() < 0
                     or tpl.max() >= perms.shape[0] * D):
        raise ValueError("{}: 'tril_perms_lin' holds indices outside "
                         "0..{}".format(what, perms.shape[0] * D - 1))
    if np.asarray(model["sig"]).size != 1 or np.asarray(model["c"]).size != 1:
        raise ValueError("{}: 'sig' and 'c' must be single numbers".format(
            what))
    sig = float(scalar(model["sig"]))
    if not sig > 0 or not np.isfinite(sig):
        raise ValueError("{}: kernel length scale sig must be > 0, got "
                         "{}".format(what, sig))
    for key in ("R_desc", "R_d_desc_alpha", "c", "std", "alphas_E"):
        if key in model:
            _numeric(model, key, what)
            require_finite(np.asarray(model[key]), key, what)
    if "std" in model and (np.asarray(model["std"]).size != 1
                           or not float(scalar(model["std"])) > 0):
        raise ValueError("{}: 'std' must be one positive number".format(
            what))
    if "alphas_E" in model and np.asarray(model["alphas_E"]).size != M:
        raise ValueError("{}: 'alphas_E' must have {} entries".format(what, M))
    if "lattice" in model:
        from ..desc import lattice_and_inverse
        lattice_and_inverse(model["lattice"])


def validate_task(task: dict[str, Any], what: str = "task") -> None:
    """Check the keys and shapes of a task.

    Parameters
    ----------
    task : dict
        sgdml task.
    what : str, optional
        Name used in messages.

    Raises
    ------
    ValueError
        On missing keys or inconsistent shapes.
    """
    require_keys(task, _TASK_KEYS, what)
    N = len(np.atleast_1d(task["z"]))
    R = np.asarray(task["R_train"])
    F = np.asarray(task["F_train"])
    if R.ndim != 3 or R.shape[1:] != (N, 3) or F.shape != R.shape:
        raise ValueError("{}: 'R_train' {} and 'F_train' {} must both have "
                         "shape (M, {}, 3)".format(what, R.shape, F.shape, N))
    for key in ("R_train", "F_train", "sig", "lam", "perms"):
        _numeric(task, key, what)


def save_task(path: Any, task: dict[str, Any], overwrite: bool = True) -> None:
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
    save_npz(path, normalise(task, "t"), overwrite=overwrite)


def save_model(path: Any, model: dict[str, Any],
               overwrite: bool = True) -> None:
    """Write an sgdml model file.

    ``f_err``/``e_err`` (dicts) and an untested model's ``md5_test`` (None)
    become 0-d object arrays, a tested model's ``md5_test`` a bytes array,
    exactly as sgdml stores them.

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
    data = normalise(model, "m")
    for key in ("f_err", "e_err", "md5_test"):
        if key in data:
            value = scalar(data[key])
            if key == "md5_test" and value is not None:
                # a tested model: the test dataset's md5 as bytes (sgdml's
                # test step stores the dataset's 'md5' array itself)
                data[key] = to_bytes(value)
                continue
            arr = np.empty((), dtype=object)
            arr[()] = value
            data[key] = arr
    save_npz(path, data, overwrite=overwrite)
