r"""n2p2's symmetry functions, vectorised, with analytic derivatives.

Pure array code on the descriptor's neighbour list: this package must not
import the models, the store's n2p2 files or the calculator.

The descriptor of n2p2 (and RuNNer) potentials: every symmetry-function
type n2p2 implements, its cutoff functions and its ordering, computed as
n2p2 defines them (``src/libnnp/SymFnc*.cpp``, ``CutoffFunction.cpp``,
``CoreFunction.h`` of n2p2), in the potential's own units.

Definitions
-----------
For a centre atom ``i``, neighbours ``j`` are all atoms and periodic images
closer than the largest cutoff (:mod:`amp.descriptor.neighbors`); ``a =
r_ij``, ``b = r_ik``, ``d = r_jk`` are distances, ``c = cos theta_ijk``,
``fc`` the potential's cutoff function of the function's radius ``rc``
(:mod:`.cutoffs`), ``C`` a compact function on ``(rl, rc)`` and ``A`` one
on an angle range, ``Z`` atomic numbers::

    2   sum_j  exp(-eta (a - rs)^2) fc(a)                  j of element e1
    12  sum_j  Z_j exp(-eta (a - rs)^2) fc(a)
    20  sum_j  C(a)                                        j of element e1
    23  sum_j  Z_j C(a)
    3   2^(1-zeta) sum_{j<k} (1 + lambda c)^zeta
            exp(-eta [(a-rs)^2 + (b-rs)^2 + (d-rs)^2]) fc(a) fc(b) fc(d)
    9   as 3 without the d terms
    13  as 3 times Z_j Z_k, over every pair of neighbours
    21  sum_{j<k} C(a) C(b) C(d) A(theta)
    22  as 21 without C(d)
    24, 25  as 21, 22 times Z_j Z_k, over every pair of neighbours

Types 3, 9, 21 and 22 sum over the pairs of neighbours whose elements are
the function's ``e1`` and ``e2``; 2 and 20 over neighbours of element
``e1``. Each element's functions are sorted in n2p2's order
(:func:`.functions.sort_key`), which is the order of the network's inputs
and of the rows of ``scaling.data``. Fingerprints here are the unscaled
values; the model (:mod:`amp.model.n2p2`) applies n2p2's scaling.

Derivatives
-----------
Every function depends on the positions through the centre's neighbour
vectors ``r_e``. The kernels never build ``dG / d r_e``: given ``dE/dG``
of a chunk of centres they add ``dE / d r_e`` directly, gathered per chunk
in a ``(centre, slot, slot)`` matrix (:mod:`.chunk`), so that forces and
the virial follow as for the Gaussian descriptor
(:func:`amp.descriptor.fingerprints.entry_forces`).

Array names
-----------
As in :mod:`amp.descriptor.symmetry`: suffix letters give the axes, ``_a``
centre atom of a chunk, ``_e`` neighbour entry, ``_s`` slot (``_as``
unflattened), ``_t`` triplet (``_at`` the padded per-centre rows,
:mod:`.chunk`), ``_j``/``_k`` the two slots of a pair (``_ajk`` a dense
block), ``_f`` function, ``_m`` a moment of :mod:`.angular`, ``_x``
Cartesian.

Modules
-------
:mod:`.functions`
    :class:`SymmetryFunction` records, n2p2's checks and its order.
:mod:`.cutoffs`
    Cutoff functions (types 0 to 8, inner cutoff ``alpha``) and compact
    functions.
:mod:`.chunk`
    :class:`~.chunk.Slots`: a chunk of centres in element blocks of slots,
    and the gradient matrix.
:mod:`.radial`
    Types 2, 12, 20, 23.
:mod:`.angular`
    Types 3, 9, 13, with the polynomial (moment) evaluation.
:mod:`.compact`
    Types 21, 22, 24, 25.
:mod:`.descriptor`
    :class:`N2P2Descriptor`: an image's fingerprints and contracted
    gradients.

References
----------
J. Behler, J. Chem. Phys. 134, 074106 (2011); M. Gastegger et al., J.
Chem. Phys. 148, 241709 (2018); M. P. Bircher, A. Singraber, C. Dellago,
arXiv:2010.14414 (2020); A. Singraber, J. Behler, C. Dellago, J. Chem.
Theory Comput. 15, 1827 (2019).
"""

from .descriptor import N2P2Descriptor
from .functions import SymmetryFunction, element_order, sort_key

__all__ = ["N2P2Descriptor", "SymmetryFunction", "element_order",
           "sort_key"]
