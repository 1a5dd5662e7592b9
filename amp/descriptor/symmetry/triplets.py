"""The three-body (G4, G5) kernel: which triplets, and where their sums go.

A centre's triplets are the pairs of its neighbour slots ``j < k``. The
neighbour vectors of a chunk are laid out as ``r_asx`` (centre, slot,
Cartesian); one batched matrix product gives every ``r_ij . r_ik``, hence
the angles and ``R_jk^2 = R_ij^2 + R_ik^2 - 2 r_ij . r_ik``. Only the
triplets that can contribute are kept (``R_jk < Rc``, unless a G5 needs
them all), as flat indices into the ``(centre, slot, slot)`` block, sorted
by centre and then by slot ``j``. The terms of the functions and their
derivative coefficients are in :mod:`.terms`; here they are summed per
centre and scattered back to the neighbour slots.
"""

import functools

import numpy as np

from .chunk import row_sums
from .terms import PairTerms


# Squared distance given to a chunk's padding slots when triplets are
# selected: a triplet with a padding slot then needs r_ij . r_ik above about
# half of it, which no real pair reaches, so it is never selected. Finite, so
# that the bound of two padding slots (their sum) stays finite.
_PADDING_D2 = 1e300


@functools.lru_cache(maxsize=64)
def _strict_upper(width):
    """Read-only ``(width, width)`` mask of the slot pairs j < k."""
    mask = np.triu(np.ones((width, width), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


def three_body(plan, chunk, g_af, dg_exf=None, deferred=None):
    """Add the G4/G5 terms of one chunk to its fingerprints ``g_af``
    (and their derivatives to ``dg_exf``, or to ``deferred`` a function
    adding ``dE / d r_e`` once ``dE/dG`` is known; see
    :func:`.pairs.two_body`).

    Three routes: with one element, each group of functions takes every
    triplet (:func:`_one_element`); with several, the values and the fused
    force path take all element pairs in one pass (:func:`_all_pairs`),
    and stored derivatives go pair by pair (:func:`_pair_by_pair`).
    """
    gram_ass, flat_t = _usable_triplets(plan, chunk)
    if len(flat_t) == 0:
        return
    selection = _Selection(plan, chunk, gram_ass, flat_t,
                           dg_exf is not None or deferred is not None)
    if plan.n_elements == 1:
        _one_element(plan, selection, g_af, dg_exf, deferred)
        return
    pair_t = _pair_codes(plan, chunk, selection.slot_j_t, selection.slot_k_t)
    if dg_exf is None:
        t, centre_t = selection.triplets()
        _all_pairs(plan, t, chunk, centre_t, pair_t, g_af, deferred)
    else:
        _pair_by_pair(plan, selection, pair_t, g_af, dg_exf, deferred)


def _usable_triplets(plan, chunk):
    """The chunk's Gram matrix ``r_ij . r_ik``, shape ``(centre, slot,
    slot)``, and the flat indices into it of the triplets that can
    contribute, in row-major order: sorted by centre, then by slot j."""
    ws = chunk.workspace
    c, w = chunk.n_centres, chunk.width
    r_asx = chunk.r_asx
    gram_ass = np.matmul(r_asx, r_asx.transpose(0, 2, 1),
                         out=ws.empty((c, w, w)))
    usable_ass = ws.empty((c, w, w), dtype=bool)
    if plan.needs_all_triplets:  # a G5: every pair of real slots
        valid_as = chunk.padded(np.ones(len(chunk.d_e), dtype=bool), False)
        valid_as = valid_as.reshape(c, w)
        np.logical_and(valid_as[:, :, None], valid_as[:, None, :],
                       out=usable_ass)
    else:
        # R_jk^2 = d_j^2 + d_k^2 - 2 r_j.r_k < Rc^2, as one comparison.
        half_as = 0.5 * chunk.padded(chunk.d_e * chunk.d_e,
                                     fill=_PADDING_D2).reshape(c, w)
        half_as -= 0.25 * chunk.Rc ** 2
        bound_ass = np.add(half_as[:, :, None], half_as[:, None, :],
                           out=ws.empty((c, w, w)))
        np.greater(gram_ass, bound_ass, out=usable_ass)
    usable_ass &= _strict_upper(w)
    return gram_ass, np.flatnonzero(usable_ass)


class _Selection:
    """The usable triplets of a chunk: their slots and centres, and what
    the :class:`Triplets` of all of them, or of some, are made from.

    Attributes
    ----------
    flat_t : ndarray of int
        Index of each triplet in the ``(centre, slot, slot)`` block.
    slot_j_t, slot_k_t : ndarray of int
        Its two slots (flat, ``centre * width + slot``).
    centre_t : ndarray of int
        Its centre (row of the chunk).
    """

    def __init__(self, plan, chunk, gram_ass, flat_t, gradients):
        ws, w, n_t = chunk.workspace, chunk.width, len(flat_t)
        self.chunk, self.gram_ass, self.flat_t = chunk, gram_ass, flat_t
        self.gradients = gradients
        self.inside = not plan.needs_all_triplets  # every R_jk < Rc
        self.slot_j_t = np.floor_divide(flat_t, w,
                                        out=ws.empty(n_t, np.int64))
        self.centre_t = np.floor_divide(self.slot_j_t, w,
                                        out=ws.empty(n_t, np.int64))
        # slot_k = flat - (slot_j - centre) * w
        slot_k_t = np.subtract(self.slot_j_t, self.centre_t,
                               out=ws.empty(n_t, np.int64))
        slot_k_t *= w
        self.slot_k_t = np.subtract(flat_t, slot_k_t, out=slot_k_t)
        self.d2_s = chunk.padded(chunk.d_e * chunk.d_e)
        self.inv_d_s = chunk.padded(1.0 / chunk.d_e)

    def triplets(self, pick=None):
        """:class:`Triplets` of every triplet, or of those at ``pick``,
        and their centres."""
        ws, gram = self.chunk.workspace, self.gram_ass.reshape(-1)
        if pick is None:
            return Triplets(self.chunk, ws.gather(gram, self.flat_t),
                            self.d2_s, self.inv_d_s, self.slot_j_t,
                            self.slot_k_t, self.flat_t, self.gradients,
                            self.inside), self.centre_t
        flat_t = ws.gather(self.flat_t, pick)
        t = Triplets(self.chunk, ws.gather(gram, flat_t), self.d2_s,
                     self.inv_d_s, ws.gather(self.slot_j_t, pick),
                     ws.gather(self.slot_k_t, pick), flat_t, self.gradients,
                     self.inside)
        return t, ws.gather(self.centre_t, pick)


def _pair_codes(plan, chunk, slot_j_t, slot_k_t):
    """Element pair of each triplet, as ``min * n_elements + max`` of its
    two neighbours' element codes (the keys of ``plan.pair_groups``)."""
    ws = chunk.workspace
    code_s = chunk.padded(chunk.code_e, fill=-1)
    code_j_t = ws.gather(code_s, slot_j_t)
    code_k_t = ws.gather(code_s, slot_k_t)
    pair_t = np.minimum(code_j_t, code_k_t,
                        out=ws.empty(len(slot_j_t), np.int64))
    pair_t *= plan.n_elements
    pair_t += np.maximum(code_j_t, code_k_t, out=code_j_t)
    return pair_t


def _one_element(plan, selection, g_af, dg_exf, deferred):
    """The route of an image of one element: every triplet is of the one
    element pair, so each group of functions takes them all."""
    chunk = selection.chunk
    ws = chunk.workspace
    for functions in plan.pair_groups.values():
        # A group's temporaries are dead once its sums are scattered,
        # unless a deferred gradient still needs them.
        mark = ws.mark()
        t, centre_t = selection.triplets()
        terms = PairTerms(functions, t, chunk, selection.gradients)
        counts_a = np.bincount(centre_t, minlength=chunk.n_centres)
        g_af[:, terms.columns] += row_sums(terms.terms_ft, counts_a)
        _add_group_gradients(terms, centre_t, dg_exf, deferred)
        if deferred is None:
            ws.release(mark)


def _pair_by_pair(plan, selection, pair_t, g_af, dg_exf, deferred):
    """The route of several elements with stored derivatives: each
    element pair's functions take that pair's triplets."""
    chunk = selection.chunk
    ws = chunk.workspace
    for pair_code, functions in plan.pair_groups.items():
        pick = np.flatnonzero(pair_t == pair_code)
        if len(pick) == 0:
            continue
        mark = ws.mark()
        t, centre_t = selection.triplets(pick)
        terms = PairTerms(functions, t, chunk, selection.gradients)
        # Summed in the order _all_pairs sums them: the same bits.
        g_af[:, terms.columns] += np.stack([
            np.bincount(centre_t, term_t, minlength=chunk.n_centres)
            for term_t in terms.terms_ft]).T
        _add_group_gradients(terms, centre_t, dg_exf, deferred)
        if deferred is None:
            ws.release(mark)


def _add_group_gradients(terms, centre_t, dg_exf, deferred):
    """Add a group's derivatives to ``dg_exf``, or defer its
    ``dE / d r_e`` until ``dE/dG`` is known."""
    chunk = terms.chunk
    if dg_exf is not None:
        grad_fasx = terms.slot_gradients(terms.coefficients())
        # (n_functions, c * w, 3) -> per entry (n, 3, n_functions).
        grad_fex = np.take(grad_fasx.reshape(
            len(terms.columns), chunk.n_centres * chunk.width, 3),
            chunk.slot_e, axis=1)
        dg_exf[:, :, terms.columns] += grad_fex.transpose(1, 2, 0)
    if deferred is not None:
        deferred.append(functools.partial(
            _add_pair_gradient, terms, functools.partial(
                _repeated_weights, terms.columns, centre_t,
                chunk.workspace)))


class Triplets:
    """Per-triplet geometry of the usable slot pairs (j, k) of a chunk.

    Parameters
    ----------
    chunk : Chunk
    gram_t : ndarray, shape (n_triplets,)
        ``r_ij . r_ik`` of each triplet.
    d2_s, inv_d_s : ndarray, shape (n_centres * width,)
        Squared and inverse distances per slot.
    slot_j_t, slot_k_t : ndarray of int, shape (n_triplets,)
        The two slots (flat, ``centre * width + slot``) of each triplet.
    flat_t : ndarray of int, shape (n_triplets,)
        Index of each triplet in the ``(centre, slot, slot)`` block.
    derivatives : bool
        Also keep what the derivatives need.
    inside : bool
        Every triplet has ``R_jk < Rc`` (up to rounding), so the cutoffs
        of ``R_jk`` need no range test.

    Attributes
    ----------
    cos_t, inv_ab_t, sum_ab_t, dc2_t : ndarray, shape (n_triplets,)
        ``cos theta_ijk``, ``1 / (R_ij R_ik)``, ``R_ij^2 + R_ik^2`` and
        ``R_jk^2``.
    """

    def __init__(self, chunk, gram_t, d2_s, inv_d_s, slot_j_t, slot_k_t,
                 flat_t, derivatives, inside):
        ws = chunk.workspace
        self.flat_t, self.chunk, self.inside = flat_t, chunk, inside
        self.slot_j_t, self.slot_k_t = slot_j_t, slot_k_t
        inv_a_t = ws.gather(inv_d_s, slot_j_t)
        inv_b_t = ws.gather(inv_d_s, slot_k_t)
        self.inv_ab_t = ws.multiply(inv_a_t, inv_b_t)
        self.cos_t = ws.multiply(gram_t, self.inv_ab_t)
        np.clip(self.cos_t, -1.0, 1.0, out=self.cos_t)
        self.sum_ab_t = ws.gather(d2_s, slot_j_t)
        self.sum_ab_t += ws.gather(d2_s, slot_k_t)
        # R_jk^2; the cutoffs take squared distances (no square root).
        self.dc2_t = ws.multiply(gram_t, -2.0)
        self.dc2_t += self.sum_ab_t
        np.maximum(self.dc2_t, 0.0, out=self.dc2_t)
        if derivatives:
            self.inv_a2_t = np.multiply(inv_a_t, inv_a_t, out=inv_a_t)
            self.inv_b2_t = np.multiply(inv_b_t, inv_b_t, out=inv_b_t)

    def pair_of(self, values_e):
        """A per-entry quantity at slots j and k of every triplet."""
        values_s = self.chunk.padded(values_e)
        ws = self.chunk.workspace
        return (ws.gather(values_s, self.slot_j_t),
                ws.gather(values_s, self.slot_k_t))

    @functools.cached_property
    def fc_jk(self):
        """The cutoff values at slots j and k."""
        return self.pair_of(self.chunk.fc_e)

    @functools.cached_property
    def fc_prime_over_d_jk(self):
        """The cutoff slopes over the distance at slots j and k."""
        return self.pair_of(self.chunk.fc_prime_e / self.chunk.d_e)


def _all_pairs(plan, t, chunk, centre_t, pair_t, g_af, deferred):
    """The three-body terms of every element pair in one pass over all
    triplets (the value and fused paths of images with several elements).

    Each distinct (kind, eta, zeta, gamma) is computed once for all
    triplets; sums go to a (centre, pair) bin, then to the column that
    pair's function has. ``dE/dG`` weights are gathered per triplet from
    its centre and pair, so all pairs share one gradient scatter too.
    """
    terms = PairTerms(plan.templates, t, chunk, deferred is not None)
    n_codes = plan.n_elements ** 2
    bin_t = np.multiply(centre_t, n_codes,
                        out=chunk.workspace.empty(len(centre_t), np.int64))
    bin_t += pair_t
    size = chunk.n_centres * n_codes
    sums = np.stack([np.bincount(bin_t, term_t, minlength=size)
                     for term_t in terms.terms_ft])
    sums = sums.reshape(len(terms.terms_ft), chunk.n_centres, n_codes)
    g_af[:, plan.template_target] += \
        sums[plan.template_index, :, plan.template_code].T
    if deferred is not None:
        deferred.append(functools.partial(
            _add_pair_gradient, terms, functools.partial(
                _gathered_weights, plan, centre_t, pair_t, chunk.workspace)))


def _gathered_weights(plan, centre_t, pair_t, ws, dE_dg_af):
    """``dE/dG`` of each triplet's centre for its pair's function of each
    template, shape (n_templates, n_triplets); 0 where the pair has none."""
    n_rows, n_features = dE_dg_af.shape
    padded_af = np.zeros((n_rows, n_features + 1))
    padded_af[:, :n_features] = dE_dg_af
    n_t, n_templates = len(pair_t), len(plan.templates)
    column_tf = np.take(plan.template_columns, pair_t, axis=0,
                        out=ws.empty((n_t, n_templates), np.int64),
                        mode="clip")
    index_ft = np.multiply(centre_t, n_features + 1,
                           out=ws.empty(n_t, np.int64))
    index_ft = np.add(column_tf.T, index_ft,
                      out=ws.empty((n_templates, n_t), np.int64))
    return np.take(padded_af.reshape(-1), index_ft,
                   out=ws.empty((n_templates, n_t)), mode="clip")


def _repeated_weights(columns, centre_t, ws, dE_dg_af):
    """``dE/dG`` of each triplet's centre for each of ``columns``, shape
    (len(columns), n_triplets)."""
    return np.take(dE_dg_af[:, columns].T, centre_t, axis=1,
                   out=ws.empty((len(columns), len(centre_t))), mode="clip")


def _add_pair_gradient(terms, weights_of, dE_dg_af, dE_dr_ex):
    """Add ``dE/dr_e`` of a set of three-body functions, given ``dE/dG`` of
    the chunk's centres, to the chunk's entry gradient ``dE_dr_ex``;
    ``weights_of(dE_dg_af)`` gives each function's weight per triplet."""
    weight_ft = weights_of(dE_dg_af)
    grad_asx = terms.slot_gradients(terms.coefficients(weight_ft))
    chunk = terms.chunk
    dE_dr_ex += np.take(grad_asx.reshape(chunk.n_centres * chunk.width, 3),
                        chunk.slot_e, axis=0)
