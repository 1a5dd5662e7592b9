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

import functools

import numpy as np

from .._memory import tune_malloc

tune_malloc()

# Centre atoms processed together; keeps triplet temporaries near 0.5 MB.
_CHUNK_ATOMS = 8


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
        return x
    if zeta == 2.0:
        return x * x
    if zeta == 3.0:
        return x * x * x
    if zeta == 4.0:
        y = x * x
        return y * y
    if zeta == 0.0:
        return np.ones_like(x)
    if float(zeta).is_integer() and 0 < zeta <= 16:
        return np.power(x, int(zeta))
    return np.power(x, zeta)


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
    n_features = plan.n_features
    values = np.zeros((len(atoms), n_features))
    first = neighbors.first_entry
    counts_all = first[atoms + 1] - first[atoms]
    entries_all = _ragged(first[atoms], counts_all)
    entry_derivatives = (np.zeros((len(entries_all), 3, n_features))
                         if derivatives else None)
    entry_start = np.concatenate([[0], np.cumsum(counts_all)])
    for c0 in range(0, len(atoms), _CHUNK_ATOMS):
        c1 = min(c0 + _CHUNK_ATOMS, len(atoms))
        e0, e1 = entry_start[c0], entry_start[c1]
        if e1 == e0:
            continue
        chunk = _Chunk(neighbors, codes, entries_all[e0:e1],
                       counts_all[c0:c1], cutoff, derivatives)
        chunk_derivatives = (entry_derivatives[e0:e1] if derivatives
                             else None)
        _two_body(plan, chunk, values[c0:c1], chunk_derivatives)
        if plan.has_triplets:
            _three_body(plan, chunk, values[c0:c1], chunk_derivatives)
    return values, (entries_all if derivatives else None), entry_derivatives


def _ragged(starts, counts):
    """Concatenate ``arange(s, s + c)`` for every (s, c)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + (np.arange(total) - offsets)


class _Chunk:
    """A few centre atoms' neighbour entries, flat and in padded slots.

    Entry ``e`` of centre row ``row[e]`` sits in slot ``slot[e]`` of a
    ``(n_centres, width)`` block; padding slots have zero vectors and zero
    cutoff values, so they contribute nothing.
    """

    def __init__(self, neighbors, codes, entries, counts, cutoff,
                 derivatives):
        self.cutoff = cutoff
        self.Rc = cutoff.Rc
        self.n_centres = len(counts)
        self.width = width = int(counts.max())
        self.counts = counts
        self.row = np.repeat(np.arange(len(counts)), counts)
        starts = np.cumsum(counts) - counts
        self.slot = (self.row * width
                     + np.arange(len(entries)) - np.repeat(starts, counts))
        self.r = neighbors.vectors[entries]
        self.d = neighbors.distances[entries]
        self.code = codes[neighbors.j[entries]]
        self.fc = cutoff(self.d)
        self.fc_prime = cutoff.prime(self.d) if derivatives else None

    def padded(self, values, fill=0.0):
        """Scatter per-entry values (n, ...) into (n_centres * width, ...)."""
        shape = (self.n_centres * self.width,) + values.shape[1:]
        out = np.full(shape, fill, dtype=values.dtype)
        out[self.slot] = values
        return out


def _row_sums(terms, counts):
    """Sum ``terms`` (k, n) over consecutive runs of ``counts`` entries.

    Returns an array of shape ``(len(counts), k)``. Each of the k rows is
    contiguous, so ``reduceat`` runs over contiguous memory.
    """
    out = np.zeros((len(counts), terms.shape[0]))
    nonempty = np.flatnonzero(counts)
    if len(nonempty):
        starts = (np.cumsum(counts) - counts)[nonempty]
        out[nonempty] = np.add.reduceat(terms, starts, axis=1).T
    return out


@functools.lru_cache(maxsize=64)
def _strict_upper(width):
    """Read-only ``(width, width)`` mask of the slot pairs j < k."""
    mask = np.triu(np.ones((width, width), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


def _two_body(plan, chunk, values, derivatives):
    """Add the G2 terms of one chunk."""
    if len(plan.g2_columns) == 0:
        return
    Rc2 = chunk.Rc ** 2
    # Layout (function, entry) so that the per-centre sums are contiguous.
    same = plan.g2_element[:, None] == chunk.code[None, :]
    shifted = chunk.d[None, :] - plan.g2_offset[:, None]
    eta = plan.g2_eta[:, None]
    gauss = np.exp(-eta / Rc2 * shifted * shifted) * same
    term = gauss * chunk.fc
    values[:, plan.g2_columns] += _row_sums(term, chunk.counts)
    if derivatives is not None:
        dterm = gauss * (chunk.fc_prime - 2.0 / Rc2 * eta * shifted
                         * chunk.fc)
        unit = chunk.r / chunk.d[:, None]
        derivatives[:, :, plan.g2_columns] += \
            unit[:, :, None] * dterm.T[:, None, :]


def _three_body(plan, chunk, values, derivatives):
    """Add the G4/G5 terms of one chunk over slot pairs j < k of a centre.

    The neighbour vectors of the chunk are laid out as ``(centres, width,
    3)``; one batched matrix product gives every ``r_ij . r_ik``, hence the
    angles and ``R_jk``. Only the pairs that can contribute are then taken
    (``R_jk < Rc`` unless a G5 needs them all).
    """
    Rc2 = chunk.Rc ** 2
    c, w = chunk.n_centres, chunk.width
    X = chunk.padded(chunk.r).reshape(c, w, 3)
    gram = np.matmul(X, X.transpose(0, 2, 1)).reshape(-1)
    d2 = chunk.padded(chunk.d * chunk.d)
    if plan.needs_all_triplets:
        valid = chunk.padded(np.ones(len(chunk.d), dtype=bool), False)
        valid = valid.reshape(c, w)
        usable = valid[:, :, None] & valid[:, None, :]
    else:
        # R_jk^2 = d_j^2 + d_k^2 - 2 r_j.r_k < Rc^2, as one comparison.
        half = 0.5 * chunk.padded(chunk.d * chunk.d, fill=1e300).reshape(c, w)
        half -= 0.25 * Rc2
        usable = gram.reshape(c, w, w) > half[:, :, None] + half[:, None, :]
    usable &= _strict_upper(w)
    # Row-major order: triplets come sorted by centre, then by slot j.
    flat = np.flatnonzero(usable)
    if len(flat) == 0:
        return
    slot_j = flat // w
    centre = slot_j // w
    slot_k = flat - (slot_j - centre) * w
    if plan.n_elements == 1:
        groups = [(functions, None) for functions in plan.pair_groups.values()]
    else:
        code = chunk.padded(chunk.code, fill=-1)
        ca, cb = code[slot_j], code[slot_k]
        pair = np.minimum(ca, cb) * plan.n_elements + np.maximum(ca, cb)
        groups = [(functions, np.flatnonzero(pair == pair_code))
                  for pair_code, functions in plan.pair_groups.items()]
    for functions, pick in groups:
        if pick is None:
            t = _Triplets(chunk, gram[flat], d2, slot_j, slot_k, flat,
                          derivatives is not None)
            t_centre = centre
        elif len(pick) == 0:
            continue
        else:
            t = _Triplets(chunk, gram[flat[pick]], d2, slot_j[pick],
                          slot_k[pick], flat[pick], derivatives is not None)
            t_centre = centre[pick]
        columns, terms, slot_grad = _three_body_terms(functions, t, chunk,
                                                       derivatives is not None)
        counts = np.bincount(t_centre, minlength=c)
        values[:, columns] += _row_sums(np.stack(terms), counts)
        if derivatives is not None:
            # (n_functions, c * w, 3) -> per entry (n, 3, n_functions).
            per_slot = slot_grad.reshape(len(columns), c * w, 3)[:, chunk.slot]
            derivatives[:, :, columns] += per_slot.transpose(1, 2, 0)


class _Triplets:
    """Per-pair geometry of the usable slot pairs (j, k) of a chunk."""

    def __init__(self, chunk, gram, d2, slot_j, slot_k, flat, derivatives):
        # ``flat`` indexes (centre, j, k) in the (c, w, w) block.
        self.flat = flat
        pad_d = chunk.padded(chunk.d, fill=1.0)
        pad_fc = chunk.padded(chunk.fc)
        self.slot_j, self.slot_k = slot_j, slot_k
        self.da, self.db = pad_d[slot_j], pad_d[slot_k]
        self.fa, self.fb = pad_fc[slot_j], pad_fc[slot_k]
        self.inv_ab = 1.0 / (self.da * self.db)
        self.cos = np.clip(gram * self.inv_ab, -1.0, 1.0)
        self.sum_ab = d2[slot_j] + d2[slot_k]
        # R_jk^2; the cutoffs take squared distances (no square root).
        self.dc2 = np.maximum(self.sum_ab - 2.0 * gram, 0.0)
        if derivatives:
            pad_fp = chunk.padded(chunk.fc_prime)
            self.fa_over = pad_fp[slot_j] / self.da
            self.fb_over = pad_fp[slot_k] / self.db


def _three_body_terms(functions, t, chunk, derivatives):
    """Values and slot gradients of the functions of one element pair.

    Returns
    -------
    columns : list of int
    terms : list of ndarray
        Each function's term per pair.
    slot_grad : ndarray, shape (n_functions, c, w, 3) or None
        ``d (sum of terms of a centre) / d r`` of every slot.
    """
    Rc2 = chunk.Rc ** 2
    cutoff = chunk.cutoff
    if any(kind == "G4" for _, kind, _, _, _ in functions):
        fcc = cutoff.squared(t.dc2)
        if derivatives:
            fcc_over = cutoff.prime_over_r_squared(t.dc2)
    gaussians, bases, powers = {}, {}, {}

    def power(gamma, exponent):
        # (1 + gamma cos)^exponent, shared by the functions that need it.
        if gamma not in bases:
            bases[gamma] = 1.0 + gamma * t.cos
        if (gamma, exponent) not in powers:
            powers[gamma, exponent] = _integer_power(bases[gamma], exponent)
        return powers[gamma, exponent]

    columns, terms, coefficients = [], [], []
    for column, kind, eta, zeta, gamma in functions:
        if (kind, eta) not in gaussians:
            extra = t.dc2 if kind == "G4" else 0.0
            gauss = np.exp(-eta / Rc2 * (t.sum_ab + extra))
            cut = t.fa * t.fb * fcc if kind == "G4" else t.fa * t.fb
            gaussians[kind, eta] = gauss, gauss * cut
        gauss, radial = gaussians[kind, eta]
        scale = 2.0 ** (1.0 - zeta)
        angular = power(gamma, zeta)
        term = angular * radial
        if scale != 1.0:
            term *= scale
        columns.append(column)
        terms.append(term)
        if not derivatives:
            continue
        # With a = r_ij, b = r_ik, c = b - a:
        # d term / d a = A1 a + B1 b + C1 c, d term / d b = A2 a + B2 b + C2 c,
        # from the angle, the Gaussian and the cutoffs in turn. ``rest`` is
        # the term without its cutoff factors, so nothing is divided by a
        # cutoff value (zero at Rc).
        lower = power(gamma, zeta - 1.0)
        angular_prime = (scale * zeta * gamma) * radial * lower
        rest = scale * angular * gauss
        two_eta_term = 2.0 * eta / Rc2 * term
        cross = angular_prime * t.inv_ab
        A1 = -angular_prime * t.cos / (t.da * t.da) - two_eta_term
        B2 = -angular_prime * t.cos / (t.db * t.db) - two_eta_term
        if kind == "G4":
            A1 += rest * t.fb * fcc * t.fa_over
            B2 += rest * t.fa * fcc * t.fb_over
            cut_c = rest * t.fa * t.fb * fcc_over
            C1 = two_eta_term - cut_c
            C2 = cut_c - two_eta_term
            # Slot j gets (A1 - C1) a + (B1 + C1) b; slot k gets
            # (A2 - C2) a + (B2 + C2) b.
            coefficients.append((A1 - C1, cross + C1, cross - C2, B2 + C2))
        else:
            A1 += rest * t.fb * t.fa_over
            B2 += rest * t.fa * t.fb_over
            coefficients.append((A1, cross, cross, B2))
    if not derivatives:
        return columns, terms, None
    n_f = len(columns)
    c, w = chunk.n_centres, chunk.width
    size = c * w
    # Off-diagonal coefficients couple a slot to the other slot's vector:
    # M[j, k] multiplies r_k into slot j, M[k, j] multiplies r_j into slot k.
    M = np.zeros((n_f, size * w))
    diagonal = np.zeros((n_f, size))
    jk = t.flat
    kj = t.slot_k * w + (t.slot_j - (t.slot_j // w) * w)
    for f, (own_j, other_j, other_k, own_k) in enumerate(coefficients):
        M[f, jk] = other_j
        M[f, kj] = other_k
        diagonal[f] = (np.bincount(t.slot_j, own_j, minlength=size)
                       + np.bincount(t.slot_k, own_k, minlength=size))
    X = chunk.padded(chunk.r).reshape(c, w, 3)
    slot_grad = M.reshape(n_f, c, w, w) @ X[None]
    slot_grad += diagonal.reshape(n_f, c, w, 1) * X[None]
    return columns, terms, slot_grad
