"""The steps of the ``amp-gdml`` command line: create, train, validate,
select, test, resume, and ``all`` of them in a row.

Each step reads and writes the files sgdml's command line does, under the
same names (:mod:`amp.gdml.io.names`), so that a run can be continued by
either program and an interrupted run resumes from the files already
written: existing tasks and trained models are kept, a model is validated
once, and an iterative solve killed mid-way restarts from its last
checkpoint (``_unconv_<model>.npz``). Every file is written atomically.

Nothing is deleted that this program did not make (:mod:`amp.gdml.runs`
keeps the record of what a run wrote). ``amp-gdml all`` cleans up only
after its last step, so a run killed at any step resumes from its files,
and a rerun of a finished run reports the model it made. What the steps
share is :mod:`amp.gdml.steps`.

A user's mistake raises :class:`CommandError` (a ValueError) with one
message that names the problem and, where there is one, the fix.
"""

import os

import numpy as np

from . import io as gdml_io
from .io import energy_mode, scalar
from .predict import GDMLPredict
from .runs import (RUN_RECORD, _check_resumable, _same_model,
                   _selected_model, claim_task_dir, clean_up_run,
                   read_run_record, record_file)
from .show import print_dataset, print_errors, units
from .steps import (CommandError, Step, _load, _md5,
                    files_of_type, load_dataset)

__all__ = ["CommandError", "Step", "create", "train", "validate", "select",
           "test", "resume", "run_all", "RUN_RECORD", "read_run_record"]

#: sgdml's default sigma grid.
DEFAULT_SIGS = list(range(10, 100, 10))



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

