"""Training with workers: fingerprints computed by workers and the
loss function's images held by workers for the whole fit, locally and over
SSH. Results equal the serial ones; no worker outlives the training."""
import os

import numpy as np
import pytest

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model._shares import WorkerBatches
from amp.model.neuralnetwork import NeuralNetwork
from amp.parallel import WorkerPool
from amp.utilities import Logger, hash_images
from conftest import (ENVCOMMAND, cu_bulk, gone, rattled_with_emt,
                      worker_pids)

CONVERGENCE = {"energy_rmse": 0.01, "force_rmse": 0.4}


@pytest.fixture(autouse=True)
def always_use_workers(monkeypatch):
    """These images are too few for workers to pay off; the tests here are
    about results with workers: the losses are made with use_workers=True
    (no set-up measurement), and fingerprints go to workers too."""
    monkeypatch.setattr(Gaussian, "WORKERS_FROM_SECONDS", 0.0)
    monkeypatch.setattr(Gaussian, "START_WORKERS_FROM_SECONDS", 0.0)


def emt_images(count=8, seed=3):
    return rattled_with_emt(lambda k: cu_bulk(3.7, cubic=True, pt=[1, 2]),
                            count, 0.12, rng=np.random.default_rng(seed))


def model_with_loss(parallel, images, descriptor, use_workers=True):
    model = NeuralNetwork(hiddenlayers=(4, 3), randomseed=3)
    model.lossfunction = LossFunction(
        convergence=CONVERGENCE, raise_ConvergenceOccurred=False,
        log_losses=False, overfit=1e-4, use_workers=use_workers)
    model.fit(images, descriptor, Logger(None), parallel, only_setup=True)
    return model


@pytest.fixture(scope="module")
def fingerprinted():
    images = hash_images(emt_images())
    descriptor = Gaussian(cutoff=4.5)
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    return images, descriptor


@pytest.fixture(scope="module")
def serial_losses(fingerprinted):
    images, descriptor = fingerprinted
    model = model_with_loss({"cores": 1}, images, descriptor)
    vectors = [model.vector, 1.1 * model.vector + 0.01]
    return vectors, [model.lossfunction.calculate_loss(v, True)
                     for v in vectors]


def assert_same_loss(result, reference):
    for key, value in reference.items():
        if key == "dloss_dparameters":
            scale = np.linalg.norm(value)
            np.testing.assert_allclose(result[key], value, rtol=1e-12,
                                       atol=1e-12 * scale)
        else:
            assert result[key] == pytest.approx(value, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("cores", [2, 3])
def test_loss_from_workers_equals_serial(fingerprinted, serial_losses, cores):
    images, descriptor = fingerprinted
    vectors, expected = serial_losses
    before = set(worker_pids())
    model = model_with_loss({"cores": cores}, images, descriptor)
    lossfunction = model.lossfunction
    with lossfunction.evaluator({"cores": cores}):
        for vector, reference in zip(vectors, expected):
            assert_same_loss(lossfunction.calculate_loss(vector, True),
                             reference)
        assert lossfunction._workers.n_shares == cores
        started = set(worker_pids()) - before
        assert len(started) == cores
        # Without the gradient, too.
        result = lossfunction.calculate_loss(vectors[1], False)
        assert result["loss"] == pytest.approx(expected[1]["loss"],
                                               rel=1e-12)
    assert lossfunction._workers is None
    assert all(gone(pid) for pid in started)


def test_killed_worker_share_is_reassigned(fingerprinted, serial_losses):
    images, descriptor = fingerprinted
    vectors, expected = serial_losses
    with WorkerPool(2, timeout=10) as pool:
        model = model_with_loss(pool, images, descriptor)
        lossfunction = model.lossfunction
        with lossfunction.evaluator(pool):
            assert_same_loss(lossfunction.calculate_loss(vectors[0], True),
                             expected[0])
            victim = pool.peers[0]
            victim.process.kill()
            assert_same_loss(lossfunction.calculate_loss(vectors[1], True),
                             expected[1])
            assert len(pool.failures) == 1 and \
                "localhost" in pool.failures[0]
            assert set(lossfunction._workers.job.owner.values()) == \
                {pool.peers[1]}
        # A pool that was given is left running for its owner.
        assert pool.alive() == [pool.peers[1]]


def make_calc(label, cores, envcommand=None, use_workers=True):
    calc = Amp(descriptor=Gaussian(cutoff=4.5),
               model=NeuralNetwork(hiddenlayers=(4, 3), randomseed=3),
               label=label, cores=cores, envcommand=envcommand)
    calc.model.lossfunction = LossFunction(convergence=CONVERGENCE,
                                           overfit=1e-4,
                                           use_workers=use_workers)
    return calc


@pytest.fixture(scope="module")
def serial_fit(tmp_path_factory):
    calc = make_calc(str(tmp_path_factory.mktemp("serial") / "fit"), 1)
    assert calc.train(emt_images()) is True
    return calc.model.vector


def train_and_watch(calc, monkeypatch, interrupt_at=None, seen=None):
    """Train; return the worker pids seen during the fit (also added to
    ``seen``); raise KeyboardInterrupt at loss call ``interrupt_at``."""
    seen, calls = (set() if seen is None else seen), [0]
    partials = WorkerBatches.partials

    def watched(self, vector, lossprime):
        seen.update(worker_pids())
        calls[0] += 1
        if calls[0] == interrupt_at:
            raise KeyboardInterrupt
        return partials(self, vector, lossprime)

    monkeypatch.setattr(WorkerBatches, "partials", watched)
    calc.train(emt_images())
    return seen


def test_amp_train_with_workers_equals_serial(tmp_path, serial_fit,
                                              monkeypatch):
    before = set(worker_pids())
    label = str(tmp_path / "fit")
    calc = make_calc(label, 2)
    seen = train_and_watch(calc, monkeypatch) - before
    assert len(seen) == 2
    np.testing.assert_allclose(calc.model.vector, serial_fit, rtol=1e-8,
                               atol=1e-10)
    log = open(label + "-log.txt").read()
    assert "Started 2 local workers" in log
    assert "shares held by workers" in log
    assert all(gone(pid) for pid in seen)


def test_interrupted_training_leaves_no_worker(tmp_path, monkeypatch):
    before = set(worker_pids())
    label = str(tmp_path / "stop")
    calc = make_calc(label, 2)
    seen = set()
    with pytest.raises(KeyboardInterrupt):
        train_and_watch(calc, monkeypatch, interrupt_at=3, seen=seen)
    assert len(seen - before) == 2
    assert all(gone(pid) for pid in seen - before)
    assert os.path.exists(label + "-checkpoint.amp")
    Amp.load(label + "-checkpoint.amp")


@pytest.mark.ssh
def test_training_over_ssh_equals_serial(tmp_path, serial_fit, ssh_alias,
                                         monkeypatch):
    label = str(tmp_path / "ssh")
    calc = make_calc(label, {ssh_alias: 2}, envcommand=ENVCOMMAND)
    seen = train_and_watch(calc, monkeypatch)
    np.testing.assert_allclose(calc.model.vector, serial_fit, rtol=1e-8,
                               atol=1e-10)
    log = open(label + "-log.txt").read()
    assert "Started 2 workers on %s" % ssh_alias in log
    assert "shares held by workers" in log
    assert all(gone(pid) for pid in seen)


@pytest.mark.parametrize("derivatives", [False, True])
def test_fingerprints_from_workers_stored_like_serial(tmp_path, derivatives):
    images = hash_images(emt_images(5))
    serial = Gaussian(cutoff=4.5)
    serial.calculate_fingerprints(images, calculate_derivatives=derivatives)
    stored = Gaussian(cutoff=4.5, dblabel=str(tmp_path / "db"))
    computed = stored.calculate_fingerprints(
        images, parallel={"cores": 2}, calculate_derivatives=derivatives)
    assert sorted(computed) == sorted(images)
    reread = Gaussian(cutoff=4.5, dblabel=str(tmp_path / "db"))
    assert reread.calculate_fingerprints(
        images, calculate_derivatives=derivatives) == []  # all on disk
    for key in images:
        a, b = serial.arrays[key], reread.arrays[key]
        for element in a.values:
            assert np.array_equal(a.values[element], b.values[element])
        assert reread.neighborlist[key][0][0].tolist() == \
            serial.neighborlist[key][0][0].tolist()
        assert b.has_derivatives is derivatives
        if derivatives:
            assert np.array_equal(a.force_matrix().toarray(),
                                  b.force_matrix().toarray())


def test_master_computes_one_share(fingerprinted, serial_losses):
    """With two local workers the master takes one share and one worker
    the other; the second worker holds nothing, the master keeps only its
    own batch."""
    images, descriptor = fingerprinted
    vectors, expected = serial_losses
    with WorkerPool(2) as pool:
        model = model_with_loss(pool, images, descriptor)
        lossfunction = model.lossfunction
        with lossfunction.evaluator(pool):
            workers = lossfunction._workers
            assert workers.n_shares == 2 and len(workers.local) == 1
            assert len(workers.job.shares) == 1
            assert len(set(workers.job.owner.values())) == 1
            assert lossfunction._batches is None
            for vector, reference in zip(vectors, expected):
                assert_same_loss(lossfunction.calculate_loss(vector, True),
                                 reference)


@pytest.mark.parametrize("serial, workers, started, expected", [
    (0.001, None, False, False),    # too little to start workers
    (0.001, None, True, True),      # running already: tried
    (0.002, None, False, True),     # from START_WORKERS_FROM: tried
    (0.010, 0.009, True, True),     # at the margin: kept
    (0.010, 0.0091, True, False),   # slower than the margin: dropped
    (0.010, 0.012, True, False)])
def test_workers_or_serial_policy(serial, workers, started, expected):
    from amp.model._shares import START_WORKERS_FROM, WORKERS_MARGIN, decide

    assert START_WORKERS_FROM == 0.002 and WORKERS_MARGIN == 0.9
    assert decide(serial, workers, started) is expected


@pytest.mark.parametrize("serial, started, evaluations, efficiency, expected",
                         [(0.0068, False, 40, None, False),  # saves 0.12 s
                          (0.0068, False, 1000, None, True),  # saves 2.9 s
                          (0.0068, True, 40, None, True),    # running: tried
                          (0.0068, True, None, 0.4, False),  # slow workers
                          (0.0068, True, None, 0.95, True),
                          (0.0068, False, 1000, 0.4, False)])
def test_starting_and_sharing_are_predicted(serial, started, evaluations,
                                            efficiency, expected):
    """Workers not running are started only when they would save more than
    starting costs over the fit's evaluations; workers that were slow on
    the fingerprints get no shares."""
    from amp.model._shares import (ROUND_TRIP, START_COST, decide,
                                   predicted_with_workers)

    assert START_COST == 0.5 and ROUND_TRIP == 0.0005
    assert predicted_with_workers(0.0068, 2) == pytest.approx(0.0039)
    assert predicted_with_workers(0.0068, 2, 0.5) == pytest.approx(0.0073)
    assert decide(serial, None, started, 2, evaluations, efficiency) \
        is expected


def test_short_fit_does_not_start_workers(tmp_path, monkeypatch):
    """A loss worth workers per evaluation, but a fit too short for their
    start to pay: none is started, and the log says why."""
    import amp.model._shares as shares

    monkeypatch.setattr(Gaussian, "WORKERS_FROM_SECONDS", 1e3)
    monkeypatch.setattr(Gaussian, "START_WORKERS_FROM_SECONDS", 1e3)
    monkeypatch.setattr(shares, "START_WORKERS_FROM", 0.0)
    monkeypatch.setattr(shares, "START_COST", 1e3)
    before = set(worker_pids())
    label = str(tmp_path / "short")
    calc = make_calc(label, 2, use_workers=None)
    calc.model.lossfunction.parameters.maxiter = 30
    assert calc.train(emt_images()) is True  # converges within 30 steps
    assert set(worker_pids()) - before == set()
    log = open(label + "-log.txt").read()
    assert "at most 30 evaluations would save" in log
    assert "less than starting workers costs (about 1000.0 s)" in log


def test_fingerprint_workers_record_their_speed(tmp_path):
    import io

    images = hash_images(emt_images(6))
    text = io.StringIO()
    with WorkerPool(2) as pool:
        assert pool.efficiency is None
        Gaussian(cutoff=4.5).calculate_fingerprints(
            images, parallel=pool, log=Logger(text),
            calculate_derivatives=True)
        assert 0.0 < pool.efficiency <= 1.0
    assert "Fingerprints: 4 images by 2 workers in" in text.getvalue()


def test_workers_kept_only_when_they_pay_off(fingerprinted, serial_losses):
    """The set-up measurement keeps the workers when decide() says they
    pay off, and otherwise evaluates serially and says so; both ways give
    the serial losses."""
    import io

    from amp.model._shares import decide

    images, descriptor = fingerprinted
    vectors, expected = serial_losses
    text = io.StringIO()
    with WorkerPool(2) as pool:
        model = model_with_loss(pool, images, descriptor, use_workers=None)
        lossfunction = model.lossfunction
        lossfunction._log = Logger(text)
        with lossfunction.evaluator(pool):
            workers = lossfunction._workers
            assert set(workers.timings) == {"serial", "workers"}
            if not decide(workers.timings["serial"],
                          workers.timings["workers"]):
                # Serial on one batch, the serial path's own.
                assert workers.job is None and len(workers.local) == 1
                assert workers.local[0].batch.n_images == len(images)
                assert "workers do not pay off" in text.getvalue()
                assert "evaluating serially" in text.getvalue()
            else:
                assert workers.job is not None and len(workers.local) == 1
                assert "per evaluation with 1 workers and the master" in \
                    text.getvalue()
            for vector, reference in zip(vectors, expected):
                assert_same_loss(lossfunction.calculate_loss(vector, True),
                                 reference)


def test_forty_steps_with_workers_equal_serial(tmp_path, monkeypatch):
    """Every loss and gradient of 40 BFGS steps with workers equals the
    serial one at the same parameters to 1e-12; the parameters after 40
    steps equal those of the serial fit to 1e-8."""
    from amp.model import TrainingConvergenceError

    runs = {}
    original = LossFunction.calculate_loss
    for cores in (1, 2):
        seen = []

        def recorded(self, vector, lossprime=True):
            result = original(self, vector, lossprime)
            seen.append((np.array(vector), result["loss"],
                         np.array(result["dloss_dparameters"])))
            return result

        monkeypatch.setattr(LossFunction, "calculate_loss", recorded)
        calc = make_calc(str(tmp_path / ("c%d" % cores)), cores)
        calc.model.lossfunction = LossFunction(
            convergence={"energy_rmse": 1e-9, "force_rmse": 1e-9},
            overfit=1e-4, maxiter=40, use_workers=True)
        with pytest.raises(TrainingConvergenceError, match="maxiter"):
            calc.train(emt_images())
        runs[cores] = (seen, calc)
    monkeypatch.setattr(LossFunction, "calculate_loss", original)
    (serial, serial_calc), (parallel, parallel_calc) = runs[1], runs[2]
    assert len(serial) == len(parallel) == 40
    check = serial_calc.model.lossfunction  # serial, outside the fit
    for vector, loss, gradient in parallel:
        expected = check.calculate_loss(vector, True)
        assert loss == pytest.approx(expected["loss"], rel=1e-12)
        reference = expected["dloss_dparameters"]
        np.testing.assert_allclose(gradient, reference, rtol=0,
                                   atol=1e-12 * np.linalg.norm(reference))
    serial_vector = serial_calc.model.vector
    np.testing.assert_allclose(parallel_calc.model.vector, serial_vector,
                               rtol=1e-8,
                               atol=1e-10 * np.abs(serial_vector).max())


def test_few_images_fingerprinted_here(tmp_path, monkeypatch):
    """Too little fingerprint work for workers: computed in the master,
    stored as with workers, and logged."""
    import io

    import amp.parallel as parallel

    monkeypatch.setattr(Gaussian, "WORKERS_FROM_SECONDS", 1e3)
    monkeypatch.setattr(Gaussian, "START_WORKERS_FROM_SECONDS", 1e3)
    used = []
    monkeypatch.setattr(parallel, "compute_in_workers",
                        lambda *args, **kwargs: used.append(1) or iter(()))
    images = hash_images(emt_images(4))
    text = io.StringIO()
    with WorkerPool(2) as pool:
        stored = Gaussian(cutoff=4.5, dblabel=str(tmp_path / "db"))
        computed = stored.calculate_fingerprints(
            images, parallel=pool, log=Logger(text),
            calculate_derivatives=True)
    assert sorted(computed) == sorted(images) and used == []
    assert "computed here (workers pay off from about 1000.0 s)" in \
        text.getvalue()
    serial = Gaussian(cutoff=4.5)
    serial.calculate_fingerprints(images, calculate_derivatives=True)
    for key in images:
        np.testing.assert_array_equal(
            stored.arrays[key].force_matrix().toarray(),
            serial.arrays[key].force_matrix().toarray())


def test_small_training_never_starts_workers(tmp_path, serial_fit,
                                             monkeypatch):
    """cores=2 on work too small for workers: none is started (the pool
    is lazy), the log says why, and the fit is the serial one."""
    import amp.model._shares as shares

    monkeypatch.setattr(Gaussian, "WORKERS_FROM_SECONDS", 1e3)
    monkeypatch.setattr(Gaussian, "START_WORKERS_FROM_SECONDS", 1e3)
    # Whatever the load on the machine, this loss counts as small.
    monkeypatch.setattr(shares, "START_WORKERS_FROM", 1e3)
    before = set(worker_pids())
    label = str(tmp_path / "small")
    calc = make_calc(label, 2, use_workers=None)
    assert calc.train(emt_images()) is True
    assert set(worker_pids()) - before == set()
    np.testing.assert_allclose(calc.model.vector, serial_fit, rtol=1e-8,
                               atol=1e-10)
    log = open(label + "-log.txt").read()
    assert "Started" not in log
    assert "Fingerprints: about" in log and "computed here" in log
    assert "too little for workers" in log
    assert "held by workers" not in log


def test_concatenated_shares_are_the_serial_batch(fingerprinted):
    from amp.model.batch import TrainingBatch

    images, descriptor = fingerprinted
    model = model_with_loss({"cores": 1}, images, descriptor)
    lossfunction = model.lossfunction
    whole = lossfunction.batches()[0]
    lossfunction.split_images(3)
    merged = TrainingBatch.concatenate(lossfunction.batches())
    for name in ("image_weight", "n_atoms", "reference_energies",
                 "reference_forces", "force_row_weight"):
        np.testing.assert_array_equal(getattr(merged, name),
                                      getattr(whole, name))
    assert merged.elements == whole.elements
    assert merged.column_start == whole.column_start
    for e in whole.elements:
        np.testing.assert_array_equal(merged.fingerprints[e],
                                      whole.fingerprints[e])
        np.testing.assert_array_equal(merged.image_of_atom[e],
                                      whole.image_of_atom[e])
    for name in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(getattr(merged.force_matrix, name),
                                      getattr(whole.force_matrix, name))
    assert merged.force_matrix.shape == whole.force_matrix.shape


def test_local_workers_store_fingerprints_themselves(tmp_path, monkeypatch):
    """Workers on this machine (running already) write the database
    entries; the master stores only the images it timed, and the entries
    read back as the serial ones. Workers started for the job: the master
    computes images itself until they have connected."""
    from amp.descriptor.fingerprint_store import DatabaseStore

    puts = []
    original = DatabaseStore.put
    monkeypatch.setattr(DatabaseStore, "put", lambda self, key, fp:
                        puts.append(key) or original(self, key, fp))
    images = hash_images(emt_images(5))
    stored = Gaussian(cutoff=4.5, dblabel=str(tmp_path / "db"))
    with WorkerPool(2) as pool:
        computed = stored.calculate_fingerprints(
            images, parallel=pool, calculate_derivatives=True)
    assert sorted(computed) == sorted(images)
    assert puts == list(images)[:2]  # in this process: the timed two only
    puts.clear()
    again = Gaussian(cutoff=4.5, dblabel=str(tmp_path / "lazy"))
    assert sorted(again.calculate_fingerprints(
        images, parallel={"cores": 2}, calculate_derivatives=True)) == \
        sorted(images)
    assert puts == list(images)[:len(puts)] and len(puts) >= 1
    serial = Gaussian(cutoff=4.5)
    serial.calculate_fingerprints(images, calculate_derivatives=True)
    reread = Gaussian.fromdict(stored.todict())
    reread.dblabel = str(tmp_path / "db")
    for key in images:
        np.testing.assert_array_equal(
            reread.arrays[key].force_matrix().toarray(),
            serial.arrays[key].force_matrix().toarray())
