"""Matérn (nu = 5/2) Hessian kernel of (s)GDML on the inverse-distance descriptor.

With u = |x - x'| and sigma the length scale, the kernel is
``k(u) = (1 + s + s**2 / 3) exp(-s)`` with ``s = sqrt(5) u / sigma`` and its
Hessian ``d2k / dx dx'.T = g(u) I - h(u) delta delta.T`` (``delta = x - x'``)
with ``g(u) = 5 (sigma + sqrt(5) u) exp(-s) / (3 sigma**3)`` and
``h(u) = 25 exp(-s) / (3 sigma**4)``.

The force-force kernel between training geometries i and j is
``K_ij = sum_q J_i.T H(x_i, x_j^(q)) J_j^(q)``, the sum running over the
descriptor permutations t_q on the column side (``x^(q) = x[t_q]``,
``J^(q) = J[t_q]``). Everything here returns this positive semi-definite
version; :meth:`amp.gdml.train.GDMLTrain._assemble_kernel_mat` flips the sign
to match sgdml.

The Jacobians passed in may be the full ``(D, 3N)`` ones or any
``(D, c)`` basis of them (training uses the ``3N - 6`` internal directions,
see :func:`internal_basis`), which is why they are generic ``(M, D, c)``
arrays here. Work is vectorised over all row geometries and blocks of column
geometries; the only Python loop runs over those column blocks.
"""

import numpy as np

from .desc import Desc, desc_perms_from_lin
from .perm import is_group

SQRT5 = np.sqrt(5.0)

__all__ = ["matern_terms", "ff_block", "fe_block", "ee_block",
           "assemble", "internal_basis", "descriptor_matvec",
           "sgdml_kernel_matrix"]


def matern_terms(u, sig):
    """Exponential, g and h of the Matérn 5/2 Hessian at distances u.

    Parameters
    ----------
    u : numpy.ndarray
        Descriptor distances.
    sig : float
        Length scale.

    Returns
    -------
    tuple of numpy.ndarray
        ``(exp(-sqrt(5) u / sig), g(u), h(u))``.
    """
    e = np.exp(-(SQRT5 / sig) * u)
    g = (5.0 / (3.0 * sig ** 3)) * (sig + SQRT5 * u) * e
    h = (25.0 / (3.0 * sig ** 4)) * e
    return e, g, h


def _deltas(X_rows, X_cols_perm):
    """delta (R, C, P, D) and distances (R, C, P)."""
    delta = X_rows[:, None, None, :] - X_cols_perm[None]
    u = np.sqrt(np.einsum("rcpd,rcpd->rcp", delta, delta))
    return delta, u


def ff_block(X_rows, J_rows, X_cols, J_cols, T, sig):
    """Force-force kernel blocks.

    Parameters
    ----------
    X_rows : numpy.ndarray
        Row descriptors ``(R, D)``.
    J_rows : numpy.ndarray
        Row Jacobians (or bases) ``(R, D, cr)``.
    X_cols : numpy.ndarray
        Column descriptors ``(C, D)``.
    J_cols : numpy.ndarray
        Column Jacobians ``(C, D, cc)``.
    T : numpy.ndarray
        Descriptor permutations ``(P, D)``.
    sig : float
        Length scale.

    Returns
    -------
    numpy.ndarray
        ``(R, C, cr, cc)`` blocks ``sum_q J_i.T H J_j^(q)``.
    """
    R, D = X_rows.shape
    C = X_cols.shape[0]
    P = T.shape[0]
    cr, cc = J_rows.shape[2], J_cols.shape[2]
    Xcp = X_cols[:, T]                       # (C, P, D)
    Jcp = J_cols[:, T, :]                    # (C, P, D, cc)
    delta, u = _deltas(X_rows, Xcp)          # (R, C, P, D), (R, C, P)
    _, g, h = matern_terms(u, sig)
    # sum_q g J_j^(q): (C, R, P) @ (C, P, D*cc) -> (C, R, D, cc)
    G = np.matmul(g.transpose(1, 0, 2), Jcp.reshape(C, P, D * cc))
    G = G.reshape(C, R, D, cc)
    out = np.matmul(J_rows.transpose(0, 2, 1)[None], G)   # (C, R, cr, cc)
    # sum_q h (J_i.T delta)(delta.T J_j^(q))
    A = np.matmul(delta.reshape(R, C * P, D), J_rows)      # (R, C*P, cr)
    A = A.reshape(R, C, P, cr) * h[..., None]
    B = np.matmul(delta.transpose(1, 2, 0, 3), Jcp)        # (C, P, R, cc)
    B = B.transpose(2, 0, 1, 3)                             # (R, C, P, cc)
    out -= np.matmul(A.transpose(0, 1, 3, 2), B).transpose(1, 0, 2, 3)
    return out.transpose(1, 0, 2, 3)


def fe_block(X_rows, J_rows_perm_side, X_cols, T, sig, perm_rows=False,
             J_cols=None):
    """Force-energy kernel entries ``sum_q g (delta . J)``.

    Two layouts are needed: energy rows against force columns
    (``perm_rows=False``: ``sum_q g(x_i - x_j^(q)) . J_j^(q)``, the
    Jacobian on the column side, passed as `J_cols`) and force rows against
    energy columns (``perm_rows=True``: ``sum_q g(x_j - x_i^(q)) . J_i^(q)``,
    the permutations on the row side).

    Parameters
    ----------
    X_rows : numpy.ndarray
        ``(R, D)``.
    J_rows_perm_side : numpy.ndarray or None
        Row Jacobians ``(R, D, c)`` when ``perm_rows`` is True.
    X_cols : numpy.ndarray
        ``(C, D)``.
    T : numpy.ndarray
        ``(P, D)`` descriptor maps.
    sig : float
        Length scale.
    perm_rows : bool, optional
        Which layout (see above).
    J_cols : numpy.ndarray, optional
        Column Jacobians ``(C, D, c)`` when ``perm_rows`` is False.

    Returns
    -------
    numpy.ndarray
        ``(R, C, c)``.
    """
    if not perm_rows:
        Xcp = X_cols[:, T]                    # (C, P, D)
        Jcp = J_cols[:, T, :]                 # (C, P, D, c)
        delta, u = _deltas(X_rows, Xcp)       # (R, C, P, D)
        _, g, _ = matern_terms(u, sig)
        return np.einsum("rcp,rcpd,cpdk->rck", g, delta, Jcp, optimize=True)
    Xrp = X_rows[:, T]                        # (R, P, D)
    Jrp = J_rows_perm_side[:, T, :]           # (R, P, D, c)
    delta = X_cols[None, :, None, :] - Xrp[:, None]   # (R, C, P, D)
    u = np.sqrt(np.einsum("rcpd,rcpd->rcp", delta, delta))
    _, g, _ = matern_terms(u, sig)
    return np.einsum("rcp,rcpd,rpdk->rck", g, delta, Jrp, optimize=True)


def ee_block(X_rows, X_cols, T, sig):
    """Energy-energy kernel entries ``sum_q k(|x_j - x_i^(q)|)``.

    Parameters
    ----------
    X_rows, X_cols : numpy.ndarray
        ``(R, D)`` and ``(C, D)``.
    T : numpy.ndarray
        ``(P, D)`` descriptor maps (applied on the row side).
    sig : float
        Length scale.

    Returns
    -------
    numpy.ndarray
        ``(R, C)``.
    """
    Xrp = X_rows[:, T]
    delta = X_cols[None, :, None, :] - Xrp[:, None]
    s = (SQRT5 / sig) * np.sqrt(np.einsum("rcpd,rcpd->rcp", delta, delta))
    return ((1.0 + s + s * s / 3.0) * np.exp(-s)).sum(axis=2)


def _col_block_size(n_rows, P, D, c, budget_elems=6e6):
    per_col = max(1, n_rows * P * max(D * c, D + 2 * c))
    return int(max(1, min(n_rows, budget_elems // per_col)))


def assemble(X, J, T, sig, use_E_cstr=False, lower_only=False, out=None,
             col_points=None, callback=None):
    """Assemble the positive semi-definite (s)GDML kernel matrix.

    Rows and columns are ordered training point major, then the c
    coordinates of each point; with ``use_E_cstr`` the M energy rows and
    columns follow the force ones.

    Parameters
    ----------
    X : numpy.ndarray
        Training descriptors ``(M, D)``.
    J : numpy.ndarray
        Training Jacobians or bases ``(M, D, c)``.
    T : numpy.ndarray
        Descriptor permutations ``(P, D)``.
    sig : float
        Length scale.
    use_E_cstr : bool, optional
        Append the energy rows and columns.
    lower_only : bool, optional
        Fill only the block lower triangle (rows at or below each column
        block; diagonal blocks completely). Valid when the permutations form
        a group, so that K is symmetric.
    out : numpy.ndarray, optional
        Preallocated C-ordered output.
    col_points : numpy.ndarray, optional
        Only these training points as (force) columns; the result then has
        ``len(col_points) * c`` columns (energy columns are not included).
    callback : callable, optional
        ``callback(done, total)`` after each column block.

    Returns
    -------
    numpy.ndarray
        The kernel matrix.
    """
    M, D = X.shape
    c = J.shape[2]
    P = T.shape[0]
    n_rows = M * c + (M if use_E_cstr else 0)
    cols = np.arange(M) if col_points is None else np.asarray(col_points)
    n_cols = len(cols) * c
    if col_points is None and use_E_cstr:
        n_cols += M
    if out is None:
        out = np.empty((n_rows, n_cols))
    bs = _col_block_size(M, P, D, c)
    n_blocks = (len(cols) + bs - 1) // bs
    total = n_blocks + (1 if (use_E_cstr and col_points is None) else 0)
    for ib in range(n_blocks):
        blk = cols[ib * bs:(ib + 1) * bs]
        c0 = ib * bs * c
        c1 = c0 + len(blk) * c
        r_start = int(blk[0]) if (lower_only and col_points is None) else 0
        rows = np.arange(r_start, M)
        blockK = ff_block(X[rows], J[rows], X[blk], J[blk], T, sig)
        out[r_start * c:M * c, c0:c1] = blockK.transpose(0, 2, 1, 3).reshape(
            len(rows) * c, len(blk) * c)
        if use_E_cstr:
            fe = fe_block(X, None, X[blk], T, sig, J_cols=J[blk])  # (M, C, c)
            out[M * c:, c0:c1] = fe.reshape(M, len(blk) * c)
        if callback is not None:
            callback(ib + 1, total)
    if use_E_cstr and col_points is None:
        fe_t = fe_block(X, J, X, T, sig, perm_rows=True)   # (M rows, M cols, c)
        out[:M * c, M * c:] = fe_t.transpose(0, 2, 1).reshape(M * c, M)
        out[M * c:, M * c:] = ee_block(X, X, T, sig)
        if callback is not None:
            callback(total, total)
    return out


def internal_basis(J_full):
    """Orthonormal bases of the row spaces of the descriptor Jacobians.

    The inverse-distance descriptor is invariant to translations and
    rotations, so each ``(D, 3N)`` Jacobian has (at least) a 6-dimensional
    null space and the kernel matrix has a matching exact null space.
    Solving in the ``3N - 6`` remaining directions gives the same model
    (the null components of the coefficients never reach a prediction)
    with a smaller, better conditioned system.

    Parameters
    ----------
    J_full : numpy.ndarray
        Full Jacobians ``(M, D, 3N)``.

    Notes
    -----
    The rank is fixed to ``min(D, 3N - 6)`` (1 for two atoms) so that all
    blocks have one size.

    Returns
    -------
    numpy.ndarray
        ``(M, 3N, r)`` bases Q with ``J Q`` spanning the Jacobian's row
        space.
    """
    M, D, n3 = J_full.shape
    N = n3 // 3
    r = 1 if N == 2 else min(D, n3 - 6)
    _, _, Vt = np.linalg.svd(J_full, full_matrices=True)
    return Vt[:, :r, :].transpose(0, 2, 1).copy()


def descriptor_matvec(X_query, Xp, Wp, sig, xx=None, xw=None, aE=None,
                      return_E=True):
    """Sum over training points of the Hessian kernel times coefficients.

    For every query descriptor x computes, over the (permuted) training
    descriptors ``x_j`` with descriptor-space weights ``w_j``,
    ``E = sum_j g (delta . w_j)`` and
    ``Fd = sum_j [h (delta . w_j) delta - g w_j]`` (``delta = x - x_j``),
    plus the energy-constraint terms when `aE` is given. The predicted
    force is ``J(x).T @ Fd`` and the energy ``E`` (both up to std and c).

    Parameters
    ----------
    X_query : numpy.ndarray
        ``(Q, D)``.
    Xp, Wp : numpy.ndarray
        ``(K, D)`` permuted training descriptors and weights.
    sig : float
        Length scale.
    xx, xw : numpy.ndarray, optional
        Precomputed ``|x_j|**2`` and ``x_j . w_j`` ``(K,)``.
    aE : numpy.ndarray, optional
        ``(K,)`` energy-constraint coefficients.
    return_E : bool, optional
        Compute E.

    Returns
    -------
    E : numpy.ndarray or None
        ``(Q,)``.
    Fd : numpy.ndarray
        ``(Q, D)``.
    """
    if xx is None:
        xx = np.einsum("kd,kd->k", Xp, Xp)
    if xw is None:
        xw = np.einsum("kd,kd->k", Xp, Wp)
    qq = np.einsum("qd,qd->q", X_query, X_query)
    u = X_query @ Xp.T
    u *= -2.0
    u += qq[:, None]
    u += xx[None, :]
    np.maximum(u, 0.0, out=u)
    np.sqrt(u, out=u)                          # |delta|
    a = X_query @ Wp.T
    a -= xw[None, :]                           # delta . w
    # e, g, h in place to keep the memory to a few (Q, K) arrays
    e = np.multiply(u, -SQRT5 / sig)
    np.exp(e, out=e)
    g = np.multiply(u, SQRT5)
    g += sig
    g *= e
    g *= 5.0 / (3.0 * sig ** 3)
    E = None
    if return_E:
        E = np.einsum("qk,qk->q", g, a)
    ha = e
    ha *= 25.0 / (3.0 * sig ** 4)
    ha *= a                                    # h (delta . w)
    if aE is not None:
        ha_e = g * aE[None, :]                 # force-energy term g aE
        ha += ha_e
        if return_E:
            s = u * (SQRT5 / sig)
            kee = (1.0 + s + s * s / 3.0) * np.exp(-s)
            E += kee @ aE
    Fd = ha.sum(axis=1)[:, None] * X_query
    Fd -= ha @ Xp
    Fd -= g @ Wp
    return E, Fd


def sgdml_kernel_matrix(R_desc, R_d_desc, tril_perms_lin, sig, desc=None,
                        use_E_cstr=False, col_idxs=np.s_[:],
                        alloc_extra_rows=0, cols_m_limit=None,
                        cols_3n_keep_idxs=None, exploit_sym=None,
                        callback=None):
    """Force-field kernel matrix with sgdml's sign (negative semi-definite).

    Entry blocks are ``-sum_q J_i.T H(x_i, x_j^(q)) J_j^(q)`` with H the
    Hessian of the Matérn 5/2 kernel; with `use_E_cstr` the energy rows
    and columns follow (``-sum_q g delta . J`` and ``-sum_q k``).

    Parameters
    ----------
    R_desc : numpy.ndarray
        ``(M, D)`` descriptors.
    R_d_desc : numpy.ndarray
        ``(M, D, 3)`` compact Jacobians.
    tril_perms_lin : numpy.ndarray
        Flattened descriptor permutations.
    sig : float
        Length scale.
    desc : Desc, optional
        Descriptor helper (built from the shapes if omitted).
    use_E_cstr : bool, optional
        Energy-constraint rows/columns.
    col_idxs : slice or array of int, optional
        Columns to compute (sorted, unique).
    alloc_extra_rows : int, optional
        Extra zero rows appended at the bottom.
    cols_m_limit : int, optional
        (Deprecated) keep only the columns of the first
        `cols_m_limit` training points.
    cols_3n_keep_idxs : array of int, optional
        Keep only these of the 3N columns of every training point.
    exploit_sym : bool, optional
        Compute the block lower triangle only and mirror it (the
        default when all columns are requested and the permutations
        form a group).
    callback : callable, optional
        ``callback(current, total, done_str)``.

    Returns
    -------
    numpy.ndarray
        ``(rows + alloc_extra_rows, columns)``.

    Raises
    ------
    ValueError
        If columns are indexed beyond the matrix.
    """
    R_desc = np.asarray(R_desc, dtype=float)
    R_d_desc = np.asarray(R_d_desc, dtype=float)
    M, D = R_desc.shape
    N = int(round((1 + np.sqrt(8 * D + 1)) / 2))
    desc = desc if desc is not None else Desc(N)
    n3 = 3 * N
    n_rows = M * n3 + (M if use_E_cstr else 0)
    T = desc_perms_from_lin(tril_perms_lin, D)
    if isinstance(col_idxs, slice):
        cols = np.arange(n_rows)[col_idxs]
    else:
        cols = np.asarray(col_idxs, dtype=int)
        if len(np.unique(cols)) != len(cols):
            raise ValueError("col_idxs contains duplicates")
    if cols.size and (cols.min() < 0 or cols.max() >= n_rows):
        raise ValueError("Columns indexed beyond range.")
    if cols_m_limit is not None:
        cols = cols[cols < int(cols_m_limit) * n3]
    if cols_3n_keep_idxs is not None:
        keep = np.asarray(cols_3n_keep_idxs, dtype=int)
        force_cols = cols[cols < M * n3]
        cols = np.concatenate([force_cols[np.isin(force_cols % n3, keep)],
                               cols[cols >= M * n3]])
    J_full = desc.d_desc_from_comp(R_d_desc)

    def kcb(done, total):
        if callback is not None:
            callback(done, total, "Assembling kernel matrix")

    all_cols = cols.size == n_rows and np.array_equal(cols,
                                                      np.arange(n_rows))
    if exploit_sym is None:
        exploit_sym = all_cols and is_group(T)
    if all_cols:
        K = assemble(R_desc, J_full, T, sig, use_E_cstr=use_E_cstr,
                     lower_only=bool(exploit_sym) and not use_E_cstr,
                     callback=kcb)
        if exploit_sym and not use_E_cstr:
            upper = np.triu_indices(n_rows, 1)
            K[upper] = K.T[upper]
    else:
        points = np.unique(cols[cols < M * n3] // n3)
        K_f = assemble(R_desc, J_full, T, sig, use_E_cstr=use_E_cstr,
                       col_points=points, callback=kcb)
        pos = {p: i for i, p in enumerate(points)}
        fcols = cols[cols < M * n3]
        sel = [pos[c // n3] * n3 + c % n3 for c in fcols]
        parts = [K_f[:, sel]]
        ecols = cols[cols >= M * n3] - M * n3
        if ecols.size:
            K_full = assemble(R_desc, J_full, T, sig, use_E_cstr=True)
            parts.append(K_full[:, M * n3 + ecols])
        K = np.hstack(parts)
    K = -K
    if alloc_extra_rows:
        K = np.vstack([K, np.zeros((int(alloc_extra_rows), K.shape[1]))])
    return K
