r"""Kernels of the neighbour-density descriptors: 3-D Zernike moments and
the bispectrum on the 3-sphere, with their derivatives, vectorised.

Both turn one image's neighbour list (:mod:`amp.descriptor.neighbors`)
into fingerprints, one element at a time, with Amp 1.x's definitions
(given in full in :mod:`amp.descriptor.zernike` and
:mod:`amp.descriptor.bispectrum`). They are pure array code: this package
must not import anything of ``amp`` outside :mod:`amp.descriptor` (no
stores, workers or models).

The neighbour density
---------------------
Centre atom ``i`` sees its neighbours ``e = (i, j, offset)`` at ``r_e``
(``R_e = |r_e| < Rc``), each weighted by ``w_e = G[s_i][s_j] fc(R_e)``
(the density coefficients, Amp's ``Gs``, and the cutoff function). A
descriptor expands ``sum_e w_e delta(r - r_e)`` in a basis ``{phi_k}``::

    c_k(i) = sum_e w_e phi_k(r_e)

and its features are rotation invariants built from the ``c_k``: sums of
squares for Zernike, triple products coupled by Clebsch-Gordan
coefficients for the bispectrum.

Derivatives
-----------
As for the Gaussian kernels (:mod:`amp.descriptor.symmetry`), a kernel
returns ``d G_i / d r_e`` for every neighbour entry ``e`` of centre ``i``;
Amp's ``fingerprintprimes`` and the forces are built from them
(:mod:`amp.descriptor.fingerprints`). Since every feature ``G_f`` is a
polynomial in the ``c_k``, ``dG_f / dr_e = sum_k (dG_f / dc_k) dc_k /
dr_e`` with ``dc_k / dr_e = w'(R_e) r_e / R_e phi_k + w_e grad phi_k``:
the adjoints ``dG_f / dc_k`` are formed once per centre, then contracted
with every neighbour's basis functions by batched matrix products
(no array of ``d c_k / d r_e`` over all ``k`` is built).

* Zernike (:mod:`.zernike`, :mod:`.zernike_tables`): ``phi_k`` are the
  3-D Zernike functions of ``r / Rc``, polynomials in ``x, y, z``; they
  and their gradients are one matrix over the monomials ``x^a y^b z^c``.
  The moments of the monomials per centre give ``c_k``, and ``sum_k
  (dG_f / dc_k) phi_k`` is one polynomial per centre and feature.
* Bispectrum (:mod:`.bispectrum`, :mod:`.bispectrum_tables`,
  :mod:`.hyperspherical`): ``phi_k`` are the elements of the rotation
  matrices ``U^j`` of the Cayley-Klein parameters ``(a, b)`` of each
  neighbour, made level by level (``2j = 0, 1, ...``) with two products
  per element; the derivative of level ``2j`` is level ``2j - 1`` times
  ``da/dr`` and ``db/dr``. The symmetry ``U^j_{-m,-m'} = (-1)^(m-m')
  conj(U^j_{mm'})`` halves the work.

Array names
-----------
As in :mod:`amp.descriptor.symmetry`: suffixes give the axes, ``_a``
centre atom, ``_e`` neighbour entry, ``_s`` slot (an entry's place in a
chunk's padded ``(centre, slot)`` block), ``_f`` feature, ``_x``
Cartesian component, ``_k`` expansion coefficient (basis function),
``_m`` monomial.

Modules
-------
:mod:`.zernike_tables`
    The Zernike functions as exact polynomial coefficients.
:mod:`.zernike`
    The Zernike kernel.
:mod:`.hyperspherical`
    Cayley-Klein parameters and the hyperspherical harmonics ``U^j``.
:mod:`.bispectrum_tables`
    Clebsch-Gordan coefficients and the bispectrum's products.
:mod:`.bispectrum`
    The bispectrum kernel.

There is no Python loop over atoms, neighbours or expansion terms, only
over chunks of centre atoms and over the levels ``2j`` of the recursion.

References
----------
M. Novotni and R. Klein, Computer-Aided Design 36, 1047 (2004).
A. P. Bartok, M. C. Payne, R. Kondor and G. Csanyi, Phys. Rev. Lett. 104,
136403 (2010).
A. P. Thompson, L. P. Swiler, C. R. Trott, S. M. Foiles and G. J. Tucker,
J. Comput. Phys. 285, 316 (2015).
A. Khorshidi and A. A. Peterson, Comput. Phys. Commun. 207, 310 (2016).
D. A. Varshalovich, A. N. Moskalev and V. K. Khersonskii, Quantum Theory
of Angular Momentum (World Scientific, 1988).
"""

from .bispectrum import bispectrum_element
from .bispectrum_tables import bispectrum_tables, clebsch_gordan
from .zernike import zernike_element
from .zernike_tables import zernike_tables

__all__ = ["zernike_element", "zernike_tables", "bispectrum_element",
           "bispectrum_tables", "clebsch_gordan"]
