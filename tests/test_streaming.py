"""Streamed training (amp.model.streaming, amp.store.chunks, amp.model.
subsets): streamed loss and optimiser iterates equal the in-memory ones,
chunk sets are keyed and read as hostile files, memory plan and disk
refusal (amp.descriptor.budget.plan_training)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from amp import Amp
from amp.descriptor.budget import (TrainingMemoryError, derivative_memory,
                                   plan_training)
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model import streaming as streaming_module
from amp.model.batch import TrainingBatch
from amp.model.neuralnetwork import NeuralNetwork
from amp.model.streaming import Streaming, chunk_key, group_images
from amp.model.subsets import BatchSource, select_images
from amp.regression import Regressor
from amp.store.chunks import (ChunkSet, ChunkSetError, ChunkSetWriter,
                              DiskSpaceError)
from amp.utilities import Logger, hash_images

from conftest import AMP_REFERENCE, cu_bulk, rattled_with_emt

TRAIN = os.path.join(AMP_REFERENCE, "ptcu_train.traj")
SMALL_GS = {element: [
    {"type": "G2", "element": "Cu", "eta": 0.05},
    {"type": "G2", "element": "Pt", "eta": 0.5},
    {"type": "G4", "elements": ["Cu", "Pt"], "eta": 0.005, "zeta": 1.0,
     "gamma": 1.0},
    {"type": "G4", "elements": ["Pt", "Pt"], "eta": 0.005, "zeta": 2.0,
     "gamma": -1.0}] for element in ("Cu", "Pt")}


@pytest.fixture(scope="module")
def training():
    """The five Pt/Cu images with fingerprints and derivatives."""
    images = hash_images(TRAIN)
    descriptor = Gaussian(cutoff=5.0, Gs=SMALL_GS)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    return images, descriptor


def alloy_images(count, seed=0):
    """32-atom Au-Cu-Pt cells (three elements: many exact zeros)."""
    rng = np.random.default_rng(seed)

    def make(_):
        atoms = cu_bulk(3.8, (2, 2, 2), cubic=True)
        atoms.symbols = rng.choice(["Au", "Cu", "Pt"], len(atoms))
        return atoms
    return hash_images(rattled_with_emt(make, count, 0.05, rng=rng))


def _model(training, optimizer="BFGS", streaming=None, maxiter=40):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(3, 2), randomseed=1,
                          regressor=Regressor(optimizer))
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-12, "force_rmse": 1e-12},
        maxiter=maxiter, log_losses=False, overfit=0.001)
    model.fit(images, descriptor, Logger(None), None, only_setup=True)
    model.lossfunction.streaming = streaming
    return model


def _recorded_fit(model):
    """Fit, recording loss and gradient at every evaluation."""
    steps = []
    evaluate = model.lossfunction.calculate_loss

    def recorded(vector, lossprime=True):
        result = evaluate(vector, lossprime)
        steps.append((np.array(vector), result["loss"],
                      np.array(result["dloss_dparameters"])))
        return result
    model.lossfunction.calculate_loss = recorded
    assert model.regress(Logger(None)) is False  # maxiter reached
    return steps


@pytest.mark.parametrize("optimizer", ["BFGS", "L-BFGS-B"])
def test_streamed_equals_in_memory_at_every_step(training, tmp_path,
                                                 optimizer):
    memory = _recorded_fit(_model(training, optimizer))
    streaming = Streaming(tmp_path / "chunks", chunk_bytes=1)  # 1 image each
    streamed = _recorded_fit(_model(training, optimizer, streaming))
    assert len(memory) == len(streamed) == 40
    # Loss and gradient equal to 1e-12 at every step's point ...
    check = _model(training, optimizer, streaming).lossfunction
    for x, loss, gradient in memory:
        result = check.calculate_loss(x)
        assert result["loss"] == pytest.approx(loss, rel=1e-12)
        np.testing.assert_allclose(result["dloss_dparameters"], gradient,
                                   rtol=0,
                                   atol=1e-12 * np.abs(gradient).max())
    check.drop_batches()
    # ... and the optimiser's iterates equal to 1e-8 over the 40 steps.
    for (x, loss, _), (y, loss2, _) in zip(memory, streamed):
        np.testing.assert_allclose(y, x, rtol=0, atol=1e-8 * np.abs(x).max())
        assert loss2 == pytest.approx(loss, rel=1e-8)
    # The chunk files are gone when training ends.
    assert not (tmp_path / "chunks").exists()


def test_evaluation_at_one_point_equal_to_rounding(training, tmp_path):
    memory = _model(training)
    vector = memory.vector + np.random.default_rng(2).normal(
        0, 0.3, len(memory.vector))
    reference = memory.lossfunction.calculate_loss(vector)
    for chunk_bytes, prefetch in ((1, True), (1, False), (5e5, True)):
        model = _model(training, streaming=Streaming(
            tmp_path / "c", chunk_bytes=chunk_bytes, prefetch=prefetch))
        result = model.lossfunction.calculate_loss(vector)
        for key in ("loss", "energy_loss", "force_loss", "energy_maxresid",
                    "force_maxresid"):
            assert result[key] == pytest.approx(reference[key], rel=1e-12)
        g = reference["dloss_dparameters"]
        np.testing.assert_allclose(result["dloss_dparameters"], g, rtol=0,
                                   atol=1e-13 * np.abs(g).max())
        model.lossfunction.drop_batches()
    assert list((tmp_path / "c").glob("run-*")) == []


def test_select_images_equals_the_batch_of_those_images(tmp_path):
    images = alloy_images(5)
    descriptor = Gaussian(cutoff=4.0)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    store, keys = descriptor.arrays, list(images)
    whole = TrainingBatch(images, store, True)
    streamed = Streaming(tmp_path, chunk_bytes=7e5).batches(
        images, store, True)
    assert len(streamed) > 1
    for ids in ([0], [1, 3], [0, 2, 3, 4], [0, 1, 2, 3, 4]):
        direct = TrainingBatch({keys[i]: images[keys[i]] for i in ids},
                               store, True)
        for batch in (select_images(BatchSource(whole), ids),
                      streamed.select(ids)):
            expected, got = direct.todict(), batch.todict()
            assert sorted(got) == sorted(expected)
            for name, value in expected.items():
                if isinstance(value, dict):
                    assert sorted(got[name]) == sorted(value)
                    for e in value:
                        np.testing.assert_array_equal(got[name][e], value[e])
                else:
                    np.testing.assert_array_equal(got[name], value)
    streamed.close()
    assert not any(tmp_path.glob("run-*"))


def test_amp_train_streams_over_the_limit_and_equals_in_memory(tmp_path):
    images = alloy_images(6)
    results = {}
    for limit in ("1 GB", "1.2 MB"):
        label = str(tmp_path / ("big" if limit == "1.2 MB" else "small"))
        calc = Amp(descriptor=Gaussian(cutoff=4.0), label=label,
                   cores=2 if limit == "1.2 MB" else 1,
                   model=NeuralNetwork(hiddenlayers=(3,), randomseed=0))
        calc.model.lossfunction = LossFunction(
            convergence={"energy_rmse": 1e-12}, maxiter=15)
        with pytest.raises(Exception, match="did not converge"):
            calc.train(images, memory_limit=limit)
        results[limit] = calc.model.vector
        with open(label + "-log.txt") as handle:
            log = handle.read()
        assert ("Streaming: the force data do not fit the limit" in log) \
            == (limit == "1.2 MB")
    np.testing.assert_allclose(results["1.2 MB"], results["1 GB"], rtol=0,
                               atol=1e-10 * np.abs(results["1 GB"]).max())
    assert "chunk files of about 400 kB" in log
    # With workers the chunks are still walked by this process.
    assert "streamed chunks are evaluated in this process" in log
    assert "about 1.2 MB of force data in memory at once" in log
    # The run's chunk set was removed, and its folder with it.
    chunks = tmp_path / "big-fingerprint-primes.ampdb" / "chunks"
    assert not chunks.exists()
    # The store kept nothing in memory while streaming.
    store = calc._fingerprint_store
    assert store.keep_in_memory is False
    assert all(not db._memdict for db in store.databases.values())


def test_plan_and_estimates_within_20_percent(tmp_path):
    images = alloy_images(4)
    descriptor = Gaussian(cutoff=4.0)
    lines = []
    plan = plan_training(descriptor, images, "1.0 MB", lines.append,
                         folder=str(tmp_path / "chunks"))
    assert plan.streamed and plan.held_bytes <= 1e6
    assert plan.estimate == derivative_memory(descriptor, images)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    batches = Streaming(tmp_path / "chunks", plan.chunk_bytes,
                        image_bytes=plan.image_bytes).batches(
        images, descriptor.arrays, True)
    measured = sum(batch.force_matrix.data.nbytes
                   + batch.force_matrix.indices.nbytes
                   + batch.force_matrix.indptr.nbytes for batch in batches)
    assert abs(plan.estimate - measured) <= 0.2 * measured
    on_disk = sum(os.path.getsize(p) for i in range(len(batches))
                  for p in batches.chunkset.paths(i))
    assert abs(plan.disk_bytes - on_disk) <= 0.2 * on_disk
    assert max(b.force_matrix.data.nbytes * 1.5 for b in batches) <= \
        plan.chunk_bytes
    assert any("Disk for chunk files" in line for line in lines)
    batches.close()
    # In memory when it fits; refused when not even three images fit.
    assert not plan_training(descriptor, images, "1 GB",
                             folder=str(tmp_path)).streamed
    with pytest.raises(TrainingMemoryError, match="even streamed"):
        plan_training(descriptor, images, "500 kB", folder=str(tmp_path))


def test_kept_chunk_sets_are_keyed_and_checked(training, tmp_path):
    images, descriptor = training
    store = descriptor.arrays
    built = []
    original = streaming_module.build_chunks

    def counting(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)
    lines = []
    streaming = Streaming(tmp_path, chunk_bytes=1, keep=True,
                          log=lines.append)
    streaming_module.build_chunks, restore = counting, original
    try:
        first = streaming.batches(images, store, True)
        first.close()  # kept
        assert len(built) == 1 and len(list(tmp_path.glob("set-*"))) == 1
        again = streaming.batches(images, store, True)
        assert len(built) == 1 and "reusing the chunk set" in lines[-1]
        again.close()
        folder = next(tmp_path.glob("set-*"))
        # Another reference energy, weight or descriptor: another key.
        keys = list(images)
        counts = [1] * len(keys)
        key = chunk_key(store.parameters, images, True, None, counts)
        assert chunk_key(store.parameters, images, True, {keys[0]: 2},
                         counts) != key
        assert chunk_key(dict(store.parameters, cutoff=4.0), images, True,
                         None, counts) != key
        assert chunk_key(store.parameters, images, True, None,
                         [2, 1, 1, 1]) != key
        changed = hash_images([images[k].copy() for k in keys])
        from ase.calculators.singlepoint import SinglePointCalculator
        for k in keys:
            changed[k].calc = SinglePointCalculator(
                changed[k], energy=images[k].get_potential_energy() +
                (1e-9 if k == keys[2] else 0.0),
                forces=images[k].get_forces())
        assert chunk_key(store.parameters, changed, True, None, counts) \
            != key
        other = streaming.batches(changed, store, True)
        assert len(built) == 2 and other.chunkset.folder != str(folder)
        other.close()
        # A set whose manifest names another key is rebuilt, never read.
        manifest = folder / "manifest.json"
        data = json.loads(manifest.read_text())
        data["key"] = "0" * 64
        manifest.write_text(json.dumps(data))
        streaming.batches(images, store, True).close()
        assert len(built) == 3 and "not reused" in lines[-2]
        # A column index out of bounds (manifest intact): refused, rebuilt.
        path = folder / "c00001-force_indices.npy"
        array = np.load(path)
        array[0] = 10 ** 6
        os.remove(path)
        np.save(path, array)
        streaming.batches(images, store, True).close()
        assert len(built) == 4 and "out of bounds" in lines[-2]
    finally:
        streaming_module.build_chunks = restore


def test_chunk_files_are_read_as_hostile(tmp_path):
    writer = ChunkSetWriter(tmp_path / "set", "k", {"n": 1})
    writer.add({"a": np.arange(5.0), "b": np.arange(6, dtype=np.int32)},
               {"note": "x"})
    chunkset = writer.commit()
    mapped = chunkset.arrays(0)
    np.testing.assert_array_equal(mapped["a"], np.arange(5.0))
    assert not mapped["a"].flags.writeable
    assert mapped["a"].base is not None  # a map of the file, not a copy
    np.testing.assert_array_equal(chunkset.read_rows(0, "b", 2, 4), [2, 3])
    with pytest.raises(ChunkSetError, match="other data"):
        ChunkSet.open(tmp_path / "set", "another key")
    with pytest.raises(TypeError, match="dtype"):
        ChunkSetWriter(tmp_path / "x", "k").add({"o": np.array([None])})
    path = tmp_path / "set" / "c00000-a.npy"
    # A pickle in place of an array: refused before anything is unpickled.
    os.remove(path)
    np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    fresh = ChunkSet.open(tmp_path / "set", "k")
    with pytest.raises(Exception, match="Python objects|does not hold"):
        fresh.arrays(0)
    # Another shape, or a symbolic link: refused.
    os.remove(path)
    np.save(path, np.arange(4.0))
    with pytest.raises(ChunkSetError, match="does not hold"):
        ChunkSet.open(tmp_path / "set", "k").arrays(0)
    os.remove(path)
    np.save(tmp_path / "elsewhere.npy", np.arange(5.0))
    os.symlink(tmp_path / "elsewhere.npy", path)
    with pytest.raises(OSError, match="symbolic link"):
        ChunkSet.open(tmp_path / "set", "k").arrays(0)
    # A malformed manifest.
    (tmp_path / "set" / "manifest.json").write_text('{"format": 1}')
    with pytest.raises(ChunkSetError, match="not a valid"):
        ChunkSet.open(tmp_path / "set", "k")


def test_group_images():
    assert group_images([3, 3, 3, 3, 3], 7) == [2, 2, 1]
    assert group_images([10, 1, 1], 5) == [1, 2]


def test_store_keeps_nothing_in_memory_when_asked(tmp_path):
    images = alloy_images(3)
    descriptor = Gaussian(cutoff=4.0)
    store = descriptor.open_store(str(tmp_path / "db"), images=images,
                                  keep_in_memory=False)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True,
                                      store=store)
    assert all(not db._memdict for db in store.databases.values())
    key = next(iter(images))
    assert store.has_derivatives(key) and store[key].has_derivatives
    assert all(not db._memdict for db in store.databases.values())


_DISK_SCRIPT = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, %(tests)r)
    from test_streaming import alloy_images
    from amp import Amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.store.chunks import DiskSpaceError
    %(limit)s
    folder = sys.argv[1]
    images = alloy_images(6)
    calc = Amp(descriptor=Gaussian(cutoff=4.0), label=folder + "/run",
               model=NeuralNetwork(hiddenlayers=(3,), randomseed=0),
               cores=1)
    calc.model.lossfunction = LossFunction(maxiter=2)
    try:
        calc.train(images, memory_limit="1.2 MB")
    except DiskSpaceError as error:
        print("REFUSED", error)
    print("FOLDER", sorted(os.listdir(folder)))
""")


def _run_disk_script(command, folder, limit=""):
    script = _DISK_SCRIPT % {"tests": os.path.dirname(__file__),
                             "limit": limit}
    result = subprocess.run(command + [sys.executable, "-c", script,
                                       str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_full_disk_refused_before_anything_is_written_tmpfs(tmp_path):
    """A 1 MB tmpfs in a private mount namespace (needs root; CI runs as
    root): the 2 MB of chunk files are refused, and no database exists."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (mount namespace)")
    folder = tmp_path / "small"
    folder.mkdir()
    mount = ["unshare", "-m", "sh", "-c",
             'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"',
             str(folder)]
    out = _run_disk_script(mount, folder)
    assert "REFUSED the chunk files of streamed training need about 2.0 " \
        "MB but only" in out
    assert "nothing has been written" in out
    assert "FOLDER ['run-log.txt']" in out


def test_file_size_limit_refused_before_anything_is_written(tmp_path):
    """RLIMIT_FSIZE below one chunk file: refused before writing (no
    SIGXFSZ, no half-written set)."""
    limit = ("import resource, signal; "
             "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             "resource.setrlimit(resource.RLIMIT_FSIZE, (150000, "
             "resource.RLIM_INFINITY))")
    out = _run_disk_script([], tmp_path, limit)
    assert "file-size limit of 150 kB" in out
    assert "FOLDER ['run-log.txt']" in out


def test_check_free_space_names_the_figures(tmp_path, monkeypatch):
    from amp.store import chunks

    monkeypatch.setattr(chunks, "free_space", lambda path: 10 ** 6)
    with pytest.raises(DiskSpaceError) as error:
        chunks.check_free_space(tmp_path / "not-yet" / "x", 5 * 10 ** 6)
    assert "need about 5.0 MB but only 1.0 MB is free" in str(error.value)
    assert error.value.errno == 28  # ENOSPC
    assert chunks.check_free_space(tmp_path, 10 ** 5) == 10 ** 6


def test_sets_left_by_dead_runs_are_removed(training, tmp_path):
    images, descriptor = training
    from amp.model.streaming import _host

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = tmp_path / ("run-%s-%d-0000" % (_host(), child.pid))
    alive = tmp_path / ("run-%s-%d-0000" % (_host(), os.getpid()))
    for folder in (stale, alive):
        folder.mkdir()
        (folder / "c00000-force_data.npy").write_bytes(b"x")
    lines = []
    batches = Streaming(tmp_path, chunk_bytes=1).batches(
        images, descriptor.arrays, True, log=lines.append)
    assert not stale.exists() and alive.exists()
    assert any("left by a run that ended" in line for line in lines)
    batches.close()
