"""Fingerprints computed by the ranks of an MPI job (``cores='mpi'``).

Each rank computes the fingerprints (and derivatives) of its own share of
the images (:meth:`amp.parallel.mpi.MPIContext.share`: contiguous,
balanced by atom count), those of its share that its store lacks, into
its store. With databases on a file system every rank sees, the ranks fill
the same databases (their writes are atomic and never collide), and after
a barrier every rank's store has every image. With databases on disks of
their own (node-local) or in memory, each rank's store has its own share;
the values of the images it lacks (not the derivatives, which only the
loss of the share's own rank needs) are then sent to it and *held* in
memory (:meth:`~amp.descriptor.fingerprint_store.FingerprintStore.hold`),
so that the model's set-up (the fingerprint range) reads every image as it
does serially. Nothing of another rank's share is ever written.
"""

import numpy as np

from ..progress import Progress
from .fingerprints import ImageFingerprints

__all__ = ["fingerprints_on_ranks"]


def fingerprints_on_ranks(descriptor, images, context, store, derivatives,
                          log, verbose=None):
    """Compute this rank's share of the fingerprints, then let every rank
    read every image's values (see the module).

    Parameters
    ----------
    descriptor : Descriptor
    images : dict
        ``{hash: ase.Atoms}``, the same on every rank (checked).
    context : amp.parallel.mpi.MPIContext
    store : FingerprintStore
    derivatives : bool
    log : callable
        Rank 0's log (the others' log nothing).
    verbose : bool or None
        Progress line of rank 0's share (the others show none).

    Returns
    -------
    list of str
        The hashes this rank computed.
    """
    keys = context.share(images, "images to fingerprint")
    needed = [key for key in keys if key not in store or (
        derivatives and not store.has_derivatives(key))]
    total = int(context.total(len(needed)))
    log("Fingerprints%s: %i of %i images to calculate on %i MPI ranks (%s)."
        % (" and derivatives" if derivatives else "", total, len(images),
           context.size, "%s-*.ampdb" % store.dblabel if store.on_disk
           else "memory"), tic="fp")
    with Progress(len(needed), "fingerprints",
                  enabled=verbose if context.is_root else False,
                  unit="images") as progress:
        for key in needed:
            store.put(key, descriptor.compute(images[key], derivatives))
            progress.update(progress.done + 1)
    received = _share_values(context, images, store)
    log("...fingerprints ready%s." % (
        "" if not received else " (values of %i images of other ranks held "
        "in memory)" % received), toc="fp")
    return needed


def _share_values(context, images, store):
    """Send each rank the values of the images its store lacks; returns how
    many this rank received."""
    context.barrier()  # every rank's entries are written
    keys = list(images)
    lacking = np.array([n for n, key in enumerate(keys) if key not in store],
                       dtype=np.int64)
    wanted = context.exchange(lacking)
    if not any(len(indices) for indices in wanted):
        return 0
    mine = set(context.shares(images)[context.rank])
    asked = sorted({int(n) for indices in wanted for n in indices
                    if keys[int(n)] in mine})
    sent = context.exchange({keys[n]: store.fingerprint_values(keys[n])
                             .todict(parts=("values",)) for n in asked})
    received = 0
    for values in sent:
        for key, value in values.items():
            if key not in store:
                store.hold(key, ImageFingerprints.fromdict(value))
                received += 1
    missing = [key for key in keys if key not in store]
    if missing:
        raise RuntimeError("no MPI rank had the fingerprints of %i images "
                           "(first %s)" % (len(missing), missing[0]))
    return received
