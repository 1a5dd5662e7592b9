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
