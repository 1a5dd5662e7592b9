"""Benchmark of amp.gdml training and prediction.

Prints ``name value unit`` lines: training time, prediction throughput
(one geometry per call, and batches of 500), and peak memory, for
n_train = 200 and 1000 on one core. The dataset is ethanol made the way the
fixtures' datasets were made (Langevin MD), here with ASE's EMT calculator
(which handles C, H and O) so that it can be generated anywhere; it is cached
in the temp directory.

Set ``SGDML_PYTHON`` to a Python that has the sgdml package to time sgdml
1.0.x on the same tasks as well (lines prefixed ``sgdml_``).

Usage: ``python bench/gdml.py [--n-train 200 1000] [--sig 10]``.

``python bench/gdml.py --cli [--n-train 200] [--n-valid 200] [--sigs 10:10:50]``
times the whole command-line workflow instead: ``amp-gdml all`` on the same
dataset (task creation, training and validation per sigma, selection, test
on all unused points), printing its wall time, chosen sigma and test
errors; with ``SGDML_BIN`` pointing at sgdml's ``sgdml`` program, the same
``sgdml all --cpu`` run as well (lines prefixed ``sgdml_``). sgdml 1.0.3
calls ``np.in1d``, which NumPy 2 removed: under NumPy 2, point ``SGDML_BIN``
at a small script that sets ``np.in1d = np.isin`` and then runs
``sgdml.cli.main()``.

``--cli-split`` makes the tasks once with ``amp-gdml create`` and then lets
each program train, select and test the same tasks (same split, same
symmetries, same sigmas), which compares the two on equal terms (the
symmetry search depends on the random sample); with ``SGDML_PYTHON`` it
also checks that sgdml's ``GDMLPredict`` predicts amp's selected model as
amp does.
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

CACHE = os.path.join(tempfile.gettempdir(), "amp-gdml-bench")
N_FRAMES = 1600


def make_dataset(path):
    """Langevin MD of ethanol with EMT, every 10th step, as an sgdml dataset."""
    from ase import units
    from ase.build import molecule
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from amp.gdml import io

    atoms = molecule("CH3CH2OH")
    atoms.calc = EMT()
    rng = np.random.default_rng(42)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=rng)
    dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.02,
                   rng=rng)
    dyn.run(200)
    R, E, F = [], [], []
    for _ in range(N_FRAMES):
        dyn.run(10)
        R.append(atoms.get_positions())
        E.append(atoms.get_potential_energy())
        F.append(atoms.get_forces())
    data = {"name": "ethanol_emt", "z": atoms.numbers.astype(np.int64),
            "theory": "ASE EMT; Langevin T=300K dt=0.5fs, every 10th step",
            "R": np.array(R), "E": np.array(E), "F": np.array(F),
            "r_unit": "Ang", "e_unit": "eV"}
    io.save_dataset(path, data)


def dataset_path():
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, "ethanol_emt300_{}.npz".format(N_FRAMES))
    if not os.path.exists(path):
        make_dataset(path)
    return path


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_amp(n_train, sig, task_out):
    """One benchmark in this (fresh) process; prints name value unit lines."""
    from amp.gdml import io
    from amp.gdml.predict import GDMLPredict
    from amp.gdml.train import GDMLTrain

    ds = io.load_dataset(dataset_path())
    np.random.seed(0)
    trainer = GDMLTrain(max_memory=4, max_processes=1)
    t0 = time.perf_counter()
    # use_E=False: the EMT labels of this floppy molecule integrate poorly at
    # these sizes, which amp.gdml's label diagnostics reject (sgdml only
    # warns); the constant is then recovered without diagnostics below.
    task = trainer.create_task(ds, n_train, ds, 200, sig=sig, use_sym=True,
                               use_E=False)
    t_task = time.perf_counter() - t0
    io.save_task(task_out, task)
    t0 = time.perf_counter()
    model = trainer.train(task)
    t_train = time.perf_counter() - t0
    model["c"] = trainer._recov_int_const(
        model, dict(task, E_train=ds["E"][task["idxs_train"]]),
        diagnose=False)
    tag = "amp_n{}".format(n_train)
    print("{}_perms {} count".format(tag, len(task["perms"])))
    print("{}_create_task_time {:.2f} s".format(tag, t_task))
    print("{}_train_time {:.2f} s".format(tag, t_train))
    print("{}_solver {} name".format(tag, model["solver_name"]))
    gp = GDMLPredict(model, num_workers=0)
    R = ds["R"][task["idxs_valid"]].reshape(len(task["idxs_valid"]), -1)
    E, F = gp.predict(R)
    f_mae = np.abs(F - ds["F"][task["idxs_valid"]].reshape(len(R), -1)).mean()
    e_mae = np.abs(E - ds["E"][task["idxs_valid"]]).mean()
    print("{}_valid_F_MAE {:.4f} eV/Ang".format(tag, f_mae))
    print("{}_valid_E_MAE {:.4f} eV".format(tag, e_mae))
    single = ds["R"][:200].reshape(200, -1)
    gp.predict(single[0])
    t0 = time.perf_counter()
    for r in single:
        gp.predict(r)
    print("{}_predict_single {:.1f} geometries/s".format(
        tag, len(single) / (time.perf_counter() - t0)))
    batch = ds["R"][:500].reshape(500, -1)
    gp.predict(batch)
    t0 = time.perf_counter()
    reps = 3
    for _ in range(reps):
        gp.predict(batch)
    print("{}_predict_batch500 {:.1f} geometries/s".format(
        tag, reps * 500 / (time.perf_counter() - t0)))
    print("{}_peak_memory {:.0f} MB".format(tag, peak_mb()))


SGDML_SCRIPT = r"""
import os, sys, time, resource
import types
import numpy as np
if not hasattr(np, "in1d"):
    np.in1d = np.isin
try:
    import torch  # noqa: F401
except ImportError:
    # sgdml 1.0.3 cannot be imported without torch (NameError at import);
    # a stub that reports no tensors and no devices keeps its NumPy path.
    stub = types.ModuleType("torch")
    stub.is_tensor = lambda obj: False
    stub.cuda = types.SimpleNamespace(is_available=lambda: False,
                                      device_count=lambda: 0)
    stub.backends = types.SimpleNamespace(
        mps=types.SimpleNamespace(is_available=lambda: False))
    sys.modules["torch"] = stub
from sgdml.train import GDMLTrain
from sgdml.predict import GDMLPredict
task = dict(np.load(sys.argv[1], allow_pickle=True))
ds = dict(np.load(sys.argv[2], allow_pickle=True))
tag = "sgdml_n{}".format(len(task["idxs_train"]))
t0 = time.perf_counter()
model = GDMLTrain(max_processes=1).train(task)
print("{}_train_time {:.2f} s".format(tag, time.perf_counter() - t0))
gp = GDMLPredict(model, max_processes=1, num_workers=0)
single = ds["R"][:200].reshape(200, -1)
gp.predict(single[:1])
t0 = time.perf_counter()
for r in single:
    gp.predict(r[None])
print("{}_predict_single {:.1f} geometries/s".format(
    tag, len(single) / (time.perf_counter() - t0)))
batch = ds["R"][:500].reshape(500, -1)
t0 = time.perf_counter()
gp.predict(batch)
print("{}_predict_batch500 {:.1f} geometries/s".format(
    tag, 500 / (time.perf_counter() - t0)))
print("{}_peak_memory {:.0f} MB".format(
    tag, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))
"""


def _read_cli_model(path):
    """sigma, n_test and test errors of a model written by `all`."""
    from amp.gdml import io
    model = io.load_model(path)
    f_err = model["f_err"].item()
    e_err = model["e_err"].item() if "e_err" in model else None
    return float(model["sig"]), int(model["n_test"]), e_err, f_err


def run_cli(n_train, n_valid, sigs):
    """``amp-gdml all`` (and ``sgdml all``) on the benchmark dataset."""
    import shutil
    path = dataset_path()
    runs = [("amp", [sys.executable, "-m", "amp.gdml"])]
    if os.environ.get("SGDML_BIN"):
        runs.append(("sgdml", [os.environ["SGDML_BIN"]]))
    for tag, prog in runs:
        work = os.path.join(CACHE, "cli_" + tag)
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        cmd = prog + ["all", path, str(n_train), str(n_valid), "-s"] + \
            sigs.split() + ["--model_file", "model.npz", "-p", "1"]
        cmd += ["--seed", "0"] if tag == "amp" else ["--cpu"]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        with open(os.path.join(work, "log.txt"), "w") as fh:
            fh.write(out.stdout + out.stderr)
        if out.returncode != 0 or not os.path.exists(
                os.path.join(work, "model.npz")):
            print("{}_all_failed 1 flag  # see {}".format(
                tag, os.path.join(work, "log.txt")))
            continue
        sig, n_test, e_err, f_err = _read_cli_model(
            os.path.join(work, "model.npz"))
        print("{}_all_wall_time {:.1f} s".format(tag, wall))
        print("{}_all_sigma {:g} 1/Ang".format(tag, sig))
        print("{}_all_n_test {} count".format(tag, n_test))
        if e_err is not None:
            print("{}_all_test_E_MAE {:.4f} eV".format(tag, e_err["mae"]))
            print("{}_all_test_E_RMSE {:.4f} eV".format(tag, e_err["rmse"]))
        print("{}_all_test_F_MAE {:.4f} eV/Ang".format(tag, f_err["mae"]))
        print("{}_all_test_F_RMSE {:.4f} eV/Ang".format(tag, f_err["rmse"]))
        sys.stdout.flush()


def _print_model(tag, path, wall):
    sig, n_test, e_err, f_err = _read_cli_model(path)
    print("{}_wall_time {:.1f} s".format(tag, wall))
    print("{}_sigma {:g} 1/Ang".format(tag, sig))
    print("{}_n_test {} count".format(tag, n_test))
    if e_err is not None:
        print("{}_test_E_MAE {:.4f} eV".format(tag, e_err["mae"]))
    print("{}_test_F_MAE {:.4f} eV/Ang".format(tag, f_err["mae"]))
    print("{}_test_F_RMSE {:.4f} eV/Ang".format(tag, f_err["rmse"]))
    sys.stdout.flush()


SGDML_LOADS = r"""
import sys
import numpy as np
if not hasattr(np, "in1d"):
    np.in1d = np.isin
from sgdml.predict import GDMLPredict
model = dict(np.load(sys.argv[1], allow_pickle=True))
ds = dict(np.load(sys.argv[2], allow_pickle=True))
R = ds["R"][:100].reshape(100, -1)
E, F = GDMLPredict(model, max_processes=1).predict(R)
np.save(sys.argv[3], np.hstack([E[:, None], F]))
"""


def run_cli_same_split(n_train, n_valid, sigs):
    """Same tasks (split, symmetries, sigmas) trained, selected and tested
    by ``amp-gdml`` and by ``sgdml``; and sgdml predicting amp's model."""
    import shutil
    path = dataset_path()
    amp = [sys.executable, "-m", "amp.gdml"]
    base = os.path.join(CACHE, "cli_split")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    t0 = time.perf_counter()
    subprocess.run(amp + ["create", path, str(n_train), str(n_valid), "-s"]
                   + sigs.split() + ["--task_dir", "tasks", "--seed", "0"],
                   cwd=base, check=True, capture_output=True)
    t_create = time.perf_counter() - t0
    print("split_create_time {:.1f} s".format(t_create))
    runs = [("split_amp", amp, [])]
    if os.environ.get("SGDML_BIN"):
        runs.append(("split_sgdml", [os.environ["SGDML_BIN"]], ["--cpu"]))
    for tag, prog, extra in runs:
        work = os.path.join(base, tag)
        shutil.copytree(os.path.join(base, "tasks"),
                        os.path.join(work, "tasks"))
        t0 = time.perf_counter()
        log = []
        for cmd in (["train", "tasks", path, "-p", "1"] + extra,
                    ["select", "tasks", "--model_file", "model.npz"],
                    ["test", "model.npz", path, "-p", "1"] + extra):
            out = subprocess.run(prog + cmd, cwd=work, capture_output=True,
                                 text=True)
            log.append(out.stdout + out.stderr)
        wall = time.perf_counter() - t0
        with open(os.path.join(work, "log.txt"), "w") as fh:
            fh.write("\n".join(log))
        model = os.path.join(work, "model.npz")
        if not os.path.exists(model):
            print("{}_failed 1 flag  # see {}/log.txt".format(tag, work))
            continue
        _print_model(tag, model, wall)
    sgdml_python = os.environ.get("SGDML_PYTHON")
    amp_model = os.path.join(base, "split_amp", "model.npz")
    if sgdml_python and os.path.exists(amp_model):
        from amp.gdml.predict import GDMLPredict
        script = os.path.join(CACHE, "sgdml_loads.py")
        with open(script, "w") as fh:
            fh.write(SGDML_LOADS)
        out_file = os.path.join(base, "sgdml_pred.npy")
        subprocess.run([sgdml_python, script, amp_model, path, out_file],
                       check=True, capture_output=True)
        theirs = np.load(out_file)
        from amp.gdml import io
        R = io.load_dataset(path)["R"][:100]
        E, F = GDMLPredict(amp_model, num_workers=0).predict(R)
        ours = np.hstack([E[:, None], F])
        print("sgdml_predicts_amp_model_max_rel_diff {:.1e} ratio".format(
            np.abs(theirs - ours).max() / np.abs(ours[:, 1:]).max()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--sig", type=float, default=10.0)
    parser.add_argument("--cli", action="store_true",
                        help="time amp-gdml all (and sgdml all)")
    parser.add_argument("--cli-split", action="store_true",
                        help="train, select and test the same tasks with "
                             "amp-gdml (and sgdml)")
    parser.add_argument("--n-valid", type=int, default=200)
    parser.add_argument("--sigs", default="10:10:50")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--task-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cli_split:
        run_cli_same_split(
            args.n_train[0] if args.n_train != [200, 1000] else 200,
            args.n_valid, args.sigs)
        return
    if args.cli:
        run_cli(args.n_train[0] if args.n_train != [200, 1000] else 200,
                args.n_valid, args.sigs)
        return
    if args.one is not None:
        run_amp(args.one, args.sig, args.task_out)
        return
    path = dataset_path()
    print("dataset_frames {} count".format(N_FRAMES))
    sgdml_python = os.environ.get("SGDML_PYTHON")
    for n in args.n_train:
        task_out = os.path.join(CACHE, "task_n{}.npz".format(n))
        # a fresh process per size, so that peak memory is per run
        subprocess.run([sys.executable, __file__, "--one", str(n), "--sig",
                        str(args.sig), "--task-out", task_out], check=True)
        sys.stdout.flush()
        if sgdml_python:
            script = os.path.join(CACHE, "sgdml_bench.py")
            with open(script, "w") as fh:
                fh.write(SGDML_SCRIPT)
            subprocess.run([sgdml_python, script, task_out, path],
                           check=False)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
