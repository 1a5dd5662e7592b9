"""What every step of the ``amp-gdml`` command line shares: its settings
and output (:class:`Step`), its one exception (:class:`CommandError`), and
reading the files a step is given (datasets, tasks, models, folders of
them) with one message naming each problem.
"""

import os
import warnings

from . import io as gdml_io
from .train import GDMLTrain

__all__ = ["CommandError", "Step", "load_dataset", "files_of_type"]


class CommandError(ValueError):
    """A command cannot run as asked; the message says why and what to do."""


class Step:
    """Shared settings of one command: output, progress, resources.

    Parameters
    ----------
    write : callable
        Line printer of the program's output (``print``).
    progress : callable
        ``progress(label)`` returning a ``callback(current, total, text)``
        with a ``close()`` method.
    max_memory, max_processes : int or None
        Resource limits.
    solver : str or None
        ``'analytic'``, ``'cg'`` or None (by memory).
    warn : callable, optional
        Printer of warnings (the command line writes them to standard
        error); default `write`.
    """

    def __init__(self, write=print, progress=None, max_memory=None,
                 max_processes=None, solver=None, warn=None):
        self.write = write
        self.warn = write if warn is None else warn
        self.progress = progress or (lambda label: _Silent())
        self.max_memory = max_memory
        self.max_processes = max_processes
        self.solver = solver

    def trainer(self, solver=None):
        """A :class:`GDMLTrain` that warns about label problems."""
        return GDMLTrain(max_memory=self.max_memory,
                         max_processes=self.max_processes,
                         solver=solver or self.solver, label_checks="warn")

    def run(self, label, func, *args, **kwargs):
        """Call ``func(*args, callback=..., **kwargs)`` under a progress line,
        printing warnings as lines."""
        callback = self.progress(label)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                result = func(*args, callback=callback, **kwargs)
        finally:
            callback.close()
        for w in caught:
            self.warn("  warning: {}".format(w.message))
        return result


class _Silent:
    def __call__(self, *args, **kwargs):
        pass

    def close(self):
        pass


#: Extensions of files ASE reads that are trajectories, not datasets.
TRAJECTORY_EXTENSIONS = (".traj", ".xyz", ".extxyz", ".db", ".json",
                         ".pdb", ".cif", ".xsf", ".vasp", ".out", ".log")


def load_dataset(path, what="dataset"):
    """Load a dataset file or raise CommandError naming it (and, for a
    trajectory, the command that makes a dataset of it)."""
    try:
        return gdml_io.load_dataset(path)
    except FileNotFoundError:
        raise CommandError("{} '{}' does not exist".format(what, path)) \
            from None
    except ValueError as err:
        if str(path).lower().endswith(TRAJECTORY_EXTENSIONS) or \
                os.path.basename(str(path)) in ("OUTCAR", "vasprun.xml"):
            raise CommandError(
                "'{}' is a trajectory, not an sgdml dataset (.npz); make "
                "one first: amp-gdml create-dataset {}".format(path, path)) \
                from None
        raise CommandError("cannot use '{}' as the {}: {}".format(
            path, what, err)) from None


def _md5(data, key="md5"):
    """An md5 fingerprint field as text (bytes in sgdml's files)."""
    return gdml_io.to_str(data[key])


def _load(path, kind):
    loader = gdml_io.load_task if kind == "t" else gdml_io.load_model
    try:
        data = loader(path)
    except FileNotFoundError:
        raise CommandError("'{}' does not exist".format(path)) from None
    except ValueError as err:
        raise CommandError(str(err)) from None
    # what the steps read besides what predicting needs
    missing = [k for k in ("idxs_train", "idxs_valid", "md5_train",
                           "md5_valid", "dataset_name", "dataset_theory")
               if k not in data]
    if missing:
        raise CommandError("'{}' lacks the key(s) {} that sgdml's {} files "
                           "hold".format(path, ", ".join(missing), {
                               "t": "task", "m": "model"}[kind]))
    return data


def files_of_type(path, kind):
    """``(folder, [names])`` of the task or model files at `path` (a folder
    or one file), sorted by sigma; the checkpoints ``_unconv_*`` excluded."""
    what = {"t": "task", "m": "model"}[kind]
    if os.path.isfile(path):
        return os.path.dirname(path), [os.path.basename(path)]
    if not os.path.isdir(path):
        raise CommandError("'{}' is neither a {} file nor a folder of them"
                           .format(path, what))
    prefix = "task-" if kind == "t" else "model-"
    names = sorted(n for n in os.listdir(path)
                   if n.startswith(prefix) and n.endswith(".npz"))
    if not names:
        raise CommandError("'{}' holds no {} files ({}*.npz)".format(
            path, what, prefix))
    return path, names
