"""sgdml's module-level worker functions and the shared state they read.

sgdml parallelises with processes that read their inputs from module-level
"globals"; its API reference lists the two workers, and some scripts call
them directly. They are provided with sgdml's signatures and meaning:

- :func:`_assemble_kernel_mat_wkr` (importable from :mod:`amp.gdml.train`)
  computes one column block of the kernel matrix (one training point, or
  one energy column) into the shared matrix ``glob['K']``, reading
  ``glob['R_desc']``, ``glob['R_d_desc']`` (with their ``*_shape`` entries)
  and ``glob['desc_func']``.
- :func:`_predict_wkr` (importable from :mod:`amp.gdml.predict`) computes
  one, possibly partial, prediction from the state of the
  :class:`~amp.gdml.predict.GDMLPredict` object registered at
  ``globs[glob_id]``: ``sig``, ``n_perms``, ``desc_func``,
  ``R_desc_perms``, ``R_d_desc_alpha_perms`` (with shapes) and optionally
  ``alphas_E_lin``. A predictor registers itself the first time its
  ``glob_id`` is read, so that predictors nobody hands to the worker
  leave nothing behind.

This package's own training and prediction do not use them: they work on
all training points at once with matrix products (threads, not
processes). The workers call the same kernels, so their results are the
corresponding slices of :func:`amp.gdml.kernel.sgdml_kernel_matrix` and of
:meth:`~amp.gdml.predict.GDMLPredict.predict`.
"""

import multiprocessing as mp

import numpy as np

from .kernel import descriptor_matvec, sgdml_kernel_matrix

__all__ = ["glob", "globs", "share_array", "_assemble_kernel_mat_wkr",
           "_predict_wkr"]

#: Shared state of :func:`_assemble_kernel_mat_wkr` (sgdml's ``train.glob``).
glob = {}
#: One dict per :class:`~amp.gdml.predict.GDMLPredict` whose ``glob_id``
#: was asked for (sgdml's ``predict.globs``); an entry is None once its
#: object is gone.
globs = []


def share_array(arr_np, typecode_or_type="d"):
    """A copy of an array in process-shared memory, and its shape.

    Parameters
    ----------
    arr_np : numpy.ndarray
        The array.
    typecode_or_type : str or ctypes type, optional
        Element type (``'d'``: float64).

    Returns
    -------
    tuple
        ``(multiprocessing.RawArray, shape)``; read it back with
        ``np.frombuffer(arr).reshape(shape)``.
    """
    arr_np = np.ascontiguousarray(arr_np)
    return mp.RawArray(typecode_or_type, arr_np.ravel()), arr_np.shape


def _view(state, key):
    arr = state[key]
    if not isinstance(arr, np.ndarray):  # a shared buffer, as in sgdml
        arr = np.frombuffer(arr)
    return arr.reshape(state[key + "_shape"])


def _assemble_kernel_mat_wkr(j, tril_perms_lin, sig, use_E_cstr=False,
                             exploit_sym=False, cols_m_limit=None):
    """One row and column (block) of the kernel matrix into ``glob['K']``.

    Parameters
    ----------
    j : int or tuple
        Training point (``j < M``: its 3N force columns) or, with energy
        constraints, ``M + i`` for the energy column of point i; or a tuple
        ``(K_j, j, keep_idxs_3n)``: write the columns `keep_idxs_3n` of
        point j's block at column ``K_j`` of K.
    tril_perms_lin : numpy.ndarray
        Flattened descriptor permutations.
    sig : float
        Kernel length scale.
    use_E_cstr : bool, optional
        Include the energy rows (and columns).
    exploit_sym : bool, optional
        Also write the mirrored row block ``K[blk_j, blk_i] = K[blk_i,
        blk_j].T`` (for ``i < cols_m_limit`` when given).
    cols_m_limit : int, optional
        See `exploit_sym`.

    Returns
    -------
    int
        Number of columns written.
    """
    R_desc = _view(glob, "R_desc")
    R_d_desc = _view(glob, "R_d_desc")
    K = _view(glob, "K")
    desc = glob.get("desc_func")
    n_train, dim_d = R_d_desc.shape[:2]
    dim_i = 3 * int(round((1 + np.sqrt(8 * dim_d + 1)) / 2))
    n_force = n_train * dim_i
    if isinstance(j, tuple):
        K_j, j, keep = j
        keep = np.asarray(keep, dtype=int)
        cols = j * dim_i + keep
    elif j < n_train:
        K_j, cols = j * dim_i, j * dim_i + np.arange(dim_i)
    else:
        K_j, cols = n_force + (j % n_train), np.array([n_force + j % n_train])
    block = sgdml_kernel_matrix(R_desc, R_d_desc, tril_perms_lin, sig,
                                desc=desc, use_E_cstr=use_E_cstr,
                                col_idxs=cols, exploit_sym=False)
    if not use_E_cstr:
        block = block[:n_force]
    K[:block.shape[0], K_j:K_j + len(cols)] = block
    if exploit_sym and not isinstance(j, tuple) and j < n_train:
        rows = n_train if cols_m_limit is None else min(int(cols_m_limit),
                                                        n_train)
        K[K_j:K_j + dim_i, :rows * dim_i] = block[:rows * dim_i].T
    return len(cols)


def _predict_wkr(r, r_desc_d_desc, lat_and_inv, glob_id, wkr_start_stop=None,
                 chunk_size=None):
    """One, possibly partial, prediction (sgdml's worker).

    Parameters
    ----------
    r : numpy.ndarray or None
        ``(3N,)`` positions (used when `r_desc_d_desc` is None).
    r_desc_d_desc : tuple or None
        ``(r_desc (D,), r_d_desc)`` with the compact ``(D, 3)`` or the full
        ``(D, 3N)`` Jacobian.
    lat_and_inv : tuple or None
        Lattice and its inverse for `r`.
    glob_id : int
        Index into :data:`globs` of the predicting object's state.
    wkr_start_stop : tuple of int, optional
        Training points ``[start, stop)`` to sum over; all by default.
    chunk_size : int, optional
        Training points per vector operation; all by default.

    Returns
    -------
    numpy.ndarray
        ``(1 + 3N,)``: the energy sum first, then the force sums, both
        before scaling by the model's ``std`` (and without ``c``), so that
        the sums over disjoint ranges add up to the prediction.
    """
    state = globs[glob_id]
    if state is None:
        raise ValueError("glob_id {} belongs to a GDMLPredict object that no "
                         "longer exists".format(glob_id))
    sig, n_perms, desc = state["sig"], state["n_perms"], state["desc_func"]
    Xp = _view(state, "R_desc_perms")
    Wp = _view(state, "R_d_desc_alpha_perms")
    aE = _view(state, "alphas_E_lin") if "alphas_E_lin" in state else None
    if r_desc_d_desc is None:
        r_desc, r_d_desc = desc.from_R(np.asarray(r).reshape(1, -1),
                                       lat_and_inv)
    else:
        r_desc, r_d_desc = r_desc_d_desc
    X = np.asarray(r_desc, dtype=float).reshape(1, -1)
    n_train = Xp.shape[0] // n_perms
    start, stop = (0, n_train) if wkr_start_stop is None else wkr_start_stop
    step = (n_train if chunk_size is None else max(1, int(chunk_size)))
    E = 0.0
    Fd = np.zeros_like(X)
    for c0 in range(start * n_perms, stop * n_perms, step * n_perms):
        c1 = min(stop * n_perms, c0 + step * n_perms)
        e, fd = descriptor_matvec(
            X, Xp[c0:c1], Wp[c0:c1], float(sig),
            aE=None if aE is None else aE[c0:c1])
        E += e[0]
        Fd += fd
    r_d_desc = np.asarray(r_d_desc, dtype=float)
    if r_d_desc.shape[-1] == desc.dim_i and desc.dim_i != 3:
        F = Fd[0] @ r_d_desc.reshape(desc.dim, desc.dim_i)
    else:
        F = desc.vec_dot_d_desc(r_d_desc.reshape(1, desc.dim, 3), Fd)[0]
    return np.concatenate([[E], F])


def register_predictor(predictor):
    """Add a predictor's shared state to :data:`globs`; return its index."""
    globs.append({})
    glob_id = len(globs) - 1
    update_predictor(predictor, glob_id)
    return glob_id


def update_predictor(predictor, glob_id):
    """Refresh ``globs[glob_id]`` after the predictor's weights changed."""
    state = globs[glob_id]
    state.update({"sig": predictor.sig, "n_perms": predictor.n_perms,
                  "desc_func": predictor.desc,
                  "R_desc_perms": predictor._Xp,
                  "R_desc_perms_shape": predictor._Xp.shape,
                  "R_d_desc_alpha_perms": predictor._Wp,
                  "R_d_desc_alpha_perms_shape": predictor._Wp.shape})
    if predictor._aE is not None:
        state["alphas_E_lin"] = predictor._aE
        state["alphas_E_lin_shape"] = predictor._aE.shape
    else:
        state.pop("alphas_E_lin", None)

