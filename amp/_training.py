"""How the :class:`~amp.Amp` calculator trains: the log and its header,
one training per label, the fingerprints into the store it owns, the
model's set-up and fit with the pool (or MPI ranks) of its ``cores``,
checkpoints, the model written before any optional clean-up, and the
background compression of its databases.

:class:`Training` is a mixin of :class:`amp.Amp`; :meth:`amp.Amp.train`
is its entry point. On the ranks other than 0 of an MPI job nothing is
written.
"""

import os
import platform
import socket
import sys

import numpy as np

from ._fitting import (check_stress, check_training_images, every_image,
                       held_out_set, training_record)
from .store import modelfile
from .utilities import Logger, hash_images, make_filename, now


class Training:
    """Mixin of :class:`Amp` (see the module)."""

    def _writes_files(self):
        """False on the ranks other than 0 of an MPI job (``cores='mpi'``),
        which write nothing."""
        from .parallel.mpi import rank_of

        return rank_of(self.cores) == 0

    def _make_label_folder(self):
        filename = make_filename(self.label, "-log.txt")
        if not self._writes_files():
            filename = None
        if filename is not None and os.path.dirname(filename):
            # Like ASE's file calculators: the label's folder is created.
            os.makedirs(os.path.dirname(filename), exist_ok=True)

    def _open_log(self):
        filename = make_filename(self.label, "-log.txt")
        if not self._writes_files():
            filename = None
        self._make_label_folder()
        if self.logging and filename is not None:
            self._log = Logger(filename, name="amp.trainlog")
        else:
            self._log = Logger(None, name="amp.trainlog")
        return self._log

    def _log_header(self, log):
        import ase
        import scipy

        log("=" * 70)
        # Amp 1.x's line, which its read_trainlog looks for.
        log("Amp training started. %s" % now().replace(" ", "T"))
        from . import __version__

        log("amp-mlip version %s" % __version__)
        log("Host: %s, Python %s on %s" % (socket.gethostname(),
                                           platform.python_version(),
                                           sys.platform))
        log("numpy %s, scipy %s, ase %s" % (np.__version__,
                                            scipy.__version__,
                                            ase.__version__))
        log("Descriptor: %s" % self.descriptor.tostring())
        log("Model: %s" % self.model.tostring())

    def _train(self, images, filename, overwrite, compress_databases,
               memory_limit, validation, patience, validation_seed):
        """The body of :meth:`train`, under the label's lock."""
        from .model import TrainingConvergenceError

        log = self._open_log()
        self._log_header(log)
        self.metadata = {}  # this fit's, once it ends
        images = hash_images(images, log=log)
        held_out = held_out_set(images, validation, validation_seed,
                                patience, log)
        if held_out is not None:
            images = held_out.training
        # Amp 1.x's exact line: its read_trainlog takes the image count
        # (of the loss) from the line holding "unique images after
        # hashing.".
        log(" %d unique images after hashing." % len(images))
        log(" %d duplicate images dropped." % sum(
            count - 1 for count in images.metadata["duplicates"].values()))
        force_training = self.model.forcetraining
        check_training_images(images, force_training)
        if held_out is not None:
            check_training_images(held_out.images, force_training,
                                  "held-out image")
        if force_training:
            from .images import check_energy_force_units

            check_energy_force_units(images)
        check_stress(self.model, images, log)
        from .parallel import is_mpi, pool_for

        if hasattr(self.model, "check_memory"):  # a kernel model's matrices
            self.model.check_memory(images, memory_limit, log)
        # One pool (or None) for the fingerprints and the whole fit; its
        # workers start when first needed and stop when training ends,
        # however it ends.
        with pool_for({"cores": self.cores, "envcommand": self.envcommand},
                      log) as pool:
            plan = None
            if force_training and hasattr(self.descriptor,
                                          "derivative_memory"):
                from .descriptor.budget import plan_training
                from .model.streaming import chunk_root

                # Streamed when the force data do not fit (and the model's
                # loss function can stream, outside MPI); refused only when
                # neither way fits, before anything is computed or written.
                # (Chunk files carry no stress rows: a stress term trains
                # in memory.)
                lossfunction = getattr(self.model, "lossfunction", None)
                can_stream = hasattr(lossfunction, "streaming") and \
                    not is_mpi(pool) and \
                    not getattr(lossfunction, "train_stress", False)
                plan = plan_training(
                    self.descriptor, every_image(images, held_out),
                    memory_limit, log, pool,
                    folder=chunk_root(self.dblabel or self.label)
                    if can_stream else None)
            converged = self._fit(images, pool, log, force_training,
                                  compress_databases, held_out, plan)
        from .parallel.mpi import synchronize

        stopped_early = bool(getattr(self.model.lossfunction,
                                     "stopped_early", False))
        self.metadata = training_record(images, held_out, converged,
                                        stopped_early)
        if not converged and not stopped_early:
            untrained = make_filename(self.label, "-untrained-parameters.amp")
            self._save_result(untrained, True, log)
            log("Not converged; parameters saved to %s." % untrained)
            synchronize(self.cores)  # the file is there for every rank
            reason = getattr(getattr(self.model, "regressor", None),
                             "stop_reason", None) or \
                "the optimizer stopped before the criteria were met"
            raise TrainingConvergenceError(
                "training did not converge: %s; the parameters reached are "
                "in %s" % (reason.rstrip("."), untrained))
        self._save_result(filename, overwrite, log)
        if stopped_early:
            log("Stopped early: the parameters of step %d (lowest held-out "
                "loss) saved to %s." % (held_out.best_step, filename))
        else:
            log("Trained parameters saved to %s." % filename)
        checkpoint = make_filename(self.label, "-checkpoint.amp")
        if os.path.exists(checkpoint) and self._writes_files():
            # Superseded: a later train() under this label starts afresh.
            os.remove(checkpoint)
            log("Removed %s (superseded by %s)." % (checkpoint, filename))
        synchronize(self.cores)  # the model file is there for every rank
        return True

    def _fit(self, images, pool, log, force_training, compress_databases,
             held_out=None, plan=None):
        """Fingerprints, set-up and fit of :meth:`train` (with a pool of
        workers or None, and the memory plan); True when converged."""
        from .model import check_mode
        from .parallel import is_mpi

        check_mode(self.descriptor)
        own_database = self.dblabel is None
        every = every_image(images, held_out)
        store = self._store(self.label if own_database else self.dblabel,
                            every)
        lossfunction = getattr(self.model, "lossfunction", None)
        streamed = (plan is not None and plan.streamed) or \
            getattr(lossfunction, "streaming", None) is not None
        if hasattr(store, "keep_in_memory"):
            # Streamed: nothing read from the databases stays in memory.
            store.keep_in_memory = not streamed
            if streamed:
                store.clear_memory()
        writes = self._writes_files()
        verbose = self.verbose if writes else False
        self.descriptor.calculate_fingerprints(
            every, parallel=pool, log=log,
            calculate_derivatives=force_training, store=store,
            verbose=verbose)
        if held_out is None:
            self.model.setup(images, store, log)
        else:
            self.model.setup(images, store, log, validation=held_out)
        if plan is not None and plan.streamed:
            from .model.streaming import Streaming

            lossfunction.streaming = Streaming(
                plan.folder, plan.chunk_bytes, image_bytes=plan.image_bytes,
                log=log)
        if getattr(self.model, "lossfunction", None) is not None:
            self.model.lossfunction.verbose = verbose
        self._check_compatible()
        self._resume_from_checkpoint(log)
        self.save(make_filename(self.label, "-initial-parameters.amp"),
                  overwrite=True)
        checkpoint = make_filename(self.label, "-checkpoint.amp")
        archive = None
        if own_database and compress_databases and writes:
            from .descriptor.fingerprint_store import BackgroundArchive

            archive = BackgroundArchive(store, log)

        def on_step(step):
            if archive is not None and step == 1 and not is_mpi(pool):
                # The training data are in memory now: archive meanwhile
                # (MPI: after the fit; during it every core computes).
                archive.start()
            every = getattr(self.model, "checkpoints", None)
            if every and step % every == 0:
                # Amp's wording: its log readers skip this line.
                log("Saving checkpoint data. Step %i, %s." % (step,
                                                              checkpoint))
                try:
                    self.save(checkpoint, overwrite=True)
                except OSError as error:  # optional: training goes on
                    log("Could not save the checkpoint (%s); training goes "
                        "on." % error)

        try:
            return self.model.regress(log, pool, on_step)
        except KeyboardInterrupt:
            self.save(checkpoint, overwrite=True)
            log("Interrupted; parameters saved to %s." % checkpoint)
            raise
        finally:
            # Optional clean-up: train() waits for it after writing the
            # model, and a failure is only logged.
            self._archive = archive

    def _finish_archive(self):
        """Wait for the background compression of the databases, if one
        ran; its failure (e.g. a full disk) is logged, never raised."""
        archive, self._archive = getattr(self, "_archive", None), None
        if archive is not None:
            archive.finish()

    def _save_result(self, filename, overwrite, log):
        """Write what training reached to ``filename``, before any clean-up.

        When the disk is full while the databases are being compressed,
        the compression is waited for (it gives its room back) and the
        file written again. If it still cannot be written the parameters
        stay in this calculator, and the error says so.
        """
        try:
            self.save(filename, overwrite=overwrite)
            return
        except FileExistsError:
            raise
        except OSError as error:
            if getattr(self, "_archive", None) is None:
                raise self._unsaved(filename, error) from error
            log("Could not write %s while the databases were being "
                "compressed (%s); waiting for the compression, then writing "
                "it again." % (filename, error))
        self._finish_archive()
        try:
            self.save(filename, overwrite=overwrite)
        except FileExistsError:
            raise
        except OSError as error:
            raise self._unsaved(filename, error) from error

    @staticmethod
    def _unsaved(filename, error):
        return type(error)(error.errno, "cannot write %s (%s); the trained "
                           "parameters are still in this calculator: make "
                           "room and call its save()" % (filename,
                                                         error.strerror))

    def _resume_from_checkpoint(self, log):
        """Continue from ``<label>-checkpoint.amp`` when it matches."""
        path = make_filename(self.label, "-checkpoint.amp")
        if not os.path.exists(path):
            return
        descriptor, model = modelfile.read(path)
        mine = self.model.todict()
        try:
            same = (type(self.descriptor).fromdict(descriptor)
                    .fingerprint_parameters()
                    == self.descriptor.fingerprint_parameters())
        except (KeyError, TypeError, ValueError):
            same = False
        for key in ("hiddenlayers", "activation"):
            same = same and model.get(key) == mine.get(key)
        if not same:
            raise ValueError(
                "%s was written with other descriptor or model settings; "
                "delete it or use another label" % path)
        self.model.vector = type(self.model).fromdict(model).vector
        log("Resuming from checkpoint %s." % path)
