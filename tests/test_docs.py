"""Every fenced Python snippet in docs/*.md and README.md runs as written.

The snippets of one page run in order in one namespace (a later snippet
may use what an earlier one defined), in a fresh folder, in a separate
process, so a page's files and imports cannot leak into other tests.
Blocks fenced as ``text`` or ``bash`` are not run, nor ``console`` blocks,
except on the pages of :data:`RUN_CONSOLE`, whose ``$`` lines run in a
shell in their place among the snippets (the console commands of this
package on the PATH), and whose ``toml`` blocks that begin with a comment
naming a file (``# config.toml``) are written to that file.

Warnings are shown, not hidden: a DeprecationWarning or FutureWarning
while a page runs fails the test (the page, or this package, calls
something its dependencies have deprecated).
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(
    [os.path.join("docs", name) for name in os.listdir(os.path.join(
        ROOT, "docs")) if name.endswith(".md")] + ["README.md"])
FENCE = re.compile(r"^```(python|console|toml)[ \t]*\n(.*?)^```[ \t]*$",
                   re.MULTILINE | re.DOTALL)

#: Pages whose console blocks are run (their ``$`` lines are commands of
#: this package that run quickly).
RUN_CONSOLE = {os.path.join("docs", "cli.md")}


def blocks(page):
    """``(first line, kind, text)`` of the fenced Python, console and TOML
    blocks of ``page``, in order."""
    with open(os.path.join(ROOT, page)) as handle:
        text = handle.read()
    return [(text.count("\n", 0, match.start()) + 2, match.group(1),
             match.group(2)) for match in FENCE.finditer(text)]


def snippets(page):
    """The fenced Python blocks of ``page``, with their first line."""
    return [(line, code) for line, kind, code in blocks(page)
            if kind == "python"]


def commands(text):
    """The ``$`` lines of a console block (continuation lines joined)."""
    found, current = [], None
    for line in text.splitlines():
        if current is not None:
            current += " " + line.strip()
        elif line.startswith("$ "):
            current = line[2:].strip()
        else:
            continue
        if current.endswith("\\"):
            current = current[:-1].rstrip()
        else:
            found.append(current)
            current = None
    return found


def program(page):
    """One script running the page's snippets (and, on the pages of
    RUN_CONSOLE, its commands), each labelled by line."""
    parts = ["import subprocess, warnings",
             "warnings.simplefilter('always', DeprecationWarning)",
             "warnings.simplefilter('always', FutureWarning)",
             "namespace = {'__name__': '__main__'}"]
    for line, kind, code in blocks(page):
        if kind == "python":
            parts.append("exec(compile(%r, %r, 'exec'), namespace)"
                         % (code, "%s:%d" % (page, line)))
        elif page in RUN_CONSOLE and kind == "toml":
            name = re.match(r"# *([\w.-]+\.toml)\s*\n", code)
            if name:
                parts.append("open(%r, 'w').write(%r)" % (name.group(1),
                                                          code))
        elif page in RUN_CONSOLE:
            for command in commands(code):
                parts.append("subprocess.run(%r, shell=True, check=True)"
                             % command)
    return "\n".join(parts) + "\n"


def test_snippet_extraction_finds_fenced_blocks_only(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n```python\nx = 1\n```\n```text\nnot run\n```\n"
                    "```python\ny = x + 1\n```\n")
    found = [code for _, code in snippets(str(page))]
    assert found == ["x = 1\n", "y = x + 1\n"]


def test_console_commands_are_the_dollar_lines():
    text = ("$ amp-train a.toml\nsome output\n$ amp-eval m.amp d.xyz \\\n"
            "    -o p.xyz\n")
    assert commands(text) == ["amp-train a.toml",
                              "amp-eval m.amp d.xyz -o p.xyz"]


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p)])
def test_page_snippets_run(page, tmp_path):
    # The console commands of the environment running the tests first.
    path = os.pathsep.join([os.path.dirname(sys.executable),
                            os.environ.get("PATH", "")])
    environment = dict(os.environ, OMP_NUM_THREADS="1",
                       OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg",
                       PATH=path)
    result = subprocess.run([sys.executable, "-c", program(page)],
                            cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        "a snippet of %s failed:\n%s" % (page, result.stderr[-4000:]))
    deprecated = [line for line in result.stderr.splitlines()
                  if "DeprecationWarning" in line or "FutureWarning" in line]
    assert deprecated == [], (
        "%s runs with deprecated calls:\n%s" % (page, "\n".join(deprecated)))


# ------------------------------------------------ documented names exist

DOTTED = re.compile(r"(?<![\w./-])(amp(?:\.[A-Za-z_]\w*)+)")
SPAN = re.compile(r"`([^`]+)`")
CALL = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)\(([^()]*)\)")
KEYWORD = re.compile(r"(?:^|[,(]\s*)([A-Za-z_]\w*)\s*=")


def _resolve(dotted):
    """The object a dotted ``amp...`` name stands for (AttributeError or
    ImportError when it does not exist)."""
    import importlib

    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        for name in parts[n:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _documented_callables():
    """Names the docs call with keywords, and what they stand for."""
    from amp import Amp
    from amp.annealer import Annealer
    from amp.descriptor.cutoffs import Cosine, Polynomial
    from amp.descriptor.gaussian import Gaussian
    from amp.gdml.predict import GDMLPredict
    from amp.gdml.train import GDMLTrain
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.parallel import WorkerPool
    from amp.regression import Regressor
    from amp.stats.bootstrap import BootStrap
    from amp.store.database import Data, FileDatabase

    classes = {c.__name__: c for c in (
        Amp, Annealer, Cosine, Polynomial, Gaussian, GDMLPredict, GDMLTrain,
        LossFunction, NeuralNetwork, WorkerPool, Regressor, BootStrap, Data,
        FileDatabase)}
    out = dict(classes)
    out.update({"amp.Amp": Amp, "Amp.load": Amp.load, "calc.train": Amp.train,
                "calc.save": Amp.save,
                "descriptor.open_store": Gaussian.open_store,
                "descriptor.calculate_fingerprints":
                    Gaussian.calculate_fingerprints})
    return out


def _pages_text():
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as handle:
            yield page, handle.read()


#: Amp 1.x's modules that calculator.md lists as not provided here.
NOT_PROVIDED = {"amp.convert", "amp.model.tflow"}


def test_documented_dotted_names_exist():
    """Every ``amp.x.y`` the docs name can be imported (a renamed or
    removed module, class or function fails here), but for Amp 1.x's
    modules listed as not provided, which indeed are not."""
    missing = []
    for name in NOT_PROVIDED:
        with pytest.raises((ImportError, AttributeError)):
            _resolve(name)
    for page, text in _pages_text():
        for name in sorted(set(DOTTED.findall(text)) - NOT_PROVIDED):
            try:
                _resolve(name)
            except (ImportError, AttributeError):
                missing.append("%s: %s" % (page, name))
    assert missing == []


def test_documented_keywords_exist():
    """Every keyword the docs pass in a call written inline
    (`LossFunction(force_coefficient=None)`) is a parameter of what is
    called."""
    import inspect

    known = _documented_callables()
    missing, checked = [], 0
    for page, text in _pages_text():
        for span in SPAN.findall(text):
            for name, arguments in CALL.findall(span):
                target = known.get(name)
                if target is None:
                    continue
                parameters = inspect.signature(target).parameters
                if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                    continue
                for keyword in KEYWORD.findall(arguments):
                    checked += 1
                    if keyword not in parameters:
                        missing.append("%s: %s(%s=)" % (page, name, keyword))
    assert missing == []
    assert checked > 30   # the scan finds what the docs document


def test_the_name_checks_catch_what_is_gone():
    assert DOTTED.findall("see `amp.model.NoSuchThing` and amp-mlip") == \
        ["amp.model.NoSuchThing"]
    with pytest.raises(AttributeError):
        _resolve("amp.model.NoSuchThing")
    span = "LossFunction(energy_coefficient=1, no_such_keyword=2)"
    calls = CALL.findall(span)
    assert calls == [("LossFunction", "energy_coefficient=1, "
                                      "no_such_keyword=2")]
    assert KEYWORD.findall(calls[0][1]) == ["energy_coefficient",
                                            "no_such_keyword"]
