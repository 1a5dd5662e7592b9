"""Every fenced Python snippet in docs/*.md and README.md runs as written.

The snippets of one page run in order in one namespace (a later snippet
may use what an earlier one defined), in a fresh folder, in a separate
process, so a page's files and imports cannot leak into other tests.
Blocks fenced as ``text``, ``console`` or ``bash`` are not run.
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
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$",
                   re.MULTILINE | re.DOTALL)


def snippets(page):
    """The fenced Python blocks of ``page``, with their first line."""
    with open(os.path.join(ROOT, page)) as handle:
        text = handle.read()
    return [(text.count("\n", 0, match.start()) + 2, match.group(1))
            for match in FENCE.finditer(text)]


def program(page):
    """One script running the page's snippets, each labelled by line."""
    parts = ["import warnings",
             "warnings.simplefilter('ignore', DeprecationWarning)",
             "warnings.simplefilter('ignore', FutureWarning)",
             "namespace = {'__name__': '__main__'}"]
    for line, code in snippets(page):
        parts.append("exec(compile(%r, %r, 'exec'), namespace)"
                     % (code, "%s:%d" % (page, line)))
    return "\n".join(parts) + "\n"


def test_snippet_extraction_finds_fenced_blocks_only(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n```python\nx = 1\n```\n```text\nnot run\n```\n"
                    "```python\ny = x + 1\n```\n")
    found = [code for _, code in snippets(str(page))]
    assert found == ["x = 1\n", "y = x + 1\n"]


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p)])
def test_page_snippets_run(page, tmp_path):
    environment = dict(os.environ, OMP_NUM_THREADS="1",
                       OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, "-c", program(page)],
                            cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=600,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (
        "a snippet of %s failed:\n%s" % (page, result.stderr[-4000:]))


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
