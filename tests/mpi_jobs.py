"""Training scripts of the MPI tests (tests/test_mpi.py).

Every rank of ``mpiexec -n N python mpi_jobs.py CASE FOLDER`` runs one of
the cases below with ``cores='mpi'``; the serial references call the same
functions in the test process with ``cores=1``. Each rank writes what it
saw (losses and gradients of every step, parameters, the files it wrote)
to ``FOLDER/results/rank-<r>.json``: that is this harness writing, not the
library.
"""
import json
import os
import signal
import sys
import tempfile

import numpy as np

TESTS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TESTS)

from conftest import cu_bulk, rattled_with_emt  # noqa: E402


def images(count=9, seed=3):
    """Cu/Pt cells of 4 and 8 atoms (shares are balanced by atoms)."""
    def make(k):
        atoms = cu_bulk(3.7, cubic=True, pt=[1, 2])
        return atoms * (2, 1, 1) if k % 3 == 0 else atoms
    return rattled_with_emt(make, count, 0.12,
                            rng=np.random.default_rng(seed))


def _rank():
    if "PMI_RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ:
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_rank()
    return 0


class Recorder:
    """Records every loss evaluation (loss, gradient) and the size of this
    process's training batch while a training runs."""

    def __init__(self, fault=None):
        from amp.model import LossFunction

        self.losses, self.gradients, self.batch_bytes = [], [], None
        self.vectors = []
        self.fault, self.rank = fault, _rank()
        self.original = LossFunction.get_loss
        recorder = self

        def get_loss(lossfunction, vector, lossprime=True):
            recorder.before(lossfunction)
            recorder.vectors.append(np.asarray(vector, float).tolist())
            result = recorder.original(lossfunction, vector, lossprime)
            recorder.losses.append(float(result["loss"]))
            recorder.gradients.append(
                np.asarray(result["dloss_dparameters"]).tolist())
            return result

        LossFunction.get_loss = get_loss

    def before(self, lossfunction):
        if self.batch_bytes is None:
            workers = lossfunction._workers
            batches = [workers.share.batch] if workers is not None and \
                workers.share is not None else ([] if workers is not None
                                                else lossfunction.batches())
            self.batch_bytes = int(sum(
                b.force_matrix.data.nbytes + b.force_matrix.indices.nbytes
                for b in batches))
        step = len(self.losses) + 1
        if step == 5 and self.rank == 1 and self.fault == "raise":
            raise MemoryError("rank 1 cannot go on (a test fault)")
        if step == 5 and self.rank == 1 and self.fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)

    def restore(self):
        from amp.model import LossFunction

        LossFunction.get_loss = self.original


def written_paths(folder):
    """Install an audit hook listing what this process writes, except the
    results of this harness."""
    results = os.path.join(folder, "results")
    written = []

    def hook(event, args):
        path, folder_fd = None, None
        if event == "open" and args[1] is not None and \
                any(c in str(args[1]) for c in "wax+"):
            path = args[0]
        elif event in ("os.rename", "os.replace"):
            path, folder_fd = args[1], args[3]
        elif event in ("os.remove", "os.rmdir"):
            path, folder_fd = args
        elif event == "os.mkdir":
            path, folder_fd = args[0], args[2]
        if isinstance(path, (str, bytes, os.PathLike)):
            path = os.fsdecode(path)
            if folder_fd is not None and folder_fd >= 0:  # relative to it
                path = os.path.join(os.readlink("/proc/self/fd/%d"
                                                % folder_fd), path)
            path = os.path.abspath(path)
            if not path.startswith(results):
                written.append(path)

    sys.addaudithook(hook)
    return written


def make_calc(folder, cores, dblabel=None, maxiter=40, checkpoints=100):
    from amp import Amp
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork

    calc = Amp(descriptor=Gaussian(cutoff=4.5),
               model=NeuralNetwork(hiddenlayers=(4, 3), randomseed=3,
                                   checkpoints=checkpoints),
               label=os.path.join(folder, "fit"), dblabel=dblabel,
               cores=cores)
    calc.model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-9, "force_rmse": 1e-9},
        overfit=1e-4, maxiter=maxiter)
    return calc


def serial_loss():
    """The serial loss function of :func:`train`'s model and images (set
    up without training), for evaluating at given parameters."""
    from amp.utilities import Logger, hash_images

    data = hash_images(images())
    calc = make_calc(tempfile.mkdtemp(), 1)
    calc.descriptor.calculate_fingerprints(data, calculate_derivatives=True)
    lossfunction = calc.model.lossfunction
    lossfunction.raise_ConvergenceOccurred = False
    lossfunction.log_losses = False
    calc.model.fit(data, calc.descriptor, Logger(None), only_setup=True)
    return lossfunction


def train(folder, cores, private_db=False, fault=None, memory_limit=None,
          validation=None):
    """40 BFGS steps with force training (``validation``: that fraction
    of the images held out); returns the record."""
    from amp.model import TrainingConvergenceError

    rank = _rank()
    dblabel = os.path.join(folder, "db-rank%d" % rank) if private_db \
        else None
    calc = make_calc(folder, None if fault == "unasked" else cores, dblabel,
                     checkpoints=2)
    data = images()
    if fault == "differ" and rank == 1:
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = data[3]
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy() + 1e-6,
            forces=atoms.get_forces())
    recorder = Recorder(fault)
    try:
        calc.train(data, memory_limit=memory_limit, validation=validation)
        converged = True
    except TrainingConvergenceError:
        converged = False
    finally:
        recorder.restore()
    return {"losses": recorder.losses, "gradients": recorder.gradients,
            "vectors": recorder.vectors[:len(recorder.losses)],
            "vector": np.asarray(calc.model.vector).tolist(),
            "converged": converged, "batch_bytes": recorder.batch_bytes,
            "held_out": [] if validation is None else [
                [step, row["energy_rmse"], row["force_rmse"]]
                for step, row in calc.model.lossfunction.validation.history]}


def ensemble(folder, cores):
    """An annealing (30 moves, seed 5), then a 3-member bootstrap ensemble
    (energies only); returns the annealed parameters and the members'."""
    from amp import Amp
    from amp.annealer import Annealer
    from amp.descriptor.gaussian import Gaussian
    from amp.model import LossFunction
    from amp.model.neuralnetwork import NeuralNetwork
    from amp.stats.bootstrap import BootStrap
    from amp.utilities import Logger

    calc = make_calc(folder, cores)
    Annealer(calc, images(), steps=30, updates=3, seed=5)
    template = Amp(descriptor=Gaussian(cutoff=4.5),
                   model=NeuralNetwork(hiddenlayers=(3,)))
    template.model.lossfunction = LossFunction(
        force_coefficient=None, convergence={"energy_rmse": 0.05},
        maxiter=400)
    members = BootStrap(log=Logger(None))
    members.train(images(), n=3, calc=template, cores=cores, seed=7,
                  label=os.path.join(folder, "ensemble"))
    return {"annealed": np.asarray(calc.model.vector).tolist(),
            "members": [np.asarray(m.model.vector).tolist()
                        for m in members.ensemble]}


def main():
    case, folder = sys.argv[1], os.path.abspath(sys.argv[2])
    options = sys.argv[3:]
    written = written_paths(folder)
    if case == "train":
        fault = next((o[len("fault="):] for o in options
                      if o.startswith("fault=")), None)
        memory = next((o[len("memory="):] for o in options
                       if o.startswith("memory=")), None)
        result = train(folder, "mpi", "private-db" in options, fault,
                       memory, 0.25 if "validation" in options else None)
    else:
        result = ensemble(folder, "mpi")
    result["written"] = sorted(set(written))
    os.makedirs(os.path.join(folder, "results"), exist_ok=True)
    with open(os.path.join(folder, "results", "rank-%d.json" % _rank()),
              "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
