r"""Zernike descriptor (Amp's ``Zernike``): the rotation invariants of the
3-D Zernike moments of an atom's neighbour density.

Definition
----------
For centre atom ``i`` with neighbours ``j`` (every atom or periodic image
closer than ``Rc``), ``u_j = r_ij / Rc`` and the weights ``w_j =
G[s_i][s_j] fc(R_ij)`` (``s`` the elements, ``G`` Amp's ``Gs``, by
default the atomic number of ``s_j``)::

    c_nlm(i) = sum_j w_j conj(Z_nlm(u_j))
    G_nl(i)  = sum_{m=-l..l} |c_nlm(i)|^2

for ``n = 0..nmax``, ``l = 0..n`` with ``n - l`` even, in that order
(``nmax = 5`` gives 12 features). The 3-D Zernike functions are
``Z_nlm(u) = R_nl(|u|) Y_lm(u / |u|)`` with the orthonormal spherical
harmonics ``Y_lm`` (Condon-Shortley phase) and Amp's radial polynomials::

    R_nl(rho) = sqrt(2n + 3) sum_{s=0..k} (-1)^s C(k, s)
                C(n - s + 1/2, k) rho^(n - 2s),      k = (n - l) / 2

(``C`` the binomial coefficient, for half-integer tops through the Gamma
function). ``Z_nlm`` is a polynomial in ``x, y, z``, so the fingerprints
are smooth; their derivatives are exact (no finite differences), and
agree with Amp's pure-Python path (``fortran=False``) also where Amp's
default Fortran path does not (custom ``Gs``).

The kernels are in :mod:`amp.descriptor.spherical`.

References
----------
M. Novotni and R. Klein, Computer-Aided Design 36, 1047 (2004).
A. Khorshidi and A. A. Peterson, Comput. Phys. Commun. 207, 310 (2016).
"""

import numbers

from .cutoffs import Cosine
from .density import DensityDescriptor, generate_coefficients
from .spherical.zernike import zernike_element
from .spherical.zernike_tables import zernike_tables

__all__ = ["Zernike", "generate_coefficients", "NMAX_LIMIT"]

#: Largest nmax accepted: the monomial form loses about one digit per two
#: degrees beyond 10 (relative error 2e-13 at nmax 10, 2e-11 at 15 and
#: 2e-9 at 20, measured against the spherical-harmonic form).
NMAX_LIMIT = 20


class Zernike(DensityDescriptor):
    """Zernike descriptor with Amp's keywords.

    Parameters
    ----------
    cutoff : Cosine, Polynomial, dict or float
        Cutoff function (default ``Cosine(6.5)``); a number means
        ``Cosine`` of that radius.
    Gs : dict, optional
        ``{centre element: {neighbour element: coefficient}}``, e.g.
        ``{'Au': {'Au': 3., 'O': 2.}, 'O': {'Au': 5., 'O': 10.}}``; None
        gives :func:`generate_coefficients` (atomic numbers).
    nmax : int or dict
        Largest degree of the Zernike polynomials (default 5), or
        ``{element: nmax}``.
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
    fortran : bool
        Accepted for compatibility; there is one (vectorised)
        implementation.

    Attributes
    ----------
    fingerprints, fingerprintprimes, neighborlist, arrays : mapping
        Amp 1.x's views (see :class:`amp.descriptor.base.Descriptor`).
    coefficients : dict
        The density coefficients (``parameters['Gs']``).
    """

    importname = ".descriptor.zernike.Zernike"
    degree_name = "nmax"
    tables = staticmethod(zernike_tables)
    kernel = staticmethod(zernike_element)

    def __init__(self, cutoff=Cosine(6.5), Gs=None, nmax=5, dblabel=None,
                 elements=None, version="2016.02", mode="atom-centered",
                 fortran=True):
        self.fortran = fortran
        DensityDescriptor.__init__(self, cutoff=cutoff, Gs=Gs, degree=nmax,
                                   dblabel=dblabel, elements=elements,
                                   version=version, mode=mode)

    @property
    def nmax(self):
        """``nmax``, an int or ``{element: int}``."""
        return self.degree

    def check_degree(self, value, element=None):
        """``nmax`` must be a whole number from 0 to :data:`NMAX_LIMIT`."""
        where = "" if element is None else " of %s" % element
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError("nmax%s must be a whole number, got %r"
                             % (where, value))
        if not 0 <= value <= NMAX_LIMIT:
            raise ValueError("nmax%s must be from 0 to %d, got %d"
                             % (where, NMAX_LIMIT, value))
        return int(value)
