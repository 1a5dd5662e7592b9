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
    :func:`.pairs.two_body`)."""
    ws = chunk.workspace
    Rc2 = chunk.Rc ** 2
    c, w = chunk.n_centres, chunk.width
    r_asx = chunk.r_asx
    gram_ass = np.matmul(r_asx, r_asx.transpose(0, 2, 1),
                         out=ws.empty((c, w, w)))
    d2_s = chunk.padded(chunk.d_e * chunk.d_e)
    usable_ass = ws.empty((c, w, w), dtype=bool)
    if plan.needs_all_triplets:
        valid_as = chunk.padded(np.ones(len(chunk.d_e), dtype=bool), False)
        valid_as = valid_as.reshape(c, w)
        np.logical_and(valid_as[:, :, None], valid_as[:, None, :],
                       out=usable_ass)
    else:
        # R_jk^2 = d_j^2 + d_k^2 - 2 r_j.r_k < Rc^2, as one comparison.
        half_as = 0.5 * chunk.padded(chunk.d_e * chunk.d_e,
                                     fill=1e300).reshape(c, w)
        half_as -= 0.25 * Rc2
        bound_ass = np.add(half_as[:, :, None], half_as[:, None, :],
                           out=ws.empty((c, w, w)))
        np.greater(gram_ass, bound_ass, out=usable_ass)
    usable_ass &= _strict_upper(w)
    # Row-major order: triplets come sorted by centre, then by slot j.
    flat_t = np.flatnonzero(usable_ass)
    n_t = len(flat_t)
    if n_t == 0:
        return
    gram_s = gram_ass.reshape(-1)
    slot_j_t = np.floor_divide(flat_t, w, out=ws.empty(n_t, np.int64))
    centre_t = np.floor_divide(slot_j_t, w, out=ws.empty(n_t, np.int64))
    # slot_k = flat - (slot_j - centre) * w
    slot_k_t = np.subtract(slot_j_t, centre_t, out=ws.empty(n_t, np.int64))
    slot_k_t *= w
    np.subtract(flat_t, slot_k_t, out=slot_k_t)
    gradients = dg_exf is not None or deferred is not None
    inside = not plan.needs_all_triplets  # every triplet has R_jk < Rc
    inv_d_s = chunk.padded(1.0 / chunk.d_e)
    if plan.n_elements == 1:
        groups = [(functions, None) for functions in plan.pair_groups.values()]
    else:
        code_s = chunk.padded(chunk.code_e, fill=-1)
        code_j_t = ws.gather(code_s, slot_j_t)
        code_k_t = ws.gather(code_s, slot_k_t)
        # pair = min * n_elements + max
        pair_t = np.minimum(code_j_t, code_k_t, out=ws.empty(n_t, np.int64))
        pair_t *= plan.n_elements
        pair_t += np.maximum(code_j_t, code_k_t, out=code_j_t)
        if dg_exf is None:
            t = Triplets(chunk, ws.gather(gram_s, flat_t), d2_s, inv_d_s,
                         slot_j_t, slot_k_t, flat_t, gradients, inside)
            _all_pairs(plan, t, chunk, centre_t, pair_t, g_af, deferred)
            return
        groups = [(functions, np.flatnonzero(pair_t == pair_code))
                  for pair_code, functions in plan.pair_groups.items()]
    for functions, pick in groups:
        # A group's temporaries are dead once its sums are scattered,
        # unless a deferred gradient still needs them.
        mark = ws.mark()
        if pick is None:
            t = Triplets(chunk, ws.gather(gram_s, flat_t), d2_s, inv_d_s,
                         slot_j_t, slot_k_t, flat_t, gradients, inside)
            group_centre_t = centre_t
        elif len(pick) == 0:
            continue
        else:
            flat_pick = ws.gather(flat_t, pick)
            t = Triplets(chunk, ws.gather(gram_s, flat_pick), d2_s, inv_d_s,
                         ws.gather(slot_j_t, pick), ws.gather(slot_k_t, pick),
                         flat_pick, gradients, inside)
            group_centre_t = ws.gather(centre_t, pick)
        terms = PairTerms(functions, t, chunk, gradients)
        counts_a = np.bincount(group_centre_t, minlength=c)
        if pick is None:
            g_af[:, terms.columns] += row_sums(terms.terms_ft, counts_a)
        else:  # summed in the order _all_pairs sums them: same bits
            g_af[:, terms.columns] += np.stack([
                np.bincount(group_centre_t, term_t, minlength=c)
                for term_t in terms.terms_ft]).T
        if dg_exf is not None:
            grad_fasx = terms.slot_gradients(terms.coefficients())
            # (n_functions, c * w, 3) -> per entry (n, 3, n_functions).
            grad_fex = np.take(grad_fasx.reshape(len(terms.columns), c * w,
                                                 3), chunk.slot_e, axis=1)
            dg_exf[:, :, terms.columns] += grad_fex.transpose(1, 2, 0)
        if deferred is not None:
            deferred.append(functools.partial(
                _add_pair_gradient, terms, functools.partial(
                    _repeated_weights, terms.columns, group_centre_t, ws)))
        else:
            ws.release(mark)


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
