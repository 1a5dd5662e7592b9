"""Amp 1.x's Python-literal model text: a writer, and ``string2dict``.

Amp 1.x saved a calculator as ASE ``Parameters`` text::

    dict(descriptor="dict(Gs={...},\\n     cutoff={...}, ...)\\n",
         model="dict(activation='tanh',\\n     fprange={...}, ...)\\n")

each inner text listing the keyword arguments of the descriptor's and the
model's constructor (keys sorted; weights and scalings as ``OrderedDict``,
layer keys as integers, arrays as nested lists), and read it back with
``eval``. :func:`dumps` writes that layout, so Amp 1.x loads the file;
this library reads it back through the restricted reader
(:mod:`amp.store.literal`), as it reads any Amp 1.x file.
:func:`string2dict` is Amp's name for reading such text, without ``eval``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .literal import UnsafeLiteralError, literal_eval

def _literal(value):
    """``repr(value)`` as Python wrote it when Amp 1.x was current.

    Python 3.12 changed ``repr(OrderedDict)`` to ``OrderedDict({...})``;
    Amp 1.x files have ``OrderedDict([(key, value), ...])``, which this
    writes on every Python.
    """
    if isinstance(value, OrderedDict):
        return "OrderedDict([%s])" % ", ".join(
            "(%s, %s)" % (_literal(k), _literal(v)) for k, v in value.items())
    if isinstance(value, dict):
        return "{%s}" % ", ".join("%s: %s" % (_literal(k), _literal(v))
                                  for k, v in value.items())
    if isinstance(value, list):
        return "[%s]" % ", ".join(_literal(v) for v in value)
    if isinstance(value, tuple):
        items = [_literal(v) for v in value]
        return "(%s)" % (items[0] + "," if len(items) == 1
                         else ", ".join(items))
    return repr(value)


def _parameters_text(values):
    """ASE ``Parameters.tostring`` of ``values`` (keys sorted)."""
    return "dict(" + ",\n     ".join(
        "%s=%s" % (key, _literal(values[key])) for key in sorted(values)) \
        + ")\n"


def _hidden(layers):
    if isinstance(layers, dict):
        return {e: tuple(int(n) for n in h) for e, h in layers.items()}
    return tuple(int(n) for n in layers)


def dumps(descriptor: dict[str, Any], model: dict[str, Any]) -> str:
    """The Amp 1.x text of a model file.

    Parameters
    ----------
    descriptor : dict
        ``Gaussian.todict()`` (with its symmetry functions set), or the
        ``todict()`` of another descriptor whose parameters are Amp 1.x's
        (``Zernike``, ``Bispectrum``: written as they are).
    model : dict
        ``NeuralNetwork.todict()`` of a trained network.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        The descriptor or model is not one Amp 1.x can rebuild (no
        symmetry functions or weights yet, or not a neural network).
    """
    importname = model.get("importname", ".model.neuralnetwork.NeuralNetwork")
    if importname != ".model.neuralnetwork.NeuralNetwork":
        raise ValueError("format='amp1' writes neural-network models only; "
                         "this model (%s) is saved in this library's JSON "
                         "format" % importname)
    if descriptor.get("Gs") is None or not isinstance(descriptor["Gs"],
                                                      dict):
        raise ValueError("the descriptor has no per-element symmetry "
                         "functions yet (train or fingerprint first)")
    if not model.get("weights") or not model.get("scalings"):
        raise ValueError("the model has no weights and scalings yet; Amp "
                         "1.x needs a trained model")
    gaussian = ".descriptor.gaussian.Gaussian"
    if descriptor.get("importname", gaussian) != gaussian:
        descriptor_values = dict(descriptor)
    else:
        descriptor_values = {
            "Gs": {e: [dict(g) for g in G]
                   for e, G in descriptor["Gs"].items()},
            "cutoff": descriptor["cutoff"],
            "elements": list(descriptor.get("elements") or
                             sorted(descriptor["Gs"])),
            "importname": gaussian,
            "mode": descriptor.get("mode", "atom-centered"),
            "version": descriptor.get("version", "2015.12")}
    model_values = {
        "activation": model["activation"],
        "fprange": {e: [[float(lo), float(hi)] for lo, hi in r]
                    for e, r in model["fprange"].items()},
        "hiddenlayers": _hidden(model["hiddenlayers"]),
        "importname": ".model.neuralnetwork.NeuralNetwork",
        "mode": model.get("mode") or "atom-centered",
        "scalings": OrderedDict(
            (e, OrderedDict([("intercept", float(s["intercept"])),
                             ("slope", float(s["slope"]))]))
            for e, s in model["scalings"].items()),
        "version": model.get("version") or "2015.12",
        "weights": OrderedDict(
            (e, OrderedDict((int(k), [[float(x) for x in row] for row in w])
                            for k, w in sorted(layers.items(),
                                               key=lambda kw: int(kw[0]))))
            for e, layers in model["weights"].items())}
    return _parameters_text({"descriptor": _parameters_text(descriptor_values),
                             "model": _parameters_text(model_values)})


def string2dict(text: str) -> dict[str, Any]:
    """Read the Python-literal dict text that Amp 1.x writes (Amp's name).

    Accepts ``dict(...)``, ``{...}``, ``OrderedDict([...])``,
    ``array(...)`` and ``matrix(...)`` with literal contents, as Amp's
    ``eval`` did for its own files, but evaluates nothing else.

    Parameters
    ----------
    text : str

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        The text holds code (a call of anything else, an attribute, an
        operator, ...) -- nothing is run -- or is not a dict.
    """
    try:
        value = literal_eval(text)
    except UnsafeLiteralError as error:
        raise ValueError("string2dict refuses this text: %s (only Python "
                         "literals and dict/OrderedDict/array/matrix are "
                         "read; nothing was run)" % error) from error
    if not isinstance(value, dict):
        raise ValueError("string2dict: the text is a %s, not a dict"
                         % type(value).__name__)
    return value
