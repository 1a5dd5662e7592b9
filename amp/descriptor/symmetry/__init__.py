r"""Behler–Parrinello symmetry functions and their derivatives, vectorised.

The kernels turn one image's neighbour list (:mod:`amp.descriptor.neighbors`)
into fingerprints, one element at a time, with Amp 1.x's definitions. They
are pure array code: this package must not import anything of ``amp``
outside :mod:`amp.descriptor` (no stores, workers or models).

Definitions
-----------
For a centre atom ``i``, its neighbours ``j`` are every atom, or periodic
image of an atom (its own images included), closer than the cutoff radius
``Rc``; ``r_ij`` is the vector from ``i`` to ``j`` and ``R_ij = |r_ij|``.
Like Amp, every ``eta`` is divided by ``Rc^2``, so that ``eta`` is
dimensionless::

    G2_i = sum_j exp(-eta (R_ij - Rs)^2 / Rc^2) fc(R_ij)

over the neighbours ``j`` of the function's element (``Rs`` is its
``offset``, 0 by default), and::

    G4_i = 2^(1 - zeta) sum_{j < k} (1 + gamma cos t_ijk)^zeta
           exp(-eta (R_ij^2 + R_ik^2 + R_jk^2) / Rc^2)
           fc(R_ij) fc(R_ik) fc(R_jk)

over the unordered pairs of neighbours whose two elements are the
function's (sorted) pair, with ``cos t_ijk = r_ij . r_ik / (R_ij R_ik)``
(clipped to [-1, 1]). G5 is G4 without ``R_jk^2`` in the exponent and
without ``fc(R_jk)``. The cutoff functions (:mod:`amp.descriptor.cutoffs`),
both zero for ``R > Rc``::

    Cosine:      fc(R) = (cos(pi R / Rc) + 1) / 2
    Polynomial:  fc(R) = 1 + gamma x^(gamma + 1) - (gamma + 1) x^gamma,
                 x = R / Rc (default gamma = 4)

Derivatives
-----------
The kernels return ``d G_i / d r_e`` for every neighbour entry
``e = (i, j, offset)`` of centre ``i``, with ``r_e = r_j + offset . cell -
r_i``. Every term of ``G_i`` depends on the positions only through its
centre's entry vectors, so this holds all the derivative information:
``d G_i / d x_{j,l}`` gets ``+ d G_i / d r_{e,l}`` and ``d G_i / d
x_{i,l}`` gets ``- d G_i / d r_{e,l}``. Amp's ``fingerprintprimes`` key
``(m, symbol_m, n, symbol_n, l)`` is ``d G_n / d x_{m,l}``: the derivative
of atom ``n``'s fingerprint with respect to coordinate ``l`` (0, 1, 2 for
x, y, z) of atom ``m``; forces are ``F_{m,l} = - sum_n dE/dG_n . d G_n /
d x_{m,l}`` (:mod:`amp.descriptor.fingerprints` builds both).

Array names
-----------
Arrays in the kernels carry their axes as suffix letters, in order, as
matscipy does (``r_pc``): ``_a`` centre atom (a row of the fingerprint
block), ``_e`` neighbour entry, ``_s`` neighbour slot (an entry's place in
a chunk's padded ``(centre, slot)`` block; ``_as`` when that block is not
flattened), ``_t`` triplet (a pair of slots ``j < k`` of one centre),
``_f`` symmetry function (fingerprint feature), ``_x`` Cartesian
component. So ``r_ex`` are the entry vectors, ``g_af`` the fingerprints,
``dg_exf`` the derivatives per entry and ``terms_ft`` the three-body terms
of each function per triplet; einsum subscripts use the same letters.

Modules
-------
:mod:`.plan`
    :class:`ElementPlan`: one element's functions, grouped for the kernels.
:mod:`.chunk`
    :class:`~.chunk.Chunk`: a few centre atoms' entries, flat and padded.
:mod:`.pairs`
    The G2 kernel.
:mod:`.triplets`
    The G4/G5 kernel: selecting triplets, summing and scattering terms.
:mod:`.terms`
    G4/G5 terms per triplet and the coefficients of their derivatives.
:mod:`.workspace`
    :class:`~.workspace.Workspace`: scratch memory reused across chunks.

There is no Python loop over atoms, neighbours or triplets, only over
chunks of centre atoms, elements, element pairs and functions.

References
----------
J. Behler and M. Parrinello, Phys. Rev. Lett. 98, 146401 (2007).
J. Behler, J. Chem. Phys. 134, 074106 (2011).
"""

import numpy as np

from .chunk import Chunk, ragged
from .pairs import two_body
from .plan import ElementPlan
from .triplets import three_body

__all__ = ["ElementPlan", "compute_element", "CHUNK_ATOMS"]

# Centre atoms processed together. On fcc Cu with Rc 6.5 a chunk of 12 has
# ~20,000 usable triplets (0.16 MB per per-triplet array, 0.7 MB for the
# (centre, slot, slot) Gram matrix); 12 measured best for the values, the
# stored derivatives and the fused force path on a 108-atom cell, 8 and 16
# were 3-10 % slower.
CHUNK_ATOMS = 12


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
        ``evaluate(rows, g_af) -> dE_dg_af``: the derivative of the energy
        with respect to the fingerprints ``g_af`` of the centre atoms
        ``atoms[rows]``. When given, the derivatives are contracted with it
        as soon as a chunk of centres is done, and ``dE / d r_e`` is
        returned per entry instead of ``d G / d r_e`` (no derivative array
        is ever built).

    Returns
    -------
    g_af : ndarray, shape (len(atoms), n_features)
        The fingerprints.
    entries : ndarray of int or None
        Neighbour-entry ids whose centre is in ``atoms``, in order.
    entry_derivatives : ndarray or None
        ``d G_i / d r_e``, shape ``(len(entries), 3, n_features)`` (axes
        ``_exf``), for each of those entries; with ``evaluate``,
        ``dE / d r_e``, shape ``(len(entries), 3)``.
    """
    with plan.workspace.lend() as workspace:
        return _compute(plan, cutoff, neighbors, codes, atoms, derivatives,
                        evaluate, workspace)


def _compute(plan, cutoff, neighbors, codes, atoms, derivatives, evaluate,
             workspace):
    g_af = np.zeros((len(atoms), plan.n_features))
    first = neighbors.first_entry
    counts_a = first[atoms + 1] - first[atoms]
    entries = ragged(first[atoms], counts_a)
    contract = evaluate is not None
    if contract:
        dE_dr_ex = np.zeros((len(entries), 3))
    elif derivatives:
        dg_exf = np.zeros((len(entries), 3, plan.n_features))
    entry_start = np.concatenate([[0], np.cumsum(counts_a)])
    for a0 in range(0, len(atoms), CHUNK_ATOMS):
        a1 = min(a0 + CHUNK_ATOMS, len(atoms))
        e0, e1 = entry_start[a0], entry_start[a1]
        if e1 == e0:
            if contract:  # isolated centres still have an energy
                evaluate(np.arange(a0, a1), g_af[a0:a1])
            continue
        workspace.reset()
        chunk = Chunk(neighbors, codes, entries[e0:e1], counts_a[a0:a1],
                      cutoff, derivatives or contract, workspace)
        stored = dg_exf[e0:e1] if derivatives and not contract else None
        deferred = [] if contract else None
        two_body(plan, chunk, g_af[a0:a1], stored, deferred)
        if plan.has_triplets:
            three_body(plan, chunk, g_af[a0:a1], stored, deferred)
        if contract:
            dE_dg_af = evaluate(np.arange(a0, a1), g_af[a0:a1])
            for add_gradient in deferred:
                add_gradient(dE_dg_af, dE_dr_ex[e0:e1])
    if contract:
        return g_af, entries, dE_dr_ex
    if derivatives:
        return g_af, entries, dg_exf
    return g_af, None, None


