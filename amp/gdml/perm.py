"""Recovery of a molecule's permutational symmetries from its geometries (sGDML).

The approach is the multi-partite matching of sGDML:

1. every geometry is summarised by its interatomic distance matrix and that
   matrix's eigenvectors (absolute values, ordered by decreasing eigenvalue);
2. every pair of geometries is matched atom to atom by a linear assignment
   on the similarity of those eigenvector rows (atoms of different species
   are penalised so they are never exchanged); a matching is kept when it
   makes the distance matrices agree better than the identity does;
3. the pairwise matchings are made consistent by keeping only those on a
   minimum spanning tree of the matching costs;
4. the kept permutations are completed to a group by closure (giving up
   above 100 elements, in which case the largest consistent subset is
   salvaged; when that fails too, the identity alone is returned with a
   warning, i.e. the model is trained without symmetries).

The eigen-decompositions and similarity matrices are batched; the only loop
is the one assignment per pair of geometries.
"""

import warnings

import numpy as np
import scipy.optimize
import scipy.sparse
import scipy.sparse.csgraph

from .desc import pair_differences

__all__ = ["find_perms", "complete_group", "inverse_perm", "is_group"]


def _distance_matrices(R, lat_and_inv=None):
    M, N = R.shape[:2]
    diff = pair_differences(R, lat_and_inv)
    d = np.sqrt(np.einsum("mkc,mkc->mk", diff, diff))
    A = np.zeros((M, N, N))
    a, b = np.tril_indices(N, -1)
    A[:, a, b] = d
    A[:, b, a] = d
    return A


def _pair_matchings(A, z):
    """Matching permutation and cost for every pair i < j."""
    M, N, _ = A.shape
    w, v = np.linalg.eigh(A)
    order = np.argsort(-w, axis=1)
    V = np.abs(np.take_along_axis(v, order[:, None, :], axis=2))  # (M, N, N)
    species_penalty = (z[:, None] != z[None, :]).astype(float)
    costs = np.zeros((M, M))
    perms = {}
    identity = np.arange(N)
    for i in range(M - 1):
        sim = -np.einsum("ak,jbk->jab", V[i], V[i + 1:])   # (M-i-1, N, N)
        scale = np.abs(sim).reshape(len(sim), -1).max(axis=1)
        sim += species_penalty[None] * scale[:, None, None]
        base = np.linalg.norm((A[i][None] - A[i + 1:]).reshape(
            len(sim), -1), axis=1)
        for off in range(len(sim)):
            j = i + 1 + off
            _, col = scipy.optimize.linear_sum_assignment(sim[off])
            # atom a of geometry i corresponds to atom col[a] of geometry j
            score = np.linalg.norm(A[j][np.ix_(col, col)] - A[i])
            if score < base[off] and not np.isclose(score, base[off]) \
                    and not np.array_equal(col, identity):
                costs[i, j] = score
                perms[(i, j)] = col
            else:
                costs[i, j] = base[off]
    return perms, costs


def _spanning_tree_perms(perms, costs, N):
    M = costs.shape[0]
    full = costs + costs.T
    # csgraph treats zeros as missing edges; keep exact duplicates connected
    full[full == 0] = np.finfo(float).tiny
    full[np.diag_indices(M)] = 0
    tree = scipy.sparse.csgraph.minimum_spanning_tree(
        scipy.sparse.csr_matrix(full))
    rows, cols = tree.nonzero()
    kept = [np.arange(N)]
    for i, j in zip(rows, cols):
        key = (min(i, j), max(i, j))
        if key in perms:
            kept.append(perms[key])
    return np.unique(np.array(kept), axis=0)


def complete_group(perms, max_size=None):
    """Close a set of permutations under composition.

    Parameters
    ----------
    perms : numpy.ndarray
        ``(P, N)`` permutations (the identity is added).
    max_size : int, optional
        Give up (return None) once the set grows to this size.

    Returns
    -------
    numpy.ndarray or None
        ``(G, N)`` group, identity first, or None if `max_size` was hit.
    """
    perms = np.atleast_2d(np.asarray(perms, dtype=int))
    N = perms.shape[1]
    group = {tuple(range(N))}
    group.update(tuple(p) for p in perms)
    frontier = [np.array(p) for p in group]
    gens = [np.array(p) for p in group]
    while frontier:
        new = []
        for p in frontier:
            for g in gens:
                for prod in (p[g], g[p]):
                    t = tuple(prod)
                    if t not in group:
                        group.add(t)
                        new.append(prod)
                        if max_size is not None and len(group) >= max_size:
                            return None
        frontier = new
    out = np.array(sorted(group))
    ident = np.all(out == np.arange(N), axis=1)
    return np.vstack([out[ident], out[~ident]])


def inverse_perm(perm):
    """Inverse of a permutation.

    Parameters
    ----------
    perm : array_like of int

    Returns
    -------
    numpy.ndarray
    """
    perm = np.asarray(perm, dtype=int)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    return inv


def is_group(perms):
    """Whether a set of permutations is closed under composition.

    Parameters
    ----------
    perms : numpy.ndarray
        ``(P, N)``.

    Returns
    -------
    bool
    """
    perms = np.atleast_2d(np.asarray(perms, dtype=int))
    rows = {tuple(p) for p in perms}
    return all(tuple(p[q]) in rows for p in perms for q in perms)


def _cycles(perm):
    seen = np.zeros(len(perm), dtype=bool)
    out = []
    for start in range(len(perm)):
        if seen[start]:
            continue
        cyc = []
        k = start
        while not seen[k]:
            seen[k] = True
            cyc.append(k)
            k = perm[k]
        out.append(cyc)
    return out


def _salvage(perms):
    """Drop permutations whose cycles overlap longer cycles of others."""
    long_cycles = [c for p in perms for c in _cycles(p) if len(c) > 1]
    keep = []
    for p in perms:
        bad = False
        for cyc in (c for c in _cycles(p) if len(c) > 1):
            if any(len(cyc) < len(o) and not set(cyc).isdisjoint(o)
                   for o in long_cycles):
                bad = True
                break
        if not bad:
            keep.append(p)
    return np.array(keep) if keep else perms[:1]


def find_perms(R, z, lat_and_inv=None, callback=None, max_processes=None,
               max_group=100):
    """Permutational symmetries of a molecule from sampled geometries.

    Parameters
    ----------
    R : numpy.ndarray
        ``(M, N, 3)`` geometries (e.g. the training set).
    z : numpy.ndarray
        ``(N,)`` atomic numbers; only equal species are exchanged.
    lat_and_inv : tuple, optional
        Lattice and inverse for minimum-image distances.
    callback : callable, optional
        ``callback(current, total, done_str)`` progress function.
    max_processes : int, optional
        Accepted for compatibility (the work is vectorised).
    max_group : int, optional
        Give up the closure above this many permutations and salvage.

    Returns
    -------
    numpy.ndarray
        ``(P, N)`` permutations, identity first; each row p maps a geometry
        to an equivalent one, ``R[p]``.
    """
    R = np.asarray(R, dtype=float)
    z = np.asarray(z)
    M, N = R.shape[:2]
    if callback is not None:
        callback(0, 3, "Permutation search")
    if M < 2:
        return np.arange(N)[None, :]
    A = _distance_matrices(R, lat_and_inv)
    perms, costs = _pair_matchings(A, z)
    if callback is not None:
        callback(1, 3, "Bi-partite matching")
    kept = _spanning_tree_perms(perms, costs, N)
    if callback is not None:
        callback(2, 3, "Permutation synchronisation")
    group = complete_group(kept, max_size=max_group)
    if group is None:
        group = complete_group(_salvage(kept), max_size=max_group)
        if group is None:
            warnings.warn(
                "the matchings of the {} geometries do not close into a "
                "permutation group of at most {} elements; training without "
                "symmetries (GDML). The search depends on the sample: a "
                "larger training set, or symmetries given with perms= "
                "(--perms_from), may help".format(M, max_group),
                RuntimeWarning)
            group = np.arange(N)[None, :]
    if callback is not None:
        callback(3, 3, "found {:d} {}".format(
            len(group), "symmetry" if len(group) == 1 else "symmetries"))
    return group
