"""A restricted reader for the Python-literal text of Amp 1.x files.

Amp 1.x wrote ``.amp`` model files as Python source
(``dict(descriptor="dict(...)", model="dict(...)")`` with ``OrderedDict``,
``array`` and ``matrix`` calls) and read them back with ``eval``, which runs
whatever a file contains. This module evaluates the same text from its
syntax tree, accepting only literals and a fixed set of container
constructors; anything else is refused before anything runs.
"""

import ast
import math
from collections import OrderedDict

import numpy as np


class UnsafeLiteralError(ValueError):
    """The text contains something other than plain data."""


def _array(value, dtype=None):
    return np.array(value, dtype=dtype)


_CALLS = {
    "dict": dict, "OrderedDict": OrderedDict, "list": list, "tuple": tuple,
    "array": _array, "np.array": _array, "numpy.array": _array,
    "matrix": _array, "np.matrix": _array, "numpy.matrix": _array,
}
_NAMES = {"True": True, "False": False, "None": None, "nan": math.nan,
          "inf": math.inf, "float": float, "int": int}


def _dotted(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else base + "." + node.attr
    return None


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float, str, bool, type(None))):
            return node.value
        raise UnsafeLiteralError("constant of type %s is not allowed"
                                 % type(node.value).__name__)
    if isinstance(node, ast.List):
        return [_evaluate(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise UnsafeLiteralError("'**' in a dict literal is not allowed")
        return {_evaluate(k): _evaluate(v)
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub,
                                                              ast.UAdd)):
        value = _evaluate(node.operand)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UnsafeLiteralError("a sign applies only to numbers")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name not in _CALLS:
            raise UnsafeLiteralError("call of %r is not allowed"
                                     % (name or ast.dump(node.func)))
        args = [_evaluate(a) for a in node.args]
        kwargs = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise UnsafeLiteralError("'**' arguments are not allowed")
            kwargs[keyword.arg] = _evaluate(keyword.value)
        if name in ("list", "tuple", "dict", "OrderedDict") and len(args) > 1:
            raise UnsafeLiteralError("%s() takes at most one argument" % name)
        try:
            return _CALLS[name](*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise UnsafeLiteralError("bad arguments to %s(): %s"
                                     % (name, error)) from error
    raise UnsafeLiteralError("%s is not allowed in a data file"
                             % type(node).__name__)


def literal_eval(text):
    """Evaluate Amp 1.x literal text without running code.

    Parameters
    ----------
    text : str

    Returns
    -------
    object
        Dicts, lists, tuples, numbers, strings and numpy arrays.

    Raises
    ------
    UnsafeLiteralError
        The text is not plain data (a function call, an attribute, an
        operator, ...) or is not valid syntax.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise UnsafeLiteralError("not a Python literal: %s" % error) from error
    return _evaluate(tree)
