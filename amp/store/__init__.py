"""What is written to disk and read back, in formats that never run code.

Owns the fingerprint databases (:class:`~amp.store.database.FileDatabase`,
:class:`~amp.store.database.MemoryDatabase`, Amp's
:class:`~amp.store.database.Data`), the ``.ampdb`` entry codec
(:mod:`amp.store.entry`) and archive (:mod:`amp.store.archive`, read
without a disk copy when there is no room: :mod:`amp.store.gzipseek`), the
``.amp`` model-file reader and writer (:mod:`amp.store.modelfile`) with the
restricted literal reader for Amp 1.x files (:mod:`amp.store.literal`), the
array (de)serialisation that entries and the worker wire format share
(:mod:`amp.store.arrays`), the one atomic file writer and the one safe
file reader (:mod:`amp.store.files`: regular files only, never through a
link, size checked before reading), the lock that names its owner
(:mod:`amp.store.locks`), the caps every reader of outside data applies
before it allocates (:mod:`amp.store.limits`), the one reading of the
memory this process may still use (:mod:`amp.store.memory`: the system's,
``RLIMIT_AS`` and cgroup limits), and other programs' formats: n2p2/RuNNer
potential folders (:mod:`amp.store.n2p2`).

The store knows no physics and no processes: it must not import
:mod:`amp.descriptor`, :mod:`amp.model`, :mod:`amp.parallel` or the
calculator. Users reach its public names through :mod:`amp.utilities`
(``FileDatabase``, ``Data``) as in Amp.
"""
