"""Amp-compatible atomistic machine-learning potentials for ASE.

:class:`Amp` is the ASE calculator: it composes a descriptor
(:class:`amp.descriptor.gaussian.Gaussian`) with a model
(:class:`amp.model.neuralnetwork.NeuralNetwork`), trains on energies and
forces, saves to and loads from ``.amp`` files, and gives energies,
per-atom energies, forces and stress for MD and relaxations.
"""

from __future__ import annotations

import contextlib
import os
import types
from typing import TYPE_CHECKING, Any

from .installation import check_installation

# First of all: Amp 1.x's files mixed into this folder would make the
# imports below fail in confusing ways.
check_installation()

from ase.calculators.calculator import Calculator, all_changes  # noqa: E402
from ase.outputs import Properties, all_outputs  # noqa: E402

from . import potential  # noqa: E402
from .extrapolation import (ExtrapolationError,  # noqa: E402
                            ExtrapolationWarning, Reporter, check_tolerance)
from .store import modelfile  # noqa: E402
from .parallel.mpi import guarded  # noqa: E402
from .store.locks import owner_lock  # noqa: E402
from .utilities import (Logger, TrainingConvergenceError,  # noqa: E402
                        make_filename)
from .importing import importhelper  # noqa: E402,F401  (Amp's name)
from ._fitting import refuse_no_images  # noqa: E402
from ._training import Training  # noqa: E402

if TYPE_CHECKING:
    from ase import Atoms

__version__ = "0.1.0"

__all__ = ["Amp", "ExtrapolationError", "ExtrapolationWarning",
           "__version__"]


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


class Amp(Training, Calculator):
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
    on_extrapolation : {'warn', 'raise', 'ignore'}
        What a calculation does when atoms have fingerprints outside the
        model's training range (:class:`amp.potential.FingerprintRange`):
        every calculation records it in ``results['extrapolation']``;
        ``'warn'`` (default) also issues one
        :class:`~amp.extrapolation.ExtrapolationWarning` per calculator,
        ``'raise'`` raises :class:`~amp.extrapolation.ExtrapolationError`
        instead of giving results.
    extrapolation_tolerance : float
        How far beyond the training range (in units of its half-width,
        the network's scaled input) a fingerprint component may go before
        its atom counts (default 0.1).
    extrapolation_per_atom : bool
        Also give each atom's largest scaled value and its flag
        (``results['extrapolation']['scaled']``, ``['atoms']``).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces",
                              "stress"]
    ignored_changes = {"initial_charges", "initial_magmoms"}

    def __init__(self, descriptor: Any, model: Any,
                 label: str | None = "amp", dblabel: str | None = None,
                 cores: int | str | dict[str, int] | None = None,
                 envcommand: str | None = None, logging: bool = True,
                 atoms: Atoms | None = None, verbose: bool | None = None,
                 on_extrapolation: str = "warn",
                 extrapolation_tolerance: float = 0.1,
                 extrapolation_per_atom: bool = False) -> None:
        if cores is not None and cores != "mpi":
            from .parallel import assign_cores

            # A mistake in cores is reported now, not when training starts.
            if isinstance(cores, int) and not isinstance(cores, bool) and \
                    cores < 1:
                raise ValueError("cores=%d: give a positive number of "
                                 "workers (1 trains in this process), a "
                                 "dict {host: count}, or None to use what "
                                 "the machine or batch system offers"
                                 % cores)
            assign_cores(cores)  # type: ignore[arg-type]
        self._report = Reporter(on_extrapolation)
        self.extrapolation_tolerance = check_tolerance(
            extrapolation_tolerance)
        self.extrapolation_per_atom = bool(extrapolation_per_atom)
        self._range = (None, None)
        Calculator.__init__(self, label=label, atoms=atoms)
        self.descriptor = descriptor
        self.model = model
        self.dblabel = dblabel
        self._fingerprint_store = None
        self._archive = None
        self.cores = cores
        self.envcommand = envcommand
        self.logging = logging
        self.verbose = verbose
        #: What training recorded (image counts, how the validation set
        #: was chosen and its errors); saved in and loaded from ``.amp``
        #: files.
        self.metadata: dict[str, Any] = {}
        self._log = Logger(None)
        self._check_compatible()

    # Properties kept as in Amp -------------------------------------------

    @property
    def log(self) -> Logger:
        """The training log (a :class:`Logger`; logs nothing until
        training)."""
        return self._log

    def _check_compatible(self: Any) -> None:
        """Descriptor and model must agree on elements and feature counts
        (the model's :meth:`check_features`, when it has one)."""
        check = getattr(self.model, "check_features", None)
        lengths = getattr(self.descriptor, "fingerprint_lengths", None)
        if check is None or lengths is None:
            return
        try:
            counts = lengths()
        except ValueError:  # elements not known before the first images
            return
        if counts:
            check(counts)

    # Inference -----------------------------------------------------------

    def calculate(self, atoms: Atoms | None = None,
                  properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        """Energy, per-atom energies, forces and (3-D periodic) stress.

        Everything is computed in one pass by :func:`amp.potential.evaluate`,
        whichever properties are asked for. Fingerprints go to the
        databases only when a ``dblabel`` was given; otherwise nothing is
        stored or written. ``results['extrapolation']`` says how many atoms
        have fingerprints outside the training range, and how far (see
        :class:`amp.potential.FingerprintRange`); ASE's own properties
        (:meth:`export_properties`) leave it out.

        Raises
        ------
        ExtrapolationError
            With ``on_extrapolation='raise'``, when an atom is outside the
            training range (no results are kept).
        """
        Calculator.calculate(self, atoms, properties, system_changes)
        store = None
        if self.dblabel is not None:
            store = self._store(self.dblabel)
        results = potential.evaluate(self.descriptor, self.model,
                                     self.atoms, store, properties,
                                     self._extrapolation_check())
        found = results.get("extrapolation")
        if found is not None and found["count"]:
            self._report_extrapolation(found)
        self.results = results

    def _extrapolation_check(self):
        """The model's :class:`~amp.potential.FingerprintRange` check (made
        again when the model's range changes), or None without a range."""
        fprange = getattr(getattr(self.model, "parameters", None), "fprange",
                          None)
        if not fprange:
            return None
        source, checker = self._range
        if source is not fprange or \
                checker.tolerance != self.extrapolation_tolerance:
            checker = potential.FingerprintRange(
                fprange, self.extrapolation_tolerance)
            self._range = (fprange, checker)
        if self.extrapolation_per_atom:
            return lambda fingerprints: checker.check(fingerprints, True)
        return checker.check

    @property
    def on_extrapolation(self) -> str:
        """``'warn'``, ``'raise'`` or ``'ignore'`` (see the class)."""
        return self._report.action

    def _report_extrapolation(self, found):
        """Warn once, or raise, about atoms outside the training range."""
        where = "" if found["atom"] is None else \
            " at atom %d (%s), feature %d" % (found["atom"],
                                              found["element"],
                                              found["feature"])
        message = (
            "%d of %d atoms have fingerprints outside the model's training "
            "range (largest scaled value %.3g%s, where training spans "
            "[-1, 1]; tolerance %g): the model is extrapolating and its "
            "energies and forces there cannot be trusted"
            % (found["count"], len(self.atoms), found["worst"], where,
               found["tolerance"]))
        self.results = {}  # kept only when the reporter lets them through
        self._report(message)

    def export_properties(self) -> Properties:
        """ASE's properties of the last calculation (what
        ``atoms.get_properties`` gives): the results without
        ``extrapolation``, which ASE's property table does not know."""
        return Properties({name: value for name, value in
                           self.results.items() if name in all_outputs})

    def _store(self, dblabel, images=None):
        """The fingerprint store of ``dblabel``, opened once and kept."""
        store = self._fingerprint_store
        if store is None or store.dblabel != dblabel:
            store = self.descriptor.open_store(dblabel, log=self._log,
                                               images=images)
            self._fingerprint_store = store
        return store

    # Training ------------------------------------------------------------

    @guarded(TrainingConvergenceError)
    def train(self, images: list[Atoms] | dict[str, Atoms] | str,
              overwrite: bool = False, compress_databases: bool = True,
              memory_limit: int | float | str | None = None,
              validation: Any = None, patience: int | None = None,
              validation_seed: int | None = 0) -> bool:
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
            anything is computed. When they do not fit, a neural network
            trains from chunk files on disk instead (streamed training,
            logged; see ``docs/model.md``).
        validation : float, list of ase.Atoms, str or dict, optional
            Held-out images, scored at every loss evaluation and never
            trained on: a fraction of ``images`` drawn with
            ``validation_seed`` (e.g. ``0.1``), or images (a list, a
            ``.traj``/``.db`` path, hashed images) with the same data as
            the training images. Their errors go to the log (read by
            :func:`amp.analysis.read_trainlog`, drawn by
            :func:`amp.analysis.plot_convergence`); how they were chosen
            goes to the log and to ``<label>.amp`` (:attr:`metadata`).
        patience : int, optional
            Early stopping: end the fit once the held-out images' loss has
            not improved for this many loss evaluations, and keep the
            parameters of its lowest value. The fit then counts as trained
            (``<label>.amp`` is written, the log says so).
        validation_seed : int
            Seed of the draw of a ``validation`` fraction.

        Returns
        -------
        bool
            True: converged, or stopped early with ``patience``.

        Raises
        ------
        TrainingConvergenceError
            Not converged: ``maxiter`` was reached or the optimizer stopped
            for the reason the message gives; the parameters reached are in
            ``<label>-untrained-parameters.amp``.
        FileExistsError
            ``<label>.amp`` exists and ``overwrite`` is False.
        amp.store.locks.InUseError
            Another running training uses this label (the message names
            its pid); raised before anything is written.
        amp.descriptor.budget.TrainingMemoryError
            Not even streamed would the fingerprint derivatives (or kernel
            matrices) fit ``memory_limit``; raised before anything is
            computed.
        amp.store.chunks.DiskSpaceError
            Streamed training's chunk files would not fit the free disk
            space; raised before anything is computed or written.
        """
        refuse_no_images(images)
        if self.label is None:
            raise ValueError("train() needs a label: it writes <label>.amp "
                             "and <label>-log.txt; give Amp(..., label="
                             "'name') or set calc.label")
        filename = make_filename(self.label, ".amp")
        if os.path.exists(filename) and not overwrite:
            raise FileExistsError("%s exists; train with overwrite=True to "
                                  "replace it" % filename)
        self._make_label_folder()
        # One training per label: a second is refused here, not after it
        # has trained into the first one's log and files.
        # (Under MPI rank 0 alone holds it: the other ranks write nothing.)
        lock = make_filename(self.label, ".lock") if self._writes_files() \
            else None
        with owner_lock(lock, "label %r" % self.label) if lock else \
                contextlib.nullcontext():
            try:
                return self._train(images, filename, overwrite,
                                   compress_databases, memory_limit,
                                   validation, patience, validation_seed)
            finally:
                self._finish_archive()

    def todict(self, skip_default: bool = True) -> dict[str, Any]:
        """What ASE records as the calculator's parameters (an ``ase.db``
        row's ``calculator_parameters``, each trajectory frame): the
        descriptor's and the model's settings and a SHA-256 digest of
        everything the ``.amp`` file holds, which tells two models apart.
        The trained parameters themselves stay in the ``.amp`` file.
        """
        import hashlib
        import json

        descriptor, model = self.descriptor.todict(), self.model.todict()
        digest = hashlib.sha256(json.dumps(
            [descriptor, model], sort_keys=True).encode()).hexdigest()
        return {"descriptor": {k: descriptor[k] for k in
                               ("importname", "cutoff", "elements")
                               if k in descriptor},
                "model": {k: model[k] for k in
                          ("importname", "hiddenlayers", "activation")
                          if k in model},
                "sha256": digest}

    # Files ---------------------------------------------------------------

    def save(self, filename: str | os.PathLike, overwrite: bool = False,
             format: str = "json") -> None:
        """Write the descriptor and model parameters to a ``.amp`` file.

        Parameters
        ----------
        filename : str
        overwrite : bool
        format : {'json', 'amp1', 'n2p2'}
            This library's JSON file, Amp 1.x's Python-literal text
            (:mod:`amp.store.amp1`) for colleagues still on Amp 1.x (this
            library reads both), or an n2p2 potential folder named
            ``filename`` for n2p2 and LAMMPS's ``pair_style hdnnp``
            (:func:`amp.n2p2.save`).

        Raises
        ------
        FileExistsError
            The file exists and ``overwrite`` is False (it is untouched).

        Notes
        -----
        With ``cores='mpi'`` only rank 0 writes; the other ranks return
        without writing.
        """
        if format == "n2p2":
            from .n2p2 import save

            return save(self, filename, overwrite=overwrite)
        if format not in ("json", "amp1"):
            raise ValueError("unknown model file format %r; 'json', 'amp1' "
                             "or 'n2p2'" % (format,))
        if not self._writes_files():
            return
        if format == "amp1":  # Amp 1.x's layout has no metadata
            from .store import amp1

            text = amp1.dumps(self.descriptor.todict(), self.model.todict())
        else:
            text = modelfile.dumps(self.descriptor.todict(),
                                   self.model.todict(), self.metadata)
        modelfile.write(filename, text, overwrite=overwrite)

    @classmethod
    def load(cls, file: Any, Descriptor: Any = None, Model: Any = None,
             format: str | None = None, **kwargs: Any) -> Amp:
        """Build a calculator from a ``.amp`` file (a path or file object).

        Parameters
        ----------
        file : str or file object
            This library's JSON files and Amp 1.x files are both read;
            neither is executed.
        Descriptor, Model : class, optional
            Override the classes (default: those the file names, through
            the allow-list; Gaussian and NeuralNetwork when it names none).
        format : {None, 'n2p2'}
            ``'n2p2'``: ``file`` is an n2p2 potential folder, loaded by
            :func:`amp.n2p2.load` (``cflength``, ``cfenergy`` and
            ``ignore`` go with ``kwargs``).
        **kwargs
            Passed to :class:`Amp` (``label``, ``dblabel``, ``cores``, ...).
        """
        if format == "n2p2":
            from .n2p2 import load

            return load(file, **kwargs)
        if format is not None:
            raise ValueError("unknown model file format %r; None (a .amp "
                             "file) or 'n2p2'" % (format,))
        descriptor_dict, model_dict, metadata = modelfile.read(
            file, metadata=True)
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
        calc = cls(descriptor=descriptor, model=model, **kwargs)
        calc.metadata = metadata
        return calc
