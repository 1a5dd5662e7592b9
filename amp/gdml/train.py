"""Training of (s)GDML force fields: the sgdml ``GDMLTrain`` API.

A *task* (:meth:`GDMLTrain.create_task`) records the training and
validation samples, the hyperparameters and the permutational symmetries; a
*model* (:meth:`GDMLTrain.train`) adds the descriptors, the coefficients and
the integration constant. Both are plain dicts with the keys, shapes and
dtypes of sgdml 1.0.x files (see :mod:`amp.gdml.io`).

Training solves ``(K + lam I) a = y / std`` with K the Hessian of the
Matérn 5/2 kernel (:mod:`amp.gdml.kernel`) and y the force labels; the
stored coefficients are ``alphas_F = -a`` (sgdml's sign). The system is
solved in each training geometry's ``3N - 6`` internal directions: the
descriptor is invariant to rigid motions, so the other six directions are an
exact null space of K whose coefficients never reach a prediction.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Callable

import numpy as np

from . import io as gdml_io
from .io import energy_mode, scalar
from .desc import (Desc, desc_perms_from_lin, lattice_and_inverse,
                   tril_perms_lin as make_tril_perms_lin)
from .kernel import internal_basis, sgdml_kernel_matrix
from .perm import is_group
from .sampling import draw_strat_sample
from .task import (check_perms, check_sig_lam, create_task,
                   create_task_from_model)
from .predict import GDMLPredict, require_torch
from .solvers import (TINY_SCALE, KernelOperator, analytic_bytes,
                      analytic_solve, cg_solve, nystroem_preconditioner)
from .workers import _assemble_kernel_mat_wkr, glob, share_array

__all__ = ["GDMLTrain", "_assemble_kernel_mat_wkr", "glob", "share_array"]


def _total_memory_gb():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0


class GDMLTrain:
    """Train sGDML and GDML force fields.

    Parameters
    ----------
    max_memory : float, optional
        Memory limit [GB]; the dense solver is used when its matrix fits,
        otherwise the iterative one. Default: the machine's memory.
    max_processes : int, optional
        Accepted for compatibility; the NumPy code is vectorised and uses
        BLAS threads.
    use_torch : bool, optional
        PyTorch kernels; raises :class:`ImportError` or
        :class:`RuntimeError` when torch or a GPU is absent.
    solver : {None, 'analytic', 'cg'}, optional
        Force a solver (an addition to sgdml's API); by default the choice
        follows `max_memory`.
    label_checks : {'raise', 'warn'}, optional
        What a label problem found while fitting the integration constant
        does (see :meth:`_recov_int_const`): raise ValueError (default) or,
        as sgdml does, warn and keep the model.
    """

    def __init__(self, max_memory: float | None = None,
                 max_processes: int | None = None, use_torch: bool = False,
                 solver: str | None = None,
                 label_checks: str = "raise") -> None:
        if solver not in (None, "analytic", "cg"):
            raise ValueError("solver must be None, 'analytic' or 'cg'")
        if label_checks not in ("raise", "warn"):
            raise ValueError("label_checks must be 'raise' or 'warn'")
        self._solver = solver
        self._label_checks = label_checks
        self.log = logging.getLogger(__name__)
        if use_torch:
            require_torch()
            warnings.warn("amp.gdml has no PyTorch kernels; training with "
                          "NumPy", RuntimeWarning)
        total = _total_memory_gb()
        self._max_memory = (min(float(max_memory), total)
                            if max_memory is not None else total)
        if self._max_memory <= 0:
            raise ValueError("max_memory must be > 0 GB")
        cpus = os.cpu_count() or 1
        self._max_processes = (min(int(max_processes), cpus)
                               if max_processes is not None else cpus)
        self._use_torch = bool(use_torch)

    # -- sampling and tasks --------------------------------------------------
    def draw_strat_sample(self, T: np.ndarray, n: int,
                          excl_idxs: Any = None) -> np.ndarray:
        """Stratified sample of n indices preserving the distribution of T.

        See :func:`amp.gdml.sampling.draw_strat_sample`, which this calls
        and which documents the binning (Freedman–Diaconis) and errors.
        """
        return draw_strat_sample(T, n, excl_idxs=excl_idxs)

    def create_task(self, train_dataset: dict[str, Any], n_train: int,
                    valid_dataset: dict[str, Any], n_valid: int, sig: float,
                    lam: float = 1e-10, perms: Any = None,
                    use_sym: bool = True, use_E: bool = True,
                    use_E_cstr: bool = False,
                    callback: Callable[..., Any] | None = None
                    ) -> dict[str, Any]:
        """Create a training task; see :func:`amp.gdml.task.create_task`.

        Returns
        -------
        dict
            The task.
        """
        return create_task(train_dataset, n_train, valid_dataset, n_valid,
                           sig, lam=lam, perms=perms, use_sym=use_sym,
                           use_E=use_E, use_E_cstr=use_E_cstr,
                           callback=callback)

    @staticmethod
    def _check_perms(perms, z):
        return check_perms(perms, z)

    def create_task_from_model(self, model: dict[str, Any],
                               dataset: dict[str, Any]) -> dict[str, Any]:
        """Task that resumes training of a model; see
        :func:`amp.gdml.task.create_task_from_model`.

        Returns
        -------
        dict
            The task.
        """
        return create_task_from_model(model, dataset)

    # -- models --------------------------------------------------------------
    def create_model(self, task: dict[str, Any], solver: str, R_desc: Any,
                     R_d_desc: Any, tril_perms_lin: Any, std: float,
                     alphas_F: np.ndarray, alphas_E: np.ndarray | None = None
                     ) -> dict[str, Any]:
        """Assemble a model dict from a task and trained coefficients.

        Parameters
        ----------
        task : dict
            The task.
        solver : str
            ``'analytic'`` or ``'cg'``.
        R_desc : numpy.ndarray
            ``(M, D)`` training descriptors.
        R_d_desc : numpy.ndarray
            ``(M, D, 3)`` compact training Jacobians.
        tril_perms_lin : numpy.ndarray
            Flattened descriptor permutations.
        std : float
            Label scale.
        alphas_F : numpy.ndarray
            ``3N M`` force coefficients.
        alphas_E : numpy.ndarray, optional
            ``M`` energy-constraint coefficients.

        Returns
        -------
        dict
            The model with ``c = 0``.
        """
        n_train, dim_d = R_d_desc.shape[:2]
        n_atoms = len(np.asarray(task["z"]))
        desc = Desc(n_atoms)
        alphas_F = np.asarray(alphas_F, dtype=float).ravel()
        R_d_desc_alpha = desc.d_desc_dot_vec(
            R_d_desc, alphas_F.reshape(n_train, -1))
        mode = energy_mode(task)
        model = {
            "type": "m",
            "code_version": gdml_io.SGDML_FORMAT_VERSION,
            "dataset_name": task["dataset_name"],
            "dataset_theory": task["dataset_theory"],
            "solver_name": solver,
            "z": task["z"],
            "idxs_train": task["idxs_train"],
            "md5_train": task["md5_train"],
            "idxs_valid": task["idxs_valid"],
            "md5_valid": task["md5_valid"],
            "n_test": 0,
            "md5_test": None,
            "f_err": {"mae": np.nan, "rmse": np.nan},
            "R_desc": R_desc.T,
            "R_d_desc_alpha": R_d_desc_alpha,
            "c": 0.0,
            "std": std,
            "sig": task["sig"],
            "lam": task["lam"],
            "alphas_F": alphas_F,
            "perms": task["perms"],
            "tril_perms_lin": tril_perms_lin,
            "use_E": mode != "none",
        }
        if model["use_E"]:
            model["e_err"] = {"mae": np.nan, "rmse": np.nan}
            if mode == "constraints":
                model["alphas_E"] = np.asarray(alphas_E, dtype=float)
        for key in ("lattice", "r_unit", "e_unit"):
            if key in task:
                model[key] = task[key]
        return model

    def _validate_task(self, task):
        for key in ("R_train", "F_train", "z", "sig", "lam", "perms",
                    "use_E", "use_E_cstr"):
            if key not in task:
                raise ValueError("task is missing the key '{}'".format(key))
        R = np.asarray(task["R_train"])
        F = np.asarray(task["F_train"])
        N = len(np.asarray(task["z"]))
        if R.ndim != 3 or R.shape[1:] != (N, 3) or F.shape != R.shape:
            raise ValueError("task: R_train {} and F_train {} must both have "
                             "shape (M, {}, 3)".format(R.shape, F.shape, N))
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(F))):
            raise ValueError("task: R_train or F_train contains NaN")
        check_sig_lam(scalar(task["sig"]), scalar(task["lam"]))
        self._check_perms(task["perms"], task["z"])
        if energy_mode(task) != "none":
            if "E_train" not in task:
                raise ValueError("task uses energies but has no E_train")
            E = np.asarray(task["E_train"])
            if E.size != R.shape[0] or not np.all(np.isfinite(E)):
                raise ValueError("task: E_train must hold {} finite values"
                                 .format(R.shape[0]))

    def train(self, task: dict[str, Any],
              save_progr_callback: Callable[[dict[str, Any]], Any]
              | None = None,
              callback: Callable[..., Any] | None = None) -> dict[str, Any]:
        """Train a model for a task.

        The dense Cholesky solver is used when its ``n x n`` matrix
        (``n = (3N - 6) M``, plus M with energy constraints) fits into
        `max_memory`; otherwise preconditioned conjugate gradients on the
        same system, started from ``task['alphas0_F']`` when present.

        Parameters
        ----------
        task : dict
            From :meth:`create_task` or :meth:`create_task_from_model`.
        save_progr_callback : callable, optional
            Called with the unconverged model every 100 CG iterations.
        callback : callable, optional
            ``callback(current, total, done_str)`` progress function for the
            descriptors, the kernel assembly and the solver.

        Returns
        -------
        dict
            The model.

        Raises
        ------
        ValueError
            For invalid tasks or lattices, and from :meth:`_recov_int_const`.
        """
        task = dict(task)
        self._validate_task(task)
        R_train = np.asarray(task["R_train"], dtype=float)
        M, N = R_train.shape[:2]
        desc = Desc(N)
        perms = np.asarray(task["perms"], dtype=np.int64)
        tpl = make_tril_perms_lin(perms)
        T = desc_perms_from_lin(tpl, desc.dim)
        lat_and_inv = (lattice_and_inverse(task["lattice"])
                       if "lattice" in task else None)
        if callback is not None:
            callback(0, M, "Generating descriptors and their Jacobians")
        R_desc, R_d_desc = desc.from_R(R_train.reshape(M, -1), lat_and_inv)
        if callback is not None:
            callback(M, M, "Generating descriptors and their Jacobians")
        sig = float(scalar(task["sig"]))
        lam = float(scalar(task["lam"]))
        use_E_cstr = energy_mode(task) == "constraints"

        y_F = np.asarray(task["F_train"], dtype=float).reshape(M, -1)
        E_mean = None
        y = y_F.ravel()
        if use_E_cstr:
            E_train = np.asarray(task["E_train"], dtype=float).ravel()
            E_mean = float(np.mean(E_train))
            y = np.concatenate([y, -E_train + E_mean])
        std = float(np.std(y))
        if std == 0:
            std = 1.0

        J_full = desc.d_desc_from_comp(R_d_desc)             # (M, D, 3N)
        Q = internal_basis(J_full)                           # (M, 3N, r)
        J_red = np.matmul(J_full, Q)                         # (M, D, r)
        del J_full
        r = Q.shape[2]
        b = np.einsum("mir,mi->mr", Q, y_F).ravel() / std
        if use_E_cstr:
            b = np.concatenate([b, y[M * 3 * N:] / std])
        n = len(b)
        symmetric = is_group(perms)
        overhead = 8 * (Q.size + J_red.size + 4 * M * desc.dim * len(T))
        use_analytic = (analytic_bytes(n) + overhead
                        < self._max_memory * 2 ** 30)
        if self._solver is not None:
            use_analytic = self._solver == "analytic"
        solver_keys = {}
        if use_analytic:
            a = analytic_solve(R_desc, J_red, T, sig, lam, b,
                               use_E_cstr=use_E_cstr, symmetric=symmetric,
                               callback=callback)
            solver = "analytic"
        else:
            a, solver_keys = self._solve_cg(
                task, R_desc, R_d_desc, J_red, Q, T, tpl, sig, lam, b, std,
                use_E_cstr, save_progr_callback, callback)
            solver = "cg"
        alphas_F = -np.einsum("mir,mr->mi", Q, a[:M * r].reshape(M, r))
        alphas_E = -a[M * r:] if use_E_cstr else None
        model = self.create_model(task, solver, R_desc, R_d_desc, tpl, std,
                                  alphas_F.ravel(), alphas_E=alphas_E)
        model.update(solver_keys)
        if model["use_E"]:
            if E_mean is not None:
                model["c"] = E_mean
            else:
                converged = solver_keys.get("solver_converged", True)
                model["c"] = self._recov_int_const(
                    model, task, R_desc=R_desc, R_d_desc=R_d_desc,
                    diagnose=converged)
        model.pop("solver_converged", None)
        return model

    def _solve_cg(self, task, R_desc, R_d_desc, J_red, Q, T, tpl, sig, lam,
                  b, std, use_E_cstr, save_progr_callback, callback):
        M, D, r = J_red.shape
        n = len(b)
        budget = self._max_memory * 2 ** 30 * 0.5
        n_ind = int(max(1, min(M, budget // (8.0 * n * r * 2))))
        if "inducing_pts_idxs" in task and len(np.ravel(
                task["inducing_pts_idxs"])) == n_ind:
            idxs = np.asarray(task["inducing_pts_idxs"], dtype=int)
        else:
            idxs = np.unique(np.linspace(0, M - 1, n_ind).astype(int))
        if callback is not None:
            callback(0, 1, "Building preconditioner ({} inducing points)"
                     .format(len(idxs)))
        precon = nystroem_preconditioner(R_desc, J_red, T, sig, lam, idxs,
                                         use_E_cstr=use_E_cstr)
        op = KernelOperator(R_desc, J_red, T, sig, lam, use_E_cstr=use_E_cstr)
        x0 = None
        if "alphas0_F" in task:
            a0 = -np.asarray(task["alphas0_F"], dtype=float).reshape(M, -1)
            x0 = np.einsum("mir,mi->mr", Q, a0).ravel()
            if use_E_cstr:
                x0 = np.concatenate(
                    [x0, -np.asarray(task.get("alphas0_E", np.zeros(M)))])
        iters0 = int(scalar(task.get("solver_iters", 0)))
        tol = float(scalar(task.get("solver_tol", 1e-4)))
        maxiter = task.get("solver_maxiter")

        def iter_cb(x, it, resid):
            if save_progr_callback is not None and it % 100 == 0:
                aF = -np.einsum("mir,mr->mi", Q, x[:M * r].reshape(M, r))
                aE = -x[M * r:] if use_E_cstr else None
                unconv = self.create_model(task, "cg", R_desc, R_d_desc, tpl,
                                           std, aF.ravel(), alphas_E=aE)
                unconv.update({"solver_tol": tol, "solver_iters": iters0 + it,
                               "solver_resid": resid,
                               "inducing_pts_idxs": idxs})
                save_progr_callback(unconv)

        x, it, resid, conv = cg_solve(
            op, b, precon=precon, x0=x0, tol=tol,
            maxiter=None if maxiter is None else int(scalar(maxiter)),
            callback=callback, iter_callback=iter_cb)
        if not conv:
            warnings.warn(
                "the iterative solver did not converge after {} iterations "
                "(relative residual {:.2e}); the training geometries may be "
                "highly correlated: try a larger sig, or resume with "
                "create_task_from_model".format(
                    iters0 + it, resid / max(np.linalg.norm(b), TINY_SCALE)),
                RuntimeWarning)
        keys = {"solver_converged": conv,
                "solver_tol": tol, "solver_iters": iters0 + it,
                "solver_resid": resid, "norm_y_train": np.linalg.norm(b),
                "inducing_pts_idxs": idxs}
        return x, keys

    def _recov_int_const(self, model, task, R_desc=None, R_d_desc=None,
                         diagnose=True):
        """Integration constant by least squares, with label diagnostics.

        Predicts the training energies with ``c = 0`` and returns
        ``mean(E_train - E_pred)``. The fit ``E_train ~ s E_pred + b``
        diagnoses three label problems.

        Parameters
        ----------
        model : dict
            The model (its ``c`` is ignored).
        task : dict
            Its task, with ``E_train``.
        R_desc : numpy.ndarray, optional
            ``(M, D)`` training descriptors (computed if omitted).
        R_d_desc : numpy.ndarray, optional
            ``(M, D, 3)`` compact training Jacobians.
        diagnose : bool, optional
            Raise on the label problems below (an unconverged model, e.g.
            a checkpoint of the iterative solver, is not diagnosed).

        Returns
        -------
        float
            The integration constant.

        Raises
        ------
        ValueError
            If E_pred and E_train are strongly anti-correlated (correlation
            <= -0.95, negative s: forces with switched sign, i.e. gradients
            instead of forces), if they correlate weakly (absolute
            correlation below 0.95: inconsistent energy labels), or if s
            differs from 1 by more than 0.1 (energies and forces in
            different units or scales).
        """
        model = dict(model)
        model["c"] = 0.0
        predictor = GDMLPredict(model, num_workers=0,
                                max_memory=self._max_memory,
                                log_level=logging.CRITICAL)
        if R_desc is None or R_d_desc is None:
            E_pred, _ = predictor.predict(
                np.asarray(task["R_train"]).reshape(len(task["R_train"]), -1))
        else:
            predictor.set_R_desc(R_desc)
            predictor.set_R_d_desc(R_d_desc)
            E_pred, _ = predictor.predict()
        E_ref = np.asarray(task["E_train"], dtype=float).ravel()
        if diagnose and E_ref.size > 2 and np.ptp(E_ref) > 0 \
                and np.ptp(E_pred) > 0:
            design = np.column_stack([E_pred, np.ones_like(E_pred)])
            slope = np.linalg.lstsq(design, E_ref, rcond=None)[0][0]
            corr = np.corrcoef(E_ref, E_pred)[0, 1]
            if slope < 0 and corr <= -0.95:
                problem = (
                    "the energies integrated from the force labels fall where "
                    "the energy labels rise (slope {:.2f}): the dataset "
                    "probably holds gradients instead of forces (switched "
                    "sign); use F = -dE/dR".format(slope))
            elif abs(corr) < 0.95:
                problem = (
                    "inconsistent energy labels: energies integrated from the "
                    "forces correlate only {:.2f} with the energy labels; "
                    "check that geometries, energies and forces belong "
                    "together and come from the same level of theory, or "
                    "train with use_E=False".format(corr))
            elif abs(slope - 1.0) > 0.1:
                problem = (
                    "energy and force labels seem to use different units or "
                    "scales: the integrated forces match the energies only "
                    "after scaling by {:.3f}; forces must be in energy unit "
                    "per length unit of R".format(slope))
            else:
                problem = None
            if problem and self._label_checks == "warn":
                warnings.warn(problem, RuntimeWarning)
            elif problem:
                raise ValueError(problem)
        return float(np.sum(E_ref - E_pred) / E_ref.shape[0])

    def _assemble_kernel_mat(self, R_desc, R_d_desc, tril_perms_lin, sig,
                             desc=None, use_E_cstr=False, col_idxs=np.s_[:],
                             alloc_extra_rows=0, cols_m_limit=None,
                             cols_3n_keep_idxs=None, exploit_sym=None,
                             callback=None):
        """Force-field kernel matrix (sgdml's method name).

        See :func:`amp.gdml.kernel.sgdml_kernel_matrix`, which this calls
        with the same arguments and documents them.
        """
        return sgdml_kernel_matrix(
            R_desc, R_d_desc, tril_perms_lin, sig, desc=desc,
            use_E_cstr=use_E_cstr, col_idxs=col_idxs,
            alloc_extra_rows=alloc_extra_rows, cols_m_limit=cols_m_limit,
            cols_3n_keep_idxs=cols_3n_keep_idxs, exploit_sym=exploit_sym,
            callback=callback)
