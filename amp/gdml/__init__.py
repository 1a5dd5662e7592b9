"""GDML and sGDML kernel force fields with the sgdml 1.0.x API and files.

``from amp.gdml.train import GDMLTrain`` trains models,
``from amp.gdml.predict import GDMLPredict`` evaluates them,
:mod:`amp.gdml.io` reads and writes sgdml datasets, tasks and models without
general unpickling, and :class:`amp.gdml.calculator.GDMLCalculator` runs
them in ASE (also as ``SGDMLCalculator``), and ``amp-gdml`` (or
``python -m amp.gdml``) is the command line. See ``docs/gdml.md``.

GDML is a subsystem of its own beside the Amp stack: it may use
:mod:`amp.store` (safe files), :mod:`amp.progress` and :mod:`amp.utilities`,
and must not import the descriptor, the models, the calculator or
:mod:`amp.parallel` (its own worker processes are :mod:`amp.gdml.workers`).
"""

__all__ = ["GDMLTrain", "GDMLPredict", "GDMLCalculator", "SGDMLCalculator"]


def __getattr__(name):
    # Lazy imports keep ``import amp.gdml.io`` light.
    if name == "GDMLTrain":
        from .train import GDMLTrain
        return GDMLTrain
    if name == "GDMLPredict":
        from .predict import GDMLPredict
        return GDMLPredict
    if name in ("GDMLCalculator", "SGDMLCalculator"):
        from . import calculator
        return getattr(calculator, name)
    raise AttributeError(name)
