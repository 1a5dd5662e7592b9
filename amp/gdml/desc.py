"""Inverse-distance descriptor of (s)GDML and its Jacobian.

The descriptor of a geometry with N atoms is the vector of the D = N(N-1)/2
inverse interatomic distances ``x_k = 1 / |r_a - r_b|`` for the pairs
``(a, b)`` of the strict lower triangle in the order of
``np.tril_indices(N, -1)``: (1, 0), (2, 0), (2, 1), (3, 0), ...

Its Jacobian is kept in the compact form of sgdml: an ``(D, 3)`` array per
geometry whose row k holds ``(r_a - r_b) / |r_a - r_b|**3``, the derivative of
``x_k`` with respect to the position of atom b (the derivative with respect to
atom a is its negative; every other entry of the full ``D x 3N`` Jacobian is
zero).

Periodic systems use minimum-image differences with the lattice vectors as
the *columns* of a 3 x 3 matrix (sgdml's convention).
"""

import numpy as np

__all__ = [
    "Desc",
    "lattice_and_inverse",
    "pair_differences",
    "from_R",
    "perm_to_desc_perm",
    "tril_perms_lin",
]


def lattice_and_inverse(lattice):
    """Validate a lattice and return it with its inverse.

    Parameters
    ----------
    lattice : array_like or None
        3 x 3 matrix with the lattice vectors as columns.

    Returns
    -------
    tuple of numpy.ndarray or None
        ``(lattice, inverse)`` or None when `lattice` is None.

    Raises
    ------
    ValueError
        If the lattice is not a finite, invertible 3 x 3 matrix.
    """
    if lattice is None:
        return None
    lat = np.asarray(lattice, dtype=float)
    if lat.shape != (3, 3) or not np.all(np.isfinite(lat)):
        raise ValueError(
            "invalid lattice: expected a finite 3 x 3 matrix with the lattice "
            "vectors as columns, got shape {}".format(lat.shape))
    try:
        inv = np.linalg.inv(lat)
    except np.linalg.LinAlgError:
        raise ValueError(
            "invalid lattice vectors (the 3 x 3 matrix is not invertible); "
            "only rank-3 lattices are supported") from None
    if not np.all(np.isfinite(inv)) or abs(np.linalg.det(lat)) < 1e-12:
        raise ValueError(
            "invalid lattice vectors (the 3 x 3 matrix is singular); only "
            "rank-3 lattices are supported")
    return lat, inv


def pair_differences(R, lat_and_inv=None):
    """Differences ``r_a - r_b`` for the lower-triangle atom pairs.

    Parameters
    ----------
    R : numpy.ndarray
        Geometries, shape ``(M, N, 3)`` or ``(M, 3N)``.
    lat_and_inv : tuple of numpy.ndarray, optional
        Lattice (vectors as columns) and its inverse for minimum-image
        differences.

    Returns
    -------
    numpy.ndarray
        Shape ``(M, D, 3)``.
    """
    R = np.asarray(R, dtype=float)
    M = R.shape[0]
    R = R.reshape(M, -1, 3)
    a, b = np.tril_indices(R.shape[1], -1)
    diff = R[:, a, :] - R[:, b, :]
    if lat_and_inv is not None:
        lat, inv = lat_and_inv
        frac = diff @ inv.T
        diff = diff - np.rint(frac) @ lat.T
    return diff


def from_R(R, lat_and_inv=None):
    """Descriptors and compact Jacobians of several geometries.

    Parameters
    ----------
    R : numpy.ndarray
        Geometries, shape ``(M, N, 3)``, ``(M, 3N)`` or ``(3N,)``.
    lat_and_inv : tuple of numpy.ndarray, optional
        Lattice and inverse for periodic systems.

    Returns
    -------
    R_desc : numpy.ndarray
        Shape ``(M, D)``, inverse distances.
    R_d_desc : numpy.ndarray
        Shape ``(M, D, 3)``, compact Jacobians ``(r_a - r_b) / d**3``.
    """
    R = np.asarray(R, dtype=float)
    if R.ndim == 1:
        R = R[None, :]
    diff = pair_differences(R, lat_and_inv)
    dist = np.sqrt(np.einsum("mkc,mkc->mk", diff, diff))
    R_desc = 1.0 / dist
    R_d_desc = diff * (R_desc ** 3)[:, :, None]
    return R_desc, R_d_desc


def perm_to_desc_perm(perm):
    """Descriptor index map of an atom permutation.

    Parameters
    ----------
    perm : array_like of int
        Atom permutation p of length N (the permuted geometry is ``R[p]``).

    Returns
    -------
    numpy.ndarray
        Index map t of length D with ``x(R[p])[k] == x(R)[t[k]]``.
    """
    perm = np.asarray(perm, dtype=int)
    n = len(perm)
    index = np.zeros((n, n), dtype=int)
    a, b = np.tril_indices(n, -1)
    index[a, b] = np.arange(len(a))
    index = index + index.T
    return index[perm[a], perm[b]]


def tril_perms_lin(perms):
    """All descriptor permutations flattened into one index vector.

    Parameters
    ----------
    perms : numpy.ndarray
        Atom permutations, shape ``(P, N)``.

    Returns
    -------
    numpy.ndarray
        Length ``P * D``; entry ``k * P + q`` is ``t_q[k] + q * D``, an
        index into P tiled copies of a descriptor (sgdml's layout).
    """
    perms = np.atleast_2d(np.asarray(perms, dtype=int))
    T = np.array([perm_to_desc_perm(p) for p in perms])
    D = T.shape[1]
    return (T + D * np.arange(len(perms))[:, None]).ravel(order="F")


def desc_perms_from_lin(tril_perms_lin_arr, dim_d):
    """Recover the ``(P, D)`` descriptor maps from `tril_perms_lin`.

    Parameters
    ----------
    tril_perms_lin_arr : numpy.ndarray
        Flattened maps as stored in a model.
    dim_d : int
        Descriptor length D.

    Returns
    -------
    numpy.ndarray
        Shape ``(P, D)``, row q is the map t_q.
    """
    lin = np.asarray(tril_perms_lin_arr, dtype=int)
    n_perms = lin.size // dim_d
    T = lin.reshape(dim_d, n_perms).T
    return T - dim_d * np.arange(n_perms)[:, None]


class Desc:
    """Descriptor helper with the sgdml ``Desc`` interface.

    Parameters
    ----------
    n_atoms : int
        Number of atoms N.
    max_processes : int, optional
        Accepted for compatibility; the computation is vectorised.
    """

    def __init__(self, n_atoms, max_processes=None):
        self.n_atoms = int(n_atoms)
        self.dim = self.n_atoms * (self.n_atoms - 1) // 2
        self.dim_i = 3 * self.n_atoms
        self.tril_indices = np.tril_indices(self.n_atoms, -1)
        a, b = self.tril_indices
        # Signed pair-atom incidence: column b gets +, column a gets -.
        inc = np.zeros((self.n_atoms, self.dim))
        inc[b, np.arange(self.dim)] = 1.0
        inc[a, np.arange(self.dim)] = -1.0
        self._incidence = inc

    def from_R(self, R, lat_and_inv=None, max_processes=None, callback=None):
        """Descriptors and compact Jacobians, see :func:`from_R`.

        Parameters
        ----------
        R : numpy.ndarray
            Geometries, ``(M, 3N)`` or ``(M, N, 3)``.
        lat_and_inv : tuple, optional
            Lattice and inverse.
        max_processes : int, optional
            Ignored (vectorised).
        callback : callable, optional
            Called as ``callback(M, M)`` when done.

        Returns
        -------
        tuple of numpy.ndarray
            ``(R_desc (M, D), R_d_desc (M, D, 3))``.
        """
        R = np.asarray(R, dtype=float)
        if R.ndim == 1:
            R = R[None, :]
        if R.reshape(R.shape[0], -1).shape[1] != self.dim_i:
            raise ValueError(
                "geometries have {} coordinates, the model expects {} "
                "({} atoms)".format(R.reshape(R.shape[0], -1).shape[1],
                                    self.dim_i, self.n_atoms))
        out = from_R(R, lat_and_inv)
        if callback is not None:
            callback(R.shape[0], R.shape[0])
        return out

    def d_desc_from_comp(self, R_d_desc, out=None):
        """Expand compact Jacobians to full ``(M, D, 3N)`` arrays.

        Parameters
        ----------
        R_d_desc : numpy.ndarray
            Shape ``(M, D, 3)`` or ``(D, 3)``.
        out : numpy.ndarray, optional
            Zero-initialised output of shape ``(M, D, 3N)``.

        Returns
        -------
        numpy.ndarray
            Shape ``(M, D, 3N)``.
        """
        R_d_desc = np.asarray(R_d_desc)
        if R_d_desc.ndim == 2:
            R_d_desc = R_d_desc[None]
        M = R_d_desc.shape[0]
        a, b = self.tril_indices
        if out is None:
            out = np.zeros((M, self.dim, self.n_atoms, 3))
        else:
            out = out.reshape(M, self.dim, self.n_atoms, 3)
        k = np.arange(self.dim)
        out[:, k, b, :] = R_d_desc
        out[:, k, a, :] = -R_d_desc
        return out.reshape(M, self.dim, self.dim_i)

    def d_desc_dot_vec(self, R_d_desc, vecs, overwrite_vecs=False):
        """Jacobian times 3N-vectors: ``J_m @ v_m`` for each geometry m.

        Parameters
        ----------
        R_d_desc : numpy.ndarray
            Compact Jacobians ``(M, D, 3)``.
        vecs : numpy.ndarray
            Shape ``(M, 3N)``.
        overwrite_vecs : bool, optional
            Ignored.

        Returns
        -------
        numpy.ndarray
            Shape ``(M, D)``.
        """
        R_d_desc = np.asarray(R_d_desc)
        if R_d_desc.ndim == 2:
            R_d_desc = R_d_desc[None]
        vecs = np.asarray(vecs, dtype=float)
        if vecs.ndim == 1:
            vecs = vecs[None]
        vecs = vecs.reshape(vecs.shape[0], -1, 3)
        a, b = self.tril_indices
        return np.einsum("mkc,mkc->mk", R_d_desc, vecs[:, b] - vecs[:, a])

    def vec_dot_d_desc(self, R_d_desc, vecs, out=None):
        """D-vectors times Jacobians: ``J_m.T @ w_m`` for each geometry m.

        Parameters
        ----------
        R_d_desc : numpy.ndarray
            Compact Jacobians ``(M, D, 3)`` or ``(D, 3)``.
        vecs : numpy.ndarray
            Shape ``(M, D)`` or ``(D,)``.
        out : None
            Ignored.

        Returns
        -------
        numpy.ndarray
            Shape ``(M, 3N)``.
        """
        R_d_desc = np.asarray(R_d_desc)
        if R_d_desc.ndim == 2:
            R_d_desc = R_d_desc[None]
        vecs = np.asarray(vecs, dtype=float)
        if vecs.ndim == 1:
            vecs = vecs[None]
        contrib = R_d_desc * vecs[:, :, None]  # (M, D, 3)
        res = np.einsum("nk,mkc->mnc", self._incidence, contrib)
        return res.reshape(res.shape[0], -1)

    def d_desc_to_comp(self, R_d_desc):
        """Compress full ``(M, D, 3N)`` Jacobians to ``(M, D, 3)``.

        Parameters
        ----------
        R_d_desc : numpy.ndarray
            Full Jacobians.

        Returns
        -------
        numpy.ndarray
            Compact Jacobians.
        """
        R_d_desc = np.asarray(R_d_desc)
        if R_d_desc.ndim == 2:
            R_d_desc = R_d_desc[None]
        M = R_d_desc.shape[0]
        full = R_d_desc.reshape(M, self.dim, self.n_atoms, 3)
        _, b = self.tril_indices
        return full[:, np.arange(self.dim), b, :]

    @staticmethod
    def perm(perm):
        """Descriptor map of an atom permutation, see
        :func:`perm_to_desc_perm`.

        Parameters
        ----------
        perm : array_like of int
            Atom permutation.

        Returns
        -------
        numpy.ndarray
            Descriptor index map.
        """
        return perm_to_desc_perm(perm)
