"""Stratified sampling of training and validation points (sgdml's rule).

T is binned with the Freedman-Diaconis rule (bin width ``2 IQR / n**(1/3)``,
at most ``n / 2`` bins); every bin gets its share of the n points (rounded
up, so every populated bin is represented when n allows), the total is
trimmed or topped up at random in proportion to the bin counts, and the
members of each bin are drawn uniformly without replacement with
``numpy.random`` (so ``np.random.seed`` makes the draw reproducible).
"""

import numpy as np

__all__ = ["draw_strat_sample"]


def draw_strat_sample(T, n, excl_idxs=None):
    """Stratified sample of n indices that preserves the distribution of T.

    Parameters
    ----------
    T : numpy.ndarray
        Values (e.g. energies) of all candidates.
    n : int
        Sample size.
    excl_idxs : numpy.ndarray, optional
        Indices that must not be drawn.

    Returns
    -------
    numpy.ndarray
        n distinct indices into T, grouped by bin.

    Raises
    ------
    ValueError
        If fewer than n candidates remain.
    """
    T = np.asarray(T, dtype=float).ravel()
    n = int(n)
    avail = np.ones(T.size, dtype=bool)
    if excl_idxs is not None and len(excl_idxs) > 0:
        avail[np.asarray(excl_idxs, dtype=int)] = False
    cand = np.flatnonzero(avail)
    if n < 0 or n > cand.size:
        raise ValueError("cannot draw {} points: only {} candidates are "
                         "available".format(n, cand.size))
    if n == 0:
        return np.array([], dtype=int)
    if n == cand.size:
        return cand
    if n == 1:
        return np.array([np.random.choice(cand)])
    q75, q25 = np.percentile(T, [75, 25])
    h = 2.0 * (q75 - q25) / np.cbrt(n)
    span = T.max() - T.min()
    n_bins = int(np.ceil(span / h)) if h > 0 else 1
    n_bins = max(1, min(n_bins, n // 2))
    edges = np.linspace(T.min(), T.max(), n_bins, endpoint=False)
    bin_of = np.digitize(T[cand], edges)
    bins, counts = np.unique(bin_of, return_counts=True)
    share = np.minimum(np.ceil(counts / counts.sum() * n).astype(int),
                       counts)
    delta = n - share.sum()
    while delta != 0:
        if delta < 0:  # trim, never emptying a bin
            room = share - 1
        else:          # top up where members are left
            room = counts - share
        k = min(abs(delta), int(room.sum()))
        if k == 0:
            room = share if delta < 0 else room
            k = min(abs(delta), int(room.sum()))
        picks = np.random.choice(len(bins), k, p=room / room.sum())
        add = np.minimum(np.bincount(picks, minlength=len(bins)), room)
        share += np.sign(delta) * add
        delta = n - share.sum()
    out = [np.random.choice(cand[bin_of == b], s, replace=False)
           for b, s in zip(bins, share) if s > 0]
    return np.concatenate(out).astype(int)
