"""The linear algebra of KernelRidge's fit, and the memory it needs.

Training atoms are kept by element, in training order (image by image,
atoms in image order). With ``K_s`` the kernel between the energy features
of the training atoms of element ``s`` (atoms of different elements do not
interact) and ``L_s`` the ``(n_images, n_s)`` matrix that sums atoms into
their images:

* energies (Amp's atomic decomposition Ansatz, ``cholesky=True``):
  ``(sum_s L_s K_s L_s^T + lamda I) v = E``, each training atom's weight
  the ``v`` of its image; an atom's energy is ``sum_b k(x, x_b) w_b`` over
  the training atoms ``b`` of its element;
* energies with ``cholesky=False``: the weights minimise Amp's L2 loss
  ``sum_t ((E_t^model - E_t) / N_t)^2 + lamda sum_s w_s^T K_s w_s``;
  its minimum is ``w = L^T v`` with ``(sum_s L_s K_s L_s^T + lamda
  diag(N_t^2)) v = E`` (set the gradient ``2 K L^T D^2 (L K w - E) + 2
  lamda K w`` to zero), solved by least squares;
* energies with ``nnpartition``: per element, ``(K_s + lamda I) w_s =
  e_s``, the atomic energies ``e_s`` of a neural network;
* forces, per element and direction ``x``: ``(F_sx + lamda I) w_sx =
  f_sx``, the kernel ``F_sx`` between the force features (see
  :mod:`._kernel_features`); with shared weights (``weights_independent
  =False``) the minimiser of ``sum_x |F_sx w - f_sx|^2 + lamda sum_x
  w^T F_sx w``: ``sum_x F_sx (F_sx + lamda I) w = sum_x F_sx f_sx``.

Only the matrix being factorised is held whole; the atom-by-atom energy
kernel is built in blocks and summed into images as it is made.
"""

import numpy as np

from ._kernels import BLOCK_BYTES, blocks, kernel_matrix, solve

__all__ = ["image_kernel", "energy_weights", "partition_weights",
           "force_weights", "kernel_product", "memory_needed",
           "check_kernel_memory", "fit_report"]


def _image_sums(image, n_images):
    """The sparse ``(n_images, n_s)`` matrix summing atoms into images."""
    from scipy.sparse import csr_matrix

    return csr_matrix((np.ones(len(image)), (image, np.arange(len(image)))),
                      shape=(n_images, len(image)))


def image_kernel(features: dict, images: dict, n_images: int, kind: str,
                 sigmas: dict) -> np.ndarray:
    """``sum_s L_s K_s L_s^T``: the energy kernel between images.

    Parameters
    ----------
    features : dict
        ``{element: (n_s, n_features) array}`` of the training atoms.
    images : dict
        ``{element: (n_s,) int array}``, each atom's image.
    n_images : int
    kind : str
    sigmas : dict
        ``{element: width}``.
    """
    matrix = np.zeros((n_images, n_images))
    for element, block in features.items():
        sums = _image_sums(images[element], n_images)
        for rows in blocks(len(block), len(block)):
            part = kernel_matrix(block[rows], block, kind, sigmas[element])
            # (atoms in rows, images) -> (images, images)
            matrix += sums[:, rows] @ np.asarray((sums @ part.T).T)
    return matrix


def energy_weights(features: dict, images: dict, energies: np.ndarray,
                   n_atoms: np.ndarray, kind: str, sigmas: dict,
                   lamda: float, cholesky: bool) -> dict:
    """Per-atom energy weights of the atomic decomposition Ansatz
    (``cholesky``) or of Amp's L2 loss (see the module docstring).

    Returns
    -------
    dict
        ``{element: (n_s,) array}``.
    """
    matrix = image_kernel(features, images, len(energies), kind, sigmas)
    diagonal = np.full(len(energies), float(lamda)) if cholesky else \
        float(lamda) * np.asarray(n_atoms, dtype=float) ** 2
    matrix[np.diag_indices_from(matrix)] += diagonal
    per_image = solve(matrix, np.asarray(energies, dtype=float), cholesky,
                      "the energy kernel matrix between training images")
    return {element: per_image[images[element]] for element in features}


def partition_weights(features: dict, targets: dict, kind: str,
                      sigmas: dict, lamda: float, cholesky: bool) -> dict:
    """Per-element energy weights fitted to given atomic energies."""
    weights = {}
    for element, block in features.items():
        matrix = _square_kernel(block, kind, sigmas[element])
        matrix[np.diag_indices_from(matrix)] += float(lamda)
        weights[element] = solve(
            matrix, targets[element], cholesky,
            "the energy kernel matrix of the %s atoms" % element)
    return weights


def _square_kernel(block, kind, sigma):
    """The kernel of ``block`` with itself, built in row blocks."""
    matrix = np.empty((len(block), len(block)))
    for rows in blocks(len(block), len(block)):
        matrix[rows] = kernel_matrix(block[rows], block, kind, sigma)
    return matrix


def force_weights(features: dict, targets: dict, kind: str, sigmas: dict,
                  lamda: float, cholesky: bool,
                  independent: bool = True) -> dict:
    """Force weights per element and direction.

    Parameters
    ----------
    features : dict
        ``{element: (n_s, 3, n_features) array}``.
    targets : dict
        ``{element: (n_s, 3) array}`` of reference forces.
    sigmas : dict
        ``{element: {0: width, 1: width, 2: width}}``.
    independent : bool
        One weight vector per direction, or one shared by the three.

    Returns
    -------
    dict
        ``{element: (3, n_s) array}`` (three equal rows when shared).
    """
    weights = {}
    for element, block in features.items():
        n = len(block)
        if independent:
            rows = []
            for x in range(3):
                matrix = _square_kernel(block[:, x], kind,
                                        sigmas[element][x])
                matrix[np.diag_indices_from(matrix)] += float(lamda)
                rows.append(solve(
                    matrix, targets[element][:, x], cholesky,
                    "the force kernel matrix of the %s atoms, direction %d"
                    % (element, x)))
            weights[element] = np.array(rows).reshape(3, n)
            continue
        normal, right = np.zeros((n, n)), np.zeros(n)
        for x in range(3):
            matrix = _square_kernel(block[:, x], kind, sigmas[element][x])
            right += matrix @ targets[element][:, x]
            normal += matrix @ matrix
            normal += float(lamda) * matrix
        shared = solve(normal, right, cholesky,
                       "the shared force matrix of the %s atoms" % element)
        weights[element] = np.tile(shared, (3, 1))
    return weights


def kernel_product(rows: np.ndarray, references: np.ndarray,
                   weights: np.ndarray, kind: str,
                   sigma: float | np.ndarray) -> np.ndarray:
    """``k(rows, references) @ weights``, the kernel built in blocks."""
    out = np.empty(len(rows))
    for part in blocks(len(rows), len(references)):
        out[part] = kernel_matrix(rows[part], references, kind,
                                  sigma) @ weights
    return out


def memory_needed(atoms_per_element: dict, n_images: int, forces: bool,
                  cholesky: bool = True, independent: bool = True,
                  partition: bool = False) -> tuple:
    """Peak bytes of the fit's kernel matrices, and what they are.

    The matrices are factorised one at a time, in place for Cholesky;
    scipy's least-squares driver (SVD) takes about two more copies and
    the shared force weights three matrices at once. Blocks of the
    kernel made on the way add at most twice :data:`BLOCK_BYTES` (the
    fingerprints themselves are not counted).

    Parameters
    ----------
    atoms_per_element : dict
        ``{element: training atoms of that element}``.
    n_images : int
    forces : bool

    Returns
    -------
    peak : int
    matrices : list of (str, int)
        Each matrix's description and its side.
    """
    copies = 1 if cholesky else 3
    matrices = []
    if partition:
        matrices += [("energy kernel of %s" % e, n)
                     for e, n in sorted(atoms_per_element.items())]
    else:
        matrices.append(("energy kernel between images", n_images))
    peak = max(8 * n * n * copies for _, n in matrices)
    if forces:
        force_copies = copies if independent else copies + 2
        for element, n in sorted(atoms_per_element.items()):
            matrices.append(("force kernel of %s (x3)" % element, n))
            peak = max(peak, 8 * n * n * force_copies)
    largest = max(list(atoms_per_element.values()) + [n_images])
    return peak + 2 * min(BLOCK_BYTES, 8 * largest * largest), matrices


def check_kernel_memory(peak: int, matrices: list, memory_limit=None,
                        log=None) -> None:
    """Log ``peak`` (from :func:`memory_needed`); raise
    :class:`~amp.descriptor.budget.TrainingMemoryError` when it exceeds
    ``memory_limit`` (bytes or ``'4 GB'``; default the memory available
    now)."""
    from ..descriptor.budget import (TrainingMemoryError, available_memory,
                                     format_bytes, parse_bytes)

    if memory_limit is None:
        limit, source = available_memory(), "memory available now"
    else:
        limit, source = parse_bytes(memory_limit), "memory_limit"
    side = "{:,}".format
    line = "KernelRidge kernel matrices: %s; about %s at most at once" % (
        ", ".join("%s %s x %s" % (name, side(n), side(n))
                  for name, n in matrices), format_bytes(peak))
    if limit is not None:
        line += "; limit %s (%s)" % (format_bytes(limit), source)
    if log is not None:
        log(line + ".")
    if limit is not None and peak > limit:
        name, n = max(matrices, key=lambda m: m[1])
        raise TrainingMemoryError(
            "KernelRidge needs about %s for its kernel matrices (the "
            "largest, the %s, is %s x %s), more than the limit of %s (%s); "
            "nothing has been computed. Options: train on fewer images; "
            "train energies only (forcetraining=False: the energy matrix is "
            "images x images); or give a larger memory_limit= to Amp.train "
            "if more memory will be free."
            % (format_bytes(peak), name, side(n), side(n),
               format_bytes(limit), source))


def fit_report(log, loss: float, row: list) -> None:
    """Log the fit's training errors as one row of Amp's convergence table
    (no criteria, every column marked met), so that ``read_trainlog`` (this
    library's and Amp 1.x's) and ``plot_convergence`` read KernelRidge logs
    too.

    Parameters
    ----------
    loss : float
        Sum of squared residuals (energies per atom; forces per component
        over three times the image's atoms).
    row : list of float
        Energy RMSE and maximum residual, then (when forces are fitted)
        force RMSE and maximum residual.
    """
    from .lossfunction import _table_time

    forces = len(row) > 2
    log(" Loss function convergence criteria:")
    # As the network's log: "inf" for a fitted quantity without a
    # criterion (Amp's reader needs a number; for forces, a number tells
    # it the table has force columns).
    log("  energy_rmse: inf")
    log("  energy_maxresid: None")
    log("  force_rmse: %s" % (float("inf") if forces else None))
    log("  force_maxresid: None")
    log(" Loss function set-up:")
    log("  energy_coefficient: 1.0")
    log("  force_coefficient: %s" % (1.0 if forces else None))
    log("")
    names = ["Step", "Time", "Loss (SSD)", "EnergyRMSE", "MaxResid"] + \
        (["ForceRMSE", "MaxResid"] if forces else [])
    header = "%5s %19s" + " %12s" * (len(names) - 2)
    log(header % tuple(names))
    log(header % tuple("=" * n for n in [5, 19] + [12] * (len(names) - 2)))
    log("%5i %19s %12.4e" % (0, _table_time(), loss) +
        "".join(" %10.4e C" % value for value in row))
    log("...optimization successful.")
