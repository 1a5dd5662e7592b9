"""The two-body (G2) kernel: radial terms per neighbour entry.

``G2_i = sum_j exp(-eta (R_ij - Rs)^2 / Rc^2) fc(R_ij)`` over the
neighbours ``j`` of the function's element; its derivative with respect to
the entry vector ``r_e = r_ij`` is
``(fc'(R) - 2 eta (R - Rs) / Rc^2 fc(R)) exp(...) r_e / R``.
"""

import numpy as np

from .chunk import row_sums


def two_body(plan, chunk, g_af, dg_exf=None, deferred=None):
    """Add the G2 terms of one chunk to its fingerprints ``g_af``.

    Parameters
    ----------
    plan : ElementPlan
    chunk : Chunk
    g_af : ndarray, shape (n_centres, n_features)
        The chunk's fingerprint rows, added to in place.
    dg_exf : ndarray, shape (n_entries, 3, n_features), optional
        The chunk's entry derivatives, added to in place.
    deferred : list, optional
        Receives a function ``add_gradient(dE_dg_af, dE_dr_ex)`` that adds
        ``dE / d r_e`` once ``dE/dG`` of the chunk's centres is known.
    """
    if len(plan.g2_columns) == 0:
        return
    Rc2 = chunk.Rc ** 2
    # Layout (function, entry) so that the per-centre sums are contiguous.
    same_fe = plan.g2_element[:, None] == chunk.code_e[None, :]
    shifted_fe = chunk.d_e[None, :] - plan.g2_offset[:, None]
    eta_f1 = plan.g2_eta[:, None]
    gauss_fe = np.exp(-eta_f1 / Rc2 * shifted_fe * shifted_fe) * same_fe
    term_fe = gauss_fe * chunk.fc_e
    g_af[:, plan.g2_columns] += row_sums(term_fe, chunk.counts_a)
    if dg_exf is None and deferred is None:
        return
    dterm_fe = gauss_fe * (chunk.fc_prime_e
                           - 2.0 / Rc2 * eta_f1 * shifted_fe * chunk.fc_e)
    unit_ex = chunk.r_ex / chunk.d_e[:, None]
    if dg_exf is not None:
        dg_exf[:, :, plan.g2_columns] += \
            unit_ex[:, :, None] * dterm_fe.T[:, None, :]
    if deferred is not None:
        def add_gradient(dE_dg_af, dE_dr_ex):
            weight_ef = np.take(dE_dg_af[:, plan.g2_columns], chunk.row_e,
                                axis=0)
            dE_dr_ex += unit_ex * np.einsum("fe,ef->e", dterm_fe,
                                            weight_ef)[:, None]
        deferred.append(add_gradient)
