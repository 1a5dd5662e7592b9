"""Vectorised Gaussian symmetry functions and their derivatives.

The kernel works on one image's neighbour list (:mod:`.neighbors`) and a
compiled *plan* of the symmetry functions of each element. Values are summed
per centre atom; derivatives are kept per neighbour entry,
``d G_i / d r_e`` for every entry ``e = (i, j, offset)`` of centre ``i``.
Every three-body term depends only on the two neighbour vectors of its
centre, so this layout holds all the derivative information: forces,
Amp's ``fingerprintprimes`` and the virial are contractions of it.

Centre atoms are processed a few at a time so that temporaries stay small
(see PERFORMANCE_NOTES.md); there is no Python loop over atoms, neighbours
or triplets, only over chunks, elements and element pairs.
"""

import numpy as np

# Centre atoms processed together; keeps triplet temporaries near 0.5 MB.
_CHUNK_ATOMS = 12


class ElementPlan:
    """The symmetry functions of one centre element, grouped for speed.

    Parameters
    ----------
    Gs : list of dict
        Validated symmetry-function dicts of this element, in fingerprint
        order.
    elements : list of str
        Every element that can appear (sorted); defines the element codes.
    """

    def __init__(self, Gs, elements):
        code = {element: k for k, element in enumerate(elements)}
        n_elements = len(elements)
        self.n_features = len(Gs)
        g2 = [(k, G) for k, G in enumerate(Gs) if G["type"] == "G2"]
        three = [(k, G) for k, G in enumerate(Gs) if G["type"] != "G2"]
        # G2 functions whose neighbour element can occur at all.
        g2 = [(k, G) for k, G in g2 if G["element"] in code]
        self.g2_columns = np.array([k for k, _ in g2], dtype=np.int64)
        self.g2_element = np.array([code[G["element"]] for _, G in g2],
                                   dtype=np.int64)
        self.g2_eta = np.array([G["eta"] for _, G in g2], dtype=float)
        self.g2_offset = np.array([G.get("offset", 0.0) for _, G in g2],
                                  dtype=float)
        # Three-body functions grouped by the (sorted) element pair code.
        self.pair_groups = {}
        for k, G in three:
            a, b = G["elements"]
            if a not in code or b not in code:
                continue
            ca, cb = sorted((code[a], code[b]))
            pair = ca * n_elements + cb
            self.pair_groups.setdefault(pair, []).append(
                (k, G["type"], float(G["eta"]), float(G["zeta"]),
                 float(G["gamma"])))
        self.needs_all_triplets = any(G["type"] == "G5" for _, G in three)
        self.has_triplets = bool(self.pair_groups)
        self.n_elements = n_elements


def _integer_power(x, zeta):
    """``x ** zeta``, by repeated multiplication for small whole zeta."""
    if zeta == 1.0:
        return x.copy()
    if zeta == 2.0:
        return x * x
    if zeta == 4.0:
        y = x * x
        return y * y
    if float(zeta).is_integer() and 0 < zeta <= 16:
        return np.power(x, int(zeta))
    return np.power(x, zeta)


def _segment_sum(values, segment, n_segments):
    """Sum rows of ``values`` (n, k) into ``n_segments`` rows by ``segment``."""
    out = np.empty((n_segments, values.shape[1]))
    for column in range(values.shape[1]):
        out[:, column] = np.bincount(segment, weights=values[:, column],
                                     minlength=n_segments)
    return out


def compute_element(plan, cutoff, neighbors, codes, atoms,
                    derivatives=False):
    """Fingerprints of the centre atoms ``atoms`` (all of one element).

    Parameters
    ----------
    plan : ElementPlan
    cutoff : Cosine or Polynomial
    neighbors : NeighborList
        Of the whole image.
    codes : ndarray of int
        Element code of every atom of the image.
    atoms : ndarray of int
        Indices of the centre atoms, ascending.
    derivatives : bool
        Also return the per-entry derivatives.

    Returns
    -------
    values : ndarray, shape (len(atoms), n_features)
    entries : ndarray of int or None
        Neighbour-entry ids whose centre is in ``atoms``, in order.
    entry_derivatives : ndarray, shape (len(entries), 3, n_features) or None
        ``d G_i / d r_e`` for each of those entries.
    """
    Rc = cutoff.Rc
    n_features = plan.n_features
    values = np.zeros((len(atoms), n_features))
    first = neighbors.first_entry
    counts_all = first[atoms + 1] - first[atoms]
    entries_all = _ragged(first[atoms], counts_all)
    if derivatives:
        entry_derivatives = np.zeros((len(entries_all), 3, n_features))
    else:
        entry_derivatives = None
    entry_start = np.concatenate([[0], np.cumsum(counts_all)])

    for c0 in range(0, len(atoms), _CHUNK_ATOMS):
        c1 = min(c0 + _CHUNK_ATOMS, len(atoms))
        e0, e1 = entry_start[c0], entry_start[c1]
        if e1 == e0:
            continue
        entries = entries_all[e0:e1]
        counts = counts_all[c0:c1]
        row = np.repeat(np.arange(c1 - c0), counts)  # chunk-local centre
        r = neighbors.vectors[entries]
        d = neighbors.distances[entries]
        neighbor_code = codes[neighbors.j[entries]]
        chunk_values = values[c0:c1]
        chunk_derivatives = (entry_derivatives[e0:e1] if derivatives
                             else None)
        fc = cutoff(d)
        fc_prime = cutoff.prime(d) if derivatives else None
        _g2(plan, Rc, r, d, fc, fc_prime, neighbor_code, row,
            chunk_values, chunk_derivatives)
        if plan.has_triplets:
            _three_body(plan, cutoff, r, d, fc, fc_prime, neighbor_code,
                        row, counts, chunk_values, chunk_derivatives)
    return values, (entries_all if derivatives else None), entry_derivatives


def _ragged(starts, counts):
    """Concatenate ``arange(s, s + c)`` for every (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + (np.arange(total) - offsets)


def _g2(plan, Rc, r, d, fc, fc_prime, neighbor_code, row, values,
        derivatives):
    """Add the two-body terms of one chunk."""
    if len(plan.g2_columns) == 0:
        return
    n_rows = values.shape[0]
    for element in np.unique(plan.g2_element):
        functions = np.flatnonzero(plan.g2_element == element)
        columns = plan.g2_columns[functions]
        pick = np.flatnonzero(neighbor_code == element)
        if len(pick) == 0:
            continue
        dp = d[pick, None]
        shifted = dp - plan.g2_offset[functions]
        gauss = np.exp(-plan.g2_eta[functions] * shifted ** 2 / Rc ** 2)
        term = gauss * fc[pick, None]
        values[:, columns] += _segment_sum(term, row[pick], n_rows)
        if derivatives is not None:
            dterm = gauss * (fc_prime[pick, None]
                             - 2.0 * plan.g2_eta[functions] * shifted
                             / Rc ** 2 * fc[pick, None])
            unit = r[pick] / dp  # (n, 3)
            derivatives[pick[:, None, None], np.arange(3)[None, :, None],
                        columns[None, None, :]] += \
                unit[:, :, None] * dterm[:, None, :]


def _three_body(plan, cutoff, r, d, fc, fc_prime, neighbor_code, row,
                counts, values, derivatives):
    """Add the G4/G5 terms of one chunk over pairs p < q of each centre."""
    Rc = cutoff.Rc
    n_rows = values.shape[0]
    # Pairs (p, q), p < q, of entries of the same centre; entries of a
    # centre are contiguous, so q runs from p + 1 to the centre's end.
    end = np.repeat(np.cumsum(counts), counts)
    partners = end - np.arange(len(d)) - 1
    p = np.repeat(np.arange(len(d)), partners)
    q = _ragged(np.arange(len(d)) + 1, partners)
    c_vec = r[q] - r[p]
    dc = np.sqrt(np.einsum("ij,ij->i", c_vec, c_vec))
    if not plan.needs_all_triplets:
        keep = np.flatnonzero(dc < Rc)
        p, q, c_vec, dc = p[keep], q[keep], c_vec[keep], dc[keep]
    if len(p) == 0:
        return
    ca, cb = neighbor_code[p], neighbor_code[q]
    pair = np.minimum(ca, cb) * plan.n_elements + np.maximum(ca, cb)
    for pair_code, functions in plan.pair_groups.items():
        pick = np.flatnonzero(pair == pair_code)
        if len(pick) == 0:
            continue
        _three_body_pair(functions, cutoff, r, d, fc, fc_prime, row,
                         p[pick], q[pick], c_vec[pick], dc[pick], values,
                         derivatives)


def _three_body_pair(functions, cutoff, r, d, fc, fc_prime, row, p, q,
                     c_vec, dc, values, derivatives):
    """Terms of the functions of one element pair over the given pairs."""
    Rc = cutoff.Rc
    a, b = r[p], r[q]
    da, db = d[p], d[q]
    inv_ab = 1.0 / (da * db)
    cos = np.clip(np.einsum("ij,ij->i", a, b) * inv_ab, -1.0, 1.0)
    fa, fb = fc[p], fc[q]
    sum_ab = da * da + db * db
    want = derivatives is not None
    if any(kind == "G4" for _, kind, _, _, _ in functions):
        fcc = cutoff(dc)
        if want:
            with np.errstate(divide="ignore", invalid="ignore"):
                fcc_over = np.where(dc > 0, cutoff.prime(dc) / dc, 0.0)
    if want:
        fa_over = fc_prime[p] / da
        fb_over = fc_prime[q] / db
    gaussians = {}
    columns, terms, grads_p, grads_q = [], [], [], []
    for column, kind, eta, zeta, gamma in functions:
        if (kind, eta) not in gaussians:
            extra = dc * dc if kind == "G4" else 0.0
            gauss = np.exp(-eta * (sum_ab + extra) / Rc ** 2)
            cut = fa * fb * fcc if kind == "G4" else fa * fb
            gaussians[kind, eta] = gauss, gauss * cut
        gauss, radial = gaussians[kind, eta]
        base = 1.0 + gamma * cos
        scale = 2.0 ** (1.0 - zeta)
        angular = _integer_power(base, zeta)
        term = scale * angular * radial
        columns.append(column)
        terms.append(term)
        if not want:
            continue
        # d term / d a = A1 a + B1 b + C1 c and d term / d b = A2 a + B2 b
        # + C2 c, with c = b - a: from the angle, the Gaussian and the
        # cutoffs in turn. ``rest`` is the term without its cutoff factors,
        # so no division by a cutoff value (zero at Rc) is needed.
        angular_prime = (scale * zeta * gamma * radial
                         * _integer_power(base, zeta - 1.0))
        rest = scale * angular * gauss
        two_eta_term = 2.0 * eta / Rc ** 2 * term
        cross = angular_prime * inv_ab
        A1 = -angular_prime * cos / (da * da) - two_eta_term
        B2 = -angular_prime * cos / (db * db) - two_eta_term
        if kind == "G4":
            A1 += rest * fb * fcc * fa_over
            B2 += rest * fa * fcc * fb_over
            cut_c = rest * fa * fb * fcc_over
            C1 = two_eta_term - cut_c
            C2 = cut_c - two_eta_term
        else:
            A1 += rest * fb * fa_over
            B2 += rest * fa * fb_over
            C1 = C2 = np.zeros_like(term)
        grads_p.append((A1, cross, C1))
        grads_q.append((cross, B2, C2))
    terms = np.stack(terms, axis=1)
    values[:, columns] += _segment_sum(terms, row[p], values.shape[0])
    if not want:
        return
    n_local = derivatives.shape[0]
    for index, grads in ((p, grads_p), (q, grads_q)):
        coeff = np.array(grads)  # (n_functions, 3 coefficients, n_pairs)
        vec = (coeff[:, 0, None, :] * a.T[None]
               + coeff[:, 1, None, :] * b.T[None]
               + coeff[:, 2, None, :] * c_vec.T[None])  # (n_f, 3, n_pairs)
        flat = vec.reshape(-1, len(index)).T
        summed = _segment_sum(flat, index, n_local)
        derivatives[:, :, columns] += summed.reshape(
            n_local, len(columns), 3).transpose(0, 2, 1)


