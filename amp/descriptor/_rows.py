"""Row gathers and scatters that stay fast on arrays of small rows.

Numpy's fancy indexing of an ``(n, 3)`` array along its first axis walks
the trailing axis element by element; on the ~10,000 neighbour vectors of
a 108-atom Cu cell it measured 3-4 times slower than moving whole rows.
``np.take(a, index, axis=0)`` moves rows, and :func:`put_rows` does the
same for assignments by viewing each row as one opaque item.
"""

import numpy as np


def _as_items(array):
    """A contiguous array as a 1-D array with one opaque item per row."""
    item = np.dtype((np.void, array.itemsize * (array.size // len(array))))
    return array.reshape(len(array), -1).view(item).reshape(len(array))


def put_rows(out, index, rows):
    """``out[index] = rows`` along the first axis, moving whole rows.

    Parameters
    ----------
    out : ndarray
        C-contiguous; written in place.
    index : ndarray of int
        Row numbers of ``out``; no repeats (as for plain assignment, the
        last of repeated rows would win).
    rows : array_like, shape (len(index),) + out.shape[1:]
    """
    rows = np.ascontiguousarray(rows, dtype=out.dtype)
    if out.ndim == 1 or len(out) == 0 or len(rows) == 0:
        out[index] = rows
        return
    if not out.flags.c_contiguous:
        raise ValueError("put_rows needs a C-contiguous output array")
    _as_items(out)[index] = _as_items(rows)
