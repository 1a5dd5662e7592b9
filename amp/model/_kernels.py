"""Kernel functions, their widths, and the linear solves of kernel ridge
regression.

Kernels between fingerprints ``x`` and ``y`` (rows of two arrays) with a
width ``sigma`` that is one number (isotropic) or one number per feature
(anisotropic), as Amp 1.x's KernelRidge defines them:

* ``'rbf'``: ``exp(-sum_f (x_f - y_f)^2 / (2 sigma_f^2))``;
* ``'laplacian'``: ``exp(-sqrt(sum_f ((x_f - y_f) / sigma_f)^2))``;
* ``'exponential'``: ``exp(-sqrt(sum_f ((x_f - y_f) / (2 sigma_f^2))^2))``
  (with one ``sigma`` this is ``exp(-|x - y| / (2 sigma^2))``);
* ``'linear'``: ``x . y`` (no width).

Distances are taken from the differences themselves
(``scipy.spatial.distance.cdist``), not from ``|x|^2 + |y|^2 - 2 x.y``:
the latter loses the small distances to cancellation, and the square root
of the Laplacian and exponential kernels would turn a round-off of 1e-16
into an error of 1e-8.

The solves use scipy's LAPACK drivers: a Cholesky factorisation where the
matrix is symmetric positive definite (``cholesky=True``), or an SVD-based
least-squares solve (``cholesky=False``), which also takes singular
matrices (then giving the minimum-norm solution).
"""

import numbers

import numpy as np

__all__ = ["KERNELS", "kernel_matrix", "check_width", "solve",
           "KernelMatrixError"]

KERNELS = ("rbf", "laplacian", "exponential", "linear")

#: Bytes of one block of a kernel evaluated in pieces (the rows of the
#: query atoms against every training atom of an element).
BLOCK_BYTES = 2 ** 25


class KernelMatrixError(np.linalg.LinAlgError):
    """A kernel matrix (plus ``lamda``) could not be factorised: it is not
    positive definite. A ``numpy.linalg.LinAlgError``, hence a
    ``ValueError``."""


def check_width(sigma: object, where: str) -> float | np.ndarray:
    """``sigma`` as a float or a 1-D float array, checked positive and
    finite.

    Raises
    ------
    ValueError
        Naming ``where`` (e.g. ``"sigma['energy']['Cu']"``).
    """
    if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
        value = float(sigma)
        if not (np.isfinite(value) and value > 0.0):
            raise ValueError("%s must be a positive number, got %r"
                             % (where, sigma))
        return value
    if isinstance(sigma, (list, tuple, np.ndarray)):
        try:
            array = np.array(sigma, dtype=float)
        except (TypeError, ValueError):
            raise ValueError("%s must be a number or a list of numbers (one "
                             "per feature), got %.80r" % (where, sigma)) \
                from None
        if array.ndim != 1 or not len(array) or \
                not np.all(np.isfinite(array)) or np.any(array <= 0.0):
            raise ValueError("%s must be a list of positive numbers, one "
                             "per feature, got %.80r" % (where, sigma))
        return array
    raise ValueError("%s must be a number or a list of numbers (one per "
                     "feature), got %.80r" % (where, sigma))


def _weights(sigma, kind, n_features):
    """Per-feature weights of the squared differences, and whether the
    kernel takes the square root of their sum."""
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (n_features,))
    if kind == "rbf":
        return 1.0 / (2.0 * sigma ** 2), False
    if kind == "laplacian":
        return 1.0 / sigma ** 2, True
    return 1.0 / (2.0 * sigma ** 2) ** 2, True  # exponential


def kernel_matrix(rows: np.ndarray, columns: np.ndarray, kind: str,
                  sigma: float | np.ndarray = 1.0) -> np.ndarray:
    """The kernel between every row of ``rows`` and every row of
    ``columns``.

    Parameters
    ----------
    rows : ndarray, shape (n, n_features)
    columns : ndarray, shape (m, n_features)
    kind : {'rbf', 'laplacian', 'exponential', 'linear'}
    sigma : float or ndarray of shape (n_features,)
        Width (ignored by ``'linear'``).

    Returns
    -------
    ndarray, shape (n, m)
    """
    from scipy.spatial.distance import cdist

    rows = np.asarray(rows, dtype=float)
    columns = np.asarray(columns, dtype=float)
    if kind == "linear":
        return rows @ columns.T
    n_features = rows.shape[1]
    if np.ndim(sigma) and len(sigma) != n_features:
        raise ValueError("sigma has %d values but the fingerprints have %d "
                         "features (an anisotropic sigma needs one per "
                         "feature)" % (len(sigma), n_features))
    if not len(rows) or not len(columns):
        return np.zeros((len(rows), len(columns)))
    weights, root = _weights(sigma, kind, n_features)
    # Weighted squared differences summed in C; the weights multiply the
    # squares, as Amp divides them.
    squared = cdist(rows, columns, "sqeuclidean", w=weights)
    if root:
        np.sqrt(squared, out=squared)
    np.negative(squared, out=squared)
    return np.exp(squared, out=squared)


def blocks(n_rows: int, n_columns: int) -> list:
    """Slices of at most :data:`BLOCK_BYTES` of an ``(n_rows, n_columns)``
    float64 array, row-wise."""
    step = max(1, BLOCK_BYTES // (8 * max(1, n_columns)))
    return [slice(start, min(start + step, n_rows))
            for start in range(0, n_rows, step)]


def solve(matrix: np.ndarray, targets: np.ndarray, cholesky: bool,
          what: str) -> np.ndarray:
    """``x`` with ``matrix @ x = targets`` (``matrix`` is overwritten).

    Parameters
    ----------
    matrix : ndarray, shape (n, n)
        Symmetric; for ``cholesky`` positive definite.
    targets : ndarray, shape (n,) or (n, k)
    cholesky : bool
        Cholesky factorisation (``scipy.linalg.cho_factor``); otherwise
        the least-squares solution (``scipy.linalg.lstsq``, SVD-based).
    what : str
        Names the matrix in an error, e.g. ``"the energy kernel matrix"``.

    Raises
    ------
    KernelMatrixError
        The Cholesky factorisation failed (the matrix is not positive
        definite); the message says what to change.
    """
    import scipy.linalg

    if not len(matrix):
        return np.zeros(np.shape(targets))
    if cholesky:
        try:
            factor = scipy.linalg.cho_factor(matrix, lower=False,
                                             overwrite_a=True,
                                             check_finite=False)
        except np.linalg.LinAlgError as error:
            raise KernelMatrixError(
                "%s (%d x %d) plus lamda is not positive definite, so its "
                "Cholesky factorisation failed (%s): increase lamda, remove "
                "duplicate training images, or use cholesky=False (a "
                "least-squares solve that also takes singular matrices)"
                % (what, len(matrix), len(matrix), error)) from None
        return scipy.linalg.cho_solve(factor, targets, overwrite_b=False,
                                      check_finite=False)
    solution, _, _, _ = scipy.linalg.lstsq(matrix, targets,
                                           overwrite_a=True,
                                           check_finite=False)
    return solution
