"""Training across MPI ranks (cores='mpi'), run as ``mpiexec -n N python
tests/mpi_jobs.py ...`` against the same script run serially in this
process: losses and gradients at every step, parameters after 40 BFGS
steps, only rank 0's files, fingerprint databases, shares of the training
batch, ensembles and annealing; and the faults: a rank that raises, a rank
killed, images that differ between ranks, cores=None under a launcher, a
memory limit per rank. Each mpiexec runs under a watchdog that ends it
(and only it: its own process group) if it hangs.

mpi4py and mpich come from the package index (the ``test`` extra); the
mpich wheel brings ``mpiexec`` beside this interpreter.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import mpi_jobs
from amp import Amp
from amp.descriptor.fingerprint_store import DatabaseStore
from amp.descriptor.gaussian import Gaussian
from amp.parallel.mpi import (MPIContext, launched_ranks, parallel_context,
                              share_bounds)
from amp.utilities import hash_images

TESTS = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(TESTS, "mpi_jobs.py")
#: Seconds an mpiexec may take before the test ends it: generous (a run
#: takes a few seconds), only there so that a hang fails instead of
#: blocking the suite.
WATCHDOG = 240


def mpiexec():
    """The mpiexec of the mpich wheel beside this interpreter (or on
    PATH)."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    assert found, "mpiexec not found: pip install 'amp-mlip[mpi]'"
    return found


def run_mpi(n, *arguments):
    """Run ``mpiexec -n n python mpi_jobs.py ARGUMENTS``; returns
    ``(exit code, output)``. The watchdog kills the process group this
    call started, nothing else."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE",
                 "SLURM_STEP_NUM_TASKS"):
        env.pop(name, None)
    process = subprocess.Popen(
        [mpiexec(), "-n", str(n), sys.executable, SCRIPT]
        + [str(a) for a in arguments], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True)
    try:
        output, _ = process.communicate(timeout=WATCHDOG)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail("mpiexec -n %d %s did not end within %d s:\n%s"
                    % (n, " ".join(map(str, arguments)), WATCHDOG,
                       output[-3000:]))
    return process.returncode, output


def results(folder, n):
    return [json.load(open(os.path.join(folder, "results",
                                        "rank-%d.json" % rank)))
            for rank in range(n)]


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("serial"))
    return folder, mpi_jobs.train(folder, 1)


@pytest.fixture(scope="module")
def serial_loss():
    return mpi_jobs.serial_loss()


def assert_equals_serial(ranks, reference, serial_loss):
    """Every rank saw bitwise the same numbers; at every step's parameters
    the loss and gradient equal the serial loss function's to 1e-12
    (relative; the gradient as a vector); the run takes the serial run's
    steps and ends at its parameters to 1e-8."""
    for other in ranks[1:]:
        assert other["losses"] == ranks[0]["losses"]
        assert other["gradients"] == ranks[0]["gradients"]
        assert other["vectors"] == ranks[0]["vectors"]
        assert other["vector"] == ranks[0]["vector"]
    mine = ranks[0]
    assert len(mine["losses"]) == len(reference["losses"]) == 39
    for vector, loss, gradient in zip(mine["vectors"], mine["losses"],
                                      mine["gradients"]):
        expected = serial_loss.calculate_loss(np.array(vector))
        assert loss == pytest.approx(expected["loss"], rel=1e-12, abs=0)
        scale = np.linalg.norm(expected["dloss_dparameters"])
        assert np.linalg.norm(np.subtract(gradient, expected[
            "dloss_dparameters"])) <= 1e-12 * scale
    # The same steps (the iterates drift apart at round-off level only).
    np.testing.assert_allclose(mine["losses"], reference["losses"],
                               rtol=1e-9, atol=0)
    np.testing.assert_allclose(mine["vector"], reference["vector"],
                               rtol=1e-8, atol=1e-10)
    assert mine["converged"] is reference["converged"] is False


def files(folder):
    return sorted(name for name in os.listdir(folder)
                  if name != "results" and not name.startswith("db-rank"))


def assert_others_wrote_only(ranks, folder, allowed):
    """Ranks other than 0 wrote nothing in ``folder`` but into the
    ``allowed`` paths (their fingerprint databases), and nothing anywhere
    but there and in private temporary folders."""
    folder, temporary = str(folder), tempfile.gettempdir()
    for rank, record in enumerate(ranks[1:], 1):
        stray = [path for path in record["written"]
                 if not any(path.startswith(a) for a in allowed) and (
                     path.startswith(folder)
                     or not path.startswith(temporary))]
        assert not stray, "rank %d wrote %s" % (rank, stray[:5])


def assert_same_databases(first, second, keys):
    """The fingerprints and derivatives of every image are the same in the
    databases of two labels."""
    descriptor = Gaussian(cutoff=4.5).resolve(keys)
    one = DatabaseStore(first, descriptor.fingerprint_parameters())
    two = DatabaseStore(second, descriptor.fingerprint_parameters())
    for key in keys:
        a, b = one[key], two[key]
        for element in a.values:
            np.testing.assert_array_equal(a.values[element],
                                          b.values[element])
            np.testing.assert_array_equal(a.derivatives[element],
                                          b.derivatives[element])


def test_two_ranks_equal_serial_and_only_rank0_writes(tmp_path, serial,
                                                      serial_loss):
    serial_folder, reference = serial
    code, output = run_mpi(2, "train", tmp_path)
    assert code == 0, output
    ranks = results(tmp_path, 2)
    assert_equals_serial(ranks, reference, serial_loss)
    # The same files as serially, written by rank 0; rank 1 wrote only
    # into the shared fingerprint databases.
    assert files(tmp_path) == files(serial_folder)
    databases = [os.path.join(str(tmp_path), "fit-%s.ampdb" % name)
                 for name in ("neighborlists", "fingerprints",
                              "fingerprint-primes")]
    assert_others_wrote_only(ranks, tmp_path, databases)
    log = open(tmp_path / "fit-log.txt").read()
    assert log.count("Amp training started") == 1
    assert "9 images in 2 shares held by MPI ranks (24 to 24 atoms" in log
    assert "on 2 MPI ranks, at most" in log
    keys = hash_images(mpi_jobs.images())
    assert_same_databases(os.path.join(serial_folder, "fit"),
                          str(tmp_path / "fit"), keys)
    # Each rank held its share of the force data, no more.
    assert sum(r["batch_bytes"] for r in ranks) == reference["batch_bytes"]
    assert max(r["batch_bytes"] for r in ranks) < \
        0.6 * reference["batch_bytes"]
    # The last checkpoint (step 38) holds that step's parameters.
    Amp.load(str(tmp_path / "fit-checkpoint.amp"))


def test_three_ranks_with_databases_of_their_own(tmp_path, serial,
                                                 serial_loss):
    """As on node-local disks: each rank's databases hold its own share,
    the others' fingerprint values reach it in memory; results equal."""
    _, reference = serial
    code, output = run_mpi(3, "train", tmp_path, "private-db")
    assert code == 0, output
    ranks = results(tmp_path, 3)
    assert_equals_serial(ranks, reference, serial_loss)
    keys = list(hash_images(mpi_jobs.images()))
    counts = [len(os.listdir(tmp_path / ("db-rank%d-fingerprint-primes."
                                         "ampdb" % rank) / "loose"))
              for rank in range(3)]
    bounds = share_bounds([len(a) for a in mpi_jobs.images()], 3)
    assert counts == list(np.diff(bounds)) and sum(counts) == len(keys)
    log = open(tmp_path / "fit-log.txt").read()
    assert "values of 6 images of other ranks held in memory" in log
    assert sum(r["batch_bytes"] for r in ranks) == reference["batch_bytes"]
    assert_others_wrote_only(ranks, tmp_path, [
        str(tmp_path / ("db-rank%d-" % r)) for r in range(1, 3)])


def test_one_rank_is_serial(tmp_path, serial, serial_loss):
    _, reference = serial
    code, output = run_mpi(1, "train", tmp_path)
    assert code == 0, output
    assert_equals_serial(results(tmp_path, 1), reference, serial_loss)
    log = open(tmp_path / "fit-log.txt").read()
    assert "cores='mpi' with one MPI rank: training serially." in log
    assert "shares held by MPI ranks" not in log


def test_held_out_images_over_ranks_equal_serial(tmp_path):
    """Held-out images are shared by the ranks as the training images are;
    their errors at every step equal the serial run's to 1e-12."""
    expected = mpi_jobs.train(str(tmp_path / "serial"), 1, validation=0.25)
    assert len(expected["held_out"]) == 40
    folder = tmp_path / "mpi"
    folder.mkdir()
    code, output = run_mpi(2, "train", folder, "validation")
    assert code == 0, output
    assert "held-out images in 2 shares held by MPI ranks" in open(
        folder / "fit-log.txt").read()
    ranks = results(folder, 2)
    assert ranks[1]["held_out"] == ranks[0]["held_out"]
    got = np.array(ranks[0]["held_out"])
    want = np.array(expected["held_out"])
    assert got.shape == want.shape
    np.testing.assert_array_equal(got[:, 0], want[:, 0])
    np.testing.assert_allclose(got[:, 1:], want[:, 1:], rtol=1e-12,
                               atol=1e-14)


def test_annealer_and_bootstrap_over_ranks_equal_serial(tmp_path):
    expected = mpi_jobs.ensemble(str(tmp_path / "serial"), 1)
    folder = tmp_path / "mpi"
    folder.mkdir()
    code, output = run_mpi(2, "ensemble", folder)
    assert code == 0, output
    ranks = results(folder, 2)
    for record in ranks:
        np.testing.assert_allclose(record["annealed"], expected["annealed"],
                                   rtol=1e-10, atol=1e-12)
        for got, want in zip(record["members"], expected["members"]):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # Rank 0 wrote every member's files, as serially (rank 1's member
    # without its initial parameters).
    assert {"0.amp", "1.amp", "2.amp", "1-log.txt"} <= set(
        os.listdir(folder / "ensemble-training"))
    assert os.path.exists(folder / "ensemble.ensemble")
    assert_others_wrote_only(ranks, folder, [str(folder / "fit-"), str(
        folder / "ensemble-training" / "amp-")])


def assert_stopped_once(code, output, message):
    assert code != 0, output
    assert output.count(message) == 1, output
    assert output.count("stopped the job") == 1, output


def test_a_rank_that_raises_stops_the_job_with_one_report(tmp_path):
    code, output = run_mpi(2, "train", tmp_path, "fault=raise")
    assert_stopped_once(code, output,
                        "MemoryError: rank 1 cannot go on (a test fault)")
    assert "amp: MPI rank 1 of 2 stopped the job" in output


def test_a_killed_rank_ends_the_job_and_the_checkpoint_loads(tmp_path,
                                                              serial):
    code, output = run_mpi(2, "train", tmp_path, "fault=kill")
    assert code != 0, output
    assert not os.path.exists(tmp_path / "results")
    # Checkpoints every 2 steps; rank 1 died at step 5.
    calc = Amp.load(str(tmp_path / "fit-checkpoint.amp"))
    assert len(calc.model.vector) == len(serial[1]["vector"])


def test_images_that_differ_between_ranks_are_named(tmp_path):
    code, output = run_mpi(2, "train", tmp_path, "fault=differ")
    assert_stopped_once(code, output, "rank 1 differs from rank 0 in image "
                                      "3 (hash, energy or forces)")
    assert not os.path.exists(tmp_path / "fit-fingerprints.ampdb")


def test_memory_limit_is_per_rank(tmp_path):
    code, output = run_mpi(2, "train", tmp_path, "memory=10 kB")
    assert_stopped_once(code, output, "per MPI rank for the fingerprint "
                                      "derivatives of its share")
    assert "TrainingMemoryError" in output and "limit of 10 kB" in output


def test_cores_none_under_mpiexec_says_to_give_mpi(tmp_path):
    code, output = run_mpi(2, "train", tmp_path, "fault=unasked")
    assert code != 0
    assert "Give cores='mpi' to train across the ranks" in output


def test_outside_a_launcher_mpi_is_serial(monkeypatch):
    """cores='mpi' in a process no launcher started: serial, also without
    mpi4py (this test process never imports it; one rank under mpiexec
    is test_one_rank_is_serial)."""
    import amp.parallel.mpi as mpi

    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                 "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)

    def missing():
        raise ImportError("no mpi4py here")

    monkeypatch.setattr(mpi, "import_mpi", missing)
    monkeypatch.setattr(mpi, "_CONTEXT", [])
    assert launched_ranks() == 1
    said = []
    assert parallel_context("mpi", said.append) is None
    assert said == ["cores='mpi' without mpi4py and without an MPI "
                    "launcher: training serially."]
    assert parallel_context(2) is None
    # srun's tasks, not the batch script (no step id, or a special one).
    assert launched_ranks({"SLURM_STEP_NUM_TASKS": "4",
                           "SLURM_STEP_ID": "0"}) == 4
    assert launched_ranks({"SLURM_STEP_NUM_TASKS": "4"}) == 1
    assert launched_ranks({"SLURM_STEP_NUM_TASKS": "4",
                           "SLURM_STEP_ID": "4294967291"}) == 1
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "8"}) == 8
    monkeypatch.setenv("PMI_SIZE", "3")
    with pytest.raises(ValueError, match="cores='mpi'"):
        parallel_context(None)
    with pytest.raises(ImportError, match="no mpi4py here"):
        parallel_context("mpi")  # a launcher started 3: needs mpi4py
    assert not isinstance(parallel_context(1), MPIContext)


@pytest.mark.parametrize("weights, n, expected", [
    ([1] * 9, 2, [0, 4, 9]),   # 4.5 cut: the nearer of 4 and 5 (ties low)
    ([8, 4, 4, 8, 4, 4, 8, 4, 4], 2, [0, 4, 9]),
    ([1, 1, 10, 1, 1], 2, [0, 2, 5]),
    ([1, 1], 3, [0, 1, 1, 2]),  # more shares than images: one empty
    ([], 2, [0, 0, 0]),
])
def test_shares_are_contiguous_and_balanced_by_weight(weights, n, expected):
    assert share_bounds(weights, n).tolist() == expected
