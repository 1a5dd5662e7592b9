"""The loss function's images shared between the ranks of an MPI job.

Every rank runs the same optimizer. Each holds the
:class:`~amp.model.batch.TrainingBatch` of its own share of the images
(:meth:`amp.parallel.mpi.MPIContext.share`: contiguous, balanced by atom
count) and nothing of the others', so the force data are spread over the
ranks' memory. For a parameter vector each rank computes the partial sums
of its share (:class:`~amp.model._shares.LossShare`, the code the ZMQ
workers run), every rank gathers every rank's partial sums as one row of
float64 numbers per rank (one ``MPI_Allgather``), and the loss function
adds them in rank order with :func:`amp.model.combine_partials`: the same
additions in the same order on every rank, so every rank holds bitwise
the same loss and gradient, and its optimizer takes the same step.

Each row also carries two integer checksums of the rank's parameter
vector (its float64 bit patterns xor-ed and summed), so ranks whose
parameters have diverged (different floating-point results on different
kinds of nodes) are stopped with an error naming them instead of training
on inconsistent numbers.
"""

import numpy as np

from ..parallel.mpi import RanksDisagree
from ._shares import LossShare

#: Numbers before the gradient in a rank's row: the partial sums (the
#: stress terms 0 without a stress term), whether a gradient follows, and
#: the two checksums of the vector.
_SUMS = ("energy_loss", "force_loss", "energy_maxresid", "force_maxresid",
         "n_images", "stress_loss", "stress_maxresid", "n_stress_images")
_HEAD = len(_SUMS) + 3


def vector_checksums(vector):
    """Two uint64 checksums of a float64 vector's bit patterns (xor and
    wrapping sum): equal for bitwise equal vectors on any machine."""
    bits = np.ascontiguousarray(vector, dtype=np.float64).view(np.uint64)
    return np.array([np.bitwise_xor.reduce(bits, initial=np.uint64(0)),
                     bits.sum(dtype=np.uint64)], dtype=np.uint64)


class RankBatches:
    """This rank's share of the training images, and the partial sums of
    every rank's share for each parameter vector.

    Parameters
    ----------
    context : amp.parallel.mpi.MPIContext
    batch : TrainingBatch or None
        This rank's share (None: the rank holds no image, e.g. more ranks
        than images).
    setup : dict
        :class:`LossShare`'s setup.
    n_parameters : int
        Length of the parameter vector.

    Attributes
    ----------
    n_shares : int
        The number of ranks.
    evaluations : int
        Evaluations so far (named when the ranks' parameters diverge).
    """

    def __init__(self, context, batch, setup, n_parameters):
        self.context, self.n_shares = context, context.size
        self.share = None if batch is None else LossShare(setup, batch)
        self.n_parameters = int(n_parameters)
        self.evaluations = 0
        self._row = np.zeros(_HEAD + self.n_parameters)
        self._rows = np.empty((context.size, len(self._row)))

    def partials(self, vector, lossprime):
        """Every rank's partial sums (dicts as
        :meth:`~amp.model.batch.TrainingBatch.partial`), in rank order."""
        row = self._row
        row[:] = 0.0
        if self.share is not None:
            part = self.share.partial({"vector": vector,
                                       "lossprime": bool(lossprime)})
            extra = set(part) - set(_SUMS) - {"gradient"}
            if extra:  # a term a rank would otherwise drop silently
                raise RuntimeError("the MPI ranks do not exchange the "
                                   "partial sums %s; add them to "
                                   "amp.model._ranks._SUMS" % sorted(extra))
            row[:len(_SUMS)] = [part.get(name, 0.0) for name in _SUMS]
            if lossprime:
                row[_HEAD:] = part["gradient"]
        row[len(_SUMS)] = bool(lossprime)
        checksums = vector_checksums(vector)
        row[len(_SUMS) + 1:_HEAD].view(np.uint64)[:] = checksums
        rows = self.context.allgather_rows(row, self._rows)
        self.evaluations += 1
        self._check_vectors(rows, checksums)
        return [dict(zip(_SUMS, map(float, rows[rank, :len(_SUMS)])),
                     gradient=rows[rank, _HEAD:].copy() if lossprime
                     else None)
                for rank in range(self.n_shares)]

    def _check_vectors(self, rows, checksums):
        """Raise on every rank when a rank evaluated other parameters."""
        theirs = np.ascontiguousarray(rows[:, len(_SUMS) + 1:_HEAD]) \
            .view(np.uint64)
        differ = np.flatnonzero(np.any(theirs != theirs[0], axis=1))
        if len(differ):
            raise RanksDisagree(
                "the MPI ranks evaluated different parameters at loss "
                "evaluation %d (ranks %s differ from rank 0): their "
                "optimizers no longer run on the same numbers. Run every "
                "rank on the same kind of node, with the same numpy and "
                "BLAS." % (self.evaluations,
                           ", ".join(map(str, differ))))

    def close(self):
        """Drop this rank's share."""
        self.share = None
