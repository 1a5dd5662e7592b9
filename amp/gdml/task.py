"""Training tasks of (s)GDML: sampling, hyperparameters, symmetries.

A *task* records the training and validation samples, the hyperparameters
and the permutational symmetries of one training run, as a plain dict with
the keys, shapes and dtypes of an sgdml 1.0.x task file
(:mod:`amp.gdml.io`). :class:`amp.gdml.train.GDMLTrain` exposes these
functions as its ``create_task`` and ``create_task_from_model`` methods.
"""

import numpy as np

from . import io as gdml_io
from .desc import lattice_and_inverse
from .perm import find_perms
from .sampling import draw_strat_sample

__all__ = ["create_task", "create_task_from_model", "check_perms",
           "check_sig_lam"]


def check_sig_lam(sig, lam):
    """Raise ValueError unless sig > 0 and lam >= 0 are finite numbers.

    Parameters
    ----------
    sig, lam : float
        Kernel length scale and regulariser.
    """
    try:
        sig_f = float(sig)
    except (TypeError, ValueError):
        raise ValueError("sig must be a positive number, got {!r}".format(
            sig)) from None
    if not np.isfinite(sig_f) or sig_f <= 0:
        raise ValueError("kernel length scale sig must be > 0, got {}".format(
            sig))
    if not np.isfinite(float(lam)) or float(lam) < 0:
        raise ValueError("regulariser lam must be >= 0, got {}".format(lam))


def create_task(train_dataset, n_train, valid_dataset, n_valid, sig,
                lam=1e-10, perms=None, use_sym=True, use_E=True,
                use_E_cstr=False, callback=None):
    """Create a training task (sampling, fingerprints, hyperparameters).

    Training and validation points are drawn without replacement with
    :func:`amp.gdml.sampling.draw_strat_sample` (disjoint when both come
    from the same dataset, recognised by its md5 fingerprint).

    Parameters
    ----------
    train_dataset : dict
        sgdml dataset with ``R``, ``z``, ``F`` (and ``E``).
    n_train : int
        Training points.
    valid_dataset : dict
        Dataset for validation (may be `train_dataset`).
    n_valid : int
        Validation points.
    sig : float
        Kernel length scale (> 0).
    lam : float, optional
        Regulariser.
    perms : numpy.ndarray, optional
        ``(P, N)`` atom permutations; take priority over the dataset's
        ``perms`` and disable the search.
    use_sym : bool, optional
        sGDML (symmetries) when True, GDML when False.
    use_E : bool, optional
        Use energies for the integration constant.
    use_E_cstr : bool, optional
        Energy constraints in the kernel (needs `use_E`).
    callback : callable, optional
        ``callback(current, total, done_str)`` progress function.

    Returns
    -------
    dict
        The task.

    Raises
    ------
    ValueError
        On missing energies with `use_E`, bad datasets, too few points,
        ``sig <= 0``, bad permutations or lattices.
    """
    gdml_io.validate_dataset(train_dataset, "training dataset")
    gdml_io.validate_dataset(valid_dataset, "validation dataset")
    check_sig_lam(sig, lam)
    if use_E and "E" not in train_dataset:
        raise ValueError(
            "no energy labels ('E') in the training dataset; train with "
            "use_E=False to reconstruct the force field only")
    z = np.asarray(train_dataset["z"])
    if not np.array_equal(z, np.asarray(valid_dataset["z"])):
        raise ValueError("training and validation datasets have "
                         "different atoms (z differs)")
    use_E_cstr = bool(use_E and use_E_cstr)
    n_train, n_valid = int(n_train), int(n_valid)
    if n_train < 1 or n_valid < 0:
        raise ValueError("n_train must be >= 1 and n_valid >= 0")
    md5_train = gdml_io.dataset_md5(train_dataset)
    md5_valid = gdml_io.dataset_md5(valid_dataset)
    m_train = np.asarray(train_dataset["R"]).shape[0]
    m_valid = np.asarray(valid_dataset["R"]).shape[0]
    same = md5_train == md5_valid
    if same and n_train + n_valid > m_train:
        raise ValueError(
            "n_train + n_valid = {} exceeds the {} geometries of the "
            "dataset".format(n_train + n_valid, m_train))
    if n_train > m_train:
        raise ValueError("n_train = {} exceeds the {} geometries of the "
                         "training dataset".format(n_train, m_train))
    if n_valid > m_valid:
        raise ValueError("n_valid = {} exceeds the {} geometries of the "
                         "validation dataset".format(n_valid, m_valid))
    if callback is not None:
        callback(0, 1, "Sampling training and validation subsets")
    if "E" in train_dataset:
        idxs_train = draw_strat_sample(train_dataset["E"], n_train)
    else:
        idxs_train = np.random.choice(m_train, n_train, replace=False)
    excl = idxs_train if same else np.array([], dtype=int)
    if "E" in valid_dataset:
        idxs_valid = draw_strat_sample(valid_dataset["E"], n_valid,
                                            excl_idxs=excl)
    else:
        cand = np.setdiff1d(np.arange(m_valid), excl)
        idxs_valid = np.random.choice(cand, n_valid, replace=False)
    if callback is not None:
        callback(1, 1, "Sampling training and validation subsets")
    R_train = np.asarray(train_dataset["R"])[idxs_train]
    task = {
        "type": "t",
        "code_version": gdml_io.SGDML_FORMAT_VERSION,
        "dataset_name": np.array(gdml_io.to_str(
            train_dataset.get("name", "unnamed"))),
        "dataset_theory": np.array(gdml_io.to_str(
            train_dataset.get("theory", "unknown"))),
        "z": z,
        "R_train": R_train,
        "F_train": np.asarray(train_dataset["F"])[idxs_train],
        "idxs_train": idxs_train,
        "md5_train": md5_train,
        "idxs_valid": idxs_valid,
        "md5_valid": md5_valid,
        "sig": sig,
        "lam": lam,
        "use_E": bool(use_E),
        "use_E_cstr": use_E_cstr,
        "use_sym": bool(use_sym),
    }
    if use_E:
        task["E_train"] = np.asarray(train_dataset["E"])[idxs_train]
    lat_and_inv = None
    if "lattice" in train_dataset:
        task["lattice"] = np.asarray(train_dataset["lattice"])
        lat_and_inv = lattice_and_inverse(task["lattice"])
    if "r_unit" in train_dataset and "e_unit" in train_dataset:
        task["r_unit"] = train_dataset["r_unit"]
        task["e_unit"] = train_dataset["e_unit"]
    N = len(z)
    if not use_sym:
        task["perms"] = np.arange(N)[None, :]
    elif perms is not None:
        task["perms"] = check_perms(perms, z)
    elif "perms" in train_dataset:
        task["perms"] = check_perms(train_dataset["perms"], z)
    else:
        R_sync = R_train
        if len(R_sync) > 1000:
            R_sync = R_sync[np.random.choice(len(R_sync), 1000,
                                             replace=False)]
        task["perms"] = find_perms(R_sync, z, lat_and_inv=lat_and_inv,
                                   callback=callback)
    return task

def check_perms(perms, z):
    """Validated ``(P, N)`` int64 permutations mapping species onto themselves.

    Parameters
    ----------
    perms : array_like
        Atom permutations.
    z : array_like
        Atomic numbers.

    Returns
    -------
    numpy.ndarray

    Raises
    ------
    ValueError
        On a wrong shape, a row that is not a permutation, or one that
        exchanges atoms of different species.
    """
    perms = np.atleast_2d(np.asarray(perms))
    N = len(z)
    if perms.ndim != 2 or perms.shape[1] != N:
        raise ValueError("permutations have shape {}, expected (P, {}) "
                         "for {} atoms".format(perms.shape, N, N))
    perms = perms.astype(np.int64)
    if not np.all(np.sort(perms, axis=1) == np.arange(N)):
        raise ValueError("each row of perms must be a permutation of "
                         "0..{}".format(N - 1))
    if not np.all(np.asarray(z)[perms] == np.asarray(z)):
        raise ValueError("perms exchange atoms of different species")
    return perms

def create_task_from_model(model, dataset):
    """Task that resumes training of a (possibly unconverged) model.

    Hyperparameters and permutations are reused; the model's
    coefficients become the starting point ``alphas0_F`` (and
    ``alphas0_E``) of the iterative solver.

    Parameters
    ----------
    model : dict
        The model.
    dataset : dict
        The dataset the model was trained on.

    Returns
    -------
    dict
        The task.

    Raises
    ------
    ValueError
        If the dataset does not fit the model.
    """
    gdml_io.validate_dataset(dataset)
    if not np.array_equal(np.asarray(dataset["z"]),
                          np.asarray(model["z"])):
        raise ValueError("dataset atoms (z) differ from the model's")
    idxs_train = np.asarray(model["idxs_train"])
    mode = gdml_io.energy_mode(model)
    use_E = mode != "none"
    task = {
        "type": "t",
        "code_version": gdml_io.SGDML_FORMAT_VERSION,
        "dataset_name": model["dataset_name"],
        "dataset_theory": model["dataset_theory"],
        "z": model["z"],
        "R_train": np.asarray(dataset["R"])[idxs_train],
        "F_train": np.asarray(dataset["F"])[idxs_train],
        "idxs_train": idxs_train,
        "md5_train": model["md5_train"],
        "idxs_valid": model["idxs_valid"],
        "md5_valid": model["md5_valid"],
        "sig": model["sig"],
        "lam": model["lam"],
        "use_E": use_E,
        "use_E_cstr": mode == "constraints",
        "use_sym": np.asarray(model["perms"]).shape[0] > 1,
        "perms": model["perms"],
    }
    if use_E:
        if "E" not in dataset:
            raise ValueError("the model uses energies but the dataset "
                             "has none")
        task["E_train"] = np.asarray(dataset["E"])[idxs_train]
    for key in ("lattice", "r_unit", "e_unit", "solver_iters",
                "inducing_pts_idxs"):
        if key in model:
            task[key] = model[key]
    if "alphas_F" in model:
        task["alphas0_F"] = model["alphas_F"]
    if "alphas_E" in model:
        task["alphas0_E"] = model["alphas_E"]
    return task

# -- models --------------------------------------------------------------
