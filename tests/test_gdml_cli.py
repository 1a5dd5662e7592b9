"""amp.gdml.cli (amp-gdml): the sgdml command-line workflow end to end."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from amp.gdml import io, workflow
from amp.gdml.cli import main
from conftest import GDML_REFERENCE, molecule_images

DATASET = os.path.join(GDML_REFERENCE, "benzene_dataset.npz")


def _run(capsys, *args):
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_all_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capsys, "all", DATASET, 40, 40, "-s", "5:5:15",
                            "--seed", 1, "--model_file", "benzene")
    assert status == 0, err
    assert "Test errors (MAE/RMSE)" in out and "[eV/Ang]" in out
    assert "Cross-validation errors" in out
    assert os.listdir(tmp_path) == ["benzene.npz"]     # task folder removed
    model = io.load_model("benzene.npz")
    assert int(model["n_test"]) == 300 - 80
    f_err = model["f_err"].item()
    assert 0 < f_err["mae"] < 0.03                      # eV/Ang
    assert float(model["sig"]) in (5, 10, 15)
    # the written file is what sgdml's GDMLPredict reads (np.load, pickles)
    raw = np.load("benzene.npz", allow_pickle=True)
    assert raw["f_err"].item().keys() == {"mae", "rmse"}
    assert raw["md5_test"].item() == raw["md5_train"].item()
    # running it again reports the finished run and changes nothing
    before = os.stat("benzene.npz").st_mtime_ns
    status, out, err = _run(capsys, "all", DATASET, 40, 40, "-s", "5:5:15",
                            "--seed", 1, "--model_file", "benzene")
    assert status == 0, err
    assert "This run is finished already: 'benzene.npz'" in out
    assert "Step 1" not in out and os.listdir(tmp_path) == ["benzene.npz"]
    assert os.stat("benzene.npz").st_mtime_ns == before
    # a run with other settings refuses to overwrite the model
    status, _, err = _run(capsys, "all", DATASET, 30, 40, "-s", 5,
                          "--model_file", "benzene")
    assert status == 1 and "'benzene.npz' exists and holds another model; " \
        "pass -o" in err
    assert os.listdir(tmp_path) == ["benzene.npz"]     # refused before work


def test_python_dash_m_and_console_script(tmp_path):
    out = subprocess.run([sys.executable, "-m", "amp.gdml", "show", DATASET],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "300 geometries" in out.stdout and "\r" not in out.stderr
    script = os.path.join(os.path.dirname(sys.executable), "amp-gdml")
    if os.path.exists(script):
        out = subprocess.run([script, "--help"], capture_output=True,
                             text=True)
        assert out.returncode == 0 and "create-dataset" in out.stdout


def test_step_by_step_and_show_each_file_type(tmp_path, monkeypatch,
                                              capsys):
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capsys, "create", DATASET, 30, 30, "-s", 10, 20,
                            "--gdml", "--task_dir", "cv", "--seed", 2)
    assert status == 0, err
    tasks = ["task-train30-sym1-sig0010.npz", "task-train30-sym1-sig0020.npz"]
    assert sorted(os.listdir("cv")) == [workflow.RUN_RECORD] + tasks
    assert workflow.read_run_record("cv") == {
        "program": "amp-gdml", "made_folder": True, "files": tasks}
    status, out, _ = _run(capsys, "show", "cv/task-train30-sym1-sig0010.npz")
    assert status == 0 and out.startswith("Task") and "Train on:" in out
    status, out, err = _run(capsys, "train", "cv", DATASET, "--solver",
                            "analytic")
    assert status == 0, err
    assert "Validation errors" in out and "Next: amp-gdml select cv" in out
    status, out, _ = _run(capsys, "show", "cv/model-train30-sym1-sig0010.npz")
    assert out.startswith("Model") and "Validation errors" in out
    status, out, err = _run(capsys, "select", "cv", "--model_file", "best")
    assert status == 0, err
    assert os.path.exists("cv")         # a folder the user named is kept
    status, out, err = _run(capsys, "test", "best.npz", DATASET, 50)
    assert status == 0, err
    assert "on 50 points" in out and "Magnitude" in out
    status, out, _ = _run(capsys, "show", "best.npz")
    assert "Tested on:" in out and "Test errors" in out
    status, out, _ = _run(capsys, "show", DATASET)
    assert out.startswith("Dataset") and "Fingerprint:" in out
    # selection by test error is refused
    status, _, err = _run(capsys, "validate", "cv", DATASET)
    assert status == 0
    status, _, err = _run(capsys, "test", "cv", DATASET)
    status, _, err = _run(capsys, "select", "cv", "--model_file", "again")
    assert status == 1 and "selected by its test error" in err


def test_bad_inputs_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(capsys, "show", "missing.npz")
    assert status == 1 and err.strip() == \
        "amp-gdml show: error: 'missing.npz' does not exist"
    (tmp_path / "notes.txt").write_text("x")
    status, _, err = _run(capsys, "show", "notes.txt")
    assert status == 1 and "not a readable .npz file" in err
    status, _, err = _run(capsys, "all", DATASET, 250, 100)
    assert status == 1 and "cannot train on 250 and validate on 100" in err
    data = dict(io.load_dataset(DATASET))
    del data["E"]
    io.save_dataset("noE.npz", data)
    status, _, err = _run(capsys, "create", "noE.npz", 10, 10)
    assert status == 1 and "no energies ('E')" in err and "--no_E" in err
    with pytest.raises(SystemExit):
        main(["all", DATASET, "10", "10", "-s", "x"])
    assert "neither a positive integer" in capsys.readouterr().err
    os.mkfifo("fifo.npz")
    status, _, err = _run(capsys, "show", "fifo.npz")
    assert status == 1 and "is a FIFO" in err


def test_create_dataset_from_traj_and_extxyz(tmp_path, monkeypatch, capsys):
    import ase.io
    monkeypatch.chdir(tmp_path)
    frames = molecule_images(8)
    ase.io.write("md.traj", frames)
    ase.io.write("md.extxyz", frames)
    status, out, err = _run(capsys, "create-dataset", "md.traj", "--theory",
                            "EMT")
    assert status == 0, err
    data = io.load_dataset("md.npz")
    assert data["R"].shape == (8, 5, 3) and io.to_str(data["theory"]) == "EMT"
    status, out, err = _run(capsys, "create-dataset", "md.extxyz",
                            "--output", "x.npz", "--energy_unit", "kcal/mol",
                            "--name", "methane")
    assert status == 0, err
    data = io.load_dataset("x.npz")
    assert io.to_str(data["e_unit"]) == "kcal/mol"
    assert io.to_str(data["name"]) == "methane"
    assert "[kcal/mol]" in out
    status, _, err = _run(capsys, "create-dataset", "md.traj")
    assert status == 1 and "'md.npz' exists; pass -o" in err
    ase.io.write("mixed.traj", frames[:3] + molecule_images(1, "CH3OH"))
    status, _, err = _run(capsys, "create-dataset", "mixed.traj")
    assert status == 1 and "frame 3 has 6 atoms but frame 0 has 5" in err
    from ase.build import molecule
    ase.io.write("bare.extxyz", frames[:2] + [molecule("CH4")])
    status, _, err = _run(capsys, "create-dataset", "bare.extxyz")
    assert status == 1 and "frame 2 has no energy" in err
    status, _, err = _run(capsys, "create-dataset", "nothere.traj")
    assert status == 1 and "'nothere.traj' does not exist" in err


def test_train_resumes_after_being_killed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(capsys, "create", DATASET, 120, 20, "-s",
                          "10:10:30", "--task_dir", "cv", "--seed", 3)
    assert status == 0, err
    proc = subprocess.Popen(
        [sys.executable, "-m", "amp.gdml", "train", "cv", DATASET,
         "--solver", "analytic"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    first = os.path.join("cv", "model-train120-sym12-sig0010.npz")
    deadline = time.monotonic() + 120
    while not os.path.exists(first) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.path.exists(first)
    done_before = sorted(os.listdir("cv"))
    alphas = io.load_model(first)["alphas_F"]
    status, out, err = _run(capsys, "train", "cv", DATASET)
    assert status == 0, err
    assert "model-train120-sym12-sig0010.npz' exists; kept" in out
    np.testing.assert_array_equal(io.load_model(first)["alphas_F"], alphas)
    assert "Validation errors" in out
    # the kill came before the second model was written; the rerun trained
    # it
    assert "model-train120-sym12-sig0020.npz" not in done_before
    assert "wrote 'cv/model-train120-sym12-sig0020.npz'" in out


def test_train_continues_from_a_cg_checkpoint(tmp_path, monkeypatch,
                                              capsys):
    from amp.gdml.train import GDMLTrain
    monkeypatch.chdir(tmp_path)
    _run(capsys, "create", DATASET, 30, 10, "-s", 10, "--task_dir", "cv",
         "--seed", 4)
    task_file = os.path.join("cv", "task-train30-sym12-sig0010.npz")
    task = io.load_task(task_file)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        partial = GDMLTrain(solver="cg").train(dict(task, solver_maxiter=3))
    checkpoint = os.path.join("cv", "_unconv_model-train30-sym12-"
                                    "sig0010.npz")
    io.save_model(checkpoint, partial)
    status, out, err = _run(capsys, "train", task_file, DATASET, "--cg")
    assert status == 0, err
    assert "continuing from the checkpoint" in out and "(3 iterations)" in out
    assert not os.path.exists(checkpoint)
    model = io.load_model(os.path.join("cv",
                                       "model-train30-sym12-sig0010.npz"))
    assert int(model["solver_iters"]) > 3
    assert float(model["solver_resid"]) <= float(model["solver_tol"]) * \
        float(model["norm_y_train"])


def test_resume_an_unconverged_model(tmp_path, monkeypatch, capsys):
    from amp.gdml.train import GDMLTrain
    monkeypatch.chdir(tmp_path)
    ds = io.load_dataset(DATASET)
    np.random.seed(5)
    trainer = GDMLTrain(solver="cg")
    task = trainer.create_task(ds, 30, ds, 10, sig=10)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        partial = trainer.train(dict(task, solver_maxiter=2))
    io.save_model("m.npz", partial)
    status, out, err = _run(capsys, "show", "m.npz")
    assert "NOT CONVERGED" in out
    status, out, err = _run(capsys, "resume", "m.npz", DATASET, DATASET)
    assert status == 0, err
    assert "Model parameters updated" in out and "Validation errors" in out
    model = io.load_model("m.npz")
    assert float(model["solver_resid"]) <= float(model["solver_tol"]) * \
        float(model["norm_y_train"])
    assert np.isfinite(model["f_err"].item()["rmse"])
    status, _, err = _run(capsys, "resume", "m.npz", DATASET, DATASET)
    assert status == 0
    analytic = GDMLTrain(solver="analytic").train(task)
    io.save_model("a.npz", analytic)
    status, _, err = _run(capsys, "resume", "a.npz", DATASET, DATASET)
    assert status == 1 and "nothing to resume" in err


def test_model_without_split_keys_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    model = io.load_model(os.path.join(GDML_REFERENCE,
                                       "benzene_sgdml_model.npz"))
    del model["idxs_valid"]
    np.savez("m.npz", **model)
    status, _, err = _run(capsys, "test", "m.npz", DATASET)
    assert status == 1 and "'m.npz' lacks the key(s) idxs_valid" in err


def test_progress_line_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    import io as stdio

    import amp.progress
    from amp.gdml import cli

    class Terminal(stdio.StringIO):
        def isatty(self):
            return True
    monkeypatch.setattr(amp.progress, "INTERVAL", 0.0)
    monkeypatch.setenv("TERM", "xterm")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    callback = cli._progress("Training")
    callback(1, 4, "Assembling kernel matrix")
    callback(4, 4, "Assembling kernel matrix")
    callback.close()
    text = terminal.getvalue()
    assert text.startswith("\r") and "Assembling kernel matrix 100%" in text
    assert text.endswith("\n") and text.count("\n") == 1
    # a pipe (as in CI) gets no progress line at all
    monkeypatch.setattr(sys, "stderr", stdio.StringIO())
    monkeypatch.chdir(tmp_path)
    assert main(["create", DATASET, "10", "10", "-s", "10"]) == 0
    assert sys.stderr.getvalue() == ""


def test_all_never_deletes_what_it_did_not_make(tmp_path, monkeypatch,
                                                capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mywork").mkdir()
    (tmp_path / "mywork" / "notes.txt").write_text("x")
    args = ["all", DATASET, 40, 40, "-s", 5, 10, "--seed", 1]
    status, out, err = _run(capsys, *args, "--task_dir", "mywork")
    assert status == 1
    assert "'mywork' is not empty (1 entry, e.g. 'notes.txt') and was " \
        "not made by amp-gdml" in err
    assert os.listdir("mywork") == ["notes.txt"]
    assert (tmp_path / "mywork" / "notes.txt").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["mywork"]
    # -o does not change that
    status, _, err = _run(capsys, *args, "--task_dir", "mywork", "-o")
    assert status == 1 and os.listdir("mywork") == ["notes.txt"]
    # the current folder, with the dataset elsewhere: refused as well
    monkeypatch.chdir(tmp_path / "mywork")
    status, _, err = _run(capsys, *args, "--task_dir", ".")
    assert status == 1 and "'.' is not empty" in err
    assert os.listdir(".") == ["notes.txt"]
    # an empty folder of the user's is used and kept, and only what the run
    # wrote there is removed
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    status, out, err = _run(capsys, *args, "--task_dir", ".",
                            "--model_file", "m")
    assert status == 0, err
    assert os.listdir(".") == ["m.npz"]
    # a folder the run made is removed at the end
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capsys, *args, "--task_dir", "made",
                            "--model_file", "m2")
    assert status == 0, err
    assert sorted(os.listdir(tmp_path)) == ["empty", "m2.npz", "mywork"]


def test_all_resumes_after_a_kill_in_its_test_step(tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.chdir(tmp_path)
    args = ["all", DATASET, "40", "40", "-s", "5", "10", "--seed", "1",
            "--model_file", "m", "--task_dir", "cv"]
    proc = subprocess.Popen([sys.executable, "-m", "amp.gdml"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    for line in proc.stdout:            # the kill lands inside step 4
        if line.startswith("Step 4"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    proc.stdout.close()
    assert os.path.exists("m.npz") and os.path.isdir("cv")
    models = sorted(n for n in os.listdir("cv") if n.startswith("model-"))
    assert len(models) == 2
    alphas = io.load_model("m.npz")["alphas_F"]
    status, out, err = _run(capsys, *args)
    assert status == 0, err
    assert out.count("exists; kept") == 2 and "Training" not in out
    assert "'m.npz' holds it already" in out and "Test errors" in out
    np.testing.assert_array_equal(io.load_model("m.npz")["alphas_F"], alphas)
    assert int(io.load_model("m.npz")["n_test"]) > 0
    assert os.listdir(tmp_path) == ["m.npz"]
    # and once more: finished
    status, out, err = _run(capsys, *args)
    assert status == 0 and "This run is finished already: 'm.npz'" in out


# The output a user reads ----------------------------------------------------

def test_forces_only_run_output(tmp_path, monkeypatch, capsys):
    """--no_E: no nan/nan energy column; the boundary warning goes to
    standard error, the results to standard output."""
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capsys, "all", DATASET, 30, 30, "-s", 5, 10,
                            "--no_E", "--seed", 1, "--model_file", "f")
    assert status == 0, err
    assert "nan" not in out
    assert "Cross-validation errors (MAE/RMSE; forces [eV/Ang]; no " \
        "energies)" in out
    assert "warning: the best sigma lies on the boundary" in err
    assert "warning" not in out


def test_one_sigma_is_validated_and_test_seeds_its_points(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capsys, "all", DATASET, 30, 30, "-s", 10,
                            "--gdml", "--seed", 1, "--model_file", "one")
    assert status == 0, err
    assert "(30 training points, 1 symmetry)" in out
    assert "Validation errors (MAE/RMSE) of 'model-train30-sym1-sig0010.npz'" \
        " on 30 points" in out
    assert "Skipping" not in out
    tests = []
    for seed in (5, 5, 6):
        status, out, err = _run(capsys, "test", "one.npz", DATASET, 20,
                                "--seed", seed, "-o")
        assert status == 0, err
        tests.append([line for line in out.splitlines() if "/" in line])
    assert tests[0] == tests[1] and tests[0] != tests[2]


def test_skipping_is_said_only_when_tasks_remain(tmp_path, monkeypatch,
                                                 capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["create", DATASET, "20", "20", "-s", "5", "10", "20",
                 "--gdml", "--task_dir", "cv", "--seed", "3"]) == 0
    errors = iter([1.0, 2.0, 3.0])
    monkeypatch.setattr(workflow, "test", lambda *a, **k: [next(errors)])
    step = workflow.Step(write=print)
    workflow.train(step, "cv", DATASET)
    out = capsys.readouterr().out
    assert "Skipping the remaining 1 task(s): the validation error rises " \
        "again" in out
    assert "Task 3 of 3" not in out
    for name in os.listdir("cv"):
        if name.startswith("model-"):
            os.remove(os.path.join("cv", name))
    errors = iter([1.0, 0.5, 0.7])      # rises at the last task: nothing
    workflow.train(step, "cv", DATASET)  # is left to skip
    out = capsys.readouterr().out
    assert "Task 3 of 3" in out and "Skipping" not in out


def test_every_positional_argument_has_help():
    import argparse

    from amp.gdml.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions
                    if isinstance(a, argparse._SubParsersAction)).choices
    missing = ["%s %s" % (name, action.metavar)
               for name, sub in commands.items() for action in sub._actions
               if not action.option_strings and not action.help]
    assert missing == []
    assert "--seed" in commands["test"].format_help()


def test_trajectories_point_to_create_dataset(tmp_path, monkeypatch, capsys):
    import ase.io
    monkeypatch.chdir(tmp_path)
    ase.io.write("ethanol.traj", molecule_images(3))
    status, out, err = _run(capsys, "all", "ethanol.traj", 1, 1)
    assert status == 1
    assert err.strip() == (
        "amp-gdml all: error: 'ethanol.traj' is a trajectory, not an sgdml "
        "dataset (.npz); make one first: amp-gdml create-dataset "
        "ethanol.traj")


def test_create_dataset_refuses_periodic_and_molecular_frames(
        tmp_path, monkeypatch, capsys):
    import ase.io
    monkeypatch.chdir(tmp_path)
    from ase.calculators.singlepoint import SinglePointCalculator

    def with_results(atoms, cell, pbc):
        copy = atoms.copy()
        copy.cell, copy.pbc = cell, pbc
        copy.calc = SinglePointCalculator(
            copy, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces())
        return copy

    frames = molecule_images(3)
    periodic = with_results(frames[1], [10.0, 10.0, 10.0], True)
    ase.io.write("mixed.traj", [frames[0], periodic, frames[2]])
    status, _, err = _run(capsys, "create-dataset", "mixed.traj")
    assert status == 1
    assert "frame 1 is periodic but frame 0 is a molecule (not periodic); " \
        "a GDML dataset is either molecules or periodic cells" in err
    assert not os.path.exists("mixed.npz")
    slab = with_results(frames[1], [10.0, 10.0, 10.0], [True, True, False])
    ase.io.write("slab.traj", [frames[0], slab])
    status, _, err = _run(capsys, "create-dataset", "slab.traj")
    assert status == 1 and "frame 1 is periodic along xy only" in err


def test_cg_progress_is_the_way_to_the_target():
    """The fraction reported moves from the first residual towards the
    target (log scale) and is reported from the first iteration on."""
    from amp.gdml.solvers import cg_solve

    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 60))
    matrix = a @ a.T + 0.05 * np.eye(60)

    class Operator:
        def matvec(self, x):
            return matrix @ x

    reports = []
    x, iterations, _, converged = cg_solve(
        Operator(), rng.normal(size=60), tol=1e-8,
        callback=lambda done, total, text: reports.append((done, text)))
    assert converged and iterations > 5
    assert reports and reports[0][1].endswith("iteration 1")
    assert 0.0 <= reports[0][0] < 0.5
    np.testing.assert_allclose(matrix @ x, Operator().matvec(x))
