"""Bootstrap ensembles of Amp calculators, for uncertainty (Amp's
``amp.stats.bootstrap``).

:meth:`BootStrap.train` trains ``n`` calculators, each on a bootstrap
resample of the training images (drawn with replacement, seeded and
recorded), from one template: an :class:`amp.Amp` (``calc``) or Amp 1.x's
``calc_text``, which is read by :func:`amp.stats.calctext.read_calc_text`
and never run. The members are trained one after another in this process,
spread over the workers of :mod:`amp.parallel` when ``cores`` asks for
more than one (one member per worker at a time), or over the ranks of an
MPI job with ``cores='mpi'`` (:mod:`amp.stats.ranks`); how one member is
trained is :mod:`amp.stats.members`. The fingerprints of every
image are computed once, into a database the members share.

The trained ensemble is one JSON file (``<label>.ensemble``) holding every
member's ``.amp`` text and the training record; ``BootStrap(load=path)`` or
:meth:`BootStrap.load` reads it. A prediction fingerprints the image once
and evaluates every member's network on it (:class:`.ensemble.Ensemble`).
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np

from .. import Amp
from ..parallel.mpi import rank_of
from ..store import modelfile
from ..utilities import Logger, TrainingConvergenceError, hash_images, now
from .calctext import read_calc_text
from .ensemble import (Ensemble, EnsembleCalculator, EnsembleFileError,
                       apply_output, read_ensemble, write_ensemble)
from .members import (TrainMember, _member_seed, _template_spec,
                      _train_member)

__all__ = ["BootStrap", "Bootstrap", "bootstrap", "EnsembleFileError"]

PROGRESS = "progress.json"
# Amp 1.x's BootStrap.train wrote and submitted job scripts; these
# keywords configured them and are accepted without effect.
AMP1_JOB_OPTIONS = ("headerlines", "start_command", "sleep", "expired",
                    "train_line")


def bootstrap(vector: Any, size: int | None = None,
              return_missing: bool = False,
              rng: np.random.Generator | int | None = None) -> Any:
    """A resample of ``vector`` drawn with replacement (Amp's function).

    Parameters
    ----------
    vector : sequence
    size : int, optional
        Length of the resample (default ``len(vector)``).
    return_missing : bool
        Also return the items that were not drawn.
    rng : numpy.random.Generator or int, optional
        Random source; numpy's global state (as in Amp) when None.
    """
    size = len(vector) if size is None else size
    if rng is None:
        ids = np.random.choice(len(vector), size=size, replace=True)
    else:
        ids = np.random.default_rng(rng).integers(0, len(vector), size)
    chosen = [vector[i] for i in ids]
    if not return_missing:
        return chosen
    missing = sorted(set(range(len(vector))) - set(ids.tolist()))
    return chosen, [vector[i] for i in missing]


# The ensemble --------------------------------------------------------------

def _resamples(seed, n, n_images):
    """The image indices of each member's bootstrap resample."""
    return [np.random.default_rng([seed, index]).integers(
        0, n_images, n_images).tolist() for index in range(n)]


def _unconverged(failed, n, retries, progress, folder):
    """The error for members that did not converge (the others kept)."""
    return TrainingConvergenceError(
        "%d of %d members did not converge after %d attempts each: %s. The "
        "%d finished members are kept in %s; call train again (perhaps with "
        "looser convergence or more maxiter) to train only the failed ones."
        % (len(failed), n, retries + 1,
           ", ".join("member %d (seeds %s)" % (i, s)
                     for i, s in sorted(failed.items())),
           len(progress["finished"]), os.path.join(folder, PROGRESS)))


class BootStrap:
    """A bootstrap ensemble of Amp calculators (Amp's ``BootStrap``).

    Parameters
    ----------
    load : str, optional
        An ensemble file to load (``<label>.ensemble``, this library's or
        Amp 1.x's).
    log : Logger or None
        Where progress goes. None (default) writes no file: the messages
        are ``logging`` records of the logger ``amp.stats.bootstrap``
        only (Amp 1.x printed them to standard output; nothing is printed
        here unless the application configures ``logging``).
    label : str
        Label given to the loaded member calculators.
    dblabel : str, optional
        At inference, keep fingerprints in ``<dblabel>-*.ampdb``; by
        default nothing is written (one image's fingerprints in memory).

    Attributes
    ----------
    ensemble : list of amp.Amp
        The member calculators (each usable on its own).
    training : dict
        The training record: image hashes, resamples (indices into those
        images), seeds, attempts.
    """

    def __init__(self, load: str | None = None, log: Logger | None = None,
                 label: str = "amp", dblabel: str | None = None) -> None:
        self.log = Logger(None, name=__name__) if log is None else log
        self.label = label
        self.dblabel = dblabel
        self.ensemble: list[Amp] = []
        self.training: dict[str, Any] = {}
        self._committee: Any = None
        self.log("=" * 70)
        self.log("Amp bootstrap initiated. %s" % now(with_utc=True))
        if load is not None:
            self._load(load)

    @classmethod
    def load(cls, filename: str, **kwargs: Any) -> BootStrap:
        """Load an ensemble file: ``BootStrap.load(path)`` is
        ``BootStrap(load=path)`` (keywords as the constructor's)."""
        return cls(load=filename, **kwargs)

    def _load(self, filename):
        members, training = read_ensemble(filename)
        self._set_members(members, where=filename)
        self.training = training
        self.log("Loaded %s: %d members." % (filename, len(self.ensemble)))

    def _set_members(self, members, where):
        """Build the member calculators and the shared-descriptor
        committee from ``[(descriptor dict, model dict), ...]``."""
        from ..importing import from_importname

        first = members[0][0]
        try:
            compared = [from_importname(d).fingerprint_parameters()
                        for d, _ in members]
        except (KeyError, TypeError, ValueError, ImportError) as error:
            raise EnsembleFileError("%s: a member's descriptor is malformed: "
                                    "%r" % (where, error)) from error
        for index, parameters in enumerate(compared):
            if parameters != compared[0]:
                raise EnsembleFileError(
                    "%s: member %d uses another descriptor than member 0; "
                    "the members of an ensemble must share one descriptor"
                    % (where, index))
        calcs = []
        try:
            for descriptor, model in members:
                calc = Amp.load(io.StringIO(modelfile.dumps(descriptor,
                                                             model)),
                                label=self.label, logging=False)
                calcs.append(calc)
        except modelfile.ModelFileError as error:
            raise EnsembleFileError("%s: %s" % (where, error)) from error
        shared = from_importname(first)
        self.ensemble = calcs
        self._committee = Ensemble(shared, [c.model for c in calcs],
                                   dblabel=self.dblabel)

    # Training ------------------------------------------------------------

    def train(self, images: Any, n: int = 50, calc: Amp | None = None,
              calc_text: str | None = None, label: str = "bootstrap",
              cores: int | dict[str, int] = 1, seed: int | None = None,
              retries: int = 2, dblabel: str | None = None,
              overwrite: bool = False, **job_options: Any) -> dict[str, Any]:
        """Train ``n`` members, each on a bootstrap resample of ``images``.

        Parameters
        ----------
        images : list of ase.Atoms or str
            Training images with energies (and forces when the template
            trains forces), or a ``.traj``/``.db`` path.
        n : int
            Number of members (at least 2).
        calc : amp.Amp, optional
            Template: each member copies its descriptor settings, its
            network's hidden layers and activation, its loss-function
            parameters and its regressor. Its weights, label, dblabel and
            cores are not used.
        calc_text : str, optional
            Amp 1.x's form of the template: source that assigns an Amp to
            ``calc``, read with :func:`amp.stats.calctext.read_calc_text`
            (never run). Default template (neither given):
            ``Amp(descriptor=Gaussian(), model=NeuralNetwork())``.
        label : str
            The ensemble is written to ``<label>.ensemble``; members train
            in ``<label>-training/`` (logs, parameter files, the shared
            fingerprint databases).
        cores : int, dict or 'mpi'
            1 trains the members one after another in this process; more
            (or Amp's ``{host: cores}``) trains one member per worker at a
            time (:mod:`amp.parallel`; remote sessions run the template's
            ``envcommand`` first); ``'mpi'`` trains one member per rank of
            an MPI job at a time (:mod:`amp.stats.ranks`; rank 0 alone
            logs and writes files).
        seed : int, optional
            Seed of the resamples and of each member's initial weights;
            drawn (and recorded) when None.
        retries : int
            A member that does not converge is retrained with a new seed up
            to this many times.
        dblabel : str, optional
            Shared fingerprint databases (default
            ``<label>-training/amp``).
        overwrite : bool
            Replace an existing ``<label>.ensemble``.
        **job_options
            Amp 1.x's job-script keywords (``headerlines``,
            ``start_command``, ``sleep``, ``expired``, ``train_line``) are
            accepted and not used (no job scripts are written); any other
            keyword is an error.

        Returns
        -------
        dict
            ``{'complete': True, 'n_converged': n}`` (Amp's form).

        Raises
        ------
        TrainingConvergenceError
            Some members did not converge after ``retries`` new seeds; the
            message lists them. The finished members are kept in
            ``<label>-training/progress.json`` and a second call with the
            same images, template and seed trains only the others.
        """
        from ..parallel.mpi import parallel_context

        context = parallel_context(cores) if cores == "mpi" else None
        if context is None:
            return self._train(images, n, calc, calc_text, label, cores,
                               seed, retries, dblabel, overwrite, job_options)
        # Every rank runs this; an error on one ends the job (printed
        # once), and only rank 0 logs.
        log = self.log
        if not context.is_root:
            self.log = Logger(None)
        try:
            with context.guard(passing=(TrainingConvergenceError,)):
                return self._train(images, n, calc, calc_text, label, cores,
                                   seed, retries, dblabel, overwrite,
                                   job_options)
        finally:
            self.log = log

    def _train(self, images, n, calc, calc_text, label, cores, seed, retries,
               dblabel, overwrite, job_options):
        """:meth:`train`'s work (see there)."""
        n, template, spec, forces = self._check_request(
            n, calc, calc_text, cores, label, overwrite, job_options)
        images = hash_images(images, log=self.log)
        if len(images) == 0:
            raise ValueError("no training images: BootStrap.train needs at "
                             "least one image with an energy")
        from ..images import check_images

        check_images(images, forces=forces)
        folder = label + "-training"
        writes = rank_of(cores) == 0  # MPI: rank 0 alone writes
        if writes:
            os.makedirs(folder, exist_ok=True)
        dblabel = dblabel or os.path.join(folder, "amp")
        keys = list(images)
        progress = self._read_progress(folder, keys, spec, seed)
        seed = progress["seed"]
        self.log("Bootstrap training of %d members on %d images (seed %d) "
                 "in %s." % (n, len(keys), seed, folder))
        if job_options:
            self.log("Not used (no job scripts are written): %s."
                     % ", ".join(sorted(job_options)))
        resamples = _resamples(seed, n, len(keys))
        from ..parallel import is_mpi, pool_for

        with pool_for({"cores": cores, "envcommand": template.envcommand},
                      self.log) as pool:
            if is_mpi(pool):  # every rank takes rank 0's record and seed
                progress = pool.broadcast(progress)
                seed = progress["seed"]
                resamples = _resamples(seed, n, len(keys))
            spec["descriptor"] = self._fingerprint(spec, images, dblabel,
                                                   forces, pool)
            todo = [i for i in range(n) if str(i) not in progress["finished"]]
            self.log("%d members finished before, %d to train."
                     % (n - len(todo), len(todo)))
            jobs = {str(i): {"images": [images[keys[j]] for j in resamples[i]],
                             "label": os.path.abspath(os.path.join(folder,
                                                                   str(i))),
                             "dblabel": os.path.abspath(dblabel),
                             "seeds": [_member_seed(seed, i, a)
                                       for a in range(retries + 1)]}
                    for i in todo}
            failed = self._train_members(jobs, spec, pool, progress, folder,
                                         writes)
        if failed:
            raise _unconverged(failed, n, retries, progress, folder)
        self._save(label, n, keys, seed, resamples, progress, folder, writes)
        return {"complete": True, "n_converged": n}

    def _check_request(self, n, calc, calc_text, cores, label, overwrite,
                       job_options):
        """Refuse what cannot be trained before anything is done; returns
        ``(n, template, spec, forces)``."""
        unknown = set(job_options) - set(AMP1_JOB_OPTIONS)
        if unknown:
            raise TypeError("BootStrap.train got unexpected keyword "
                            "arguments %s" % ", ".join(sorted(unknown)))
        n = self._check_n(n)
        template = self._template(calc, calc_text)
        spec = _template_spec(template)
        filename = label + ".ensemble"
        if os.path.exists(filename) and not overwrite:
            raise FileExistsError("%s exists; load it with BootStrap.load or "
                                  "train with overwrite=True" % filename)
        if cores != 1 and not isinstance(spec["regressor"]["optimizer"], str):
            raise ValueError("members trained by workers need a named "
                             "optimizer (a preset), not a callable")
        return n, template, spec, spec["loss"]["force_coefficient"] is not None

    def _train_members(self, jobs, spec, pool, progress, folder,
                       writes=True):
        """Train the members of ``jobs``, recording each finished one in the
        progress file as it finishes (when this process ``writes``);
        returns ``{index: seeds}`` of those that did not converge."""
        failed = {}
        for key, result in self._run(jobs, spec, pool):
            if result["converged"]:
                progress["finished"][key] = result
                self.log(" Member %s converged (seed %d)."
                         % (key, result["seeds"][-1]))
            else:
                failed[int(key)] = result["seeds"]
                self.log(" Member %s did not converge with any of its "
                         "%d seeds." % (key, len(result["seeds"])))
            if writes:
                _write_json(os.path.join(folder, PROGRESS), progress)
        return failed

    def _save(self, label, n, keys, seed, resamples, progress, folder,
              writes=True):
        """Write ``<label>.ensemble`` from the finished members (when this
        process ``writes``) and take them as this ensemble's."""
        filename = label + ".ensemble"
        finished = [progress["finished"][str(i)] for i in range(n)]
        training = {"images": keys, "seed": seed, "resamples": resamples,
                    "seeds": [r["seeds"][-1] for r in finished],
                    "attempts": [len(r["seeds"]) for r in finished]}
        texts = [r["text"] for r in finished]
        if writes:
            write_ensemble(filename, texts, training, overwrite=True)
            os.remove(os.path.join(folder, PROGRESS))  # superseded
        self._set_members([modelfile.read(io.StringIO(t)) for t in texts],
                          filename)
        self.training = training
        self.log("Saved the %d-member ensemble to %s." % (n, filename))

    @staticmethod
    def _check_n(n):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) \
                or n < 2:
            raise ValueError("an ensemble needs n >= 2 members, got %r" % (n,))
        return int(n)

    @staticmethod
    def _template(calc, calc_text):
        if calc is not None and calc_text is not None:
            raise ValueError("give either calc or calc_text, not both")
        if calc_text is not None:
            return read_calc_text(calc_text)
        if calc is None:
            from ..descriptor.gaussian import Gaussian
            from ..model.neuralnetwork import NeuralNetwork

            return Amp(descriptor=Gaussian(), model=NeuralNetwork())
        if not isinstance(calc, Amp):
            raise TypeError("the template calc must be an amp.Amp "
                            "calculator, got %s" % type(calc).__name__)
        return calc

    def _read_progress(self, folder, keys, spec, seed):
        """Finished members of an earlier run with the same images,
        template and seed (refuses another run's progress)."""
        path = os.path.join(folder, PROGRESS)
        settings = _comparable(spec)
        if not os.path.exists(path):
            if seed is None:
                seed = int(np.random.SeedSequence().entropy % (2 ** 63))
            return {"format": "amp-mlip-bootstrap-progress", "seed": seed,
                    "images": keys, "template": settings, "finished": {}}
        try:
            with open(path) as handle:
                progress = json.load(handle)
            same = (progress["images"] == keys
                    and progress["template"] == settings
                    and (seed is None or progress["seed"] == seed))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise EnsembleFileError("%s is damaged (%s); delete it to start "
                                    "afresh" % (path, error)) from error
        if not same:
            raise ValueError("%s belongs to a run with other images, template "
                             "or seed; delete it or use another label" % path)
        return progress

    def _fingerprint(self, spec, images, dblabel, forces, pool):
        """Compute every image's fingerprints once, into the shared
        databases; returns the descriptor dict with its elements and
        symmetry functions resolved."""
        from ..importing import from_importname

        descriptor = from_importname(spec["descriptor"])
        descriptor.calculate_fingerprints(
            images, parallel=pool, log=self.log,
            calculate_derivatives=forces,
            store=descriptor.open_store(dblabel, images=images))
        return descriptor.todict()

    def _run(self, jobs, spec, pool):
        """Yield ``(member key, result)``, in this process, by workers or
        by the ranks of an MPI job."""
        from ..parallel import is_mpi

        if is_mpi(pool):
            from .ranks import members_on_ranks

            yield from members_on_ranks(jobs, spec, pool, _train_member,
                                        self.log)
            return
        if pool is None:
            for key, job in jobs.items():
                self.log(" Training member %s (log in %s-log.txt)."
                         % (key, job["label"]))
                yield key, _train_member(spec, job["images"], job["label"],
                                         job["dblabel"], job["seeds"],
                                         self.log)
            return
        self.log(" %d members to train on %d workers." % (len(jobs),
                                                          pool.n_pids))
        yield from pool.map(TrainMember, jobs, {"spec": spec}, chunksize=1)

    # Inference -----------------------------------------------------------

    def _predict(self, atoms, k):
        if self._committee is None:
            raise ValueError("the ensemble is empty: train it or load an "
                             "ensemble file first")
        if k is not None and not 1 <= int(k) <= len(self.ensemble):
            raise ValueError("k must be between 1 and %d, got %r"
                             % (len(self.ensemble), k))
        predictions = self._committee.predict(atoms)
        return {key: None if value is None else value[:k]
                for key, value in predictions.items()}

    def get_potential_energy(self, atoms: Any, output: Any = (.5,),
                             k: int | None = None, mean: bool = True) -> Any:
        """The ensemble's potential energy of ``atoms``.

        Parameters
        ----------
        atoms : ase.Atoms
        output : sequence
            Quantiles of the ensemble (``0.5`` the median), optionally
            followed by ``'e'`` for every member's value, e.g.
            ``(.5, .05, .95, 'e')``.
        k : int, optional
            Use the first ``k`` members only.
        mean : bool
            With a single quantile (the default ``(.5,)``), return the
            ensemble mean instead, like an ordinary calculator.

        Returns
        -------
        float or list
            One value when one is asked for, else a list in the order of
            ``output`` (quantiles as scipy's ``mquantiles``, as in Amp).
        """
        return apply_output(self._predict(atoms, k)["energy"], output, mean,
                            "mquantiles")

    def get_forces(self, atoms: Any, output: Any = (.5,), k: int | None = None,
                   mean: bool = True) -> Any:
        """The ensemble's forces, shape (n_atoms, 3) per requested value;
        ``output``, ``k`` and ``mean`` as :meth:`get_potential_energy`
        (quantiles as numpy's linear percentiles, as in Amp)."""
        return apply_output(self._predict(atoms, k)["forces"], output, mean,
                            "linear")

    def get_atomic_energies(self, atoms: Any, output: Any = (.5,),
                            k: int | None = None, mean: bool = True) -> Any:
        """The ensemble's per-atom energies, shape (n_atoms,) per requested
        value; ``output``, ``k`` and ``mean`` as
        :meth:`get_potential_energy`."""
        return apply_output(self._predict(atoms, k)["energies"], output,
                            mean, "mquantiles")

    def calculator(self, k: int | None = None) -> EnsembleCalculator:
        """An ASE calculator of the ensemble mean with the committee
        spread in ``results['energy_std']`` and ``results['forces_std']``
        (see :class:`amp.stats.ensemble.EnsembleCalculator`)."""
        if self._committee is None:
            raise ValueError("the ensemble is empty: train it or load an "
                             "ensemble file first")
        return EnsembleCalculator(self._committee, k=k)


#: The spelling some of Amp's documentation uses.
Bootstrap = BootStrap


def _comparable(spec):
    """The template spec as plain JSON data (regressor callables by
    name), for comparing runs."""
    regressor = dict(spec["regressor"])
    if not isinstance(regressor["optimizer"], str):
        regressor["optimizer"] = getattr(regressor["optimizer"], "__name__",
                                         repr(regressor["optimizer"]))
    plain = dict(spec, regressor=regressor)
    return json.loads(json.dumps(plain, sort_keys=True, default=repr))


def _write_json(path, content):
    from ..store.files import atomic_file

    with atomic_file(path) as handle:
        handle.write(json.dumps(content, indent=1).encode())

