"""amp.installation: Amp 1.x's files mixed into this package's folder are
named at ``import amp``, before anything else goes wrong."""
import os
import shutil
import subprocess
import sys

import pytest

import amp
from amp.installation import (AMP1_ONLY_FILES, MixedInstallationError,
                              check_installation)

PACKAGE = os.path.dirname(os.path.abspath(amp.__file__))


def test_this_installation_is_clean():
    check_installation()  # raises if the checkout itself were mixed


@pytest.mark.parametrize("name", AMP1_ONLY_FILES)
def test_each_amp1_file_is_named(tmp_path, name):
    folder = tmp_path / "amp"
    os.makedirs(folder / os.path.dirname(name), exist_ok=True)
    (folder / name).write_text("# Amp 1.x\n")
    with pytest.raises(MixedInstallationError, match=name.replace(
            ".", r"\.")) as raised:
        check_installation(str(folder))
    assert "pip uninstall -y amp-atomistics amp-mlip" in str(raised.value)


def test_import_amp_of_a_mixed_copy_fails_first_with_the_fix(tmp_path):
    """A copy of the package with Amp 1.x's convert.py planted in it, as
    pip leaves it when both distributions are installed: ``import amp``
    raises MixedInstallationError (an ImportError) naming the file."""
    copy = tmp_path / "site" / "amp"
    shutil.copytree(PACKAGE, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "convert.py").write_text("# Amp 1.x's converter\n")
    result = subprocess.run(
        [sys.executable, "-c", "import amp"], cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("amp.installation.MixedInstallationError: "
                           "the package folder %s holds files of Amp 1.x"
                           % copy)
    assert "convert.py" in last
