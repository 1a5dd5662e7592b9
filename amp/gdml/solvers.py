"""Linear solvers for (s)GDML training: dense Cholesky and preconditioned CG.

Both solve ``(K + lam I) a = y`` with K the positive semi-definite kernel
matrix of :mod:`amp.gdml.kernel`, written in the coordinates of the
Jacobian bases passed in (the internal ``3N - 6`` directions during
training). The dense solver assembles only the block lower triangle of K
in place and factorises it with LAPACK ``potrf`` without a copy, so its
peak memory is one ``n x n`` matrix. The iterative solver never stores K:
its matrix-vector product is a prediction at the training points (see
:func:`amp.gdml.kernel.descriptor_matvec`), preconditioned with a Nyström
approximation built from a subset of training points.
"""

import time

import numpy as np
import scipy.linalg

from .kernel import assemble, descriptor_matvec

# Stands in for a norm or scale of zero (no data, an all-zero diagonal)
# when dividing by it or scaling by it: the relative residual of a zero
# right-hand side is its residual, and the jitter stays positive.
TINY_SCALE = 1e-300

__all__ = ["analytic_solve", "KernelOperator", "cg_solve",
           "analytic_bytes"]


def analytic_bytes(n):
    """Memory of the dense solve for an ``n x n`` system [bytes].

    Parameters
    ----------
    n : int
        System size.

    Returns
    -------
    int
    """
    return 8 * n * n


def analytic_solve(X, J, T, sig, lam, y, use_E_cstr=False, symmetric=True,
                   callback=None):
    """Solve ``(K + lam I) a = y`` by Cholesky (LU if K is not positive definite).

    Parameters
    ----------
    X : numpy.ndarray
        ``(M, D)`` training descriptors.
    J : numpy.ndarray
        ``(M, D, c)`` Jacobian bases.
    T : numpy.ndarray
        ``(P, D)`` descriptor permutations.
    sig, lam : float
        Length scale and regulariser.
    y : numpy.ndarray
        Right-hand side, length ``M c (+ M)``.
    use_E_cstr : bool, optional
        Energy rows and columns in K.
    symmetric : bool, optional
        The permutations form a group (K symmetric): assemble only the
        lower triangle.
    callback : callable, optional
        ``callback(current, total, done_str)``.

    Returns
    -------
    numpy.ndarray
        The solution a.
    """
    def kcb(done, total):
        if callback is not None:
            callback(done, total, "Assembling kernel matrix")

    K = assemble(X, J, T, sig, use_E_cstr=use_E_cstr,
                 lower_only=symmetric and not use_E_cstr, callback=kcb)
    K[np.diag_indices_from(K)] += lam
    if callback is not None:
        callback(0, 1, "Solving linear system (Cholesky factorization)")
    potrf, potrs = scipy.linalg.get_lapack_funcs(("potrf", "potrs"), (K,))
    # K is C-ordered with its lower triangle filled: K.T is the same
    # (symmetric) matrix in Fortran order with the upper triangle filled.
    factor, info = potrf(K.T, lower=0, clean=0, overwrite_a=1)
    if info == 0:
        a, info = potrs(factor, y, lower=0)
        if info != 0:
            raise RuntimeError("LAPACK potrs failed (info={})".format(info))
    else:
        del K, factor
        K = assemble(X, J, T, sig, use_E_cstr=use_E_cstr, lower_only=False)
        K[np.diag_indices_from(K)] += lam
        if callback is not None:
            callback(0, 1, "Solving linear system (LU factorization)")
        a = scipy.linalg.solve(K, y, overwrite_a=True, check_finite=False)
    if callback is not None:
        callback(1, 1, "Solving linear system")
    return a


class KernelOperator:
    """Matrix-free product with ``K + lam I``.

    Parameters
    ----------
    X : numpy.ndarray
        ``(M, D)`` training descriptors.
    J : numpy.ndarray
        ``(M, D, c)`` Jacobian bases.
    T : numpy.ndarray
        ``(P, D)`` descriptor permutations.
    sig, lam : float
        Length scale and regulariser.
    use_E_cstr : bool, optional
        Energy-constraint rows and columns.
    chunk : int, optional
        Training points per chunk of the product.
    """

    def __init__(self, X, J, T, sig, lam, use_E_cstr=False, chunk=256):
        self.X, self.J, self.T = X, J, T
        self.sig, self.lam = float(sig), float(lam)
        self.use_E_cstr = use_E_cstr
        self.M, self.D, self.c = J.shape
        self.P = T.shape[0]
        self.n = self.M * self.c + (self.M if use_E_cstr else 0)
        self.Xp = X[:, T].reshape(-1, self.D)
        self.xx = np.einsum("kd,kd->k", self.Xp, self.Xp)
        self.chunk = max(1, int(chunk))

    def matvec(self, v):
        """Return ``(K + lam I) v``.

        Parameters
        ----------
        v : numpy.ndarray
            Length n.

        Returns
        -------
        numpy.ndarray
        """
        M, c = self.M, self.c
        vF = v[:M * c].reshape(M, c)
        w = np.einsum("mdk,mk->md", self.J, vF)             # (M, D)
        Wp = w[:, self.T].reshape(-1, self.D)
        xw = np.einsum("kd,kd->k", self.Xp, Wp)
        aE = np.repeat(v[M * c:], self.P) if self.use_E_cstr else None
        out = np.empty(self.n)
        kc = self.chunk * self.P
        E = np.zeros(M) if self.use_E_cstr else None
        Fd = np.zeros((M, self.D))
        for k0 in range(0, M * self.P, kc):
            k1 = min(M * self.P, k0 + kc)
            e, f = descriptor_matvec(
                self.X, self.Xp[k0:k1], Wp[k0:k1], self.sig,
                xx=self.xx[k0:k1], xw=xw[k0:k1],
                aE=None if aE is None else aE[k0:k1],
                return_E=self.use_E_cstr)
            Fd += f
            if self.use_E_cstr:
                E += e
        out[:M * c] = -np.einsum("mdk,md->mk", self.J, Fd).ravel()
        if self.use_E_cstr:
            out[M * c:] = E
        out += self.lam * v
        return out


def nystroem_preconditioner(X, J, T, sig, lam, idxs, use_E_cstr=False):
    """Inverse of the Nyström approximation ``K_nm K_mm^-1 K_mn + lam I``.

    Parameters
    ----------
    X, J, T, sig, lam :
        As for :class:`KernelOperator`.
    idxs : numpy.ndarray
        Inducing training points.
    use_E_cstr : bool, optional
        Energy-constraint rows (padded with the identity scaling).

    Returns
    -------
    callable
        ``v -> P^-1 v``.
    """
    M, D, c = J.shape
    K_nm = assemble(X, J, T, sig, use_E_cstr=use_E_cstr, col_points=idxs)
    m_rows = (np.asarray(idxs)[:, None] * c + np.arange(c)).ravel()
    K_mm = K_nm[m_rows]
    inner = K_nm.T @ K_nm
    inner += lam * K_mm
    inner = 0.5 * (inner + inner.T)
    jitter = 0.0
    scale = max(np.abs(np.diag(inner)).max(), TINY_SCALE)
    for _ in range(12):
        try:
            L = scipy.linalg.cholesky(inner + jitter * np.eye(len(inner)),
                                      lower=True, check_finite=False)
            break
        except np.linalg.LinAlgError:
            jitter = scale * 1e-14 if jitter == 0 else jitter * 10
    else:
        return lambda v: v / lam
    B = scipy.linalg.solve_triangular(L, K_nm.T, lower=True,
                                      check_finite=False)   # (k, n)

    def apply(v):
        return (v - B.T @ (B @ v)) / lam
    return apply


def cg_solve(op, y, precon=None, x0=None, tol=1e-4, maxiter=None,
             callback=None, iter_callback=None):
    """Preconditioned conjugate gradients for ``op.matvec(x) = y``.

    Parameters
    ----------
    op : KernelOperator
        The system.
    y : numpy.ndarray
        Right-hand side.
    precon : callable, optional
        ``v -> P^-1 v``.
    x0 : numpy.ndarray, optional
        Start (resume from earlier coefficients).
    tol : float, optional
        Stop when ``|y - A x| <= tol |y|``.
    maxiter : int, optional
        Iteration limit (default ``10 n``).
    callback : callable, optional
        ``callback(done, 1.0, text)`` progress function: ``done`` is the
        fraction (0..1) of the way from the first residual to the target
        on a log scale; ``text`` gives the relative residual and the
        iteration.
    iter_callback : callable, optional
        ``iter_callback(x, iteration, residual_norm)`` after each step
        (e.g. to save progress).

    Returns
    -------
    x : numpy.ndarray
        Solution estimate.
    n_iter : int
        Iterations performed.
    resid : float
        Final residual norm.
    converged : bool
        Whether the tolerance was reached.
    """
    n = len(y)
    maxiter = 10 * n if maxiter is None else int(maxiter)
    x = np.zeros(n) if x0 is None else np.array(x0, dtype=float)
    r = y - op.matvec(x) if x0 is not None else y.copy()
    y_norm = np.linalg.norm(y)
    target = tol * y_norm
    resid = np.linalg.norm(r)
    if resid <= target:
        return x, 0, resid, True
    z = precon(r) if precon is not None else r
    p = z.copy()
    rz = r @ z
    it = 0
    # Progress is the fraction of the way, on a log scale, from the first
    # residual to the target (the iteration count against maxiter says
    # nothing: CG stops long before); reported at the first iteration,
    # then every second.
    resid0 = resid
    span = np.log(resid0 / target) if target > 0 else np.inf
    t_last = -np.inf
    while it < maxiter:
        Ap = op.matvec(p)
        pAp = p @ Ap
        if pAp <= 0:
            break
        step = rz / pAp
        x += step * p
        r -= step * Ap
        it += 1
        resid = np.linalg.norm(r)
        if iter_callback is not None:
            iter_callback(x, it, resid)
        if callback is not None and time.perf_counter() - t_last > 1.0:
            t_last = time.perf_counter()
            done = np.log(resid0 / max(resid, TINY_SCALE)) / span \
                if np.isfinite(span) and span > 0 else 0.0
            callback(min(max(done, 0.0), 1.0), 1.0,
                     "CG: residual {:.3e}, iteration {}".format(
                         resid / max(y_norm, TINY_SCALE), it))
        if resid <= target:
            return x, it, resid, True
        z = precon(r) if precon is not None else r
        rz_new = r @ z
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, it, resid, resid <= target
