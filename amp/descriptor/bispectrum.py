r"""Bispectrum descriptor (Amp's ``Bispectrum``): the bispectrum of an
atom's neighbour density on the 3-sphere.

Definition
----------
For centre atom ``i`` with neighbours ``j`` (every atom or periodic image
closer than ``Rc``) at ``r_ij`` and the weights ``w_j = G[s_i][s_j]
fc(R_ij)`` (``s`` the elements, ``G`` Amp's ``Gs``, by default the atomic
number of ``s_j``), each neighbour is mapped to the rotation by
``omega_j = arcsin(R_ij / Rc)`` about the axis ``r_ij / R_ij`` (Amp's
mapping of the ball onto the 3-sphere), with the matrices ``U^j`` of
that rotation in the spin-``j`` representation (the hyperspherical
harmonics; :mod:`amp.descriptor.spherical.hyperspherical`)::

    c^j_{m'm}(i) = sum_j w_j conj(U^j_{mm'}(omega_j, r_ij / R_ij))
    B_{j1 j1 j}(i) = sum_{m, m', m1, m1'} conj(c^j_{m'm})
                     C^{jm}_{j1 m1 j1 m-m1} C^{jm'}_{j1 m1' j1 m'-m1'}
                     c^{j1}_{m1' m1} c^{j1}_{m'-m1', m-m1}

with the Clebsch-Gordan coefficients ``C`` (Condon-Shortley). The
features are ``2 j1 = 0..2 jmax`` and, for each, the integers ``j =
0..min(2 j1, jmax)``, in that order (``jmax = 5`` gives 51 features,
``jmax = 3`` 22). ``B`` is real.

Unlike Amp 1.0.1 (pure Python, about 500 s per atom-neighbour pair at
its default ``jmax = 5``, and no derivatives), the fingerprints here take
milliseconds per image and come with analytic derivatives, so models
train on forces.

The kernels are in :mod:`amp.descriptor.spherical`.

References
----------
A. P. Bartok, M. C. Payne, R. Kondor and G. Csanyi, Phys. Rev. Lett. 104,
136403 (2010).
A. P. Thompson, L. P. Swiler, C. R. Trott, S. M. Foiles and G. J. Tucker,
J. Comput. Phys. 285, 316 (2015).
D. A. Varshalovich, A. N. Moskalev and V. K. Khersonskii, Quantum Theory
of Angular Momentum (World Scientific, 1988), Secs. 4.5, 8.2.
"""

import numbers

from .cutoffs import Cosine
from .density import DensityDescriptor, generate_coefficients
from .spherical.bispectrum import bispectrum_element
from .spherical.bispectrum_tables import bispectrum_tables

__all__ = ["Bispectrum", "generate_coefficients", "JMAX_LIMIT"]

#: Largest jmax accepted: at 8 a neighbour carries 1,785 complex
#: expansion coefficients and the bispectrum 2.8e5 products per atom.
JMAX_LIMIT = 8


class Bispectrum(DensityDescriptor):
    """Bispectrum descriptor with Amp's keywords.

    Parameters
    ----------
    cutoff : Cosine, Polynomial, dict or float
        Cutoff function (default ``Cosine(6.5)``); a number means
        ``Cosine`` of that radius.
    Gs : dict, optional
        ``{centre element: {neighbour element: coefficient}}``; None gives
        :func:`generate_coefficients` (atomic numbers).
    jmax : int, half-integer or dict
        Largest ``j1`` (default 5), or ``{element: jmax}``.
    dblabel : str, optional
        Amp 1.x's view: the databases :attr:`arrays` reads when no store
        is passed (see :class:`amp.descriptor.base.Descriptor`).
    elements : list of str, optional
        Elements the descriptor covers; from ``Gs`` or the images when
        None.
    version : str, optional
        Amp's descriptor version, ``'2016.02'``.
    mode : str
        Only ``'atom-centered'``.

    Attributes
    ----------
    fingerprints, fingerprintprimes, neighborlist, arrays : mapping
        Amp 1.x's views (see :class:`amp.descriptor.base.Descriptor`).
    coefficients : dict
        The density coefficients (``parameters['Gs']``).
    """

    importname = ".descriptor.bispectrum.Bispectrum"
    degree_name = "jmax"
    tables = staticmethod(bispectrum_tables)
    kernel = staticmethod(bispectrum_element)

    def __init__(self, cutoff=Cosine(6.5), Gs=None, jmax=5, dblabel=None,
                 elements=None, version="2016.02", mode="atom-centered"):
        DensityDescriptor.__init__(self, cutoff=cutoff, Gs=Gs, degree=jmax,
                                   dblabel=dblabel, elements=elements,
                                   version=version, mode=mode)

    @property
    def jmax(self):
        """``jmax``, a number or ``{element: number}``."""
        return self.degree

    def check_degree(self, value, element=None):
        """``jmax`` must be a whole or half-integer number from 0 to
        :data:`JMAX_LIMIT`."""
        where = "" if element is None else " of %s" % element
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or 2 * value != int(2 * value):
            raise ValueError("jmax%s must be a whole or half-integer number, "
                             "got %r" % (where, value))
        if not 0 <= value <= JMAX_LIMIT:
            raise ValueError("jmax%s must be from 0 to %d, got %r"
                             % (where, JMAX_LIMIT, value))
        return int(value) if value == int(value) else float(value)
