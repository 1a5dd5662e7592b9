"""``amp-train [CONFIG] --data FILE``: train a model from a data file and a
TOML configuration (:mod:`amp.commands.config`), from the shell.

Reads the frames (any file ASE reads), holds out a validation set at
random (seeded), trains ``Amp(Gaussian(...), NeuralNetwork(...))`` with
the configuration's keywords, then prints the errors on the training and
validation frames and writes ``<label>.amp``, ``<label>-log.txt`` and the
plots ``<label>-convergence.png`` and ``<label>-parity.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .config import ConfigError, apply_overrides, read_config
from .data import DataFileError, read_images, split_validation

if TYPE_CHECKING:
    from .. import Amp

__all__ = ["build_calculator", "train", "main"]


def build_calculator(config: dict[str, Any]) -> Amp:
    """The :class:`amp.Amp` calculator a configuration describes.

    Parameters
    ----------
    config : dict
        From :func:`amp.commands.config.read_config`; ``seed`` seeds the
        network's initial weights unless ``[NeuralNetwork] randomseed``
        is given.

    Returns
    -------
    amp.Amp

    Raises
    ------
    ConfigError
        A keyword value a class refuses; the message names the table.
    """
    from .. import Amp
    from ..descriptor.gaussian import Gaussian
    from ..model import LossFunction
    from ..model.neuralnetwork import NeuralNetwork
    from ..regression import Regressor

    def make(table, cls, **extra):
        try:
            return cls(**config[table], **extra)
        except (TypeError, ValueError) as error:
            raise ConfigError("[%s]: %s" % (table, error)) from None

    network = dict(config["NeuralNetwork"])
    network.setdefault("randomseed", config["seed"])
    lossfunction = make("LossFunction", LossFunction)
    regressor = make("Regressor", Regressor)
    try:
        model = NeuralNetwork(lossfunction=lossfunction, regressor=regressor,
                              **network)
    except (TypeError, ValueError) as error:
        raise ConfigError("[NeuralNetwork]: %s" % error) from None
    descriptor = make("Gaussian", Gaussian)
    settings = dict(config["Amp"])
    settings.setdefault("label", "amp")
    try:
        return Amp(descriptor=descriptor, model=model, **settings)
    except (TypeError, ValueError) as error:
        raise ConfigError("[Amp]: %s" % error) from None


def _label_file(calc, suffix):
    from ..utilities import make_filename

    return make_filename(calc.label, suffix)


def train(config: dict[str, Any], out: Callable[[str], Any] = print
          ) -> dict[str, Any]:
    """Train as ``amp-train`` does and return what it made.

    Parameters
    ----------
    config : dict
        A checked configuration (:func:`amp.commands.config.read_config`
        with overrides applied); ``data`` must be set.
    out : callable
        Writes the program's output lines (``print``).

    Returns
    -------
    dict
        ``calc`` (the trained :class:`amp.Amp`), ``converged``, ``files``
        (what was written), ``train`` and ``validation`` (the error tables
        of :func:`amp.commands.evaluate.error_table`; ``validation`` is
        empty without validation frames).

    Raises
    ------
    ConfigError, DataFileError, ValueError
        Before anything is written: a bad configuration or data file.
    """
    from ..model import TrainingConvergenceError
    from ..utilities import Logger
    from .evaluate import error_table, format_table, predict

    if not config.get("data"):
        raise ConfigError("no data file: give --data FILE or data = "
                          "\"FILE\" in the configuration")
    images = read_images(config["data"], config["index"])
    training, validation = split_validation(images, config["validation"],
                                            config["seed"])
    calc = build_calculator(config)
    out("%s: %d frames; training on %d, validating on %d (seed %s)"
        % (config["data"], len(images), len(training), len(validation),
           config["seed"]))
    converged = True
    try:
        # The held-out frames go to Amp.train, which scores them at every
        # step (the log's validation block; early stopping with
        # [train] patience).
        calc.train(images=training, validation=validation or None,
                   **config["train"])
    except TrainingConvergenceError as error:
        converged = False
        out("not converged: %s" % error)
    files = [_label_file(calc, ".amp" if converged
                         else "-untrained-parameters.amp")]
    logfile = _label_file(calc, "-log.txt")
    if logfile is not None and os.path.exists(logfile):
        files.append(logfile)
    result = {"calc": calc, "converged": converged, "files": files,
              "train": {}, "validation": {}}
    log = Logger(logfile if logfile is not None and calc.logging else None,
                 name="amp.commands.train")
    try:
        for name, frames in (("train", training),
                             ("validation", validation)):
            if not frames:
                continue
            table = result[name] = error_table(frames, predict(
                calc, frames, calc.verbose))
            text = format_table(table)
            out("\nErrors on the %d %s frames:" % (len(frames), name))
            out(text)
            log("amp-train: errors on the %d %s frames:" % (len(frames),
                                                             name))
            for line in text.splitlines():
                log("  " + line)
    finally:
        log.close()
    if config["plots"]:
        files += _plots(calc, logfile, training, validation)
    out("\nwrote " + ", ".join(files))
    return result


def _plots(calc, logfile, training, validation):
    """The convergence plot of this run and the parity plot of the
    training frames, with the validation frames in a second colour."""
    from ..analysis import (plot_convergence, plot_parity_and_error,
                            read_trainlog)

    written = []
    convergence = _label_file(calc, "-convergence.png")
    if logfile is not None and os.path.exists(logfile):
        data = read_trainlog(logfile, verbose=False, multiple=-1)
        if "convergence" in data:
            plot_convergence(data, plotfile=convergence)
            written.append(convergence)
    parity = _label_file(calc, "-parity.png")
    plot_parity_and_error(calc, training, plotfile=parity, overwrite=True,
                          plot_forces=calc.model.forcetraining,
                          validation=validation or None)
    written.append(parity)
    return written


def _parser():
    parser = argparse.ArgumentParser(
        prog="amp-train",
        description="Train an Amp potential (Gaussian descriptor, neural "
        "network) from a data file and a TOML configuration whose tables "
        "[Amp], [Gaussian], [NeuralNetwork], [LossFunction], [Regressor] "
        "and [train] hold the Python keywords. Writes <label>.amp, "
        "<label>-log.txt and the plots <label>-convergence.png and "
        "<label>-parity.png, and prints the training and validation errors.")
    parser.add_argument("config", metavar="CONFIG", nargs="?",
                        help="TOML configuration file (optional: the "
                        "defaults of every class without one)")
    parser.add_argument("-d", "--data", metavar="FILE",
                        help="training frames with energies and forces: any "
                        "file ase.io.read reads (extended XYZ, .traj, ASE "
                        ".db); overrides the configuration's data")
    parser.add_argument("--index", help="frames to read, in ASE's index "
                        "syntax (default ':', every frame)")
    parser.add_argument("--label", help="prefix of the files written "
                        "(as [Amp] label; default 'amp')")
    parser.add_argument("--validation", metavar="V",
                        help="frames held out for validation: a fraction "
                        "(default 0.1), a count, 0 for none, or a file")
    parser.add_argument("--seed", type=int, help="seed of the validation "
                        "split and of the initial weights (default 0)")
    parser.add_argument("--cores", type=int, help="worker processes on this "
                        "machine (as [Amp] cores)")
    parser.add_argument("-s", "--set", dest="overrides", action="append",
                        default=[], metavar="TABLE.KEY=VALUE",
                        help="set a keyword, the value in TOML syntax, e.g. "
                        "-s NeuralNetwork.hiddenlayers=[10,10] -s "
                        "'LossFunction.convergence={energy_rmse=0.01}'; "
                        "may be repeated")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing <label>.amp (as [train] "
                        "overwrite)")
    parser.add_argument("--no-plots", action="store_true",
                        help="write no plots")
    parser.add_argument("--progress", action="store_true", default=None,
                        help="always show the progress line on standard "
                        "error (default: only on a terminal)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="copy the training log's lines to standard "
                        "error")
    return parser


def _shortcuts(args):
    """The ``TABLE.KEY=VALUE`` overrides the named options stand for."""
    overrides = []
    if args.data is not None:
        overrides.append(("data", args.data))
    if args.index is not None:
        overrides.append(("index", args.index))
    if args.label is not None:
        overrides.append(("Amp.label", args.label))
    if args.validation is not None:
        try:
            value = float(args.validation)
            value = int(value) if value >= 1 else value
        except ValueError:
            value = args.validation
        overrides.append(("validation", value))
    if args.seed is not None:
        overrides.append(("seed", args.seed))
    if args.cores is not None:
        overrides.append(("Amp.cores", args.cores))
    if args.overwrite:
        overrides.append(("train.overwrite", True))
    if args.no_plots:
        overrides.append(("plots", False))
    if args.progress:
        overrides.append(("Amp.verbose", True))
    return overrides


def _with_shortcuts(config, shortcuts):
    merged = {key: (dict(value) if isinstance(value, dict) else value)
              for key, value in config.items()}
    for name, value in shortcuts:
        table, _, key = name.rpartition(".")
        if table:
            merged[table][key] = value
        else:
            merged[key] = value
    return merged


@contextlib.contextmanager
def stderr_logging(verbose: bool = False) -> Iterator[logging.Handler]:
    """Show the ``amp`` loggers' records on standard error for the
    duration of a command: warnings always, every line with ``verbose``.
    The handler is removed afterwards."""
    logger = logging.getLogger("amp")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(message)s" if verbose else "%(levelname)s: %(message)s"))
    handler.setLevel(logging.INFO if verbose else logging.WARNING)
    level = logger.level
    if verbose and (level == logging.NOTSET or level > logging.INFO):
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run ``amp-train``; return the exit code (0 trained and converged, 1
    not converged or the configuration or data cannot be used, 2 bad
    arguments).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default ``sys.argv[1:]``).
    """
    args = _parser().parse_args(argv)
    with stderr_logging(args.verbose):
        try:
            config = read_config(args.config)
            config = apply_overrides(
                _with_shortcuts(config, _shortcuts(args)), args.overrides)
            result = train(config)
        except (ConfigError, DataFileError, ValueError, OSError) as error:
            print("amp-train: error: %s" % error, file=sys.stderr)
            return 1
    return 0 if result["converged"] else 1
