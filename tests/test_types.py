"""The public API is typed and documented: every public function of the
public modules (scripts/public_modules.txt) carries annotations, mypy
passes on those modules, py.typed is shipped, and ``make docs`` builds the
API reference without a warning."""
import ast
import importlib
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIST = os.path.join(ROOT, "scripts", "public_modules.txt")


def public_modules():
    with open(LIST) as handle:
        return [line.strip() for line in handle
                if line.strip() and not line.startswith("#")]


def module_path(name):
    return importlib.util.find_spec(name).origin


def unannotated(path):
    """``qualified name: what is missing`` for every public function or
    method of the module at ``path`` without full annotations."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    missing = []

    def visit(body, prefix, in_class):
        for node in body:
            if isinstance(node, ast.ClassDef) and \
                    not node.name.startswith("_"):
                visit(node.body, prefix + node.name + ".", True)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name.startswith("_") and node.name not in (
                        "__init__", "__call__"):
                    continue
                args = node.args
                params = args.posonlyargs + args.args + args.kwonlyargs
                if in_class and params and params[0].arg in ("self", "cls"):
                    params = params[1:]
                lacking = [a.arg for a in params if a.annotation is None]
                for star in (args.vararg, args.kwarg):
                    if star is not None and star.annotation is None:
                        lacking.append(star.arg)
                if node.returns is None:
                    lacking.append("return")
                if lacking:
                    missing.append("%s%s: %s" % (prefix, node.name,
                                                 ", ".join(lacking)))
    visit(tree.body, "", False)
    return missing


def test_the_list_names_modules_that_exist():
    names = public_modules()
    assert len(names) == len(set(names)) and "amp" in names
    for name in names:
        assert module_path(name) is not None, name


def test_public_functions_are_annotated():
    found = {name: unannotated(module_path(name))
             for name in public_modules()}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_annotation_check_finds_a_missing_one(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f(x, y: int) -> int:\n    return y\n"
                    "def _private(z):\n    pass\n"
                    "class C:\n    def m(self, a: int):\n        pass\n")
    assert unannotated(str(path)) == ["f: x", "C.m: return"]


def test_mypy_passes_on_the_public_modules(tmp_path):
    command = [sys.executable, "-m", "mypy", "--config-file",
               os.path.join(ROOT, "pyproject.toml"), "--cache-dir",
               str(tmp_path / "cache")]
    for name in public_modules():
        command += ["-m", name]
    result = subprocess.run(command, cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert result.stdout.startswith("Success: no issues found in %d source "
                                    "files" % len(public_modules()))


def test_make_docs_builds_the_api_reference_without_warnings(tmp_path):
    out = tmp_path / "api"
    result = subprocess.run(
        ["make", "-s", "docs-build", "PY=%s" % sys.executable,
         "APIDIR=%s" % out], cwd=ROOT, capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr == ""
    for name in public_modules():
        page = out / (name.replace(".", os.sep) + ".html")
        assert page.exists(), page
    gaussian = (out / "amp" / "descriptor" / "gaussian.html").read_text()
    # signatures with their annotations, numpydoc sections rendered
    assert "make_default_symmetry_functions" in gaussian
    assert ('<span class="n">elements</span><span class="p">:</span> '
            '<span class="nb">list</span>') in gaussian
    assert '<h6 id="parameters">Parameters</h6>' in gaussian


def test_py_typed_is_shipped():
    assert os.path.exists(os.path.join(ROOT, "amp", "py.typed"))
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["amp"]
    metadata = project["project"]
    assert "Typing :: Typed" in metadata["classifiers"]
    assert metadata["urls"]


@pytest.mark.slow
def test_the_wheel_holds_the_package_the_commands_and_py_typed(tmp_path):
    """``python -m build --wheel`` as the README says (an isolated build),
    then the wheel alone, unpacked, runs ``python -m amp``."""
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir",
         str(tmp_path), ROOT], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    wheel, = [p for p in os.listdir(tmp_path) if p.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "unpacked")
        info = [n for n in names if n.endswith(".dist-info/METADATA")][0]
        metadata = archive.read(info).decode()
        entry_points = archive.read(
            info.replace("METADATA", "entry_points.txt")).decode()
    for name in ("amp/py.typed", "amp/__main__.py", "amp/installation.py",
                 "amp/commands/train.py", "amp/commands/evaluate.py"):
        assert name in names, name
    for script in ("amp-train = amp.commands.train:main",
                   "amp-eval = amp.commands.evaluate:main",
                   "amp-gdml = amp.gdml.cli:main"):
        assert script in entry_points
    assert "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: " in metadata
    assert "Requires-Dist: tomli>=1.1; python_version < \"3.11\"" in metadata
    run = subprocess.run([sys.executable, "-m", "amp", "--help"],
                         cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ,
                                  PYTHONPATH=str(tmp_path / "unpacked")),
                         timeout=120)
    assert run.returncode == 0 and "train" in run.stdout, run.stderr
