"""Amp-compatible atomistic machine-learning potentials for ASE.

:class:`Amp` is the ASE calculator: it composes a descriptor
(:class:`amp.descriptor.gaussian.Gaussian`) with a model
(:class:`amp.model.neuralnetwork.NeuralNetwork`), trains on energies and
forces, saves to and loads from ``.amp`` files, and gives energies,
per-atom energies, forces and stress for MD and relaxations.
"""

import os
import platform
import socket
import sys
import types

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from . import potential
from .store import modelfile
from .parallel.mpi import guarded
from .utilities import (Logger, TrainingConvergenceError, hash_images,
                        make_filename, now)
from .importing import importhelper  # noqa: F401  (Amp's name)

__version__ = "0.1.0"

__all__ = ["Amp", "__version__"]


def _refuse_no_images(images):
    """Raise ValueError when there is nothing to train on (before any file
    is written; a file that holds no images is caught after reading)."""
    if isinstance(images, (list, tuple, dict)) and not images:
        raise ValueError("train() was given no images: pass a list of "
                         "ase.Atoms with energies (or a .traj or ASE .db "
                         "path holding some)")


def _check_training_images(images, forces):
    """Raise a ValueError naming the first image unfit for training."""
    _refuse_no_images(images)
    for index, (key, atoms) in enumerate(images.items()):
        name = "training image %d (hash %s)" % (index, key)
        if atoms.calc is None:
            raise ValueError("%s has no energy: attach a calculator or a "
                             "SinglePointCalculator with its energy" % name)
        try:
            energy = atoms.get_potential_energy(apply_constraint=False)
        except Exception as error:
            raise ValueError("%s has no energy (%s)" % (name, error)) \
                from error
        if not np.isfinite(energy):
            raise ValueError("%s has a NaN or infinite energy" % name)
        if forces:
            try:
                f = atoms.get_forces(apply_constraint=False)
            except Exception as error:
                raise ValueError(
                    "%s has no forces (%s); supply forces or train with "
                    "force_coefficient=None" % (name, error)) from error
            if not np.all(np.isfinite(f)):
                raise ValueError("%s has NaN or infinite forces" % name)


def _named_class(parameters, default):
    """The class a model file's ``importname`` names, through the
    allow-list (the ``default`` importname when there is none)."""
    from .importing import IMPORTNAMES, importhelper

    name = parameters.get("importname", default)
    if name not in IMPORTNAMES:
        raise modelfile.ModelFileError(
            "the model file names %r, which this library does not provide "
            "(known: %s)" % (name, ", ".join(sorted(IMPORTNAMES))))
    return importhelper(name)


class Amp(Calculator):
    """Atomistic machine-learning calculator (Amp's ``Amp``).

    Parameters
    ----------
    descriptor : object
        e.g. :class:`amp.descriptor.gaussian.Gaussian`.
    model : object
        e.g. :class:`amp.model.neuralnetwork.NeuralNetwork`.
    label : str
        Prefix of the files training writes (``<label>.amp``,
        ``<label>-log.txt``, ...).
    dblabel : str, optional
        Prefix of the fingerprint databases. In training it defaults to
        ``label``; at inference, without it, fingerprints live only in
        memory and nothing is written.
    cores : int, dict, 'mpi' or None
        Workers for training (see ``docs/parallel.md``); None reads the
        environment; ``'mpi'`` trains across the ranks of an MPI job
        (``mpiexec -n N python train.py`` or ``srun``; serial when run as
        one process), where rank 0 alone writes files.
    envcommand : str, optional
        Run in each remote session before workers start.
    logging : bool
        Write ``<label>-log.txt`` when training.
    atoms : ase.Atoms, optional
    verbose : bool or None
        A live progress line on standard error while fingerprinting and
        training (:mod:`amp.progress`): None (default) shows it only when
        standard error is a terminal, True always, False never.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces",
                              "stress"]
    ignored_changes = {"initial_charges", "initial_magmoms"}

    def __init__(self, descriptor, model, label="amp", dblabel=None,
                 cores=None, envcommand=None, logging=True, atoms=None,
                 verbose=None):
        Calculator.__init__(self, label=label, atoms=atoms)
        self.descriptor = descriptor
        self.model = model
        self.dblabel = dblabel
        self._fingerprint_store = None
        self.cores = cores
        self.envcommand = envcommand
        self.logging = logging
        self.verbose = verbose
        self._log = Logger(None)
        self._check_compatible()

    # Properties kept as in Amp -------------------------------------------

    @property
    def log(self):
        """The training log (a :class:`Logger`; logs nothing until
        training)."""
        return self._log

    def _check_compatible(self):
        """Descriptor and model must agree on elements and feature counts
        (the model's :meth:`check_features`, when it has one)."""
        Gs = getattr(self.descriptor, "Gs", None)
        check = getattr(self.model, "check_features", None)
        if Gs and check is not None:
            check({element: len(G) for element, G in Gs.items()})

    # Inference -----------------------------------------------------------

    def calculate(self, atoms=None, properties=None,
                  system_changes=all_changes):
        """Energy, per-atom energies, forces and (3-D periodic) stress.

        Everything is computed in one pass by :func:`amp.potential.evaluate`,
        whichever properties are asked for. Fingerprints go to the
        databases only when a ``dblabel`` was given; otherwise nothing is
        stored or written.
        """
        Calculator.calculate(self, atoms, properties, system_changes)
        store = None
        if self.dblabel is not None:
            store = self._store(self.dblabel)
        self.results = potential.evaluate(self.descriptor, self.model,
                                          self.atoms, store, properties)

    def _store(self, dblabel, images=None):
        """The fingerprint store of ``dblabel``, opened once and kept."""
        store = self._fingerprint_store
        if store is None or store.dblabel != dblabel:
            store = self.descriptor.open_store(dblabel, log=self._log,
                                               images=images)
            self._fingerprint_store = store
        return store

    # Training ------------------------------------------------------------

    def _writes_files(self):
        """False on the ranks other than 0 of an MPI job (``cores='mpi'``),
        which write nothing."""
        from .parallel.mpi import rank_of

        return rank_of(self.cores) == 0

    def _open_log(self):
        filename = make_filename(self.label, "-log.txt")
        if not self._writes_files():
            filename = None
        if filename is not None and os.path.dirname(filename):
            # Like ASE's file calculators: the label's folder is created.
            os.makedirs(os.path.dirname(filename), exist_ok=True)
        if self.logging and filename is not None:
            self._log = Logger(filename)
        else:
            self._log = Logger(None)
        return self._log

    def _log_header(self, log):
        import ase
        import scipy

        log("=" * 70)
        # Amp 1.x's line, which its read_trainlog looks for.
        log("Amp training started. %s" % now().replace(" ", "T"))
        log("amp-mlip version %s" % __version__)
        log("Host: %s, Python %s on %s" % (socket.gethostname(),
                                           platform.python_version(),
                                           sys.platform))
        log("numpy %s, scipy %s, ase %s" % (np.__version__,
                                            scipy.__version__,
                                            ase.__version__))
        log("Descriptor: %s" % self.descriptor.tostring())
        log("Model: %s" % self.model.tostring())

    @guarded(TrainingConvergenceError)
    def train(self, images, overwrite=False, compress_databases=True,
              memory_limit=None):
        """Fit the model to the images' energies (and forces).

        Parameters
        ----------
        images : list of ase.Atoms, str or dict
            Training images (a list, a ``.traj``/``.db`` path, or hashed
            images), each with an energy and, when force training, forces.
        overwrite : bool
            Replace an existing ``<label>.amp``.
        compress_databases : bool
            When no separate ``dblabel`` was given the databases belong to
            this run alone and are compressed at the end; False keeps them
            loose.
        memory_limit : int, float or str, optional
            Memory (bytes, or e.g. ``'8 GB'``) that force training may use
            for fingerprint derivatives on this machine (and a
            ``KernelRidge`` model for its kernel matrices); by default the
            memory available when training starts. Their size is estimated
            from the neighbour lists (and atom counts) and logged before
            anything is computed.

        Raises
        ------
        TrainingConvergenceError
            Not converged: ``maxiter`` was reached or the optimizer stopped
            for the reason the message gives; the parameters reached are in
            ``<label>-untrained-parameters.amp``.
        FileExistsError
            ``<label>.amp`` exists and ``overwrite`` is False.
        amp.descriptor.budget.TrainingMemoryError
            The fingerprint derivatives (or kernel matrices) would need more
            than ``memory_limit``; raised before anything is computed.
        """
        from .model import TrainingConvergenceError

        _refuse_no_images(images)
        filename = make_filename(self.label, ".amp")
        if os.path.exists(filename) and not overwrite:
            raise FileExistsError("%s exists; train with overwrite=True to "
                                  "replace it" % filename)
        log = self._open_log()
        self._log_header(log)
        images = hash_images(images, log=log)
        log(" %d unique images after hashing (%d duplicates)."
            % (len(images), len(images.metadata["duplicates"])))
        force_training = self.model.forcetraining
        _check_training_images(images, force_training)
        from .parallel import pool_for

        if hasattr(self.model, "check_memory"):  # a kernel model's matrices
            self.model.check_memory(images, memory_limit, log)
        # One pool (or None) for the fingerprints and the whole fit; its
        # workers start when first needed and stop when training ends,
        # however it ends.
        with pool_for({"cores": self.cores, "envcommand": self.envcommand},
                      log) as pool:
            if force_training and hasattr(self.descriptor,
                                          "derivative_memory"):
                from .descriptor.budget import check_memory

                check_memory(self.descriptor, images, memory_limit, log,
                             pool)
            converged = self._fit(images, pool, log, force_training,
                                  compress_databases)
        from .parallel.mpi import synchronize

        if not converged:
            untrained = make_filename(self.label, "-untrained-parameters.amp")
            self.save(untrained, overwrite=True)
            log("Not converged; parameters saved to %s." % untrained)
            synchronize(self.cores)  # the file is there for every rank
            reason = getattr(getattr(self.model, "regressor", None),
                             "stop_reason", None) or \
                "the optimizer stopped before the criteria were met"
            raise TrainingConvergenceError(
                "training did not converge: %s; the parameters reached are "
                "in %s" % (reason.rstrip("."), untrained))
        self.save(filename, overwrite=overwrite)
        log("Trained parameters saved to %s." % filename)
        checkpoint = make_filename(self.label, "-checkpoint.amp")
        if os.path.exists(checkpoint) and self._writes_files():
            # Superseded: a later train() under this label starts afresh.
            os.remove(checkpoint)
            log("Removed %s (superseded by %s)." % (checkpoint, filename))
        synchronize(self.cores)  # the model file is there for every rank
        return True

    def _fit(self, images, pool, log, force_training, compress_databases):
        """Fingerprints, set-up and fit of :meth:`train` (with a pool of
        workers or None); True when converged."""
        from .model import check_mode
        from .parallel import is_mpi

        check_mode(self.descriptor)
        own_database = self.dblabel is None
        store = self._store(self.label if own_database else self.dblabel,
                            images)
        writes = self._writes_files()
        verbose = self.verbose if writes else False
        self.descriptor.calculate_fingerprints(
            images, parallel=pool, log=log,
            calculate_derivatives=force_training, store=store,
            verbose=verbose)
        self.model.setup(images, store, log)
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
                self.save(checkpoint, overwrite=True)

        try:
            return self.model.regress(log, pool, on_step)
        except KeyboardInterrupt:
            self.save(checkpoint, overwrite=True)
            log("Interrupted; parameters saved to %s." % checkpoint)
            raise
        finally:
            if archive is not None:
                archive.finish()

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

    # Files ---------------------------------------------------------------

    def save(self, filename, overwrite=False, format="json"):
        """Write the descriptor and model parameters to a ``.amp`` file.

        Parameters
        ----------
        filename : str
        overwrite : bool
        format : {'json', 'amp1'}
            This library's JSON file, or Amp 1.x's Python-literal text
            (:mod:`amp.store.amp1`) for colleagues still on Amp 1.x; this
            library reads both.

        Raises
        ------
        FileExistsError
            The file exists and ``overwrite`` is False (it is untouched).

        Notes
        -----
        With ``cores='mpi'`` only rank 0 writes; the other ranks return
        without writing.
        """
        if format not in ("json", "amp1"):
            raise ValueError("unknown model file format %r; 'json' or "
                             "'amp1'" % (format,))
        if not self._writes_files():
            return
        if format == "amp1":
            from .store import amp1

            dumps = amp1.dumps
        else:
            dumps = modelfile.dumps
        modelfile.write(filename, dumps(self.descriptor.todict(),
                                        self.model.todict()),
                        overwrite=overwrite)

    @classmethod
    def load(cls, file, Descriptor=None, Model=None, **kwargs):
        """Build a calculator from a ``.amp`` file (a path or file object).

        Parameters
        ----------
        file : str or file object
            This library's JSON files and Amp 1.x files are both read;
            neither is executed.
        Descriptor, Model : class, optional
            Override the classes (default Gaussian, and the model the file
            names: NeuralNetwork or KernelRidge).
        **kwargs
            Passed to :class:`Amp` (``label``, ``dblabel``, ``cores``, ...).
        """
        descriptor_dict, model_dict = modelfile.read(file)
        Descriptor = Descriptor or _named_class(
            descriptor_dict, ".descriptor.gaussian.Gaussian")
        Model = Model or _named_class(
            model_dict, ".model.neuralnetwork.NeuralNetwork")
        try:
            descriptor = Descriptor.fromdict(descriptor_dict)
            model = Model.fromdict(model_dict)
            # A file whose descriptor and model disagree is a bad file too.
            cls._check_compatible(types.SimpleNamespace(
                descriptor=descriptor, model=model))
        except (KeyError, TypeError, ValueError, AttributeError,
                IndexError) as error:
            raise modelfile.ModelFileError(
                "model file is missing or has malformed parameters: %r"
                % (error,)) from error
        return cls(descriptor=descriptor, model=model, **kwargs)
