"""The steps of the ``amp-gdml`` command line: create, train, validate,
select, test, resume, and ``all`` of them in a row.

Each step reads and writes the files sgdml's command line does, under the
same names (:mod:`amp.gdml.io.names`), so that a run can be continued by
either program and an interrupted run resumes from the files already
written: existing tasks and trained models are kept, a model is validated
once, and an iterative solve killed mid-way restarts from its last
checkpoint (``_unconv_<model>.npz``). Every file is written atomically.

Nothing is deleted that this program did not make. A task folder it
creates or adopts (only an empty one) holds a record, ``.amp-gdml-run``,
listing the files the run wrote; the clean-up after ``select`` removes
exactly those, and the folder only if the run made it. A folder that is
not empty and has no record is refused, named. ``amp-gdml all`` cleans up
only after its last step, so a run killed at any step resumes from its
files, and a rerun of a finished run reports the model it made.

A user's mistake raises :class:`CommandError` (a ValueError) with one
message that names the problem and, where there is one, the fix.
"""

import glob
import json
import os
import warnings

import numpy as np

from ..store.files import atomic_file, read_file
from . import io as gdml_io
from .io import energy_mode, scalar
from .predict import GDMLPredict
from .show import print_dataset, print_errors, units
from .train import GDMLTrain

__all__ = ["CommandError", "create", "train", "validate", "select", "test",
           "resume", "run_all"]

#: sgdml's default sigma grid.
DEFAULT_SIGS = list(range(10, 100, 10))

#: The record, in a task folder, of a run this program owns.
RUN_RECORD = ".amp-gdml-run"
#: A record lists a few hundred names at most; a larger one is not ours.
_RECORD_MAX_BYTES = 2 ** 20


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


def read_run_record(task_dir):
    """The run record of `task_dir` as a dict, or None if it has none.

    Raises
    ------
    CommandError
        The record exists but is not one this program wrote.
    """
    path = os.path.join(task_dir, RUN_RECORD)
    if not os.path.lexists(path):
        return None
    try:
        record = json.loads(read_file(path, _RECORD_MAX_BYTES).decode())
        files = record["files"]
        if (record.get("program") != "amp-gdml"
                or not isinstance(record.get("made_folder"), bool)
                or not isinstance(files, list)
                or not all(isinstance(n, str) and n == os.path.basename(n)
                           and n not in ("", ".", "..") for n in files)):
            raise ValueError("unexpected content")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CommandError("'{}' is not a run record of amp-gdml ({}); "
                           "remove it or use another --task_dir".format(
                               path, err)) from None
    return record


def _write_run_record(task_dir, record):
    data = json.dumps(record, indent=1, sort_keys=True).encode()
    with atomic_file(os.path.join(task_dir, RUN_RECORD), fsync=True) as out:
        out.write(data)


def record_file(task_dir, name):
    """Add `name` to the files the run in `task_dir` wrote (if it owns the
    folder), before the file is written."""
    record = read_run_record(task_dir)
    if record is not None and name not in record["files"]:
        record["files"].append(name)
        _write_run_record(task_dir, record)


def claim_task_dir(task_dir):
    """Make `task_dir` this program's run folder, or return its record.

    A missing folder is created (and may be removed by the clean-up); an
    empty one is adopted (and kept); a folder with a record is returned
    as it is.

    Raises
    ------
    CommandError
        `task_dir` is not a folder, or holds files but no run record.
    """
    if os.path.lexists(task_dir) and not os.path.isdir(task_dir):
        raise CommandError("'{}' exists and is not a folder; choose another "
                           "--task_dir".format(task_dir))
    made = not os.path.exists(task_dir)
    if made:
        os.makedirs(task_dir)
    record = read_run_record(task_dir)
    if record is not None:
        return record
    others = sorted(os.listdir(task_dir))
    if others:
        raise CommandError(
            "'{}' is not empty ({} {}, e.g. '{}') and was not made by "
            "amp-gdml; nothing in it is used or removed: choose another "
            "--task_dir, or an empty or new folder".format(
                task_dir, len(others),
                "entry" if len(others) == 1 else "entries", others[0]))
    record = {"program": "amp-gdml", "made_folder": made, "files": []}
    _write_run_record(task_dir, record)
    return record


def clean_up_run(step, task_dir, keep_folder=False):
    """Remove what the run in `task_dir` wrote, and the folder if the run
    made it and nothing else is left in it. Does nothing to a folder
    without a run record."""
    record = read_run_record(task_dir)
    if record is None:
        step.write("Kept the folder '{}': amp-gdml did not make it".format(
            task_dir))
        return
    for name in record["files"]:
        for path in (os.path.join(task_dir, name),
                     os.path.join(task_dir, "_unconv_" + name)):
            if os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
    if keep_folder:
        _write_run_record(task_dir, dict(record, files=[]))
        return
    os.remove(os.path.join(task_dir, RUN_RECORD))
    left = os.listdir(task_dir)
    if record["made_folder"] and not left:
        os.rmdir(task_dir)
    elif left:
        step.write("Kept the folder '{}': it holds {} other entries".format(
            task_dir, len(left)))


def _check_resumable(task_dir, dataset, valid, n_train, n_valid, sigs, gdml):
    """True when every task/model in `task_dir` fits this configuration."""
    for name in sorted(os.listdir(task_dir)):
        if not name.endswith(".npz") or name.startswith("_unconv_"):
            continue
        try:
            _, data = gdml_io.load_any(os.path.join(task_dir, name))
        except ValueError:
            return False
        if (_md5(data, "md5_train") != _md5(dataset, "md5")
                or _md5(data, "md5_valid") != _md5(valid, "md5")
                or len(data["idxs_train"]) != n_train
                or len(data["idxs_valid"]) != n_valid
                or (gdml and np.atleast_2d(data["perms"]).shape[0] > 1)
                or float(scalar(data["sig"])) not in sigs):
            return False
    return True


def create(step, dataset_path, n_train, n_valid, sigs=None, gdml=False,
           use_E=True, use_E_cstr=False, overwrite=False, task_dir=None,
           perms_from=None, valid_dataset_path=None):
    """Write one task per sigma into the cross-validation folder.

    Returns
    -------
    str
        The task folder.
    """
    dataset = load_dataset(dataset_path)
    valid = (dataset if valid_dataset_path is None
             else load_dataset(valid_dataset_path, "validation dataset"))
    n_data = dataset["F"].shape[0]
    if n_data < n_train:
        raise CommandError("the dataset holds {} geometries, cannot train on "
                           "{}".format(n_data, n_train))
    if valid is dataset and n_data - n_train < n_valid:
        raise CommandError(
            "the dataset holds {} geometries, cannot train on {} and "
            "validate on {} others".format(n_data, n_train, n_valid))
    if valid is not dataset and valid["F"].shape[0] < n_valid:
        raise CommandError("the validation dataset holds {} geometries, "
                           "cannot validate on {}".format(
                               valid["F"].shape[0], n_valid))
    if use_E and "E" not in dataset:
        raise CommandError("the dataset has no energies ('E'); add them or "
                           "train forces only with --no_E")
    sigs = sorted(set(DEFAULT_SIGS if not sigs else sigs))
    if task_dir is None:
        task_dir = gdml_io.train_dir_name(dataset, n_train, not gdml, use_E,
                                          use_E_cstr)
    names = []
    record = claim_task_dir(task_dir)
    if record["files"]:
        if overwrite:
            step.write("Overwriting the run in '{}'".format(task_dir))
            clean_up_run(step, task_dir, keep_folder=True)
        elif _check_resumable(task_dir, dataset, valid, n_train, n_valid,
                              sigs, gdml):
            step.write("Resuming the run in '{}'".format(task_dir))
            names = [n for n in sorted(os.listdir(task_dir))
                     if n.startswith("task-") and n.endswith(".npz")]
        else:
            raise CommandError(
                "'{}' holds a run with other settings (datasets, sizes, "
                "sigmas or symmetries); pass -o to overwrite it or "
                "--task_dir to use another folder".format(task_dir))
    if names:
        template = _load(os.path.join(task_dir, names[0]), "t")
    else:
        perms = None
        if perms_from is not None:
            perms = _perms_from(perms_from)
        template = step.run(
            "Creating task", step.trainer().create_task, dataset, n_train,
            valid, n_valid, sig=sigs[0], perms=perms, use_sym=not gdml,
            use_E=use_E, use_E_cstr=use_E_cstr)
    written = 0
    for sig in sigs:
        template["sig"] = sig
        name = gdml_io.task_file_name(template)
        path = os.path.join(task_dir, name)
        if not os.path.exists(path):
            record_file(task_dir, name)
            gdml_io.save_task(path, template)
            written += 1
    n_perms = np.atleast_2d(template["perms"]).shape[0]
    step.write("Wrote {} of {} task(s) ({} training points, {} {}) "
               "in '{}'".format(written, len(sigs), n_train, n_perms,
                                "symmetry" if n_perms == 1 else "symmetries",
                                task_dir))
    return task_dir


def _perms_from(path):
    try:
        data = gdml_io.load_npz(path)
    except FileNotFoundError:
        raise CommandError("'{}' does not exist".format(path)) from None
    if "perms" not in data:
        raise CommandError("'{}' has no 'perms' key to take permutations "
                           "from".format(path))
    return data["perms"]


def _checkpoint_task(task, checkpoint_path, step):
    """The task, continued from an unconverged checkpoint when one fits."""
    if not os.path.exists(checkpoint_path):
        return task
    try:
        model = gdml_io.load_model(checkpoint_path)
    except ValueError as err:
        step.warn("  ignoring the unreadable checkpoint '{}': {}".format(
            checkpoint_path, err))
        return task
    if (np.array_equal(model["idxs_train"], task["idxs_train"])
            and float(scalar(model["sig"])) == float(scalar(task["sig"]))):
        step.write("  continuing from the checkpoint '{}' ({} iterations)"
                   .format(checkpoint_path,
                           int(scalar(model.get("solver_iters", 0)))))
        task = dict(task, alphas0_F=model["alphas_F"])
        if "alphas_E" in model:
            task["alphas0_E"] = model["alphas_E"]
        for key in ("solver_iters", "inducing_pts_idxs"):
            if key in model:
                task[key] = model[key]
    return task


def train(step, task_path, valid_dataset_path, overwrite=False, lazy=False):
    """Train (and, with several tasks, validate) every task at `task_path`.

    Tasks are trained in order of sigma; as sgdml does, the remaining ones
    are skipped once the validation error rises again.

    Returns
    -------
    str
        The model file (one task) or the folder of models.
    """
    task_dir, names = files_of_type(task_path, "t")
    valid = load_dataset(valid_dataset_path, "validation dataset")
    previous, model_path = None, None
    for i, name in enumerate(names):
        task_file = os.path.join(task_dir, name)
        task = _load(task_file, "t")
        model_name = gdml_io.model_file_name(task)
        model_path = os.path.join(task_dir, model_name)
        step.write("Task {} of {}: {} training points, sigma {:g}".format(
            i + 1, len(names), len(task["idxs_train"]),
            float(scalar(task["sig"]))))
        if os.path.exists(model_path) and not overwrite:
            step.write("  model '{}' exists; kept".format(model_name))
        else:
            if lazy and len(names) > 1 and bool(scalar(
                    task.get("tried_training", False))):
                step.write("  skipped: tried before without success (--lazy)")
                continue
            gdml_io.save_task(task_file, dict(task, tried_training=True))
            record_file(task_dir, model_name)
            checkpoint = os.path.join(task_dir, "_unconv_" + model_name)
            task = _checkpoint_task(task, checkpoint, step)
            model = step.run(
                "Training", step.trainer().train, task,
                save_progr_callback=lambda m, p=checkpoint:
                    gdml_io.save_model(p, m))
            gdml_io.save_model(model_path, model)
            if os.path.exists(checkpoint):
                os.remove(checkpoint)
            step.write("  wrote '{}'".format(model_path))
        err = test(step, model_path, valid_dataset_path, n_test=-1,
                   overwrite=False, dataset=valid, quiet=True)[0]
        if previous is not None and err > previous:
            if i + 1 < len(names):
                step.write("Skipping the remaining {} task(s): the "
                           "validation error rises again".format(
                               len(names) - i - 1))
            break
        previous = err
    return model_path if len(names) == 1 else task_dir


def validate(step, model_path, dataset_path, overwrite=False):
    """Validate the model(s) at `model_path` on their validation points."""
    return test(step, model_path, dataset_path, n_test=-1,
                overwrite=overwrite)


def _errors(model, dataset, idxs, step):
    gp = GDMLPredict(model, num_workers=0, max_memory=step.max_memory,
                     max_processes=step.max_processes)
    e_abs, f_abs, mag, ang = [], [], [], []
    use_E = energy_mode(model) != "none" and "E" in dataset
    callback = step.progress("Predicting")
    try:
        for b0 in range(0, len(idxs), 1000):
            batch = idxs[b0:b0 + 1000]
            E, F = gp.predict(dataset["R"][batch])
            F_ref = dataset["F"][batch].reshape(len(batch), -1)
            f_abs.append(np.abs(F - F_ref).ravel())
            if use_E:
                e_abs.append(np.abs(E - np.ravel(dataset["E"])[batch]))
            p, r = F.reshape(-1, 3), F_ref.reshape(-1, 3)
            pn, rn = np.linalg.norm(p, axis=1), np.linalg.norm(r, axis=1)
            mag.append(np.abs(pn - rn))
            with np.errstate(invalid="ignore", divide="ignore"):
                cos = np.einsum("ij,ij->i", p, r) / (pn * rn)
            ang.append(np.arccos(np.clip(np.nan_to_num(cos, nan=1.0),
                                         -1, 1)) / np.pi)
            callback(min(b0 + 1000, len(idxs)), len(idxs),
                     "Predicting {} geometries".format(len(idxs)))
    finally:
        callback.close()

    def stats(parts):
        a = np.concatenate(parts)
        return {"mae": float(np.mean(a)), "rmse": float(np.sqrt(np.mean(
            a ** 2)))}
    return (stats(e_abs) if use_E else None, stats(f_abs), stats(mag),
            stats(ang))


def test(step, model_path, dataset_path, n_test=None, overwrite=False,
         dataset=None, quiet=False):
    """Test (``n_test >= 0`` or None) or validate (``n_test < 0``) models.

    Returns
    -------
    list of float
        The force RMSE of each model.
    """
    model_dir, names = files_of_type(model_path, "m")
    if dataset is None:
        dataset = load_dataset(dataset_path, "test dataset" if (
            n_test is None or n_test >= 0) else "validation dataset")
    validation = n_test is not None and n_test < 0
    rmses = []
    for name in names:
        path = os.path.join(model_dir, name)
        model = dict(_load(path, "m"))
        if not np.array_equal(model["z"], dataset["z"]):
            raise CommandError("the atoms of '{}' (z) differ from the model's "
                               "'{}'".format(dataset_path, name))
        if ("lattice" in model) != ("lattice" in dataset):
            raise CommandError("{} has a lattice but {} has none".format(
                *(("the model", "the dataset") if "lattice" in model
                  else ("the dataset", "the model"))))
        f_err = scalar(model.get("f_err"))
        validated = isinstance(f_err, dict) and not np.isnan(
            f_err.get("rmse", np.nan))
        md5 = _md5(dataset)
        if validation:
            if md5 != _md5(model, "md5_valid"):
                raise CommandError(
                    "'{}' is not the dataset '{}' was validated on (its md5 "
                    "fingerprint differs)".format(dataset_path, name))
            if validated and not overwrite:
                rmses.append(f_err["rmse"])
                if not quiet:
                    step.write("'{}' is validated already; pass -o to "
                               "validate again".format(name))
                continue
            idxs = np.asarray(model["idxs_valid"], dtype=int)
        else:
            excl = []
            if md5 == _md5(model, "md5_train"):
                excl.append(model["idxs_train"])
            if md5 == _md5(model, "md5_valid"):
                excl.append(model["idxs_valid"])
            excl = (np.concatenate(excl).astype(int) if excl
                    else np.array([], dtype=int))
            n_free = dataset["F"].shape[0] - len(np.unique(excl))
            if n_free <= 0:
                raise CommandError("'{}' has no geometries left that were not "
                                   "used for training or validation".format(
                                       dataset_path))
            n = n_free if not n_test else min(int(n_test), n_free)
            if "E" in dataset:
                idxs = step.trainer().draw_strat_sample(dataset["E"], n,
                                                        excl_idxs=excl)
            else:
                idxs = np.setdiff1d(np.arange(dataset["F"].shape[0]), excl)
                idxs = idxs[:n]
        e_err, f_err, mag, ang = _errors(model, dataset, idxs, step)
        rmses.append(f_err["rmse"])
        what = "Validation" if validation else "Test"
        _, _, f_unit = units(dataset)
        print_errors("{} errors (MAE/RMSE) of '{}' on {:,} points, sigma "
                     "{:g}".format(what, name, len(idxs),
                                   float(scalar(model["sig"]))),
                     e_err, f_err, dataset, write=step.write,
                     extra=None if validation else {
                         "Magnitude": (mag["mae"], mag["rmse"], f_unit),
                         "Angle": (ang["mae"], ang["rmse"], "0-1")})
        n_tested = int(scalar(model.get("n_test", 0)))
        if overwrite or (validation and not validated) or (
                not validation and n_tested < len(idxs)):
            if validation:
                model["n_test"] = 0
            else:
                model["n_test"] = len(idxs)
                model["md5_test"] = md5.encode("ascii")
            model["f_err"] = f_err
            if e_err is not None:
                model["e_err"] = e_err
            gdml_io.save_model(path, model)
        elif not validation:
            step.write("'{}' was tested on {:,} points before; its recorded "
                       "errors are kept (pass -o to replace them)".format(
                           name, n_tested))
    return rmses


def select(step, model_dir, overwrite=False, model_file=None,
           clean_up=None):
    """Copy the model with the lowest validation force RMSE to `model_file`
    and remove the candidates, as sgdml does: with `clean_up`, or by
    default when the folder has sgdml's name (``sgdml_cv_*``), and only
    what this program wrote there (see :func:`clean_up_run`).

    A `model_file` that exists already is kept when it is the selected
    model (a run resumed after this step); otherwise it is replaced only
    with `overwrite`.

    Returns
    -------
    str
        The selected model file.
    """
    model_dir, names = files_of_type(model_dir, "m")
    models = [_load(os.path.join(model_dir, n), "m") for n in names]
    rows = []
    for name, model in zip(names, models):
        if any(np.any(np.asarray(model[k]) != np.asarray(models[0][k]))
               for k in ("md5_train", "md5_valid")) or set(
                   model["idxs_train"]) != set(models[0]["idxs_train"]):
            raise CommandError("'{}' holds models trained or validated on "
                               "different data".format(model_dir))
        f_err = scalar(model.get("f_err"))
        if not isinstance(f_err, dict) or np.isnan(f_err["rmse"]):
            if len(models) > 1:
                raise CommandError("'{}' is not validated; run 'amp-gdml "
                                   "validate {} DATASET' first".format(
                                       name, model_dir))
            f_err = {"mae": np.nan, "rmse": np.nan}
        if int(scalar(model.get("n_test", 0))) > 0 and len(models) > 1:
            raise CommandError(
                "'{}' has been tested: its recorded errors are test errors, "
                "and a model must not be selected by its test error; run "
                "'amp-gdml validate -o {} DATASET' first".format(
                    name, model_dir))
        e_err = scalar(model.get("e_err")) or {}
        rows.append((float(scalar(model["sig"])), e_err.get("mae", np.nan),
                     e_err.get("rmse", np.nan), f_err["mae"], f_err["rmse"]))
    best = int(np.argmin([r[4] for r in rows])) if len(rows) > 1 else 0
    if len(rows) > 1:
        e_unit, _, f_unit = units(models[0])
        # Models trained on forces alone (--no_E) have no energy errors:
        # their column is left out rather than filled with nan.
        energies = not all(np.isnan(r[1]) for r in rows)
        if energies:
            step.write("Cross-validation errors (MAE/RMSE; energy [{}], "
                       "forces [{}])".format(e_unit, f_unit))
            step.write("  {:>6}  {:>17}  {:>17}".format("sigma", "energy",
                                                         "forces"))
        else:
            step.write("Cross-validation errors (MAE/RMSE; forces [{}]; "
                       "no energies)".format(f_unit))
            step.write("  {:>6}  {:>17}".format("sigma", "forces"))
        for i in np.argsort([r[0] for r in rows]):
            sig, emae, ermse, fmae, frmse = rows[i]
            energy = ("  {:>8.4f}/{:<8.4f}".format(emae, ermse)
                      if energies else "")
            step.write("{} {:>6g}{}  {:>8.4f}/{:<8.4f}".format(
                "*" if i == best else " ", sig, energy, fmae, frmse))
        sigs = [r[0] for r in rows]
        if rows[best][0] in (min(sigs), max(sigs)):
            step.warn("  warning: the best sigma lies on the boundary of the "
                      "grid; extending the grid beyond {:g} may help".format(
                          rows[best][0]))
    if model_file is None:
        model_file = gdml_io.model_file_name(models[best], is_extended=True)
    if os.path.exists(model_file) and not overwrite and _same_model(
            model_file, models[best]):
        step.write("Selected sigma {:g}; '{}' holds it already".format(
            rows[best][0], model_file))
    else:
        if os.path.exists(model_file) and not overwrite:
            raise CommandError("'{}' exists; pass -o to overwrite it or "
                               "--model_file to choose another name".format(
                                   model_file))
        gdml_io.save_model(model_file, models[best])
        step.write("Selected sigma {:g}; wrote '{}'".format(rows[best][0],
                                                           model_file))
    if clean_up is None:
        clean_up = os.path.basename(os.path.normpath(model_dir or ".")
                                    ).startswith("sgdml_cv_")
    if clean_up and model_dir:
        clean_up_run(step, model_dir)
    return model_file


def _same_model(path, model):
    """True when the model file `path` holds `model`'s parameters."""
    try:
        other = gdml_io.load_model(path)
    except (OSError, ValueError):
        return False
    return all(k in other and np.array_equal(np.asarray(other[k]),
                                             np.asarray(model[k]))
               for k in ("md5_train", "md5_valid", "idxs_train", "sig",
                         "alphas_F"))


def _selected_model(dataset, valid, n_train, n_valid, sigs, model_file):
    """``(path, tested)`` of the selected model of a run with these
    settings, or None when there is none yet.

    Its name is `model_file`, or sgdml's default name for this dataset.

    Raises
    ------
    CommandError
        `model_file` exists and holds a model of other settings.
    """
    if model_file is not None:
        candidates = [model_file]
    else:
        pattern = gdml_io.model_file_name({
            "dataset_name": dataset["name"], "dataset_theory":
                dataset["theory"], "idxs_train": np.arange(n_train),
            "perms": np.zeros((1, 1)), "sig": 0}, is_extended=True)
        head, _, tail = pattern.rpartition("-sym1")
        candidates = sorted(glob.glob(glob.escape(head) + "-sym*"
                                      + glob.escape(tail)))
    for path in candidates:
        if not os.path.exists(path):
            continue
        try:
            model = gdml_io.load_model(path)
            ours = (_md5(model, "md5_train") == _md5(dataset, "md5")
                    and _md5(model, "md5_valid") == _md5(valid, "md5")
                    and len(model["idxs_train"]) == n_train
                    and len(model["idxs_valid"]) == n_valid
                    and float(scalar(model["sig"])) in sigs)
        except (OSError, ValueError, KeyError):
            ours = False
        if ours:
            return path, int(scalar(model.get("n_test", 0))) > 0
        if model_file is not None:
            raise CommandError("'{}' exists and holds another model; pass -o "
                               "to overwrite it or --model_file to choose "
                               "another name".format(path))
    return None


def resume(step, model_path, dataset_path, valid_dataset_path,
           overwrite=False):
    """Continue the iterative training of an unconverged model, then
    validate it."""
    model = _load(model_path, "m")
    dataset = load_dataset(dataset_path, "training dataset")
    if _md5(dataset, "md5") != _md5(model, "md5_train"):
        raise CommandError("'{}' is not the dataset the model was trained on "
                           "(its md5 fingerprint differs)".format(
                               dataset_path))
    solver = gdml_io.to_str(model.get("solver_name", "analytic"))
    if solver == "analytic":
        raise CommandError("the model was trained with the direct solver and "
                           "is converged; there is nothing to resume")
    resid = float(scalar(model.get("solver_resid", 0.0)))
    limit = float(scalar(model.get("solver_tol", 1e-4))) * float(scalar(
        model.get("norm_y_train", np.inf)))
    if resid > limit:
        task = step.trainer().create_task_from_model(model, dataset)
        model = step.run("Training", step.trainer("cg").train, task,
                         save_progr_callback=lambda m:
                             gdml_io.save_model(model_path, m))
        gdml_io.save_model(model_path, model)
        step.write("Model parameters updated in '{}'".format(model_path))
    else:
        step.write("The model is converged already")
    return test(step, model_path, valid_dataset_path, n_test=-1,
                overwrite=True)


def run_all(step, dataset_path, n_train, n_valid, n_test=None, sigs=None,
            gdml=False, use_E=True, use_E_cstr=False, overwrite=False,
            task_dir=None, model_file=None, perms_from=None,
            valid_dataset_path=None, test_dataset_path=None, lazy=False):
    """Task creation, training, validation, selection and test in a row.

    Returns
    -------
    str
        The model file.
    """
    dataset = load_dataset(dataset_path)
    print_dataset(dataset, "Dataset '{}'".format(dataset_path),
                  write=step.write)
    valid_path = valid_dataset_path or dataset_path
    test_path = test_dataset_path or dataset_path
    for path in {valid_path, test_path} - {dataset_path}:
        other = load_dataset(path, "validation or test dataset")
        if not np.array_equal(other["z"], dataset["z"]):
            raise CommandError("the atoms of '{}' (z) differ from those of "
                               "'{}'".format(path, dataset_path))
    if not overwrite:
        valid = (dataset if valid_dataset_path is None else load_dataset(
            valid_dataset_path, "validation dataset"))
        selected = _selected_model(
            dataset, valid, n_train, n_valid,
            sorted(set(DEFAULT_SIGS if not sigs else sigs)), model_file)
        if selected is not None and selected[1]:
            step.write("\nThis run is finished already: '{}' holds its "
                       "tested model (pass -o to run it again)".format(
                           selected[0]))
            return selected[0]
    step.write("\nStep 1: cross-validation tasks")
    task_dir = create(step, dataset_path, n_train, n_valid, sigs, gdml,
                      use_E, use_E_cstr, overwrite, task_dir, perms_from,
                      valid_dataset_path)
    step.write("\nStep 2: training and validation")
    trained = train(step, task_dir, valid_path, overwrite=overwrite,
                    lazy=lazy)
    step.write("\nStep 3: selection of sigma")
    model_file = select(step, trained, overwrite=overwrite,
                        model_file=model_file, clean_up=False)
    step.write("\nStep 4: test")
    test(step, model_file, test_path, n_test=n_test, overwrite=False)
    clean_up_run(step, task_dir)
    step.write("\nDone. The model file is '{}'".format(model_file))
    return model_file

