"""G4 and G5 terms per triplet, and the coefficients of their derivatives.

For a triplet of centre ``i`` with neighbour vectors ``a = r_ij``,
``b = r_ik`` (``c = b - a``, so ``R_jk = |c|``), a function's term is

    2^(1 - zeta) (1 + gamma cos theta)^zeta  *  radial(a, b, c)

with ``radial = exp(-eta (R_ij^2 + R_ik^2 + R_jk^2) / Rc^2) fc(R_ij)
fc(R_ik) fc(R_jk)`` for G4, and without the ``R_jk`` parts for G5. Its
gradient with respect to the two neighbour vectors is linear in them:
``d term / d a = own_j a + other b`` and ``d term / d b = other a +
own_k b`` (the two off-diagonal coefficients are equal). The
:class:`PairTerms` of a set of functions computes the terms at once and
these three coefficients on demand, per function or already weighted by
``dE/dG`` and summed over the functions.

Every per-triplet array is taken from the chunk's workspace, and shared
factors (the angular powers, Gaussians and cutoff products of one eta) are
computed once for all the functions that use them.
"""

import numpy as np


def _integer_power(x_t, zeta, ws):
    """``x ** zeta``, by repeated multiplication for small whole zeta."""
    if zeta == 1.0:
        return x_t
    if zeta == 2.0:
        return ws.multiply(x_t, x_t)
    if zeta == 3.0:
        y_t = ws.multiply(x_t, x_t)
        y_t *= x_t
        return y_t
    if zeta == 4.0:
        y_t = ws.multiply(x_t, x_t)
        y_t *= y_t
        return y_t
    if zeta == 0.0:
        out_t = ws.empty(x_t.shape)
        out_t.fill(1.0)
        return out_t
    if float(zeta).is_integer() and 0 < zeta <= 16:
        return np.power(x_t, int(zeta), out=ws.empty(x_t.shape))
    return np.power(x_t, zeta, out=ws.empty(x_t.shape))


def _scaled(factor, x, ws):
    """``factor * x`` for an array or the scalar 1.0 (``x ** 0``)."""
    if np.ndim(x) == 0:
        return factor * x
    return ws.multiply(factor, x)


class PairTerms:
    """The three-body functions of one element pair over a chunk's usable
    triplets: their values at once, their derivative coefficients on
    demand (per function, or already weighted by ``dE/dG``).

    Parameters
    ----------
    functions : list of tuple
        ``(column, kind, eta, zeta, gamma)`` of each function.
    t : Triplets
    chunk : Chunk
    derivatives : bool
        Whether derivative coefficients will be asked for.

    Attributes
    ----------
    columns : list of int
    terms_ft : ndarray, shape (n_functions, n_triplets)
        Each function's term per triplet.
    """

    def __init__(self, functions, t, chunk, derivatives):
        self.functions, self.t, self.chunk = functions, t, chunk
        self.ws = chunk.workspace
        self.derivatives = derivatives
        self._gaussians, self._bases, self._powers = {}, {}, {}
        self._factors, self._derivative_bases, self._fused = {}, {}, {}
        self.columns = [function[0] for function in functions]
        self.terms_ft = self.ws.empty((len(functions), len(t.cos_t)))
        for term_t, (_, kind, eta, zeta, gamma) in zip(self.terms_ft,
                                                       functions):
            np.multiply(self._power(gamma, zeta), self._radial(kind, eta),
                        out=term_t)
            if zeta != 1.0:
                term_t *= 2.0 ** (1.0 - zeta)

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
            t, chunk, ws = self.t, self.chunk, self.ws
            h_t = chunk.cutoff.gaussian_squared(t.dc2_t, eta, t.inside,
                                                out=ws.empty(t.dc2_t.shape))
            if h_t is None:
                self._fused[eta] = None
                return None
            gauss_e = np.exp(-eta / chunk.Rc ** 2 * chunk.d_e * chunk.d_e)
            Pa_t, Pb_t = t.pair_of(chunk.fc_e * gauss_e)
            Pb_h_t = ws.multiply(Pb_t, h_t)
            fused = {"radial": ws.multiply(Pa_t, Pb_h_t)}
            if self.derivatives:
                k_t = chunk.cutoff.gaussian_prime_over_r_squared(
                    t.dc2_t, eta, t.inside, out=ws.empty(t.dc2_t.shape))
                Qa_t, Qb_t = t.pair_of(chunk.fc_prime_e / chunk.d_e * gauss_e)
                # a = Qa Pb h, b = Pa h Qb, c = Pa Pb k, in this order of
                # the products, written over factors no longer needed.
                a_t = np.multiply(Qa_t, Pb_h_t, out=Qa_t)
                b_t = np.multiply(Pa_t, h_t, out=h_t)
                b_t *= Qb_t
                c_t = np.multiply(Pa_t, Pb_t, out=Pb_t)
                c_t *= k_t
                fused.update(a=a_t, b=b_t, c=c_t)
            self._fused[eta] = fused
        return self._fused[eta]

    def _fcc(self):
        """The cutoff of R_jk per triplet (for the unfused G4 path)."""
        if "fcc" not in self._factors:
            t = self.t
            self._factors["fcc"] = self.chunk.cutoff.squared(
                t.dc2_t, t.inside, out=self.ws.empty(t.dc2_t.shape))
        return self._factors["fcc"]

    def _gaussian(self, kind, eta):
        """The Gaussian factor and it times the cutoffs, per triplet."""
        if (kind, eta) not in self._gaussians:
            t, ws = self.t, self.ws
            extra = t.dc2_t if kind == "G4" else 0.0
            gauss_t = np.add(t.sum_ab_t, extra, out=ws.empty(t.cos_t.shape))
            np.multiply(-eta / self.chunk.Rc ** 2, gauss_t, out=gauss_t)
            np.exp(gauss_t, out=gauss_t)
            fa_t, fb_t = t.fc_jk
            radial_t = ws.multiply(fa_t, fb_t)
            if kind == "G4":
                radial_t *= self._fcc()
            np.multiply(gauss_t, radial_t, out=radial_t)
            self._gaussians[kind, eta] = gauss_t, radial_t
        return self._gaussians[kind, eta]

    def _power(self, gamma, exponent):
        """``(1 + gamma cos)^exponent``, shared by the functions (the
        scalar 1 for exponent 0)."""
        if exponent == 0.0:
            return 1.0
        if gamma not in self._bases:
            base_t = self.ws.multiply(gamma, self.t.cos_t)
            base_t += 1.0
            self._bases[gamma] = base_t
        if (gamma, exponent) not in self._powers:
            self._powers[gamma, exponent] = _integer_power(
                self._bases[gamma], exponent, self.ws)
        return self._powers[gamma, exponent]

    def coefficients(self, weight_ft=None):
        """Coefficients of each function's derivative.

        With ``a = r_ij``, ``b = r_ik``: ``d term / d a = own_j a + other
        b`` and ``d term / d b = other a + own_k b``.

        Parameters
        ----------
        weight_ft : ndarray, shape (n_functions, n_triplets), optional
            Each function's weight per triplet (``dE/dG`` of the centre).

        Returns
        -------
        list of tuple
            ``(own_j, other, own_k)`` per function, or one tuple of their
            weighted sums when ``weight_ft`` is given.
        """
        # Every coefficient is linear in two angular factors of a function,
        # p = s zeta gamma (1 + gamma cos)^(zeta - 1) and
        # q = s (1 + gamma cos)^zeta with s = 2^(1 - zeta), times factors
        # of its (kind, eta) only; weighted sums are taken over p and q.
        ws = self.ws
        sums, out = {}, []
        for f, (_, kind, eta, zeta, gamma) in enumerate(self.functions):
            scale = 2.0 ** (1.0 - zeta)
            p_t = _scaled(scale * zeta * gamma,
                          self._power(gamma, zeta - 1.0), ws)
            q_t = _scaled(scale, self._power(gamma, zeta), ws)
            if weight_ft is None:
                out.append(self._combine(kind, eta, p_t, q_t))
            elif (kind, eta) in sums:
                p_sum_t, q_sum_t = sums[kind, eta]
                p_sum_t += ws.multiply(weight_ft[f], p_t)
                q_sum_t += ws.multiply(weight_ft[f], q_t)
            else:
                sums[kind, eta] = [ws.multiply(weight_ft[f], p_t),
                                   ws.multiply(weight_ft[f], q_t)]
        if weight_ft is None:
            return out
        total = None
        for (kind, eta), (p_t, q_t) in sums.items():
            part_t = self._combine(kind, eta, p_t, q_t)
            if total is None:
                total = part_t
            else:
                for sum_t, piece_t in zip(total, part_t):
                    sum_t += piece_t
        return [total]

    def _combine(self, kind, eta, p, q):
        """The derivative coefficients ``(own_j, other, own_k)`` from the
        angular factors ``p``, ``q`` (see :meth:`coefficients`) of functions
        of one (kind, eta): each is ``p U + q V`` with ``U``, ``V`` from
        :meth:`_basis`."""
        ws = self.ws
        Uj_t, Vj_t, Uo_t, Vo_t, Uk_t, Vk_t = self._basis(kind, eta)
        scratch_t = ws.empty(Uj_t.shape)
        own_j_t = ws.multiply(p, Uj_t)
        own_j_t += np.multiply(q, Vj_t, out=scratch_t)
        other_t = ws.multiply(p, Uo_t)
        if Vo_t is not None:
            other_t += np.multiply(q, Vo_t, out=scratch_t)
        own_k_t = ws.multiply(p, Uk_t)
        own_k_t += np.multiply(q, Vk_t, out=scratch_t)
        return own_j_t, other_t, own_k_t

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
        t, ws = self.t, self.ws
        two_eta = 2.0 * eta / self.chunk.Rc ** 2
        fused = self._fused_g4(eta) if kind == "G4" else None
        if fused is not None:
            radial_t = fused["radial"]
            # Gaussian and cutoff parts: a, b and c factors per triplet.
            Fa_t, Fb_t, Fc_t = fused["a"], fused["b"], fused["c"]
        else:
            gauss_t, radial_t = self._gaussian(kind, eta)
            factors = self._cutoff_factors(kind)
            Fa_t = ws.multiply(gauss_t, factors[0])
            Fb_t = ws.multiply(gauss_t, factors[1])
            Fc_t = ws.multiply(gauss_t, factors[2]) if kind == "G4" else None
        Uo_t = ws.multiply(radial_t, t.inv_ab_t)
        radial_cos_t = ws.multiply(radial_t, t.cos_t)
        Uj_t = ws.multiply(radial_cos_t, t.inv_a2_t)
        Uj_t *= -1.0
        Uk_t = np.multiply(radial_cos_t, t.inv_b2_t, out=radial_cos_t)
        Uk_t *= -1.0
        if Fc_t is None:  # G5: no R_jk factor, C1 = 0
            shared_t = ws.multiply(two_eta, radial_t)
            Vj_t = np.subtract(Fa_t, shared_t,
                               out=ws.empty(shared_t.shape))
            Vk_t = np.subtract(Fb_t, shared_t, out=shared_t)
            Vo_t = None
        else:
            shared_t = ws.multiply(2.0 * two_eta, radial_t)
            np.subtract(Fc_t, shared_t, out=shared_t)
            Vj_t = np.add(Fa_t, shared_t, out=ws.empty(shared_t.shape))
            Vo_t = ws.multiply(two_eta, radial_t)
            Vo_t -= Fc_t
            Vk_t = np.add(Fb_t, shared_t, out=shared_t)
        basis = (Uj_t, Vj_t, Uo_t, Vo_t, Uk_t, Vk_t)
        self._derivative_bases[kind, eta] = basis
        return basis

    def _cutoff_factors(self, kind):
        """Cutoff factors of the derivative of ``kind``'s terms:
        ``d/da``, ``d/db`` (each over the distance) and ``d/dc`` over
        ``R_jk`` (G4 only)."""
        if kind not in self._factors:
            t, ws = self.t, self.ws
            fa_t, fb_t = t.fc_jk
            fa_over_t, fb_over_t = t.fc_prime_over_d_jk
            if kind == "G4":
                fcc_t = self._fcc()
                fcc_over_t = self.chunk.cutoff.prime_over_r_squared(
                    t.dc2_t, t.inside, out=ws.empty(t.dc2_t.shape))
                da_t = ws.multiply(fb_t, fcc_t)
                da_t *= fa_over_t
                db_t = ws.multiply(fa_t, fcc_t)
                db_t *= fb_over_t
                dc_t = ws.multiply(fa_t, fb_t)
                dc_t *= fcc_over_t
                self._factors[kind] = (da_t, db_t, dc_t)
            else:
                self._factors[kind] = (ws.multiply(fb_t, fa_over_t),
                                       ws.multiply(fa_t, fb_over_t))
        return self._factors[kind]

    def slot_gradients(self, coefficients):
        """``d (sum of a centre's terms) / d r`` of every slot.

        Returns
        -------
        ndarray, shape (len(coefficients), n_centres, width, 3)
        """
        t, chunk, ws = self.t, self.chunk, self.ws
        n_f = len(coefficients)
        c, w = chunk.n_centres, chunk.width
        size = c * w
        # One (w, w) matrix per centre and function: off-diagonal M[j, k]
        # multiplies r_k into slot j (and M[k, j] r_j into slot k); the
        # diagonal holds each slot's own coefficient sum.
        M_fss = ws.zeros((n_f, size * w))
        jk_t = t.flat_t
        # kj = slot_k * w + slot_j mod w, where slot_j mod w = slot_j
        # - (slot_j // w) * w
        n_t = len(jk_t)
        kj_t = np.floor_divide(t.slot_j_t, w, out=ws.empty(n_t, np.int64))
        kj_t *= w
        np.subtract(t.slot_j_t, kj_t, out=kj_t)
        kj_t += np.multiply(t.slot_k_t, w, out=ws.empty(n_t, np.int64))
        diagonal_s = np.arange(size) * (w + 1) - (np.arange(size) // w) * w
        # Triplets come sorted by slot j: its sums are over contiguous runs.
        run_start = np.flatnonzero(t.slot_j_t[1:] != t.slot_j_t[:-1]) + 1
        run_start = np.concatenate(([0], run_start))
        run_slot = t.slot_j_t[run_start]
        for f, (own_j_t, other_t, own_k_t) in enumerate(coefficients):
            # 1-D views scatter twice as fast as M_fss[f, index].
            M_ss = M_fss[f]
            M_ss[jk_t] = other_t
            M_ss[kj_t] = other_t
            own_s = np.bincount(t.slot_k_t, own_k_t, minlength=size)
            own_s[run_slot] += np.add.reduceat(own_j_t, run_start)
            M_ss[diagonal_s] = own_s
        return np.matmul(M_fss.reshape(n_f, c, w, w), chunk.r_asx[None],
                         out=ws.empty((n_f, c, w, 3)))
