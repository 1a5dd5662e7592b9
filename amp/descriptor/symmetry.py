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

from ._rows import put_rows

# Centre atoms processed together: triplet temporaries stay near 1 MB
# (12 measured best for the values, the stored derivatives and the fused
# force path on a 108-atom cell; 8 and 16 are 3-10 % slower).
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
        # All element pairs at once: the distinct (kind, eta, zeta, gamma)
        # and, per pair code, the column of each (n_features when that
        # pair has no such function).
        shapes = sorted({function[1:] for functions in
                         self.pair_groups.values() for function in functions})
        self.templates = [(f,) + shape for f, shape in enumerate(shapes)]
        self.template_columns = np.full((n_elements ** 2, len(shapes)),
                                        self.n_features, dtype=np.int64)
        for pair, functions in self.pair_groups.items():
            for column, *shape in functions:
                self.template_columns[pair, shapes.index(tuple(shape))] = \
                    column
        present = self.template_columns < self.n_features
        self.template_code, self.template_index = np.nonzero(present)
        self.template_target = self.template_columns[present]


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
                    derivatives=False, evaluate=None):
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
    evaluate : callable, optional
        ``evaluate(rows, values) -> dE_dG``: the derivative of the energy
        with respect to the fingerprints ``values`` of the centre atoms
        ``atoms[rows]``. When given, the derivatives are contracted with it
        as soon as a chunk of centres is done, and ``dE / d r_e`` is
        returned per entry instead of ``d G / d r_e`` (no derivative array
        is ever built).

    Returns
    -------
    values : ndarray, shape (len(atoms), n_features)
    entries : ndarray of int or None
        Neighbour-entry ids whose centre is in ``atoms``, in order.
    entry_derivatives : ndarray or None
        ``d G_i / d r_e``, shape ``(len(entries), 3, n_features)``, for each
        of those entries; with ``evaluate``, ``dE / d r_e``, shape
        ``(len(entries), 3)``.
    """
    n_features = plan.n_features
    values = np.zeros((len(atoms), n_features))
    first = neighbors.first_entry
    counts_all = first[atoms + 1] - first[atoms]
    entries_all = _ragged(first[atoms], counts_all)
    contract = evaluate is not None
    if contract:
        entry_derivatives = np.zeros((len(entries_all), 3))
    elif derivatives:
        entry_derivatives = np.zeros((len(entries_all), 3, n_features))
    else:
        entry_derivatives = None
    entry_start = np.concatenate([[0], np.cumsum(counts_all)])
    for c0 in range(0, len(atoms), _CHUNK_ATOMS):
        c1 = min(c0 + _CHUNK_ATOMS, len(atoms))
        e0, e1 = entry_start[c0], entry_start[c1]
        if e1 == e0:
            if contract:  # isolated centres still have an energy
                evaluate(np.arange(c0, c1), values[c0:c1])
            continue
        chunk = _Chunk(neighbors, codes, entries_all[e0:e1],
                       counts_all[c0:c1], cutoff, derivatives or contract)
        stored = (entry_derivatives[e0:e1] if derivatives and not contract
                  else None)
        deferred = [] if contract else None
        _two_body(plan, chunk, values[c0:c1], stored, deferred)
        if plan.has_triplets:
            _three_body(plan, chunk, values[c0:c1], stored, deferred)
        if contract:
            dE_dG = evaluate(np.arange(c0, c1), values[c0:c1])
            for add_gradient in deferred:
                add_gradient(dE_dG, entry_derivatives[e0:e1])
    keep_entries = derivatives or contract
    return values, (entries_all if keep_entries else None), entry_derivatives


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
        self.r = np.take(neighbors.vectors, entries, axis=0)
        self.d = neighbors.distances[entries]
        self.code = codes[neighbors.j[entries]]
        self.fc = cutoff(self.d)
        self.fc_prime = cutoff.prime(self.d) if derivatives else None

    def padded(self, values, fill=0.0):
        """Scatter per-entry values (n, ...) into (n_centres * width, ...)."""
        shape = (self.n_centres * self.width,) + values.shape[1:]
        out = np.full(shape, fill, dtype=values.dtype)
        put_rows(out, self.slot, values)
        return out

    @functools.cached_property
    def X(self):
        """The neighbour vectors in slots, shape ``(n_centres, width, 3)``."""
        return self.padded(self.r).reshape(self.n_centres, self.width, 3)


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


def _two_body(plan, chunk, values, derivatives, deferred=None):
    """Add the G2 terms of one chunk (and their derivatives to
    ``derivatives``, or to ``deferred`` a function adding ``dE/dr`` once
    ``dE/dG`` is known)."""
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
    if derivatives is None and deferred is None:
        return
    dterm = gauss * (chunk.fc_prime - 2.0 / Rc2 * eta * shifted * chunk.fc)
    unit = chunk.r / chunk.d[:, None]
    if derivatives is not None:
        derivatives[:, :, plan.g2_columns] += \
            unit[:, :, None] * dterm.T[:, None, :]
    if deferred is not None:
        def add_gradient(dE_dG, gradient):
            weights = np.take(dE_dG[:, plan.g2_columns], chunk.row,
                              axis=0)  # (entry, f)
            gradient += unit * np.einsum("fe,ef->e", dterm, weights)[:, None]
        deferred.append(add_gradient)


def _three_body(plan, chunk, values, derivatives, deferred=None):
    """Add the G4/G5 terms of one chunk over slot pairs j < k of a centre.

    The neighbour vectors of the chunk are laid out as ``(centres, width,
    3)``; one batched matrix product gives every ``r_ij . r_ik``, hence the
    angles and ``R_jk``. Only the pairs that can contribute are then taken
    (``R_jk < Rc`` unless a G5 needs them all).
    """
    Rc2 = chunk.Rc ** 2
    c, w = chunk.n_centres, chunk.width
    X = chunk.X
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
    gradients = derivatives is not None or deferred is not None
    inside = not plan.needs_all_triplets  # every triplet has R_jk < Rc
    inv_d = chunk.padded(1.0 / chunk.d)
    if plan.n_elements == 1:
        groups = [(functions, None) for functions in plan.pair_groups.values()]
    else:
        code = chunk.padded(chunk.code, fill=-1)
        ca, cb = code[slot_j], code[slot_k]
        pair = np.minimum(ca, cb) * plan.n_elements + np.maximum(ca, cb)
        if derivatives is None:
            t = _Triplets(chunk, gram[flat], d2, inv_d, slot_j, slot_k, flat,
                          gradients, inside)
            _all_pairs(plan, t, chunk, centre, pair, values, deferred)
            return
        groups = [(functions, np.flatnonzero(pair == pair_code))
                  for pair_code, functions in plan.pair_groups.items()]
    for functions, pick in groups:
        if pick is None:
            t = _Triplets(chunk, gram[flat], d2, inv_d, slot_j, slot_k, flat,
                          gradients, inside)
            t_centre = centre
        elif len(pick) == 0:
            continue
        else:
            t = _Triplets(chunk, gram[flat[pick]], d2, inv_d, slot_j[pick],
                          slot_k[pick], flat[pick], gradients, inside)
            t_centre = centre[pick]
        terms = _PairTerms(functions, t, chunk, gradients)
        counts = np.bincount(t_centre, minlength=c)
        if pick is None:
            values[:, terms.columns] += _row_sums(terms.terms, counts)
        else:  # summed in the order _all_pairs sums them: same bits
            values[:, terms.columns] += np.stack([
                np.bincount(t_centre, term, minlength=c)
                for term in terms.terms]).T
        if derivatives is not None:
            slot_grad = terms.slot_gradients(terms.coefficients())
            # (n_functions, c * w, 3) -> per entry (n, 3, n_functions).
            per_slot = np.take(slot_grad.reshape(len(terms.columns), c * w,
                                                 3), chunk.slot, axis=1)
            derivatives[:, :, terms.columns] += per_slot.transpose(1, 2, 0)
        if deferred is not None:
            deferred.append(functools.partial(
                _add_pair_gradient, terms, functools.partial(
                    _repeated_weights, terms.columns, counts)))


class _Triplets:
    """Per-pair geometry of the usable slot pairs (j, k) of a chunk.

    ``inside``: every triplet has ``R_jk < Rc`` (up to rounding), so the
    cutoffs of ``R_jk`` need no range test.
    """

    def __init__(self, chunk, gram, d2, inv_d, slot_j, slot_k, flat,
                 derivatives, inside):
        # ``flat`` indexes (centre, j, k) in the (c, w, w) block.
        self.flat, self.chunk, self.inside = flat, chunk, inside
        self.slot_j, self.slot_k = slot_j, slot_k
        inv_a, inv_b = inv_d[slot_j], inv_d[slot_k]
        self.inv_ab = inv_a * inv_b
        self.cos = gram * self.inv_ab
        np.clip(self.cos, -1.0, 1.0, out=self.cos)
        self.sum_ab = d2[slot_j] + d2[slot_k]
        # R_jk^2; the cutoffs take squared distances (no square root).
        self.dc2 = gram * -2.0
        self.dc2 += self.sum_ab
        np.maximum(self.dc2, 0.0, out=self.dc2)
        if derivatives:
            self.inv_a2 = inv_a * inv_a
            self.inv_b2 = inv_b * inv_b

    def pair_of(self, per_entry):
        """A per-entry quantity at slots j and k of every triplet."""
        padded = self.chunk.padded(per_entry)
        return padded[self.slot_j], padded[self.slot_k]

    def __getattr__(self, name):
        # The cutoff values at j and k (and their derivatives over the
        # distance), gathered only when a function needs them.
        if name in ("fa", "fb"):
            self.fa, self.fb = self.pair_of(self.chunk.fc)
            return getattr(self, name)
        if name in ("fa_over", "fb_over"):
            self.fa_over, self.fb_over = self.pair_of(
                self.chunk.fc_prime / self.chunk.d)
            return getattr(self, name)
        raise AttributeError(name)


def _all_pairs(plan, t, chunk, centre, pair, values, deferred):
    """The three-body terms of every element pair in one pass over all
    triplets (the value and fused paths of images with several elements).

    Each distinct (kind, eta, zeta, gamma) is computed once for all
    triplets; sums go to a (centre, pair) bin, then to the column that
    pair's function has. ``dE/dG`` weights are gathered per triplet from
    its centre and pair, so all pairs share one gradient scatter too.
    """
    terms = _PairTerms(plan.templates, t, chunk, deferred is not None)
    n_codes = plan.n_elements ** 2
    bins = centre * n_codes + pair
    size = chunk.n_centres * n_codes
    sums = np.stack([np.bincount(bins, term, minlength=size)
                     for term in terms.terms])
    sums = sums.reshape(len(terms.terms), chunk.n_centres, n_codes)
    values[:, plan.template_target] += \
        sums[plan.template_index, :, plan.template_code].T
    if deferred is not None:
        deferred.append(functools.partial(
            _add_pair_gradient, terms, functools.partial(
                _gathered_weights, plan, centre, pair)))


def _gathered_weights(plan, centre, pair, dE_dG):
    """``dE/dG`` of each triplet's centre for its pair's function of each
    template, shape (n_templates, n_triplets); 0 where the pair has none."""
    n_rows, n_features = dE_dG.shape
    padded = np.zeros((n_rows, n_features + 1))
    padded[:, :n_features] = dE_dG
    index = plan.template_columns[pair].T + centre * (n_features + 1)
    return np.take(padded.reshape(-1), index)


def _repeated_weights(columns, counts, dE_dG):
    """``dE/dG`` of each triplet's centre for each of ``columns``, shape
    (len(columns), n_triplets); ``counts`` are the triplets per centre."""
    return np.repeat(dE_dG[:, columns].T, counts, axis=1)


def _add_pair_gradient(terms, weights_of, dE_dG, gradient):
    """Add ``dE/dr_e`` of a set of three-body functions, given ``dE/dG`` of
    the chunk's centres, to the chunk's entry ``gradient``;
    ``weights_of(dE_dG)`` gives each function's weight per triplet."""
    weights = weights_of(dE_dG)
    slot_grad = terms.slot_gradients(terms.coefficients(weights))
    chunk = terms.chunk
    gradient += np.take(slot_grad.reshape(chunk.n_centres * chunk.width, 3),
                        chunk.slot, axis=0)


class _PairTerms:
    """The three-body functions of one element pair over a chunk's usable
    triplets: their values at once, their derivative coefficients on
    demand (per function, or already weighted by ``dE/dG``).

    Attributes
    ----------
    columns : list of int
    terms : ndarray, shape (n_functions, n_triplets)
        Each function's term per triplet.
    """

    def __init__(self, functions, t, chunk, derivatives):
        self.functions, self.t, self.chunk = functions, t, chunk
        self.derivatives = derivatives
        self._gaussians, self._bases, self._powers = {}, {}, {}
        self._factors, self._derivative_bases, self._fused = {}, {}, {}
        self.columns = [function[0] for function in functions]
        self.terms = np.empty((len(functions), len(t.cos)))
        for term, (_, kind, eta, zeta, gamma) in zip(self.terms, functions):
            np.multiply(self._power(gamma, zeta), self._radial(kind, eta),
                        out=term)
            if zeta != 1.0:
                term *= 2.0 ** (1.0 - zeta)

    def _radial(self, kind, eta):
        """The Gaussian times the cutoffs, per triplet."""
        fused = self._fused_g4(eta) if kind == "G4" else None
        if fused is not None:
            return fused["radial"]
        return self._gaussian(kind, eta)[1]

    def _fused_g4(self, eta):
        """Factors of the G4 functions of one eta from fused series.

        ``exp(-eta (a^2 + b^2 + c^2) / Rc^2) fc(a) fc(b) fc(c)`` is a
        per-entry factor ``P = exp(-eta d^2 / Rc^2) fc(d)`` at j and at k
        times one series ``h`` in ``c^2`` when the cutoff offers it, and
        so are its derivatives (``Q = exp(-eta d^2 / Rc^2) fc'(d) / d`` and
        a series ``k`` for ``fc'(c) / c``): no exponential and no separate
        cutoff polynomials per triplet. None when the cutoff has no series.

        Returns
        -------
        dict or None
            ``radial``; with derivatives also ``a``, ``b``, ``c``: the
            cutoff-derivative factors of the ``d/da``, ``d/db`` and
            ``d/dc`` terms (each over its distance), Gaussian included.
        """
        if eta not in self._fused:
            t, chunk = self.t, self.chunk
            h = chunk.cutoff.gaussian_squared(t.dc2, eta, t.inside)
            if h is None:
                self._fused[eta] = None
                return None
            gauss = np.exp(-eta / chunk.Rc ** 2 * chunk.d * chunk.d)
            Pa, Pb = t.pair_of(chunk.fc * gauss)
            Pb_h = Pb * h
            fused = {"radial": Pa * Pb_h}
            if self.derivatives:
                k = chunk.cutoff.gaussian_prime_over_r_squared(
                    t.dc2, eta, t.inside)
                Qa, Qb = t.pair_of(chunk.fc_prime / chunk.d * gauss)
                fused.update(a=Qa * Pb_h, b=Pa * h * Qb, c=Pa * Pb * k)
            self._fused[eta] = fused
        return self._fused[eta]

    def _fcc(self):
        """The cutoff of R_jk per triplet (for the unfused G4 path)."""
        if "fcc" not in self._factors:
            self._factors["fcc"] = self.chunk.cutoff.squared(self.t.dc2,
                                                             self.t.inside)
        return self._factors["fcc"]

    def _gaussian(self, kind, eta):
        """The Gaussian factor and it times the cutoffs, per triplet."""
        if (kind, eta) not in self._gaussians:
            t = self.t
            extra = t.dc2 if kind == "G4" else 0.0
            gauss = np.exp(-eta / self.chunk.Rc ** 2 * (t.sum_ab + extra))
            cut = t.fa * t.fb * self._fcc() if kind == "G4" else t.fa * t.fb
            self._gaussians[kind, eta] = gauss, gauss * cut
        return self._gaussians[kind, eta]

    def _power(self, gamma, exponent):
        """``(1 + gamma cos)^exponent``, shared by the functions (the
        scalar 1 for exponent 0)."""
        if exponent == 0.0:
            return 1.0
        if gamma not in self._bases:
            self._bases[gamma] = 1.0 + gamma * self.t.cos
        if (gamma, exponent) not in self._powers:
            self._powers[gamma, exponent] = _integer_power(
                self._bases[gamma], exponent)
        return self._powers[gamma, exponent]

    def coefficients(self, weights=None):
        """Coefficients of each function's derivative.

        With ``a = r_ij``, ``b = r_ik``: ``d term / d a = own_j a + other_j
        b`` and ``d term / d b = other_k a + own_k b``.

        Parameters
        ----------
        weights : ndarray, shape (n_functions, n_triplets), optional
            Each function's weight per triplet (``dE/dG`` of the centre).

        Returns
        -------
        list of tuple
            ``(own_j, other_j, other_k, own_k)`` per function, or one tuple
            of their weighted sums when ``weights`` is given.
        """
        # Every coefficient is linear in two angular factors of a function,
        # p = s zeta gamma (1 + gamma cos)^(zeta - 1) and
        # q = s (1 + gamma cos)^zeta with s = 2^(1 - zeta), times factors
        # of its (kind, eta) only; weighted sums are taken over p and q.
        sums, out = {}, []
        for f, (_, kind, eta, zeta, gamma) in enumerate(self.functions):
            scale = 2.0 ** (1.0 - zeta)
            p = (scale * zeta * gamma) * self._power(gamma, zeta - 1.0)
            q = scale * self._power(gamma, zeta)
            if weights is None:
                out.append(self._combine(kind, eta, p, q))
            elif (kind, eta) in sums:
                sums[kind, eta][0] += weights[f] * p
                sums[kind, eta][1] += weights[f] * q
            else:
                sums[kind, eta] = [weights[f] * p, weights[f] * q]
        if weights is None:
            return out
        total = None
        for (kind, eta), (p, q) in sums.items():
            part = self._combine(kind, eta, p, q)
            total = part if total is None else tuple(
                a + b for a, b in zip(total, part))
        return [total]

    def _combine(self, kind, eta, p, q):
        """The derivative coefficients from the angular factors ``p``,
        ``q`` (see :meth:`coefficients`) of functions of one (kind, eta):
        each is ``p U + q V`` with ``U``, ``V`` from :meth:`_basis`."""
        Uj, Vj, Uo, Vo, Uk, Vk = self._basis(kind, eta)
        own_j = p * Uj
        own_j += q * Vj
        other = p * Uo
        if Vo is not None:
            other += q * Vo
        own_k = p * Uk
        own_k += q * Vk
        return own_j, other, other, own_k

    def _basis(self, kind, eta):
        """``(Uj, Vj, Uo, Vo, Uk, Vk)``: the derivative coefficients of the
        functions of one (kind, eta) are ``own_j = p Uj + q Vj``, ``other
        = p Uo + q Vo`` and ``own_k = p Uk + q Vk`` (``Vo`` None for zero).

        With ``c = b - a``: ``d term / d a = A1 a + B1 b + C1 c`` and
        ``d term / d b = A2 a + B2 b + C2 c``, from the angle, the Gaussian
        and the cutoffs in turn; ``C2 = -C1``, so the two off-diagonal
        coefficients are equal: slot j gets ``(A1 - C1) a + (B1 + C1) b``,
        slot k ``(A2 - C2) a + (B2 + C2) b``. The cutoff factors never
        divide by a cutoff value (zero at Rc).
        """
        if (kind, eta) in self._derivative_bases:
            return self._derivative_bases[kind, eta]
        t = self.t
        two_eta = 2.0 * eta / self.chunk.Rc ** 2
        fused = self._fused_g4(eta) if kind == "G4" else None
        if fused is not None:
            radial = fused["radial"]
            # Gaussian and cutoff parts: a, b and c factors per triplet.
            Fa, Fb, Fc = fused["a"], fused["b"], fused["c"]
        else:
            gauss, radial = self._gaussian(kind, eta)
            factors = self._cutoff_factors(kind)
            Fa, Fb = gauss * factors[0], gauss * factors[1]
            Fc = gauss * factors[2] if kind == "G4" else None
        Uo = radial * t.inv_ab
        radial_cos = radial * t.cos
        Uj = radial_cos * t.inv_a2
        Uj *= -1.0
        Uk = radial_cos * t.inv_b2
        Uk *= -1.0
        if Fc is None:  # G5: no R_jk factor, C1 = 0
            shared = two_eta * radial
            Vj, Vk, Vo = Fa - shared, Fb - shared, None
        else:
            shared = Fc - (2.0 * two_eta) * radial
            Vj, Vk = Fa + shared, Fb + shared
            Vo = two_eta * radial - Fc
        self._derivative_bases[kind, eta] = basis = (Uj, Vj, Uo, Vo, Uk, Vk)
        return basis

    def _cutoff_factors(self, kind):
        """Cutoff factors of the derivative of ``kind``'s terms:
        ``d/da``, ``d/db`` (each over the distance) and ``d/dc`` over
        ``R_jk`` (G4 only)."""
        if kind not in self._factors:
            t = self.t
            if kind == "G4":
                fcc = self._fcc()
                fcc_over = self.chunk.cutoff.prime_over_r_squared(t.dc2,
                                                                  t.inside)
                self._factors[kind] = (t.fb * fcc * t.fa_over,
                                       t.fa * fcc * t.fb_over,
                                       t.fa * t.fb * fcc_over)
            else:
                self._factors[kind] = (t.fb * t.fa_over, t.fa * t.fb_over)
        return self._factors[kind]

    def slot_gradients(self, coefficients):
        """``d (sum of a centre's terms) / d r`` of every slot.

        Returns
        -------
        ndarray, shape (len(coefficients), c, w, 3)
        """
        t, chunk = self.t, self.chunk
        n_f = len(coefficients)
        c, w = chunk.n_centres, chunk.width
        size = c * w
        # One (w, w) matrix per centre and function: off-diagonal M[j, k]
        # multiplies r_k into slot j (and M[k, j] r_j into slot k); the
        # diagonal holds each slot's own coefficient sum.
        M = np.zeros((n_f, size * w))
        jk = t.flat
        kj = t.slot_k * w + (t.slot_j - (t.slot_j // w) * w)
        diagonal = np.arange(size) * (w + 1) - (np.arange(size) // w) * w
        # Triplets come sorted by slot j: its sums are over contiguous runs.
        run_start = np.flatnonzero(t.slot_j[1:] != t.slot_j[:-1]) + 1
        run_start = np.concatenate(([0], run_start))
        run_slot = t.slot_j[run_start]
        for f, (own_j, other_j, other_k, own_k) in enumerate(coefficients):
            row = M[f]  # 1-D views scatter twice as fast as M[f, index]
            row[jk] = other_j
            row[kj] = other_k
            own = np.bincount(t.slot_k, own_k, minlength=size)
            own[run_slot] += np.add.reduceat(own_j, run_start)
            row[diagonal] = own
        return M.reshape(n_f, c, w, w) @ chunk.X[None]
