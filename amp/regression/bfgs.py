"""BFGS with an inverse-Hessian update in O(n^2) per step.

scipy's BFGS (``scipy.optimize.minimize(method='BFGS')``) updates the
inverse Hessian as ``H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T``
with two dense n x n matrix products: O(n^3) per step, about 0.3 s at
1,500 parameters, where one loss evaluation of a typical training set
takes a few ms. Expanding the products gives the same matrix as a
symmetric rank-two correction,

.. math::

    H \\leftarrow H - \\rho (s\\,u^T + u\\,s^T)
    + (\\rho + \\rho^2\\, y^T u)\\, s\\,s^T, \\qquad u = H y,

which is applied in place to one triangle of ``H`` with BLAS level 2
(``dsymv`` for ``u``, one ``dsyr2`` for the correction, written as
``s v^T + v s^T`` with ``v = (rho + rho^2 y^T u) / 2 s - rho u``): O(n^2).
The next search direction ``-H g`` needs no third pass over ``H``: since
``H_k g_{k+1} = H_k (g_k + y) = u - p_k``, the same expansion gives
``H_{k+1} g_{k+1}`` from vectors. Its rounding error is tracked, and the
direction is computed with ``dsymv`` again when that bound reaches
``1e-12`` of its size (after cancellation near a minimum). At 1,479
parameters a step costs about 2 ms of memory traffic, against about 20 ms
for one loss evaluation of the benchmark in ``bench/training_scale.py``.

Everything else is scipy's algorithm: scipy's own Wolfe line searches
(``line_search_wolfe1``, falling back to ``line_search_wolfe2``), the same
first step (``H = I`` and the previous-loss guess that makes the first
step about 1 long), the same stopping rules (``gtol`` on the gradient's
``norm``, ``maxiter``, ``xrtol``, a failed line search, a non-finite
loss) and the same messages. Iterates agree with scipy's to rounding.
"""

import inspect
import warnings

import numpy as np
from scipy.linalg import blas
from scipy.optimize import OptimizeResult

try:  # scipy >= 1.8
    from scipy.optimize._linesearch import (LineSearchWarning,
                                            line_search_wolfe1,
                                            line_search_wolfe2)
except ImportError:  # pragma: no cover - older scipy
    from scipy.optimize.linesearch import (LineSearchWarning,
                                           line_search_wolfe1,
                                           line_search_wolfe2)

__all__ = ["minimize_bfgs", "MESSAGES"]

#: scipy's status messages, by the status code :func:`minimize_bfgs` sets.
MESSAGES = {
    0: "Optimization terminated successfully.",
    1: "Maximum number of iterations has been exceeded.",
    2: "Desired error not necessarily achieved due to precision loss.",
    3: "NaN result encountered.",
    99: "`callback` raised `StopIteration`.",
}


class _Objective:
    """Loss and gradient at the last point asked for, computed once.

    The line searches ask for the loss and then the gradient at the same
    point; with ``jac=True`` one call of ``fun`` gives both.
    """

    def __init__(self, fun, jac):
        self.fun, self.jac = fun, jac
        self.x = self.value = self.gradient = None
        self.nfev = self.ngev = 0

    def _at(self, x, need_gradient):
        if self.x is None or not np.array_equal(x, self.x):
            self.x = np.array(x, dtype=float)
            self.value = self.gradient = None
        if self.jac is True:
            if self.value is None:
                value, gradient = self.fun(self.x)
                self.nfev += 1
                self.ngev += 1
                self.value = float(value)
                self.gradient = np.array(gradient, dtype=float)
            return
        if self.value is None and not need_gradient:
            self.value = float(self.fun(self.x))
            self.nfev += 1
        if need_gradient and self.gradient is None:
            self.gradient = np.array(self.jac(self.x), dtype=float)
            self.ngev += 1

    def f(self, x):
        self._at(x, False)
        if self.value is None:  # a separate jac was called first
            self.value = float(self.fun(self.x))
            self.nfev += 1
        return self.value

    def g(self, x):
        self._at(x, True)
        return self.gradient


def _line_search(objective, xk, pk, gfk, old_fval, old_old_fval, c1, c2):
    """scipy's ``_line_search_wolfe12``: MINPACK's search, then the
    strong-Wolfe search of Nocedal & Wright; None when both fail."""
    found = line_search_wolfe1(objective.f, objective.g, xk, pk, gfk,
                               old_fval, old_old_fval, amin=1e-100,
                               amax=1e100, c1=c1, c2=c2)
    if found[0] is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LineSearchWarning)
            found = line_search_wolfe2(objective.f, objective.g, xk, pk,
                                       gfk, old_fval, old_old_fval, c1=c1,
                                       c2=c2, amax=1e100)
    return None if found[0] is None else found


def _vecnorm(x, order):
    if order == np.inf:
        return float(np.amax(np.abs(x)))
    if order == -np.inf:
        return float(np.amin(np.abs(x)))
    return float(np.sum(np.abs(x) ** order) ** (1.0 / order))


def _callback(callback):
    """``callback(intermediate_result)`` or ``callback(xk)``, as scipy."""
    if callback is None:
        return None
    try:
        names = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        names = set()
    if names == {"intermediate_result"}:
        return lambda result: callback(intermediate_result=result)
    return lambda result: callback(np.copy(result.x))


def minimize_bfgs(fun, x0, args=(), jac=True, callback=None, gtol=1e-5,
                  norm=np.inf, maxiter=None, xrtol=0.0, c1=1e-4, c2=0.9,
                  hess_inv0=None, disp=False, return_all=False,
                  **unknown_options):
    """Minimise ``fun`` by BFGS with an O(n^2) inverse-Hessian update.

    The signature and the result are those of
    ``scipy.optimize.minimize(fun, x0, jac=jac, method='BFGS',
    callback=callback, options={...})``.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args)``: the loss, or ``(loss, gradient)`` when ``jac``
        is True.
    x0 : array_like, shape (n,)
    args : tuple
        Extra arguments of ``fun`` and ``jac``.
    jac : True or callable
        True: ``fun`` returns the gradient too; a callable: ``jac(x,
        *args)``. (Finite differences: use scipy's BFGS.)
    callback : callable, optional
        Called after every iteration with ``intermediate_result`` (an
        ``OptimizeResult`` with ``x`` and ``fun``) when that is its only
        parameter's name, else with a copy of ``x``; raising
        ``StopIteration`` ends the minimisation.
    gtol : float
        Stop successfully when ``norm``-norm of the gradient <= ``gtol``.
    norm : float
        Order of the gradient norm (``inf``: largest absolute component).
    maxiter : int, optional
        Largest number of iterations (default ``200 n``).
    xrtol : float
        Stop successfully when a step is shorter than ``xrtol (xrtol +
        |x|)``.
    c1, c2 : float
        Armijo and curvature parameters of the Wolfe conditions.
    hess_inv0 : ndarray, shape (n, n), optional
        Initial inverse Hessian (symmetric positive definite); identity
        by default.
    disp : bool
        Print the outcome, as scipy.
    return_all : bool
        Also return every iterate as ``allvecs``.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x``, ``fun``, ``jac``, ``hess_inv``, ``nfev``, ``njev``,
        ``nit``, ``status`` (0 success, 1 ``maxiter``, 2 failed line
        search / non-finite loss, 3 NaN, 99 stopped by ``callback``),
        ``success``, ``message``.
    """
    if unknown_options:
        warnings.warn("Unknown solver options: %s"
                      % ", ".join(sorted(unknown_options)), RuntimeWarning,
                      stacklevel=2)
    if jac is not True and not callable(jac):
        raise ValueError("minimize_bfgs needs the gradient (jac=True or a "
                         "callable); use scipy's BFGS for finite differences")
    if args:
        plain_fun, plain_jac = fun, jac
        fun = lambda x: plain_fun(x, *args)  # noqa: E731
        if callable(plain_jac):
            jac = lambda x: plain_jac(x, *args)  # noqa: E731
    xk = np.asarray(x0, dtype=float).flatten()
    n = len(xk)
    if maxiter is None:
        maxiter = 200 * n
    objective = _Objective(fun, jac)
    notify = _callback(callback)

    old_fval = objective.f(xk)
    gfk = objective.g(xk)
    # Fortran order: BLAS updates one triangle of it in place.
    if hess_inv0 is None:
        H = np.eye(n, order="F")
    else:
        H = np.array(hess_inv0, dtype=float, order="F")
    # scipy's guess of the previous loss: makes the first step ~1 long.
    old_old_fval = old_fval + np.linalg.norm(gfk) / 2
    allvecs = [xk] if return_all else None
    k, status = 0, 0
    gnorm = _vecnorm(gfk, norm)
    next_pk, drift = None, 0.0
    eps = np.finfo(float).eps
    while gnorm > gtol and k < maxiter:
        if next_pk is None:
            pk, drift = blas.dsymv(-1.0, H, gfk), 0.0
        else:
            pk = next_pk
        found = _line_search(objective, xk, pk, gfk, old_fval,
                             old_old_fval, c1, c2)
        if found is None:
            status = 2
            break
        alpha_k, _, _, old_fval, old_old_fval, gfkp1 = found
        sk = alpha_k * pk
        xk = xk + sk
        if return_all:
            allvecs.append(xk)
        if gfkp1 is None:
            gfkp1 = objective.g(xk)
        yk = gfkp1 - gfk
        gfk = gfkp1
        k += 1
        if notify is not None:
            try:
                notify(OptimizeResult(x=xk, fun=old_fval))
            except StopIteration:
                status = 99
                break
        gnorm = _vecnorm(gfk, norm)
        if gnorm <= gtol:
            break
        if alpha_k * _vecnorm(pk, 2) <= xrtol * (xrtol + _vecnorm(xk, 2)):
            break
        if not np.isfinite(old_fval):
            status = 2
            break
        rhok_inv = float(np.dot(yk, sk))
        rhok = 1000.0 if rhok_inv == 0.0 else 1.0 / rhok_inv
        u = blas.dsymv(1.0, H, yk)
        scale = rhok + rhok * rhok * float(np.dot(yk, u))
        v = (0.5 * scale) * sk - rhok * u
        blas.dsyr2(1.0, sk, v, a=H, overwrite_a=1)
        # H_{k+1} g_{k+1} from H_k g_{k+1} = u - p_k, with a bound on the
        # rounding error carried along (relative to |p|).
        sg, ug = float(np.dot(sk, gfk)), float(np.dot(u, gfk))
        along_s = scale * sg - rhok * ug
        q = (u - pk) + along_s * sk - (rhok * sg) * u
        size = np.linalg.norm(q)
        u_norm, p_norm = np.linalg.norm(u), np.linalg.norm(pk)
        drift = (drift * p_norm + 4 * eps * (
            u_norm + p_norm + abs(along_s) * np.linalg.norm(sk)
            + abs(rhok * sg) * u_norm))
        if np.isfinite(size) and drift <= 1e-12 * size:
            next_pk, drift = -q, drift / size
        else:
            next_pk = None

    if status not in (2, 99):
        if k >= maxiter:
            status = 1
        elif np.isnan(gnorm) or np.isnan(old_fval) or np.isnan(xk).any():
            status = 3
    message = MESSAGES[status]
    if disp:
        print(message)
        print("         Current function value: %f" % old_fval)
        print("         Iterations: %d" % k)
        print("         Function evaluations: %d" % objective.nfev)
        print("         Gradient evaluations: %d" % objective.ngev)
    # The upper triangle is the matrix; mirror it for the caller.
    H = np.triu(H) + np.triu(H, 1).T
    result = OptimizeResult(fun=old_fval, jac=gfk, hess_inv=H,
                            nfev=objective.nfev, njev=objective.ngev,
                            status=status, success=status == 0,
                            message=message, x=xk, nit=k)
    if return_all:
        result["allvecs"] = allvecs
    return result
