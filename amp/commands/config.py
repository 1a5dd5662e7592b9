"""The training configuration of ``amp-train``: a TOML file whose tables are
the Python API written down.

Each table is named after a class (or method) and holds its keywords, with
the Python names and meanings::

    data = "training.xyz"          # amp-train's own keys, at the top
    validation = 0.1
    seed = 0

    [Amp]                          # amp.Amp(...)
    label = "calc"
    cores = 2

    [Gaussian]                     # amp.descriptor.gaussian.Gaussian(...)
    cutoff = 6.5

    [NeuralNetwork]                # amp.model.neuralnetwork.NeuralNetwork(...)
    hiddenlayers = [5, 5]

    [LossFunction]                 # amp.model.LossFunction(...)
    convergence = {energy_rmse = 0.02, force_rmse = 0.3}

    [Regressor]                    # amp.regression.Regressor(...)
    optimizer = "BFGS"

    [train]                        # Amp.train(...)
    overwrite = true

TOML was chosen over YAML because Python reads it with the standard
library (``tomllib``; the ``tomli`` backport on Python 3.10), its values
are typed (numbers stay numbers, ``"no"`` stays a string), and reading it
runs no code and builds no objects: the file is data, as every file this
package reads from others. A key that is not a keyword of its table is an
error naming the keywords there are.
"""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Iterable

from ..store.files import read_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ConfigError", "TOP_LEVEL", "TABLES", "read_config",
           "parse_override", "apply_overrides", "table_keywords"]

#: A configuration file is a few kilobytes; refuse anything huge.
MAX_CONFIG_BYTES = 2 ** 20

#: amp-train's own keys (not keywords of a class), with their defaults.
TOP_LEVEL = {"data": None, "index": ":", "validation": 0.1, "seed": 0,
             "plots": True}

#: The tables: name -> keywords that may not be set from a file (objects
#: made by amp-train itself).
TABLES = {"Amp": ("self", "descriptor", "model", "atoms"),
          "Gaussian": ("self", "dblabel"),
          "NeuralNetwork": ("self", "regressor", "lossfunction", "weights",
                            "scalings", "fprange"),
          "LossFunction": ("self", "parallel"),
          "Regressor": ("self",),
          # validation is amp-train's own key (the held-out frames it
          # draws are passed on to Amp.train)
          "train": ("self", "images", "validation", "validation_seed")}


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message
    names the file, table and key, and what is allowed."""


def _target(table):
    """The callable whose keywords a table holds."""
    if table == "Amp":
        from .. import Amp
        return Amp.__init__
    if table == "train":
        from .. import Amp
        return Amp.train
    if table == "Gaussian":
        from ..descriptor.gaussian import Gaussian
        return Gaussian.__init__
    if table == "NeuralNetwork":
        from ..model.neuralnetwork import NeuralNetwork
        return NeuralNetwork.__init__
    if table == "LossFunction":
        from ..model import LossFunction
        return LossFunction.__init__
    from ..regression import Regressor
    return Regressor.__init__


def table_keywords(table: str) -> list[str]:
    """The keywords a table of the configuration may hold.

    Parameters
    ----------
    table : str
        One of :data:`TABLES`.

    Returns
    -------
    list of str
        The keyword names of the class (or ``Amp.train``), in order.
    """
    parameters = inspect.signature(_target(table)).parameters
    return [name for name, p in parameters.items()
            if name not in TABLES[table]
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def check_config(config: dict[str, Any],
                 where: str = "the configuration") -> dict[str, Any]:
    """Raise :class:`ConfigError` for an unknown table or key.

    Parameters
    ----------
    config : dict
        A parsed configuration.
    where : str
        How to name its source in messages.

    Returns
    -------
    dict
        ``config`` with every table present (empty when not given) and
        the top-level defaults filled in.
    """
    out: dict[str, Any] = dict(TOP_LEVEL)
    for name in TABLES:
        out[name] = {}
    for key, value in config.items():
        if key in TABLES:
            if not isinstance(value, dict):
                raise ConfigError("%s: [%s] must be a table of keywords, got "
                                  "%r" % (where, key, value))
            known = table_keywords(key)
            for keyword in value:
                if keyword not in known:
                    raise ConfigError(
                        "%s: %r is not a keyword of [%s]; its keywords are "
                        "%s" % (where, keyword, key, ", ".join(known)))
            out[key] = dict(value)
        elif key in TOP_LEVEL:
            out[key] = value
        else:
            raise ConfigError(
                "%s: unknown key %r; the top level holds %s, and the tables "
                "are %s" % (where, key, ", ".join(TOP_LEVEL),
                            ", ".join("[%s]" % t for t in TABLES)))
    return out


def read_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read and check a TOML configuration file (None: the defaults).

    Parameters
    ----------
    path : str or None

    Returns
    -------
    dict
        Top-level keys and one dict per table (see :func:`check_config`).

    Raises
    ------
    ConfigError
        The file cannot be read, is not TOML, or holds an unknown key;
        the message names the file.
    """
    if path is None:
        return check_config({})
    path = os.fspath(path)
    try:
        text = read_file(path, MAX_CONFIG_BYTES, "configuration file")
    except FileNotFoundError:
        raise ConfigError("configuration file %s does not exist"
                          % path) from None
    except OSError as error:
        raise ConfigError("cannot read the configuration file %s: %s"
                          % (path, error)) from None
    try:
        config = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError("%s is not a text (UTF-8) file: %s"
                          % (path, error)) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("%s is not valid TOML: %s" % (path, error)) \
            from None
    return check_config(config, path)


def parse_override(text: str) -> tuple[str | None, str, Any]:
    """Split a ``TABLE.KEY=VALUE`` (or top-level ``KEY=VALUE``) override.

    ``VALUE`` is read as a TOML value (``[10, 10]``, ``0.02``, ``true``,
    ``{energy_rmse = 0.01}``, ``"x"``); text that is not one is taken as
    a string, so ``Amp.label=run1`` needs no quotes.

    Returns
    -------
    tuple
        ``(table or None, key, value)``.

    Raises
    ------
    ConfigError
        No ``=`` or an unknown table.
    """
    name, equals, raw = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ConfigError("override %r is not TABLE.KEY=VALUE (e.g. "
                          "NeuralNetwork.hiddenlayers=[10,10])" % text)
    table, dot, key = name.rpartition(".")
    if not dot:
        table = None
    elif table not in TABLES:
        raise ConfigError("override %r: unknown table %r; the tables are %s"
                          % (text, table, ", ".join(TABLES)))
    try:
        value = tomllib.loads("value = " + raw.strip())["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return table, key.strip(), value


def apply_overrides(config: dict[str, Any],
                    overrides: Iterable[str]) -> dict[str, Any]:
    """``config`` with the ``TABLE.KEY=VALUE`` overrides applied (checked
    as the file's keys are).

    Parameters
    ----------
    config : dict
        From :func:`read_config`.
    overrides : iterable of str

    Returns
    -------
    dict
        A new configuration.
    """
    merged = {key: (dict(value) if isinstance(value, dict) else value)
              for key, value in config.items()}
    for text in overrides:
        table, key, value = parse_override(text)
        if table is None:
            merged[key] = value
        else:
            merged[table][key] = value
    return check_config(merged, "the command line")
