"""Read Amp 1.x's ``calc_text`` (Python that builds a calculator) safely.

Amp 1.x's ``BootStrap.train`` pasted ``calc_text`` into a script and ran
it. Here the text is parsed, never run: :func:`read_calc_text` accepts only

* ``from amp... import Name`` of this library's classes
  (:data:`amp.importing.LIBRARY_NAMES`: ``Amp``, ``Gaussian``,
  ``NeuralNetwork``, ``LossFunction``, ``Regressor``, ``Cosine``,
  ``Polynomial``, ``make_symmetry_functions``);
* ``name = <expression>``, where an expression is a literal (number,
  string, True/False/None, list, tuple, dict), a name assigned before, or a
  call of an imported class with such arguments;
* ``calc.model.lossfunction.parameters['key'] = <literal>`` (and
  ``...parameters['convergence']['criterion'] = <literal>``), the one
  attribute assignment Amp's own template uses;
* a docstring.

Anything else (another import, an attribute or function call, an
operator, a loop, ``calc.train(...)``) raises :class:`CalcTextError` naming
the line, and the whole text is checked before any constructor is called,
so a refused text runs nothing.
"""

import ast

from ..importing import LIBRARY_NAMES, library_name

_LOSS_KEYS = ("energy_coefficient", "force_coefficient", "convergence",
              "overfit", "weight_duplicates", "maxiter")
_CRITERIA = ("energy_rmse", "energy_maxresid", "force_rmse",
             "force_maxresid")
_CONSTANTS = {"True": True, "False": False, "None": None}


class CalcTextError(ValueError):
    """``calc_text`` contains something other than the allowed forms."""


class _Built:
    """Stands for an object during the checking pass (nothing is built)."""

    def __init__(self, name):
        self.name = name


def _fail(node, message):
    line = getattr(node, "lineno", None)
    where = "line %d: " % line if line else ""
    raise CalcTextError("calc_text %s%s (calc_text may only import and call "
                        "amp's classes with literal arguments; nothing was "
                        "run)" % (where, message))


class _Reader:
    def __init__(self, build):
        self.build = build          # False: check only, construct nothing
        self.classes = {}           # bound name -> library name
        self.values = {}            # bound name -> value (or _Built)
        self.loss_settings = []     # (target name, keys, value)

    # Statements ----------------------------------------------------------

    def statement(self, node):
        if isinstance(node, ast.ImportFrom):
            return self.import_from(node)
        if isinstance(node, ast.Import):
            _fail(node, "'import %s' is not allowed; use 'from amp... import "
                  "Name'" % ", ".join(a.name for a in node.names))
        if isinstance(node, ast.Assign):
            if len(node.targets) != 1:
                _fail(node, "chained assignment is not allowed")
            target = node.targets[0]
            if isinstance(target, ast.Name):
                if target.id in self.classes or target.id in _CONSTANTS:
                    _fail(node, "%r cannot be reassigned" % target.id)
                self.values[target.id] = self.expression(node.value)
                return
            return self.loss_setting(target, node.value)
        if isinstance(node, ast.Expr) and \
                isinstance(node.value, ast.Constant) and \
                isinstance(node.value.value, str):
            return  # a docstring or comment string
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            _fail(node, "a bare call is not allowed (BootStrap does the "
                  "training; calc_text only builds 'calc')")
        _fail(node, "%s statements are not allowed" % type(node).__name__)

    def import_from(self, node):
        for alias in node.names:
            name = alias.name
            module = LIBRARY_NAMES.get(name, "").partition(":")[0]
            if not module or node.level or node.module != module:
                _fail(node, "'from %s import %s' is not one of amp's classes"
                      % (node.module, name))
            bound = alias.asname or name
            self.classes[bound] = name
            self.values.pop(bound, None)

    def loss_setting(self, target, value_node):
        keys = []
        node = target
        while isinstance(node, ast.Subscript):
            key = node.slice
            if not (isinstance(key, ast.Constant) and isinstance(key.value,
                                                                 str)):
                _fail(target, "only string keys can be assigned")
            keys.insert(0, key.value)
            node = node.value
        if isinstance(node, ast.Attribute) and node.attr == "parameters" \
                and not keys:
            _fail(target, "only items of parameters can be assigned")
        if isinstance(node, ast.Attribute) and node.attr != "parameters" \
                and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "parameters":
            keys.insert(0, node.attr)  # parameters.key = value
            node = node.value
        path = []
        while isinstance(node, ast.Attribute):
            path.insert(0, node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or \
                path != ["model", "lossfunction", "parameters"]:
            _fail(target, "only NAME.model.lossfunction.parameters[key] can "
                  "be assigned")
        owner = self.values.get(node.id)
        if not (isinstance(owner, _Built) and owner.name == "Amp") and \
                type(owner).__name__ != "Amp":
            _fail(target, "%r is not an Amp calculator" % node.id)
        if keys[0] not in _LOSS_KEYS or len(keys) > 2 or (
                len(keys) == 2 and (keys[0] != "convergence"
                                    or keys[1] not in _CRITERIA)):
            _fail(target, "unknown loss-function parameter %s (known: %s; "
                  "convergence criteria: %s)"
                  % ("".join("[%r]" % k for k in keys), ", ".join(_LOSS_KEYS),
                     ", ".join(_CRITERIA)))
        value = self.literal(value_node)
        self.loss_settings.append((node.id, keys, value))
        if self.build:
            parameters = self.values[node.id].model.lossfunction.parameters
            if keys == ["convergence"] and isinstance(value, dict):
                parameters["convergence"].update(value)
            elif len(keys) == 1:
                parameters[keys[0]] = value
            else:
                parameters["convergence"][keys[1]] = value

    # Expressions ---------------------------------------------------------

    def literal(self, node):
        value = self.expression(node)
        if isinstance(value, _Built) or _holds_object(value):
            _fail(node, "only a literal can be assigned here")
        return value

    def expression(self, node):
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float, str, bool, type(None))):
                return node.value
            _fail(node, "a constant of type %s is not allowed"
                  % type(node.value).__name__)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.expression(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                _fail(node, "'**' in a dict is not allowed")
            return {self.expression(k): self.expression(v)
                    for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub,
                                                                  ast.UAdd)):
            value = self.expression(node.operand)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                _fail(node, "a sign applies only to numbers")
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            if node.id in self.values:
                return self.values[node.id]
            if node.id in self.classes:
                _fail(node, "%r can only be called" % node.id)
            _fail(node, "%r is not defined" % node.id)
        if isinstance(node, ast.Call):
            return self.call(node)
        _fail(node, "%s is not allowed" % type(node).__name__)

    def call(self, node):
        if not isinstance(node.func, ast.Name) or \
                node.func.id not in self.classes:
            what = node.func.id if isinstance(node.func, ast.Name) \
                else ast.unparse(node.func)
            _fail(node, "call of %r is not allowed" % what)
        args = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                _fail(node, "'*' arguments are not allowed")
            args.append(self.expression(arg))
        kwargs = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                _fail(node, "'**' arguments are not allowed")
            kwargs[keyword.arg] = self.expression(keyword.value)
        name = self.classes[node.func.id]
        if not self.build:
            return _Built(name)
        try:
            return library_name(name)(*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise CalcTextError("calc_text line %d: %s(...) failed: %s"
                                % (node.lineno, name, error)) from error


def _holds_object(value):
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, _Built) or _holds_object(v) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, _Built) or _holds_object(v)
                   for v in value.values())
    return not isinstance(value, (int, float, str, bool, type(None)))


def read_calc_text(text, name="calc"):
    """Build the calculator that ``text`` describes, without running it.

    Parameters
    ----------
    text : str
        Amp 1.x ``calc_text``: imports of amp's classes and assignments that
        build an :class:`amp.Amp` under the name ``calc``.
    name : str
        The variable that holds the calculator.

    Returns
    -------
    amp.Amp

    Raises
    ------
    CalcTextError
        The text uses anything but the allowed forms, does not define
        ``calc``, or ``calc`` is not an ``Amp``. Checked in full before any
        object is constructed.
    """
    if not isinstance(text, str):
        raise CalcTextError("calc_text must be a string, got %s"
                            % type(text).__name__)
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        raise CalcTextError("calc_text is not valid Python: %s" % error) \
            from error
    check = _Reader(build=False)
    for statement in tree.body:
        check.statement(statement)
    built = check.values.get(name)
    if not isinstance(built, _Built) or built.name != "Amp":
        raise CalcTextError("calc_text must assign an Amp(...) calculator to "
                            "%r; nothing was run" % name)
    reader = _Reader(build=True)
    for statement in tree.body:
        reader.statement(statement)
    return reader.values[name]
