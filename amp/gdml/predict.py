"""Energy and force predictions of (s)GDML models: the sgdml ``GDMLPredict`` API.

For a geometry R with descriptor x and Jacobian J the model gives

``E(R) = c + std * sum_j sum_q g(u) (delta . w_j^(q))``,
``F(R) = -dE/dR = std * J.T sum_j sum_q [h(u) (delta . w_j^(q)) delta - g(u) w_j^(q)]``

with ``delta = x - x_j^(q)``, ``u = |delta|`` and ``w_j = R_d_desc_alpha[j]``
(see :mod:`amp.gdml.kernel` for g and h). All geometries of a call are
evaluated together with matrix products over the permuted training set;
memory is bounded by processing the training set in chunks of
``chunk_size`` points and the queries in matching batches.

Parallel workers are threads (NumPy's BLAS and ufuncs release the GIL).
With bulk mode the geometries are shared out between workers and the
results are bitwise independent of the worker count; without it the
training points are, and results differ at most by the summation order.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import io as gdml_io
from .desc import Desc, desc_perms_from_lin, lattice_and_inverse
from .io import scalar
from .kernel import descriptor_matvec
from .workers import (_predict_wkr, globs, register_predictor,
                      share_array, update_predictor)

__all__ = ["GDMLPredict", "require_torch", "geometries_as_rows",
           "_predict_wkr", "globs", "share_array"]

# Bytes of temporaries one (query, training-permutation) pair costs.
_BYTES_PER_PAIR = 8 * 5


def require_torch() -> None:
    """Raise a clear error: the PyTorch path needs torch and a GPU.

    Raises
    ------
    ImportError
        If torch is not installed.
    RuntimeError
        If torch is installed but no CUDA/MPS device is available.
    """
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError(
            "use_torch=True needs the optional PyTorch dependency, which is "
            "not installed; install torch or use the NumPy path "
            "(use_torch=False)") from None
    has_gpu = torch.cuda.is_available() or (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    if not has_gpu:
        raise RuntimeError(
            "use_torch=True needs a GPU (CUDA or MPS) and none is available; "
            "use the NumPy path (use_torch=False), which is faster on CPUs")
    return torch


def _as_model(model):
    if isinstance(model, (str, os.PathLike)):
        return gdml_io.load_model(model)
    if hasattr(model, "files") and hasattr(model, "zip") \
            and not isinstance(model, dict):
        # np.load('model.npz'): object keys through the restricted reader
        model = gdml_io.npz_to_dict(model)
    if not isinstance(model, dict):
        raise ValueError("model must be a dict, an NpzFile or a path, got "
                         "{!r}".format(type(model).__name__))
    if "type" not in model or gdml_io.to_str(model["type"]) != "m":
        raise ValueError("the provided data structure is not a valid model "
                         "(its 'type' is not 'm')")
    gdml_io.validate_model(model)
    return model


def geometries_as_rows(R: Any, n_atoms: int) -> np.ndarray:
    """Geometries in any layout sgdml accepts as an ``(M, 3N)`` array.

    Parameters
    ----------
    R : array_like
        ``(M, N, 3)``, ``(M, 3N)``, or one geometry ``(N, 3)`` or ``(3N,)``.
    n_atoms : int
        N.

    Returns
    -------
    numpy.ndarray
        ``(M, 3N)`` float64.

    Raises
    ------
    ValueError
        For any other shape (e.g. ``(M, 3, N)``), naming the accepted ones,
        or for NaN/infinite coordinates.
    """
    R = np.asarray(R, dtype=float)
    n3 = 3 * n_atoms
    shape = R.shape
    if R.ndim == 1 and shape == (n3,):
        rows = R[None, :]
    elif R.ndim == 2 and shape[1] == n3:
        rows = R
    elif R.ndim == 2 and shape == (n_atoms, 3):
        rows = R.reshape(1, n3)
    elif R.ndim == 3 and shape[1:] == (n_atoms, 3):
        rows = R.reshape(shape[0], n3)
    else:
        raise ValueError(
            "geometries of shape {} do not fit the model, which was trained "
            "for {} atoms; expected (M, {}, 3) or (M, {}) for M geometries, "
            "or ({}, 3) or ({},) for one (atoms in the model's order, "
            "positions in its length unit)"
            .format(shape, n_atoms, n_atoms, n3, n_atoms, n3))
    if not np.all(np.isfinite(rows)):
        raise ValueError("geometries contain NaN or infinite values")
    return rows


class GDMLPredict:
    """Query a trained sGDML/GDML force field.

    Parameters
    ----------
    model : dict, numpy.lib.npyio.NpzFile or str
        The model as returned by :meth:`amp.gdml.train.GDMLTrain.train`,
        as loaded from an sgdml ``.npz`` file, or that file's path.
    batch_size : int, optional
        Chunk size (training points evaluated at once); see
        :meth:`_set_chunk_size`.
    num_workers : int, optional
        Worker threads in addition to the main one; ``None`` uses
        ``max_processes - 1``.
    max_memory : int, optional
        Soft limit for temporaries [GB].
    max_processes : int, optional
        Upper limit for the number of workers plus one; default: all cores.
    use_torch : bool, optional
        PyTorch/GPU evaluation; raises :class:`ImportError` or
        :class:`RuntimeError` when torch or a GPU is absent.
    log_level : int, optional
        Logging level of this object's logger.

    Raises
    ------
    ValueError
        If `model` is not a valid model.
    """

    def __init__(self, model: Any, batch_size: int | None = None,
                 num_workers: int | None = None,
                 max_memory: float | None = None,
                 max_processes: int | None = None, use_torch: bool = False,
                 log_level: int | None = None) -> None:
        self.log = logging.getLogger(__name__)
        if log_level is not None:
            self.log.setLevel(log_level)
        self.use_torch = bool(use_torch)
        if self.use_torch:
            require_torch()
            warnings.warn("amp.gdml has no PyTorch kernels; predicting with "
                          "NumPy", RuntimeWarning)
        model = _as_model(model)
        n_cpus = os.cpu_count() or 1
        self.max_processes = (min(int(max_processes), n_cpus)
                              if max_processes is not None else n_cpus)
        self.max_memory = max_memory  # GB or None
        self.n_atoms = int(np.asarray(model["z"]).shape[0])
        self.desc = Desc(self.n_atoms)
        lattice = model.get("lattice")
        self.lat_and_inv = lattice_and_inverse(lattice)
        self.R_desc_train = np.asarray(model["R_desc"], dtype=float).T
        self.n_train = self.R_desc_train.shape[0]
        self.sig = float(scalar(model["sig"]))
        self.std = float(scalar(model["std"])) if "std" in model else 1.0
        self.c = float(scalar(model["c"]))
        self.tril_perms_lin = np.asarray(model["tril_perms_lin"], dtype=int)
        self.perms = desc_perms_from_lin(self.tril_perms_lin, self.desc.dim)
        self.n_perms = self.perms.shape[0]
        self.R_desc: Any = None   # cache for training-set predictions
        self.R_d_desc: Any = None
        # index into globs once the workers ask
        self._glob_id: int | None = None
        self._Xp = self._permute(self.R_desc_train)
        self._xx = np.einsum("kd,kd->k", self._Xp, self._Xp)
        self._aE = None
        alphas_E = model.get("alphas_E")
        self._set_weights(np.asarray(model["R_d_desc_alpha"], dtype=float),
                          None if alphas_E is None else np.asarray(alphas_E))
        self.bulk_mp = False
        self.num_workers = 0
        self._pool = None
        self._set_num_workers(num_workers if num_workers is not None
                              else self.max_processes - 1)
        self._set_chunk_size(batch_size)

    # -- internal helpers -------------------------------------------------
    def _permute(self, rows):
        """(M, D) -> (M * P, D), point major, permutation minor."""
        return rows[:, self.perms].reshape(-1, rows.shape[1])

    def _set_weights(self, R_d_desc_alpha, alphas_E=None):
        self._Wp = self._permute(R_d_desc_alpha)
        self._xw = np.einsum("kd,kd->k", self._Xp, self._Wp)
        self._aE = (None if alphas_E is None
                    else np.repeat(np.ravel(alphas_E), self.n_perms))
        if self._glob_id is not None:
            update_predictor(self, self._glob_id)

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)
        glob_id = getattr(self, "_glob_id", None)
        if glob_id is not None and glob_id < len(globs):
            globs[glob_id] = None

    # -- sgdml API: the state of the module-level worker -------------------
    @property
    def glob_id(self) -> int:
        """Index of this predictor's state in :data:`globs`.

        sgdml's worker :func:`_predict_wkr` reads a predictor's arrays from
        ``globs[glob_id]``. The state is registered the first time this is
        asked for (this package's own predictions never need it), kept up
        to date by :meth:`set_alphas`, and cleared when the predictor is
        gone.
        """
        if self._glob_id is None:
            self._glob_id = register_predictor(self)
        return self._glob_id

    # -- sgdml API: caches for iterative training --------------------------
    def set_R_desc(self, R_desc: np.ndarray) -> None:
        """Store descriptors of geometries to predict with ``predict()``.

        Parameters
        ----------
        R_desc : numpy.ndarray
            ``(M, D)`` descriptors (usually the training set's).
        """
        self.R_desc = None if R_desc is None else np.asarray(R_desc)

    def set_R_d_desc(self, R_d_desc: np.ndarray) -> None:
        """Store compact descriptor Jacobians, needed by :meth:`set_alphas`.

        Parameters
        ----------
        R_d_desc : numpy.ndarray
            ``(M, D, 3)`` compact Jacobians of the training geometries.
        """
        self.R_d_desc = None if R_d_desc is None else np.asarray(R_d_desc)

    def set_alphas(self, alphas_F: np.ndarray,
                   alphas_E: np.ndarray | None = None) -> None:
        """Replace the model coefficients (iterative training).

        Parameters
        ----------
        alphas_F : numpy.ndarray
            ``3N M`` force coefficients.
        alphas_E : numpy.ndarray, optional
            ``M`` energy-constraint coefficients.

        Raises
        ------
        ValueError
            If :meth:`set_R_d_desc` has not been called.
        """
        if self.R_d_desc is None:
            raise ValueError("call set_R_d_desc(R_d_desc) with the training "
                             "Jacobians before set_alphas")
        alphas_F = np.asarray(alphas_F, dtype=float).reshape(
            self.n_train, -1)
        w = self.desc.d_desc_dot_vec(self.R_d_desc, alphas_F)
        self._set_weights(w, alphas_E)

    # -- parallel configuration ------------------------------------------
    def _set_num_workers(self, num_workers=None, force_reset=False):
        """Set the number of worker threads besides the main thread.

        Parameters
        ----------
        num_workers : int, optional
            Workers; ``None`` means ``max_processes - 1``.
        force_reset : bool, optional
            Recreate the pool even if the number is unchanged.
        """
        if num_workers is None:
            num_workers = self.max_processes - 1
        num_workers = max(0, int(num_workers))
        if force_reset or num_workers != self.num_workers or (
                num_workers > 0 and self._pool is None):
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if num_workers > 0:
                self._pool = ThreadPoolExecutor(max_workers=num_workers + 1)
        self.num_workers = num_workers

    def _set_chunk_size(self, chunk_size=None):
        """Number of training points evaluated in one vector operation.

        Parameters
        ----------
        chunk_size : int, optional
            ``None`` means all training points.
        """
        if chunk_size is None:
            chunk_size = self.n_train
        chunk_size = int(chunk_size)
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1, got {}".format(
                chunk_size))
        self.chunk_size = min(chunk_size, self.n_train)

    def _set_batch_size(self, batch_size=None):
        """Deprecated alias of :meth:`_set_chunk_size`.

        Parameters
        ----------
        batch_size : int, optional
            Chunk size.
        """
        warnings.warn("_set_batch_size is deprecated; use _set_chunk_size",
                      DeprecationWarning, stacklevel=2)
        self._set_chunk_size(batch_size)

    def _set_bulk_mp(self, bulk_mp=False):
        """Toggle bulk mode (workers share out geometries, not training points).

        Parameters
        ----------
        bulk_mp : bool, optional
            Enable bulk mode.
        """
        self.bulk_mp = bool(bulk_mp)

    def set_opt_num_workers_and_batch_size_fast(self, n_bulk: int = 1,
                                                n_reps: int = 1) -> Any:
        """Deprecated alias of :meth:`prepare_parallel`.

        Parameters
        ----------
        n_bulk : int, optional
            Geometries per ``predict`` call to optimise for.
        n_reps : int, optional
            Repetitions per configuration.

        Returns
        -------
        float
            Geometries per second of the chosen configuration.
        """
        warnings.warn("set_opt_num_workers_and_batch_size_fast is "
                      "deprecated; use prepare_parallel", DeprecationWarning,
                      stacklevel=2)
        return self.prepare_parallel(n_bulk, n_reps)

    _bmark_cache: dict[Any, Any] = {}

    def prepare_parallel(self, n_bulk: int = 1, n_reps: int = 1,
                         return_is_from_cache: bool = False) -> Any:
        """Benchmark worker count, chunk size and bulk mode; keep the best.

        The choice is cached per (atoms, training points, permutations,
        n_bulk, max_processes) for the lifetime of the process.

        Parameters
        ----------
        n_bulk : int, optional
            Geometries that will be passed to each ``predict`` call.
        n_reps : int, optional
            Timed repetitions per configuration.
        return_is_from_cache : bool, optional
            Also return whether the result came from the cache.

        Returns
        -------
        float or tuple
            Geometries per second (and the cache flag).
        """
        if self.use_torch:
            return (None, False) if return_is_from_cache else None
        key = (self.n_atoms, self.n_train, self.n_perms, int(n_bulk),
               self.max_processes)
        cached = self._bmark_cache.get(key)
        if cached is not None:
            (workers, chunk, bulk), gps = cached
            self._set_num_workers(workers)
            self._set_chunk_size(chunk)
            self._set_bulk_mp(bulk)
            return (gps, True) if return_is_from_cache else gps
        rng = np.random.default_rng(0)
        base = self.R_desc_train[0] if self.n_train else None
        del base
        R_dummy = rng.normal(scale=2.0, size=(int(n_bulk), self.n_atoms * 3))
        chunks = sorted({self.n_train, max(1, self.n_train // 2),
                         max(1, self.n_train // 4)}, reverse=True)
        workers_rng = list(range(0, self.max_processes))
        bulk_rng = [False, True] if n_bulk > 1 else [False]
        best: Any = None
        for workers in workers_rng:
            for bulk in (bulk_rng if workers > 0 else [False]):
                for chunk in chunks:
                    self._set_num_workers(workers)
                    self._set_chunk_size(chunk)
                    self._set_bulk_mp(bulk)
                    self.predict(R_dummy)  # warm-up
                    t0 = time.perf_counter()
                    for _ in range(max(1, int(n_reps))):
                        self.predict(R_dummy)
                    dt = time.perf_counter() - t0
                    gps = n_bulk * max(1, int(n_reps)) / max(dt, 1e-12)
                    if best is None or gps > best[1]:
                        best = ((workers, chunk, bulk), gps)
        self._bmark_cache[key] = best
        (workers, chunk, bulk), gps = best
        self._set_num_workers(workers)
        self._set_chunk_size(chunk)
        self._set_bulk_mp(bulk)
        return (gps, False) if return_is_from_cache else gps

    def get_GPU_batch(self) -> int:
        """Batch size of the GPU implementation.

        Raises
        ------
        ImportError or RuntimeError
            Always, without torch and a GPU; with them, NotImplementedError
            (this package has no GPU kernels).
        """
        require_torch()
        raise NotImplementedError("amp.gdml has no GPU implementation")

    # -- prediction --------------------------------------------------------
    def _query_batch(self):
        """Queries per batch so temporaries stay within the memory budget."""
        budget = (self.max_memory * 2 ** 30 / 4 if self.max_memory
                  else 256 * 2 ** 20)
        per_query = _BYTES_PER_PAIR * self.chunk_size * self.n_perms
        return int(max(1, budget // max(per_query, 1)))

    def _raw(self, X, start, stop, return_E=True):
        """E and descriptor-space force sums over training points [start, stop)."""
        P = self.n_perms
        k0, k1 = start * P, stop * P
        E_tot = np.zeros(X.shape[0]) if return_E else None
        Fd_tot = np.zeros_like(X)
        for c0 in range(k0, k1, self.chunk_size * P):
            c1 = min(k1, c0 + self.chunk_size * P)
            E, Fd = descriptor_matvec(
                X, self._Xp[c0:c1], self._Wp[c0:c1], self.sig,
                xx=self._xx[c0:c1], xw=self._xw[c0:c1],
                aE=None if self._aE is None else self._aE[c0:c1],
                return_E=return_E)
            if return_E:
                E_tot += E
            Fd_tot += Fd
        return E_tot, Fd_tot

    def _predict_desc(self, X, return_E=True):
        """Raw (E, Fd) for descriptors X, batched and possibly threaded."""
        n = X.shape[0]
        qb = self._query_batch()
        use_pool = self.num_workers > 0 and self._pool is not None
        if use_pool and self.bulk_mp and n > 1:
            n_parts = min(n, self.num_workers + 1)
            edges = np.linspace(0, n, n_parts + 1).astype(int)
            parts = [(edges[i], edges[i + 1]) for i in range(n_parts)]
            results = list(self._pool.map(
                lambda se: self._predict_desc_serial(X[se[0]:se[1]], qb,
                                                     return_E), parts))
            E = np.concatenate([r[0] for r in results]) if return_E else None
            Fd = np.concatenate([r[1] for r in results])
            return E, Fd
        if use_pool and self.n_train > 1:
            n_parts = min(self.n_train, self.num_workers + 1)
            edges = np.linspace(0, self.n_train, n_parts + 1).astype(int)
            E = np.zeros(n) if return_E else None
            Fd = np.zeros_like(X)
            for q0 in range(0, n, qb):
                Xq = X[q0:q0 + qb]
                results = list(self._pool.map(
                    lambda i: self._raw(Xq, edges[i], edges[i + 1], return_E),
                    range(n_parts)))
                for e, f in results:  # fixed order: deterministic
                    if return_E:
                        E[q0:q0 + qb] += e
                    Fd[q0:q0 + qb] += f
            return E, Fd
        return self._predict_desc_serial(X, qb, return_E)

    def _predict_desc_serial(self, X, qb, return_E):
        n = X.shape[0]
        E = np.empty(n) if return_E else None
        Fd = np.empty_like(X)
        for q0 in range(0, n, qb):
            e, f = self._raw(X[q0:q0 + qb], 0, self.n_train, return_E)
            if return_E:
                E[q0:q0 + qb] = e
            Fd[q0:q0 + qb] = f
        return E, Fd

    def predict(self, R: Any = None, return_E: bool = True,
                return_virial: bool = False, lattice: Any = None,
                return_descriptor: bool = False) -> Any:
        """Predict energies and forces (and, for periodic models, the virial).

        Parameters
        ----------
        R : numpy.ndarray, optional
            ``(M, 3N)``, ``(M, N, 3)`` or ``(3N,)`` Cartesian coordinates in
            the model's length unit, atoms in the model's order. When
            omitted, the geometries whose descriptors were stored with
            :meth:`set_R_desc` and :meth:`set_R_d_desc` are predicted.
        return_E : bool, optional
            Also return energies.
        return_virial : bool, optional
            Also return the virial (periodic models only; an addition to
            sgdml's API).
        lattice : array_like, optional
            ``(3, 3)`` lattice vectors as columns, in the model's length
            unit, used instead of the model's lattice for this call
            (periodic models only; e.g. a strained cell).
        return_descriptor : bool, optional
            Also return the descriptors of the geometries, ``(M, D)``
            (appended last; an addition to sgdml's API).

        Returns
        -------
        E : numpy.ndarray
            ``(M,)`` energies (only if `return_E`).
        F : numpy.ndarray
            ``(M, 3N)`` forces.
        W : numpy.ndarray
            ``(M, 3, 3)`` virial ``W = -dE/d(strain)`` in the model's
            energy unit (only if `return_virial`): under a homogeneous
            strain e of positions and lattice, ``dE = -sum(W * e)``. The
            stress is ``-W / volume``.
            As in sgdml, the result is the tuple ``(E, F)``, or ``(F,)``
            when `return_E` is False; the virial is appended last.

        Raises
        ------
        ValueError
            If R has a shape that fits no layout of the model's atoms,
            contains NaN, or is omitted without cached descriptors; if a
            virial or lattice is asked of a model trained without lattice.
        """
        lat_and_inv = self.lat_and_inv
        if (return_virial or lattice is not None) and lat_and_inv is None:
            raise ValueError(
                "the virial and a per-call lattice need a periodic model "
                "(one trained on a dataset with a 'lattice'); this model "
                "has none")
        if lattice is not None:
            lat_and_inv = lattice_and_inverse(lattice)
        if R is None:
            if self.R_desc is None or self.R_d_desc is None:
                raise ValueError(
                    "predict() without R needs the descriptors and Jacobians "
                    "set with set_R_desc() and set_R_d_desc()")
            X, J = self.R_desc, self.R_d_desc
        else:
            R = geometries_as_rows(R, self.n_atoms)
            X, J = self.desc.from_R(R, lat_and_inv)
        E, Fd = self._predict_desc(X, return_E)
        F = self.desc.vec_dot_d_desc(J, Fd)
        F *= self.std
        out = (F,)
        if return_E:
            out = (E * self.std + self.c, F)
        if return_virial:
            out += (self._virial(X, J, Fd),)
        if return_descriptor:
            out += (X,)
        return out

    def _virial(self, X, J, Fd):
        """``W = -dE/d(strain)`` from the pairwise terms.

        E depends on R only through the pair differences d_k (minimum
        image), which a strain e maps to ``(1 + e) d_k``, so
        ``dE/de = sum_k dE/dd_k (x) d_k``. With ``x_k = 1/|d_k|``, the compact
        Jacobian row ``J_k = d_k x_k**3 = -dx_k/dd_k`` and
        ``dE/dx_k = -std Fd_k``, this is
        ``std sum_k Fd_k J_k (x) J_k / x_k**3``.
        """
        weight = (self.std * Fd) / X ** 3                     # (M, D)
        return -np.einsum("mk,mki,mkj->mij", weight, J, J)
