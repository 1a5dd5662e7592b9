"""Tests of amp/cli.py (amp-compress) and its wrappers."""
import os
import re
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

from amp.cli import compress_main, main
from amp.store.database import FileDatabase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_database(path, count, start=0):
    db = FileDatabase(path)
    db.update({"key%03d" % n: {"values_Cu": np.full((4, 3), float(n)),
                               "n": n} for n in range(start, start + count)})
    return db


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def snapshot(path):
    """Every file and folder below ``path`` with its size and mtime."""
    state = {}
    for root, folders, names in os.walk(path):
        for name in folders + names:
            status = os.stat(os.path.join(root, name))
            state[os.path.join(root, name)] = (status.st_size,
                                               status.st_mtime_ns)
    return state


def test_compress_one_database_and_twice_is_harmless(tmp_path, capsys):
    db = make_database(str(tmp_path / "fp.ampdb"), 12)
    before = folder_bytes(db.path)
    assert compress_main([db.path]) == 0
    out = capsys.readouterr().out
    after = folder_bytes(db.path)
    assert out == ("%s: moved 12 loose entries into archive.tar.gz (12 "
                   "entries in it); %d bytes before, %d bytes after\n"
                   % (db.path, before, after))
    assert after < before
    assert os.listdir(db.loosepath) == []
    fresh = FileDatabase(db.path)
    assert sorted(fresh.keys()) == ["key%03d" % n for n in range(12)]
    assert fresh["key007"]["n"] == 7
    archive = os.stat(db.tarpath)

    assert compress_main([db.path + "/"]) == 0
    out = capsys.readouterr().out
    assert "moved 0 loose entries into archive.tar.gz (12 entries in it); " \
        "%d bytes before, %d bytes after" % (after, after) in out
    again = os.stat(db.tarpath)
    assert (again.st_ino, again.st_mtime_ns) == (archive.st_ino,
                                                  archive.st_mtime_ns)
    # New entries merge with the archive.
    make_database(db.path, 3, start=12)
    assert compress_main([db.path]) == 0
    assert "moved 3 loose entries into archive.tar.gz (15 entries in it)" \
        in capsys.readouterr().out
    assert len(FileDatabase(db.path)) == 15


def test_compress_recursive(tmp_path, capsys):
    paths = [str(tmp_path / "a" / "x.ampdb"),
             str(tmp_path / "a" / "b" / "y.ampdb"),
             str(tmp_path / "z.ampdb")]
    for number, path in enumerate(paths):
        make_database(path, number + 2)
    # Not databases: a lookalike file and a plain folder.
    (tmp_path / "a" / "notes.ampdb.txt").write_text("keep me")
    (tmp_path / "plain").mkdir()
    sizes = [folder_bytes(path) for path in paths]
    assert compress_main(["-r", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    order = sorted(paths)
    for line, path in zip(lines, order):
        count = paths.index(path) + 2
        assert line.startswith("%s: moved %d loose entries" % (path, count))
        assert "%d bytes before" % sizes[paths.index(path)] in line
    assert lines[3] == ("total: 3 databases, moved 9 loose entries; %d bytes "
                        "before, %d bytes after"
                        % (sum(sizes), sum(folder_bytes(p) for p in paths)))
    for number, path in enumerate(paths):
        assert os.listdir(os.path.join(path, "loose")) == []
        assert len(FileDatabase(path)) == number + 2
    assert (tmp_path / "a" / "notes.ampdb.txt").read_text() == "keep me"
    # -r on a database itself, and a second pass, are harmless.
    assert compress_main(["--recursive", paths[0]]) == 0
    assert "moved 0 loose entries" in capsys.readouterr().out


def test_refuses_paths_that_are_not_databases_and_leaves_them(tmp_path,
                                                              capsys):
    folder = tmp_path / "results"
    (folder / "loose").mkdir(parents=True)
    (folder / "loose" / "k").write_bytes(b"data")
    (folder / "run.traj").write_bytes(b"xyz")
    lookalike = tmp_path / "file.ampdb"
    lookalike.write_text("a file, not a folder")
    state = snapshot(str(tmp_path))
    for argv in ([str(folder)], [str(lookalike)], ["-r", str(folder)],
                 ["-r", str(lookalike)], [str(tmp_path / "missing.ampdb")]):
        assert compress_main(argv) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("amp-compress: error: ")
        assert "not an .ampdb" in captured.err or \
            "no .ampdb folder" in captured.err or \
            "does not exist" in captured.err
    assert snapshot(str(tmp_path)) == state


def test_help_and_usage(capsys):
    with pytest.raises(SystemExit) as info:
        compress_main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: amp-compress [-h] [-r] [-d] PATH")
    assert "--recursive" in out
    with pytest.raises(SystemExit) as info:
        compress_main([])
    assert info.value.code == 2
    assert main(["nonsense"]) == 2


def test_delete_needs_recursive_and_a_typed_yes(tmp_path, capsys,
                                                monkeypatch):
    paths = [str(tmp_path / "a" / "x.ampdb"), str(tmp_path / "y.ampdb")]
    for path in paths:
        make_database(path, 2)
    (tmp_path / "keep.txt").write_text("not a database")
    state = snapshot(str(tmp_path))
    # Amp 1.x's rule: -d only with -r.
    assert compress_main(["-d", paths[0]]) == 1
    assert "only with -r" in capsys.readouterr().err
    answers = iter(["no", "yes"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert compress_main(["-r", "-d", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "delete these 2 .ampdb folders" in out and paths[0] in out
    assert "Nothing was deleted." in out
    assert snapshot(str(tmp_path)) == state
    assert compress_main(["-r", "--delete", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all("Deleted %s." % path in out for path in paths)
    assert sorted(os.listdir(tmp_path)) == ["a", "keep.txt"]
    assert os.listdir(tmp_path / "a") == []


def test_damaged_and_legacy_databases_report(tmp_path, capsys):
    db = make_database(str(tmp_path / "fp.ampdb"), 2)
    with open(os.path.join(db.loosepath, "torn"), "wb") as handle:
        handle.write(b"PK\x03\x04 cut short")
    assert compress_main([db.path]) == 0
    assert "moved 2 loose entries into archive.tar.gz (2 entries in it), " \
        "dropped 1 damaged;" in capsys.readouterr().out
    legacy = FileDatabase(str(tmp_path / "old.ampdb"))
    os.makedirs(legacy.loosepath)
    with open(os.path.join(legacy.loosepath, "h"), "wb") as handle:
        handle.write(b"(dp0\nS'x'\np1\nI1\ns.")
    assert compress_main([legacy.path]) == 1
    err = capsys.readouterr().err
    assert "pickle" in err and "delete " + legacy.path in err
    assert os.listdir(legacy.loosepath) == ["h"]


def _script(name):
    path = os.path.join(sysconfig.get_path("scripts"), name)
    if not os.path.exists(path):  # a venv's bin folder, else on PATH
        path = os.path.join(os.path.dirname(sys.executable), name)
    return path


@pytest.mark.parametrize("command", ids=["console-script", "tools", "-m"],
                         argvalues=[
    [_script("amp-compress")],
    [sys.executable, os.path.join(ROOT, "tools", "amp-compress")],
    [sys.executable, "-m", "amp.cli", "compress"]])
def test_installed_commands(tmp_path, command):
    if len(command) == 1:  # the console script made by pip install -e .
        assert os.access(command[0], os.X_OK), command[0]
    db = make_database(str(tmp_path / "fp.ampdb"), 5)
    result = subprocess.run(command + [db.path], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r".*fp\.ampdb: moved 5 loose entries into "
                        r"archive\.tar\.gz \(5 entries in it\); \d+ bytes "
                        r"before, \d+ bytes after\n", result.stdout)
    assert len(FileDatabase(db.path)) == 5
    result = subprocess.run(command + [str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "is not an .ampdb database" in result.stderr
    assert result.stdout == ""
