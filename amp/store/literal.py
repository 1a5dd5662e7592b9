"""A restricted reader for the Python-literal text of Amp 1.x files.

Amp 1.x wrote ``.amp`` model files as Python source
(``dict(descriptor="dict(...)", model="dict(...)")`` with ``OrderedDict``,
``array`` and ``matrix`` calls) and read them back with ``eval``, which runs
whatever a file contains. This module evaluates the same text from its
syntax tree, accepting only literals and a fixed set of container
constructors; anything else is refused before anything runs. Nesting
depth, string length and the size of every array (element count times the
item size of its dtype) are checked against :mod:`amp.store.limits` before
anything is built, and only plain number, bool and string dtypes are
accepted: a file cannot make the reader allocate much more than its own
size.
"""

import ast
import math
from collections import OrderedDict

import numpy as np

from . import limits


class UnsafeLiteralError(ValueError):
    """The text contains something other than plain data, or asks for more
    than :mod:`amp.store.limits` allows."""


def _dtype(dtype):
    """The numpy dtype a file asks for, if it is a plain scalar one."""
    if dtype is None or dtype in (float, int, bool, complex):
        return np.dtype(dtype)
    if not isinstance(dtype, str) or len(dtype) > 32:
        raise UnsafeLiteralError("dtype %.80r is not allowed (only plain "
                                 "number, bool and string dtypes)" % (dtype,))
    try:
        parsed = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError) as error:
        raise UnsafeLiteralError("dtype %r is not a dtype (%s)"
                                 % (dtype, error)) from None
    if parsed.kind not in "biufcUS" or parsed.subdtype is not None or \
            parsed.names is not None:
        raise UnsafeLiteralError("dtype %r is not allowed (only plain "
                                 "number, bool and string dtypes)" % (dtype,))
    return parsed


def _element_count(value):
    """Leaves of nested lists and tuples (what numpy would make elements),
    and the length of the longest string among them."""
    count, longest, stack = 0, 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, np.ndarray):
            count += item.size
            longest = max(longest, item.itemsize)
        else:
            count += 1
            if isinstance(item, str):
                longest = max(longest, len(item))
    return count, longest


def _array(value, dtype=None):
    parsed = _dtype(dtype)
    count, longest = _element_count(value)
    # A string element takes 4 bytes per character in a "U" array.
    size = count * max(parsed.itemsize, 4 * longest, 1)
    if size > limits.MAX_ARRAY_BYTES:
        raise UnsafeLiteralError(
            "an array of %d bytes (dtype %s) is more than the cap of %d "
            "(amp.store.limits.MAX_ARRAY_BYTES)"
            % (size, dtype if dtype is not None else "float64",
               limits.MAX_ARRAY_BYTES))
    array = np.array(value, dtype=None if dtype is None else parsed)
    if array.dtype.hasobject or array.dtype.kind not in "biufcUS":
        raise UnsafeLiteralError("array() of something other than numbers "
                                 "or strings")
    if array.nbytes > limits.MAX_ARRAY_BYTES:  # e.g. long strings, no dtype
        raise UnsafeLiteralError(
            "an array of %d bytes is more than the cap of %d "
            "(amp.store.limits.MAX_ARRAY_BYTES)"
            % (array.nbytes, limits.MAX_ARRAY_BYTES))
    return array


_CALLS = {
    "dict": dict, "OrderedDict": OrderedDict, "list": list, "tuple": tuple,
    "array": _array, "np.array": _array, "numpy.array": _array,
    "matrix": _array, "np.matrix": _array, "numpy.matrix": _array,
}
_NAMES = {"True": True, "False": False, "None": None, "nan": math.nan,
          "inf": math.inf, "float": float, "int": int}


def _dotted(node):
    """``a.b.c`` of a name or attribute chain, or None (no recursion: a
    chain may be as long as the file)."""
    parts = []
    while isinstance(node, ast.Attribute) and len(parts) < 3:
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id] + parts[::-1])


def _evaluate(node, depth=0):
    if depth > limits.MAX_NESTING_DEPTH:
        raise UnsafeLiteralError(
            "nesting deeper than %d levels (amp.store.limits."
            "MAX_NESTING_DEPTH)" % limits.MAX_NESTING_DEPTH)
    depth += 1
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, depth)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str) and \
                len(node.value) > limits.MAX_STRING_CHARS:
            raise UnsafeLiteralError(
                "a string of %d characters is longer than the cap of %d "
                "(amp.store.limits.MAX_STRING_CHARS)"
                % (len(node.value), limits.MAX_STRING_CHARS))
        if isinstance(node.value, (int, float, str, bool, type(None))):
            return node.value
        raise UnsafeLiteralError("constant of type %s is not allowed"
                                 % type(node.value).__name__)
    if isinstance(node, ast.List):
        return [_evaluate(e, depth) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e, depth) for e in node.elts)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise UnsafeLiteralError("'**' in a dict literal is not allowed")
        return {_evaluate(k, depth): _evaluate(v, depth)
                for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub,
                                                              ast.UAdd)):
        value = _evaluate(node.operand, depth)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UnsafeLiteralError("a sign applies only to numbers")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Call):
        name = _dotted(node.func)
        if name not in _CALLS:
            raise UnsafeLiteralError(
                "call of %s is not allowed"
                % (repr(name) if name else "an expression (%s)"
                   % type(node.func).__name__))
        args = [_evaluate(a, depth) for a in node.args]
        kwargs = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                raise UnsafeLiteralError("'**' arguments are not allowed")
            kwargs[keyword.arg] = _evaluate(keyword.value, depth)
        if name in ("list", "tuple", "dict", "OrderedDict") and (
                len(args) > 1 or args and not isinstance(
                    args[0], (list, tuple, dict, OrderedDict))):
            # Not list("..."): one pointer per character would let a file
            # make the reader allocate eight times its own size.
            raise UnsafeLiteralError("%s() takes at most one list, tuple or "
                                     "dict" % name)
        try:
            return _CALLS[name](*args, **kwargs)
        except UnsafeLiteralError:
            raise
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
        operator, ...), is not valid syntax, or is above a cap of
        :mod:`amp.store.limits` (nesting, string length, array size).
    """
    if len(text) > limits.MAX_STRING_CHARS:
        raise UnsafeLiteralError(
            "a text of %d characters is longer than the cap of %d "
            "(amp.store.limits.MAX_STRING_CHARS)"
            % (len(text), limits.MAX_STRING_CHARS))
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as error:  # ValueError: NUL bytes
        raise UnsafeLiteralError("not a Python literal: %s" % error) from None
    except (RecursionError, MemoryError):
        # Python's own parser gives up on very deep nesting this way.
        raise UnsafeLiteralError(
            "nesting deeper than Python's parser accepts (the cap is %d "
            "levels, amp.store.limits.MAX_NESTING_DEPTH)"
            % limits.MAX_NESTING_DEPTH) from None
    try:
        return _evaluate(tree)
    except UnsafeLiteralError:
        raise
    except (TypeError, ValueError, OverflowError) as error:
        # e.g. an unhashable dict key, or int(<huge string>)
        raise UnsafeLiteralError("not plain data: %s: %s"
                                 % (type(error).__name__, error)) from None
    except (RecursionError, MemoryError) as error:
        raise UnsafeLiteralError("cannot be read: %s"
                                 % type(error).__name__) from None
