"""Run folders of ``amp-gdml``: which files a run made, so that nothing
else is ever deleted, and whether a run can be resumed or is finished.

A task folder this program creates or adopts (only an empty one) holds a
record, :data:`RUN_RECORD`, listing the files the run wrote; the clean-up
after the selection removes exactly those, and the folder only if the run
made it. A folder that is not empty and has no record is refused, named.
A run whose selected model exists is resumed from it, or reported as
finished once that model was tested.
"""

import glob
import json
import os

import numpy as np

from ..store.files import atomic_file, read_file
from . import io as gdml_io
from .io import scalar
from .steps import CommandError, _md5

__all__ = ["RUN_RECORD", "read_run_record", "record_file", "claim_task_dir",
           "clean_up_run"]

#: The record, in a task folder, of a run this program owns.
RUN_RECORD = ".amp-gdml-run"
#: A record lists a few hundred names at most; a larger one is not ours.
_RECORD_MAX_BYTES = 2 ** 20


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
