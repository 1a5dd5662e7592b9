"""What KernelRidge's kernels compare: per-atom energy and force features.

The energy feature of an atom is its fingerprint ``G_a``. The force
feature of atom ``a`` in direction ``x`` is Amp 1.x's "sum rule": the sum,
over every atom ``n`` whose fingerprint moves with ``a``, of
``d G_n / d x_a`` -- that is ``d (sum_n G_n) / d x_a``. With the
descriptor's per-entry derivatives ``D_e = d G_i / d r_e`` (entry ``e``
from atom ``i`` to an image of atom ``j``, ``r_e = x_j + offset - x_i``)::

    f_a = sum_{e: j[e] = a} D_e - sum_{e: i[e] = a} D_e

one sparse product over the entries (an entry from an atom to its own
periodic image moves both ends and cancels). The fingerprints of every
element must then have the same length, as Amp's sum needs.

Amp's ``preprocessing`` standardises features (scikit-learn's
``StandardScaler``: ``(v - mean) / std``, population std, 1 where it is
0): the energy features over every training atom, and the force features
before the sum, over every fingerprint-prime key ``(a, n, x)`` of the
training images, one scaler per direction ``x``. Atom ``a`` has
``c_a`` keys (itself and each atom within the cutoff), so its scaled
force feature is ``(f_a - c_a mean_x) / std_x``. The keys' moments are
gathered image by image and merged (Chan et al.), so no image's keys are
kept.
"""

import numpy as np

__all__ = ["energy_blocks", "force_features", "key_counts", "prime_moments",
           "Standardizer"]


def energy_blocks(fingerprints) -> dict:
    """``{element: (n_e, n_features) array}`` of an
    :class:`~amp.descriptor.fingerprints.ImageFingerprints`, rows in atom
    order."""
    return {element: np.asarray(block, dtype=float)
            for element, block in fingerprints.values.items()}


def _entry_derivatives(fingerprints):
    """``(i, j, D)`` of every entry that has derivatives, ``D`` of shape
    ``(n_entries, 3, n_features)``.

    Raises
    ------
    ValueError
        No derivatives, or elements whose fingerprints differ in length.
    """
    if not fingerprints.has_derivatives:
        raise ValueError("force features need fingerprint derivatives; "
                         "these fingerprints were computed without them")
    lengths = {element: np.shape(block)[1]
               for element, block in fingerprints.values.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            "KernelRidge's force model sums the fingerprint derivatives of "
            "neighbouring atoms (Amp's sum rule), which needs fingerprints "
            "of one length for every element; here they differ (%s). Give "
            "every element the same number of symmetry functions, or train "
            "energies only" % ", ".join("%s: %d" % item
                                        for item in sorted(lengths.items())))
    n_features = next(iter(lengths.values()), 0)
    nl = fingerprints.neighbors
    entries = [np.asarray(fingerprints.entries[e], dtype=np.int64)
               for e in sorted(fingerprints.derivatives)]
    blocks = [np.asarray(fingerprints.derivatives[e], dtype=float)
              .reshape(-1, 3, n_features)
              for e in sorted(fingerprints.derivatives)]
    entry = np.concatenate(entries) if entries else np.zeros(0, np.int64)
    derivative = np.concatenate(blocks) if blocks else \
        np.zeros((0, 3, n_features))
    return nl.i[entry], nl.j[entry], derivative, n_features


def force_features(fingerprints) -> np.ndarray:
    """Amp's summed fingerprint primes of every atom and direction.

    Returns
    -------
    ndarray, shape (n_atoms, 3, n_features)
        ``f[a, x] = sum_n d G_n / d x_{a,x}``.
    """
    from scipy.sparse import coo_matrix

    i, j, derivative, n_features = _entry_derivatives(fingerprints)
    n, count = fingerprints.n_atoms, len(i)
    columns = np.arange(count)
    incidence = coo_matrix(
        (np.concatenate([np.ones(count), -np.ones(count)]),
         (np.concatenate([j, i]), np.concatenate([columns, columns]))),
        shape=(n, count)).tocsr()  # self-image entries sum to zero
    summed = incidence @ derivative.reshape(count, 3 * n_features)
    return np.asarray(summed).reshape(n, 3, n_features)


def _pairs(i, j, n_atoms):
    """Distinct ``(centre, neighbour)`` pairs of different atoms: their
    codes ``centre * n_atoms + neighbour`` and each entry's pair (-1 for
    an entry to the centre's own image)."""
    other = i != j
    codes, inverse = np.unique(i[other] * n_atoms + j[other],
                               return_inverse=True)
    pair = np.full(len(i), -1, dtype=np.int64)
    pair[other] = inverse
    return codes, pair


def key_counts(fingerprints) -> np.ndarray:
    """Amp's fingerprint-prime keys ``(a, n, x)`` of each atom ``a`` (for
    one ``x``): 1 for ``n = a`` plus one per other atom within the
    cutoff. Shape ``(n_atoms,)``."""
    nl = fingerprints.neighbors
    codes, _ = _pairs(np.asarray(nl.i), np.asarray(nl.j),
                      fingerprints.n_atoms)
    return 1 + np.bincount(codes % fingerprints.n_atoms,
                           minlength=fingerprints.n_atoms)


def prime_moments(fingerprints) -> tuple:
    """Count, mean and summed squared deviations of the fingerprint primes
    of every key of one image, per direction.

    Returns
    -------
    count : int
    mean : ndarray, shape (3, n_features)
    m2 : ndarray, shape (3, n_features)
    """
    from scipy.sparse import coo_matrix

    i, j, derivative, n_features = _entry_derivatives(fingerprints)
    n, count = fingerprints.n_atoms, len(i)
    codes, pair = _pairs(i, j, n)
    other = pair >= 0
    flat = derivative.reshape(count, 3 * n_features)
    # d G_n / d x_m of each pair (entries n -> m summed over images) and
    # d G_n / d x_n = - (its entries to other atoms).
    rows = np.concatenate([pair[other], len(codes) + i[other]])
    columns = np.concatenate([np.flatnonzero(other)] * 2)
    values = np.concatenate([np.ones(other.sum()), -np.ones(other.sum())])
    keys = coo_matrix((values, (rows, columns)),
                      shape=(len(codes) + n, count)).tocsr() @ flat
    keys = np.asarray(keys).reshape(-1, 3, n_features)
    mean = keys.mean(axis=0)
    m2 = ((keys - mean) ** 2).sum(axis=0)
    return len(keys), mean, m2


class Standardizer:
    """``(v - mean) / scale`` with scikit-learn's ``StandardScaler``
    conventions (population standard deviation; a scale of 0 becomes 1).

    Parameters
    ----------
    mean, scale : array_like
    """

    def __init__(self, mean, scale):
        self.mean = np.array(mean, dtype=float)
        scale = np.array(scale, dtype=float)
        self.scale = np.where(scale == 0.0, 1.0, scale)

    @classmethod
    def from_moments(cls, parts) -> "Standardizer":
        """Merge ``(count, mean, m2)`` of several batches (Chan, Golub and
        LeVeque's pairwise update) and standardise by the result."""
        count, mean, m2 = 0, None, None
        for n, part_mean, part_m2 in parts:
            if n == 0:
                continue
            if mean is None:
                count, mean, m2 = n, np.array(part_mean), np.array(part_m2)
                continue
            total = count + n
            delta = part_mean - mean
            mean = mean + delta * (n / total)
            m2 = m2 + part_m2 + delta ** 2 * (count * n / total)
            count = total
        if mean is None:
            raise ValueError("no values to standardise")
        return cls(mean, np.sqrt(m2 / count))

    @classmethod
    def fit(cls, values: np.ndarray) -> "Standardizer":
        """Standardise by the columns of ``values`` (rows are samples)."""
        values = np.asarray(values, dtype=float)
        mean = values.mean(axis=0)
        return cls(mean, np.sqrt(((values - mean) ** 2).mean(axis=0)))

    def transform(self, values: np.ndarray,
                  count: float | np.ndarray = 1.0) -> np.ndarray:
        """``(values - count * mean) / scale``; ``count`` broadcasts (the
        number of keys summed into each row of force features)."""
        return (np.asarray(values, dtype=float)
                - np.multiply.outer(count, self.mean)) / self.scale

    def todict(self) -> dict:
        """Plain lists, for model files."""
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def fromdict(cls, d: dict) -> "Standardizer":
        """From :meth:`todict`'s form."""
        return cls(d["mean"], d["scale"])
