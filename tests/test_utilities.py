import io
import json
import os

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.io import read, write

from amp.utilities import (Logger, MetaDict, get_hash, hash_images,
                           make_filename)
from conftest import AMP_REFERENCE


def test_get_hash_matches_amp():
    with open(os.path.join(AMP_REFERENCE, "hashes.json")) as f:
        reference = json.load(f)["hashes"]
    checked = 0
    for name in ("pd3o2.traj", "pd4o2.traj", "ptcu_train.traj"):
        images = read(os.path.join(AMP_REFERENCE, name), index=":")
        expected = reference[name]
        assert len(expected) == len(images)
        for image, h in zip(images, expected):
            assert get_hash(image) == h
            checked += 1
    assert checked == 11


def test_hash_images_duplicates_and_inputs(tmp_path):
    a = molecule("H2O")
    b = a.copy()
    b.positions[0, 0] += 0.1
    hashed = hash_images([a, b, a, a])
    assert isinstance(hashed, MetaDict)
    assert list(hashed) == [get_hash(a), get_hash(b)]
    assert hashed.metadata["duplicates"] == {get_hash(a): 3}
    assert list(hash_images(a)) == [get_hash(a)]
    path = tmp_path / "x.traj"
    write(path, [a, b])
    assert list(hash_images(str(path))) == [get_hash(a), get_hash(b)]
    dbpath = tmp_path / "x.db"
    write(dbpath, [a, b])
    assert list(hash_images(str(dbpath))) == [get_hash(a), get_hash(b)]


@pytest.mark.parametrize("bad, message", [
    (Atoms(), "no atoms"),
    (Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "NaN"),
    (Atoms("H2", positions=[[0, 0, 0], [np.inf, 0, 0]]), "infinite"),
])
def test_hash_images_bad_images(bad, message):
    with pytest.raises(ValueError, match=message):
        hash_images([molecule("H2O"), bad])


def test_hash_images_bad_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        hash_images(str(tmp_path / "missing.traj"))
    garbage = tmp_path / "garbage.traj"
    garbage.write_bytes(b"not a trajectory")
    with pytest.raises(ValueError, match="cannot read"):
        hash_images(str(garbage))


def test_logger_tic_toc():
    buffer = io.StringIO()
    log = Logger(buffer)
    log("start", tic="a")
    log("end", toc="a")
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "start"
    assert lines[1].startswith("end ") and lines[1].endswith(" sec.")
    Logger(None)("nothing happens")


def test_make_filename():
    assert make_filename("amp", "-log.txt") == "amp-log.txt"
    assert make_filename("dir/amp", ".amp") == "dir/amp.amp"
    assert make_filename("amp", None) == "amp"
    assert make_filename(None, "-log.txt") is None


@pytest.mark.parametrize("first", ["amp.utilities", "amp.model", "amp",
                                   "amp.regression"])
def test_training_convergence_error_one_class_both_paths(first):
    """Amp 1.x's ``from amp.utilities import TrainingConvergenceError``
    works and names the class ``amp.model`` exports, whichever module is
    imported first (no import cycle)."""
    import subprocess
    import sys

    code = ("import importlib; importlib.import_module(%r); "
            "from amp.utilities import TrainingConvergenceError as a; "
            "from amp.model import TrainingConvergenceError as b; "
            "from amp.utilities import ConvergenceOccurred as c; "
            "from amp.model import ConvergenceOccurred as d; "
            "assert a is b and issubclass(a, Exception); "
            "assert c is d and issubclass(c, Exception); print('ok')"
            % first)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    from amp.model import TrainingConvergenceError as from_model
    from amp.utilities import TrainingConvergenceError as from_utilities
    assert from_utilities is from_model
