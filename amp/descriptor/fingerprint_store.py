"""Where a descriptor keeps its fingerprints: memory or ``.ampdb`` files.

Three stores, as in Amp: neighbour lists, fingerprints and fingerprint
derivatives ("primes"). With a ``dblabel`` they are the databases
``<dblabel>-neighborlists.ampdb``, ``<dblabel>-fingerprints.ampdb`` and
``<dblabel>-fingerprint-primes.ampdb`` (shared by every calculator given
that label; each records the descriptor parameters it was built with and
refuses different ones). Without one they live in memory; the *ephemeral*
store keeps only the latest image, so inference over a long trajectory
uses constant memory and writes nothing.
"""

import numpy as np

from ..store.database import FileDatabase, MemoryDatabase
from .fingerprints import STORAGE_VERSION, ImageFingerprints
from .neighbors import amp_view

DATABASE_NAMES = {"neighbors": "neighborlists",
                  "fingerprints": "fingerprints",
                  "primes": "fingerprint-primes"}


class FingerprintStore:
    """Fingerprints of many images, by image hash.

    Parameters
    ----------
    dblabel : str or None
        Prefix of the three databases; None keeps everything in memory.
    parameters : dict
        The descriptor parameters the data depend on (cutoff, Gs); checked
        against the record of existing databases.
    ephemeral : bool
        With no ``dblabel``: keep only the most recent image.
    log : callable, optional
        Receives reports about damaged entries.
    """

    def __init__(self, dblabel=None, parameters=None, ephemeral=False,
                 log=None):
        self.dblabel = dblabel
        self.on_disk = dblabel is not None
        record = dict(parameters or {}, storage_version=STORAGE_VERSION)
        if self.on_disk:
            self.databases = {
                part: FileDatabase("%s-%s" % (dblabel, name), log=log)
                for part, name in DATABASE_NAMES.items()}
            for database in self.databases.values():
                database.check_parameters(record)
        else:
            # In memory the ImageFingerprints object itself is kept.
            self.memory = MemoryDatabase(max_entries=1 if ephemeral else None)

    def __contains__(self, key):
        if self.on_disk:
            return key in self.databases["fingerprints"]
        return key in self.memory

    def has_derivatives(self, key):
        """Whether the derivatives of image ``key`` are stored."""
        if self.on_disk:
            return (key in self.databases["primes"]
                    and key in self.databases["neighbors"])
        return key in self.memory and self.memory[key].has_derivatives

    def keys(self):
        """Hashes of the images whose fingerprints are stored."""
        if self.on_disk:
            return self.databases["fingerprints"].keys()
        return self.memory.keys()

    def __len__(self):
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def get(self, key, default=None):
        """``self[key]``, or ``default`` when absent."""
        return self[key] if key in self else default

    def __getitem__(self, key):
        """The :class:`ImageFingerprints` of image ``key``."""
        if not self.on_disk:
            return self.memory[key]
        values = self.databases["fingerprints"][key]
        if not self.has_derivatives(key):
            return ImageFingerprints.fromdict(values)
        derivatives = dict(self.databases["primes"][key])
        derivatives.update(self.databases["neighbors"][key])
        return ImageFingerprints.fromdict(values, derivatives)

    def put(self, key, fingerprints):
        """Store one image's fingerprints (and derivatives when present)."""
        if not self.on_disk:
            self.memory[key] = fingerprints
            return
        nl = fingerprints.neighbors
        self.databases["neighbors"][key] = {
            "version": STORAGE_VERSION, "nl/i": nl.i, "nl/j": nl.j,
            "nl/offsets": nl.offsets}
        if fingerprints.has_derivatives:
            parts = fingerprints.todict(parts=("derivatives",))
            for name in ("nl/i", "nl/j", "nl/offsets"):
                del parts[name]
            self.databases["primes"][key] = parts
        self.databases["fingerprints"][key] = fingerprints.todict(
            parts=("values",))

    def neighbor_list(self, key):
        """Amp's view of the neighbour list: ``[(indices, offsets), ...]``."""
        if not self.on_disk:
            return self.memory[key].neighbors.as_amp()
        entry = self.databases["neighbors"][key]
        i, j = np.asarray(entry["nl/i"]), np.asarray(entry["nl/j"])
        offsets = np.asarray(entry["nl/offsets"])
        n_atoms = len(self.databases["fingerprints"][key]["symbols"])
        return amp_view(i, j, offsets, n_atoms)

    def archive(self):
        """Compress every database into its ``archive.tar.gz``.

        Returns
        -------
        dict
            ``{database name: archive() report}``; empty in memory.
        """
        if not self.on_disk:
            return {}
        return {name: database.archive()
                for name, database in self.databases.items()}

    def clear_memory(self):
        """Forget in-memory entries (files on disk stay)."""
        if not self.on_disk:
            self.memory.clear()
