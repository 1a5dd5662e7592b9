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

The loop (:func:`_iterate`) searches along the direction, steps
(:meth:`_Walk.step`), applies the stopping rules, then makes the O(n^2)
update (:func:`_update_inverse_hessian`) and the next direction
(:func:`_next_direction`). Array names carry their axes as suffixes:
``_p`` a parameter (``x_p``, ``g_p``, ``s_p``, ``y_p``), ``_pp`` the
inverse Hessian ``H_pp``.
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


#: BFGS's ``rho = 1 / (y . s)`` when ``y . s`` is exactly zero: scipy's
#: value, which keeps the update finite.
_RHO_WITHOUT_CURVATURE = 1000.0

# The direction carried over from the update is used while its rounding
# error bound stays below this fraction of its length; past it (after
# cancellation near a minimum) -H g is computed again with dsymv.
_DRIFT_TOLERANCE = 1e-12

_EPS = np.finfo(float).eps


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
    objective = _Objective(*_bound(fun, jac, args))
    x_p = np.asarray(x0, dtype=float).flatten()
    if maxiter is None:
        maxiter = 200 * len(x_p)
    notify = _callback(callback)
    walk = _Walk(objective, x_p, hess_inv0, return_all)
    status, gnorm = _iterate(walk, objective, notify, gtol, norm, maxiter,
                             xrtol, c1, c2)
    status = _final_status(status, walk, gnorm, maxiter)
    if disp:
        _print_outcome(status, walk, objective)
    return _result(status, walk, objective)


def _bound(fun, jac, args):
    """``fun`` and ``jac`` of ``x`` alone (``args`` bound); refuses a
    missing gradient."""
    if jac is not True and not callable(jac):
        raise ValueError("minimize_bfgs needs the gradient (jac=True or a "
                         "callable); use scipy's BFGS for finite differences")
    if not args:
        return fun, jac
    bound_jac = (lambda x: jac(x, *args)) if callable(jac) else jac
    return (lambda x: fun(x, *args)), bound_jac


class _Walk:
    """The state of the minimisation: the iterate ``x_p``, its loss and
    gradient ``g_p``, the loss before, the inverse Hessian ``H_pp`` and
    the next search direction when the update carried it over."""

    def __init__(self, objective, x_p, hess_inv0, return_all):
        self.x_p = x_p
        self.loss = objective.f(x_p)
        self.g_p = objective.g(x_p)
        # Fortran order: BLAS updates one triangle of it in place.
        if hess_inv0 is None:
            self.H_pp = np.eye(len(x_p), order="F")
        else:
            self.H_pp = np.array(hess_inv0, dtype=float, order="F")
        # scipy's guess of the previous loss: makes the first step ~1 long.
        self.previous_loss = self.loss + np.linalg.norm(self.g_p) / 2
        self.allvecs = [x_p] if return_all else None
        self.k = 0
        self.next_p, self.drift = None, 0.0

    def direction(self):
        """The search direction ``-H g``: carried over from the last
        update, or computed (one ``dsymv``)."""
        if self.next_p is not None:
            return self.next_p
        self.drift = 0.0
        return blas.dsymv(-1.0, self.H_pp, self.g_p)

    def step(self, objective, p_p, found):
        """Move to the point the line search ``found`` along ``p_p``;
        return the step length factor, the step and the change of the
        gradient."""
        alpha, _, _, self.loss, self.previous_loss, g_new_p = found
        s_p = alpha * p_p
        self.x_p = self.x_p + s_p
        if self.allvecs is not None:
            self.allvecs.append(self.x_p)
        if g_new_p is None:
            g_new_p = objective.g(self.x_p)
        y_p = g_new_p - self.g_p
        self.g_p = g_new_p
        self.k += 1
        return alpha, s_p, y_p

    def update(self, s_p, y_p, p_p):
        """The O(n^2) part: ``H`` updated in place, and the next direction
        from vectors when its rounding error allows."""
        rho, scale, u_p = _update_inverse_hessian(self.H_pp, s_p, y_p)
        self.next_p, self.drift = _next_direction(
            u_p, p_p, s_p, self.g_p, rho, scale, self.drift)


def _iterate(walk, objective, notify, gtol, norm, maxiter, xrtol, c1, c2):
    """Search and step until a stopping rule holds; the status (0, or 2
    and 99 for the failures that end the loop) and the gradient norm."""
    gnorm = _vecnorm(walk.g_p, norm)
    while gnorm > gtol and walk.k < maxiter:
        p_p = walk.direction()
        found = _line_search(objective, walk.x_p, p_p, walk.g_p, walk.loss,
                             walk.previous_loss, c1, c2)
        if found is None:
            return 2, gnorm
        alpha, s_p, y_p = walk.step(objective, p_p, found)
        if notify is not None:
            try:
                notify(OptimizeResult(x=walk.x_p, fun=walk.loss))
            except StopIteration:
                return 99, gnorm
        gnorm = _vecnorm(walk.g_p, norm)
        if gnorm <= gtol:
            break
        step_length = alpha * _vecnorm(p_p, 2)
        if step_length <= xrtol * (xrtol + _vecnorm(walk.x_p, 2)):
            break
        if not np.isfinite(walk.loss):
            return 2, gnorm
        walk.update(s_p, y_p, p_p)
    return 0, gnorm


def _update_inverse_hessian(H_pp, s_p, y_p):
    """``H <- H - rho (s u^T + u s^T) + scale s s^T`` with ``u = H y`` and
    ``scale = rho + rho^2 y^T u``, in place on the upper triangle of the
    Fortran-ordered ``H_pp`` (one ``dsymv``, one ``dsyr2``). Returns
    ``rho``, ``scale`` and ``u``."""
    rho_inv = float(np.dot(y_p, s_p))
    rho = _RHO_WITHOUT_CURVATURE if rho_inv == 0.0 else 1.0 / rho_inv
    u_p = blas.dsymv(1.0, H_pp, y_p)
    scale = rho + rho * rho * float(np.dot(y_p, u_p))
    # s v^T + v s^T with v = scale / 2 s - rho u is the whole correction.
    v_p = (0.5 * scale) * s_p - rho * u_p
    blas.dsyr2(1.0, s_p, v_p, a=H_pp, overwrite_a=1)
    return rho, scale, u_p


def _next_direction(u_p, p_p, s_p, g_p, rho, scale, drift):
    """The next direction ``-H_{k+1} g_{k+1}`` without touching ``H``,
    from ``H_k g_{k+1} = H_k (g_k + y) = u - p_k`` and the expansion of the
    update, with a bound on its rounding error (relative to its length)
    carried along from the last direction's. Returns ``(direction,
    drift)``, or ``(None, drift)`` when the bound is too large for it to
    be used."""
    sg, ug = float(np.dot(s_p, g_p)), float(np.dot(u_p, g_p))
    along_s = scale * sg - rho * ug
    q_p = (u_p - p_p) + along_s * s_p - (rho * sg) * u_p
    size = np.linalg.norm(q_p)
    u_norm, p_norm = np.linalg.norm(u_p), np.linalg.norm(p_p)
    drift = (drift * p_norm + 4 * _EPS * (
        u_norm + p_norm + abs(along_s) * np.linalg.norm(s_p)
        + abs(rho * sg) * u_norm))
    if np.isfinite(size) and drift <= _DRIFT_TOLERANCE * size:
        return -q_p, drift / size
    return None, drift


def _final_status(status, walk, gnorm, maxiter):
    """scipy's status once the loop has ended."""
    if status in (2, 99):
        return status
    if walk.k >= maxiter:
        return 1
    if np.isnan(gnorm) or np.isnan(walk.loss) or np.isnan(walk.x_p).any():
        return 3
    return status


def _print_outcome(status, walk, objective):
    """scipy's ``disp=True`` lines."""
    print(MESSAGES[status])
    print("         Current function value: %f" % walk.loss)
    print("         Iterations: %d" % walk.k)
    print("         Function evaluations: %d" % objective.nfev)
    print("         Gradient evaluations: %d" % objective.ngev)


def _result(status, walk, objective):
    """scipy's ``OptimizeResult`` of the walk."""
    # The upper triangle is the matrix; mirror it for the caller.
    H_pp = np.triu(walk.H_pp) + np.triu(walk.H_pp, 1).T
    result = OptimizeResult(fun=walk.loss, jac=walk.g_p, hess_inv=H_pp,
                            nfev=objective.nfev, njev=objective.ngev,
                            status=status, success=status == 0,
                            message=MESSAGES[status], x=walk.x_p, nit=walk.k)
    if walk.allvecs is not None:
        result["allvecs"] = walk.allvecs
    return result
