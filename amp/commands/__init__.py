"""``amp-train`` and ``amp-eval``: training and evaluating from the shell.

:mod:`amp.commands.train` trains a model from a data file (anything ASE
reads) and a TOML configuration (:mod:`amp.commands.config`) whose tables
hold the keywords of :class:`amp.Amp`, :class:`~amp.descriptor.gaussian.
Gaussian`, :class:`~amp.model.neuralnetwork.NeuralNetwork`,
:class:`~amp.model.LossFunction` and :class:`~amp.regression.Regressor`;
:mod:`amp.commands.evaluate` prints a model's errors on a data set and
writes its predictions to extended XYZ. :func:`main` is ``python -m amp``.

On the top floor beside :mod:`amp.cli` (the other entry points); nothing
below imports this package. It must not import the package's private
modules: the commands are built from the public API (:class:`amp.Amp`,
the descriptor, model, loss-function and regressor classes,
:mod:`amp.analysis`, :func:`amp.potential.evaluate`).
"""

import sys

from ..installation import check_installation

# An Amp 1.x amp/__init__.py (installed over this package's) does not run
# the check: the commands do.
check_installation()

__all__ = ["main"]

_USAGE = """usage: python -m amp COMMAND [ARGS...]

commands:
  train             train a model from a data file (amp-train)
  eval              evaluate a model on a data file (amp-eval)
  compress          compress .ampdb fingerprint databases (amp-compress)
  plotconvergence   plot the convergence of a training log
                    (amp-plotconvergence)
  gdml              GDML/sGDML force fields (amp-gdml)

'python -m amp COMMAND --help' describes a command."""


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m amp COMMAND ARGS...``; return the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``python -m amp`` (default ``sys.argv[1:]``).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from .. import __version__

        print("amp-mlip %s" % __version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        from .train import main as run
    elif command in ("eval", "evaluate"):
        from .evaluate import main as run
    elif command == "compress":
        from ..cli import compress_main as run
    elif command == "plotconvergence":
        from ..cli import plotconvergence_main as run
    elif command == "gdml":
        from ..gdml.cli import main as run
    else:
        print("python -m amp: unknown command %r\n\n%s" % (command, _USAGE),
              file=sys.stderr)
        return 2
    return run(rest)
