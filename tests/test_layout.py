"""The package's layering, read from every import in amp/ (also the ones
inside functions): nothing imports upwards, and importing the package
changes nothing in the host process."""
import ast
import os
import re
import subprocess
import sys

import amp

PACKAGE = os.path.dirname(os.path.abspath(amp.__file__))

# Lower numbers are lower floors; a module may import its own floor and the
# floors below, but two packages never import each other. gdml is a
# subsystem of its own beside the Amp stack. CONTRIBUTING.md gives the same
# table (test_contributing_gives_these_floors).
FLOORS = {
    "amp.store": 0,
    "amp.installation": 0,
    "amp.parallel": 1,
    "amp.progress": 1,
    "amp.importing": 1,
    "amp.utilities": 2,
    "amp.images": 2,
    "amp.extrapolation": 2,
    "amp.plotting": 2,
    "amp.descriptor": 3,
    "amp.regression": 3,
    "amp.model": 4,
    "amp.annealer": 5,
    "amp.potential": 5,
    "amp.gdml": 5,
    "amp.analysis": 6,
    "amp.stats": 6,
    "amp": 6,            # the calculator, amp/__init__.py
    "amp.engines": 6,    # LAMMPS and i-PI couplings of the calculators
    "amp.cli": 7,
    "amp.commands": 7,
    "amp.__main__": 7,   # python -m amp
}


def floor_of(module):
    """The floor of a dotted module name (its longest listed prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in FLOORS:
            return name, FLOORS[name]
    raise KeyError("module %s has no floor in FLOORS" % module)


def modules():
    """``(dotted name, path)`` of every module of the package."""
    for root, _, names in os.walk(PACKAGE):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            relative = os.path.relpath(path, os.path.dirname(PACKAGE))
            dotted = relative[:-3].replace(os.sep, ".")
            if dotted.endswith(".__init__"):
                dotted = dotted[:-len(".__init__")]
            yield dotted, path


def _lazy_reexports(tree):
    """Nodes inside a module-level ``__getattr__``: a declared lazy
    re-export (PEP 562), which imports nothing when the module is
    imported (``amp.utilities`` keeps Amp's names this way)."""
    skipped = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            skipped.update(id(inner) for inner in ast.walk(node))
    return skipped


def imported(dotted, path):
    """The ``amp`` modules that the module at ``path`` imports."""
    package = dotted if path.endswith("__init__.py") else \
        dotted.rpartition(".")[0]
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    lazy = _lazy_reexports(tree)
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "amp":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module
                                          else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "amp":
                continue
            yield target, node.lineno


def test_every_module_has_a_floor():
    for dotted, _ in modules():
        floor_of(dotted)


def test_nothing_imports_upwards():
    upward = []
    for dotted, path in modules():
        if dotted.endswith("__main__"):
            continue
        own_name, own = floor_of(dotted)
        for target, line in imported(dotted, path):
            name, floor = floor_of(target)
            if floor > own and not (own_name == "amp.gdml" and
                                    name == "amp.gdml"):
                upward.append("%s:%d imports %s (floor %d above %d)"
                              % (os.path.relpath(path, PACKAGE), line,
                                 target, floor, own))
    assert upward == []


def test_no_two_packages_import_each_other():
    """Within a floor imports are allowed, but never both ways between two
    parts of the package (the floors would not say which is below)."""
    edges = {}
    for dotted, path in modules():
        own = floor_of(dotted)[0]
        for target, line in imported(dotted, path):
            other = floor_of(target)[0]
            if other != own:
                edges.setdefault((own, other), "%s:%d" % (
                    os.path.relpath(path, PACKAGE), line))
    ties = ["%s <-> %s (%s, %s)" % (a, b, where, edges[(b, a)])
            for (a, b), where in edges.items() if (b, a) in edges and a < b]
    assert ties == []


def test_contributing_gives_these_floors():
    """CONTRIBUTING.md's layer table is FLOORS."""
    path = os.path.join(os.path.dirname(PACKAGE), "CONTRIBUTING.md")
    with open(path) as handle:
        text = handle.read()
    table = text[text.index("| floor |"):].split("\n\n")[0]
    documented = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for name in cells[1].split(","):
            documented[name.strip().strip("`")] = int(cells[0])
    assert documented == FLOORS


def test_every_package_says_what_it_must_not_import():
    import importlib

    silent = []
    for dotted, path in modules():
        if not path.endswith("__init__.py") or dotted == "amp":
            continue
        doc = importlib.import_module(dotted).__doc__ or ""
        if not re.search(r"must not import|imports nothing", " ".join(
                doc.split())):
            silent.append(dotted)
    assert silent == []


#: One concept per module: past about 600 lines a module is two (CONTRIBUTING);
#: this bound catches one that keeps growing.
MAX_MODULE_LINES = 650


def test_no_module_is_two_concepts():
    long = []
    for dotted, path in modules():
        with open(path) as handle:
            n = sum(1 for _ in handle)
        if n > MAX_MODULE_LINES:
            long.append("%s: %d lines" % (dotted, n))
    assert long == []


def test_store_and_descriptor_know_nothing_above_them():
    for dotted, path in modules():
        if not dotted.startswith(("amp.store", "amp.descriptor")):
            continue
        for target, line in imported(dotted, path):
            assert not target.startswith(("amp.model", "amp.regression",
                                          "amp.potential", "amp.stats",
                                          "amp.analysis", "amp.cli")), \
                "%s:%d imports %s" % (path, line, target)
            assert target != "amp", "%s:%d imports the calculator" % (
                path, line)


def test_import_changes_nothing_in_the_process():
    """Importing every module leaves the allocator, signal handlers,
    warnings filters and matplotlib's backend as they were (checked after
    the dependencies themselves are imported)."""
    script = r"""
import signal, sys, warnings, ctypes
# The dependencies first: what they do at import (scipy.special adds a
# warnings filter) is theirs, not the library's.
import numpy, scipy, scipy.special, scipy.optimize, scipy.linalg
import scipy.sparse, scipy.spatial, ase, ase.io, ase.neighborlist, zmq
import pexpect
handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM,
                                             signal.SIGCHLD)}
filters = list(warnings.filters)
libc = ctypes.CDLL("libc.so.6")
calls = []
class Spy:
    def __getattr__(self, name):
        if name == "mallopt":
            calls.append(name)
        return getattr(libc, name)
ctypes_CDLL = ctypes.CDLL
ctypes.CDLL = lambda *a, **k: Spy()
import pkgutil, importlib, amp
for info in pkgutil.walk_packages(amp.__path__, "amp."):
    if info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
ctypes.CDLL = ctypes_CDLL
assert calls == [], calls
assert {s: signal.getsignal(s) for s in handlers} == handlers
assert list(warnings.filters) == filters
assert "matplotlib.pyplot" not in sys.modules
assert "mpi4py" not in sys.modules  # only for cores='mpi'
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
