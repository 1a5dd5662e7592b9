"""Bootstrap members trained by the ranks of an MPI job (``cores='mpi'``).

The members to train are taken in rounds of one per rank: in each round
rank ``r`` trains the ``r``-th member of the round (every rank knows every
member's resample and seeds: they follow from the common seed), then every
rank learns every result (:meth:`amp.parallel.mpi.MPIContext.exchange`).
Rank 0 trains its members where a serial run would, and alone writes
files: the other ranks train theirs in a private temporary folder and
send back the member's ``.amp`` text and its log, which rank 0 writes
under the member's label; the progress record is written after every
round.
"""

import os
import tempfile

from ..store.files import atomic_file
from ..utilities import Logger, make_filename

__all__ = ["members_on_ranks"]


def members_on_ranks(jobs, spec, context, train_member, log):
    """Yield ``(member key, result)`` for every member of ``jobs``, in the
    order of ``jobs``, on every rank.

    Parameters
    ----------
    jobs : dict
        ``{key: {'images', 'label', 'dblabel', 'seeds'}}`` (the same on
        every rank).
    spec : dict
        The template spec.
    context : amp.parallel.mpi.MPIContext
    train_member : callable
        ``train_member(spec, images, label, dblabel, seeds, log)`` returning
        ``{'converged', 'seeds', 'text'}``.
    log : callable
        Rank 0's log.
    """
    keys = list(jobs)
    for start in range(0, len(keys), context.size):
        round_keys = keys[start:start + context.size]
        result = None
        log(" Training members %s, one per MPI rank."
            % ", ".join(round_keys))
        if context.rank < len(round_keys):
            result = _train(spec, jobs[round_keys[context.rank]],
                            context.is_root, train_member, log)
        results = context.exchange(result)
        for rank, key in enumerate(round_keys):
            result = dict(results[rank])
            member_log = result.pop("log", None)
            if context.is_root and rank:
                _write_member_files(jobs[key]["label"], result, member_log)
            yield key, result


def _train(spec, job, is_root, train_member, log):
    """Train one member here: rank 0 under its label, another rank in a
    temporary folder (its log travels back with the result)."""
    seeds = [int(seed) for seed in job["seeds"]]
    if is_root:
        return train_member(spec, job["images"], job["label"],
                            job["dblabel"], seeds, log)
    with tempfile.TemporaryDirectory(prefix="amp-member-") as folder:
        label = os.path.join(folder, os.path.basename(job["label"]))
        result = train_member(spec, job["images"], label, job["dblabel"],
                              seeds, Logger(None))
        path = make_filename(label, "-log.txt")
        if os.path.exists(path):
            with open(path) as handle:
                result["log"] = handle.read()
    return result


def _write_member_files(label, result, member_log):
    """Rank 0 writes the ``.amp`` file and log of a member another rank
    trained, where a serial run would have left them."""
    if result.get("converged") and result.get("text"):
        with atomic_file(make_filename(label, ".amp")) as handle:
            handle.write(result["text"].encode())
    if member_log:
        with atomic_file(make_filename(label, "-log.txt")) as handle:
            handle.write(member_log.encode())
