"""``amp-gdml``: sgdml's command line for this package's GDML.

``amp-gdml all dataset.npz 200 1000 [n_test]`` reconstructs a force field
from a dataset in one go (tasks for a grid of sigmas, training, validation,
selection of the best sigma, test); the subcommands ``create``, ``train``,
``resume``, ``validate``, ``select``, ``test`` and ``show`` run the steps
one by one, with sgdml's arguments, and ``create-dataset`` makes a dataset
from a trajectory. ``python -m amp.gdml`` is the same program.

Exit status: 0 on success, 1 when a command cannot run as asked (the
message on standard error says why), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["main", "build_parser"]


def _sig_list(text):
    from .io import parse_list_or_range
    try:
        return parse_list_or_range(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            "'{}' is not a positive integer".format(text))
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``amp-gdml``.

    Returns
    -------
    argparse.ArgumentParser
    """
    try:
        from importlib.metadata import version
        __version__ = version("amp-mlip")
    except Exception:  # running from a source tree
        __version__ = "unknown"
    parser = argparse.ArgumentParser(
        prog="amp-gdml",
        description="Reconstruct (s)GDML force fields from sgdml datasets, "
                    "with sgdml's commands and files.")
    parser.add_argument("--version", action="version",
                        version="%(prog)s {} (sgdml {} file formats)".format(
                            __version__, "1.0.x"))
    sub = parser.add_subparsers(title="commands", dest="command",
                                metavar="COMMAND")
    sub.required = True
    p_all = sub.add_parser("all", help="reconstruct a force field from "
                           "beginning to end")
    p_create = sub.add_parser("create", help="create training task(s)")
    p_train = sub.add_parser("train", help="train model(s) from task(s)")
    p_resume = sub.add_parser("resume", help="resume the iterative training "
                              "of a model")
    p_valid = sub.add_parser("validate", help="validate model(s)")
    p_select = sub.add_parser("select", help="select the best model")
    p_test = sub.add_parser("test", help="test a model")
    p_show = sub.add_parser("show", help="print what a dataset, task or "
                            "model file holds")
    p_ds = sub.add_parser("create-dataset", help="make a dataset from a "
                          "trajectory (ASE .traj, extxyz, ASE database, ...)")

    for p in (p_all, p_create):
        p.add_argument("dataset", metavar="<dataset_file>",
                       help="dataset file (training, validation and test "
                            "points are drawn from it unless separate "
                            "datasets are given)")
        p.add_argument("n_train", metavar="<n_train>", type=_positive_int,
                       help="training sample size")
        p.add_argument("n_valid", metavar="<n_valid>", type=_positive_int,
                       help="validation sample size")
        p.add_argument("-v", "--validation_dataset", dest="valid_dataset",
                       metavar="<valid_dataset_file>",
                       help="separate validation dataset file")
        p.add_argument("-t", "--test_dataset", dest="test_dataset",
                       metavar="<test_dataset_file>",
                       help="separate test dataset file")
        p.add_argument("-s", "--sig", dest="sigs", nargs="+", type=_sig_list,
                       metavar="<s>",
                       help="kernel length scales: integers and/or ranges "
                            "<start>:[<step>:]<stop> (default 10:10:90)")
        group = p.add_mutually_exclusive_group()
        group.add_argument("--gdml", action="store_true",
                           help="no symmetries in the model (GDML)")
        group.add_argument("--perms_from", "--perms", dest="perms_from",
                           metavar="<file>",
                           help="take the permutations from this .npz file "
                                "(key 'perms')")
        group = p.add_mutually_exclusive_group()
        group.add_argument("--no_E", dest="use_E", action="store_false",
                           help="forces only, no energies")
        group.add_argument("--E_cstr", dest="use_E_cstr", action="store_true",
                           help="pointwise energy constraints in the kernel")
        p.add_argument("--task_dir", metavar="<task_dir>",
                       help="task folder name (default: sgdml's pattern)")
        p.add_argument("--seed", type=int, metavar="<seed>",
                       help="seed of the sampling of points (default: "
                            "random)")
    p_test.add_argument("--seed", type=int, metavar="<seed>",
                        help="seed of the sampling of test points (default: "
                             "random; the same seed tests the same points)")
    for p in (p_all, p_select):
        p.add_argument("--model_file", metavar="<model_file>",
                       help="name of the selected model file")
    for p in (p_all, p_train):
        p.add_argument("--lazy", action="store_true",
                       help="skip tasks whose training failed before")
    for p in (p_valid, p_test):
        p.add_argument("model", metavar="<model_dir_or_file>",
                       help="model file or folder of models")
    p_valid.add_argument("valid_dataset", metavar="<valid_dataset_file>",
                         help="dataset the models were validated on when "
                              "their tasks were made (its md5 must match)")
    p_test.add_argument("test_dataset", metavar="<test_dataset_file>",
                        help="dataset to test on (points used for training "
                             "or validation are left out)")
    for p in (p_all, p_test):
        p.add_argument("n_test", metavar="<n_test>", type=_positive_int,
                       nargs="?", default=None,
                       help="test sample size (default: all unused points)")
    p_resume.add_argument("model", metavar="<model_file>",
                          help="unconverged model file to continue")
    p_resume.add_argument("dataset", metavar="<train_dataset_file>",
                          help="dataset the model was trained on")
    p_train.add_argument("task", metavar="<task_dir_or_file>",
                         help="task file or folder of tasks (from 'create')")
    for p in (p_train, p_resume):
        p.add_argument("valid_dataset", metavar="<valid_dataset_file>",
                       help="dataset holding the validation points named "
                            "in the task")
    p_select.add_argument("model", metavar="<model_dir>",
                          help="folder of validated models (from 'train')")
    p_show.add_argument("file", metavar="<file>",
                        help="dataset, task or model file")
    for p in (p_all, p_train, p_resume, p_valid, p_test):
        p.add_argument("-m", "--max_memory", type=float, metavar="<GB>",
                       help="memory limit [GB] (default: all)")
        p.add_argument("-p", "--max_processes", type=_positive_int,
                       metavar="<n>", help="process limit (default: all "
                                           "cores)")
        p.add_argument("--cpu", action="store_true",
                       help="accepted for sgdml compatibility (always CPU)")
    for p in (p_all, p_train):
        group = p.add_mutually_exclusive_group()
        group.add_argument("--solver", choices=["analytic", "cg"],
                           help="force the direct (Cholesky) or iterative "
                                "solver (default: by memory)")
        group.add_argument("--cg", dest="solver", action="store_const",
                           const="cg", help="same as --solver cg")
    for p in (p_all, p_create, p_train, p_resume, p_valid, p_select, p_test,
              p_ds):
        p.add_argument("-o", "--overwrite", action="store_true",
                       help="overwrite existing files")
    p_ds.add_argument("trajectory", metavar="<trajectory>",
                      help="file with energies and forces that ase.io.read "
                           "reads")
    p_ds.add_argument("--output", "--out", dest="output", metavar="<file>",
                      help="dataset file (default: <name>.npz)")
    p_ds.add_argument("--name", help="dataset name (default: the file name)")
    p_ds.add_argument("--theory", default="unknown",
                      help="level of theory (a label)")
    p_ds.add_argument("--energy_unit", "--e_unit", default="eV",
                      help="energy unit of the file (a label; default eV)")
    p_ds.add_argument("--length_unit", "--r_unit", default="Ang",
                      help="length unit of the file (a label; default Ang)")
    return parser


def _progress(label):
    """A ``callback(current, total, text)`` drawing one terminal line
    (whose clock moves during a long step that reports nothing)."""
    from ..progress import Progress
    line = Progress(label=label, heartbeat=True)

    def callback(current, total=1, text="", *args, **kwargs):
        line.phase(text or label, None if not total else
                   min(max(current / float(total), 0.0), 1.0))
    callback.close = line.close
    return callback


def _warn(line):
    """Warnings go to standard error (after the output printed so far)."""
    sys.stdout.flush()
    print(line.strip(), file=sys.stderr)


def _flatten(sigs):
    return None if not sigs else sorted({s for group in sigs for s in group})


def create_dataset(step: Any, path: str, output: str | None = None,
                   name: str | None = None, theory: str = "unknown",
                   energy_unit: str = "eV", length_unit: str = "Ang",
                   overwrite: bool = False) -> str:
    """Write an sgdml dataset made from a trajectory file (create-dataset).

    Parameters
    ----------
    step : amp.gdml.workflow.Step
        Output settings.
    path : str
        The trajectory.
    output : str, optional
        Dataset file; default ``<name>.npz``.
    name, theory, energy_unit, length_unit : str, optional
        See :func:`amp.gdml.io.dataset_from_traj`.
    overwrite : bool, optional
        Replace an existing `output`.

    Returns
    -------
    str
        The dataset file.
    """
    from . import io, show
    from .workflow import CommandError
    try:
        dataset = io.dataset_from_traj(
            path, name=name, theory=theory, energy_unit=energy_unit,
            length_unit=length_unit)
    except FileNotFoundError:
        raise CommandError("'{}' does not exist".format(path)) from None
    except ValueError as err:
        raise CommandError(str(err)) from None
    if output is None:
        output = io.to_str(dataset["name"]) + ".npz"
    if os.path.exists(output) and not overwrite:
        raise CommandError("'{}' exists; pass -o to overwrite it".format(
            output))
    io.save_dataset(output, dataset)
    show.print_dataset(io.load_dataset(output),
                       "Dataset '{}'".format(output), write=step.write)
    return output


def _run(args):
    import numpy as np
    from . import workflow
    from .show import print_file

    step = workflow.Step(
        write=print, warn=_warn, progress=_progress,
        max_memory=getattr(args, "max_memory", None),
        max_processes=getattr(args, "max_processes", None),
        solver=getattr(args, "solver", None))
    if getattr(args, "seed", None) is not None:
        np.random.seed(args.seed)
    model_file = getattr(args, "model_file", None)
    if model_file is not None and not model_file.endswith(".npz"):
        model_file += ".npz"
    cmd = args.command
    if cmd == "all":
        workflow.run_all(
            step, args.dataset, args.n_train, args.n_valid, args.n_test,
            sigs=_flatten(args.sigs), gdml=args.gdml, use_E=args.use_E,
            use_E_cstr=args.use_E_cstr, overwrite=args.overwrite,
            task_dir=args.task_dir, model_file=model_file,
            perms_from=args.perms_from, valid_dataset_path=args.valid_dataset,
            test_dataset_path=args.test_dataset, lazy=args.lazy)
    elif cmd == "create":
        task_dir = workflow.create(
            step, args.dataset, args.n_train, args.n_valid,
            _flatten(args.sigs), args.gdml, args.use_E, args.use_E_cstr,
            args.overwrite, args.task_dir, args.perms_from,
            args.valid_dataset)
        print("Next: amp-gdml train {} <valid_dataset_file>".format(task_dir))
    elif cmd == "train":
        out = workflow.train(step, args.task, args.valid_dataset,
                             overwrite=args.overwrite, lazy=args.lazy)
        print("Next: amp-gdml {} {}".format(
            "test" if os.path.isfile(out) else "select", out))
    elif cmd == "resume":
        workflow.resume(step, args.model, args.dataset, args.valid_dataset,
                        overwrite=args.overwrite)
    elif cmd == "validate":
        workflow.validate(step, args.model, args.valid_dataset,
                          overwrite=args.overwrite)
    elif cmd == "select":
        out = workflow.select(step, args.model, overwrite=args.overwrite,
                              model_file=model_file)
        print("Next: amp-gdml test {} <test_dataset_file> [<n_test>]".format(
            out))
    elif cmd == "test":
        workflow.test(step, args.model, args.test_dataset, args.n_test,
                      overwrite=args.overwrite)
    elif cmd == "show":
        try:
            print_file(args.file)
        except FileNotFoundError:
            raise workflow.CommandError("'{}' does not exist".format(
                args.file)) from None
    elif cmd == "create-dataset":
        create_dataset(
            step, args.trajectory, output=args.output, name=args.name,
            theory=args.theory, energy_unit=args.energy_unit,
            length_unit=args.length_unit, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    """Run ``amp-gdml`` with `argv` (default: the command line).

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the program name.

    Returns
    -------
    int
        Exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except (ValueError, OSError) as err:
        # CommandError, a bad file (ValueError, UnsafeFileError) or a
        # file-system error: one line, no traceback.
        sys.stdout.flush()
        print("amp-gdml {}: error: {}".format(args.command, err),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\namp-gdml: interrupted; run the same command again to "
              "resume from the files written so far", file=sys.stderr)
        return 130
    return 0
