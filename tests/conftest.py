"""Shared fixtures: paths of the reference data copied from the originals,
builders of EMT training images, and helpers of the parallel tests."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(__file__), "data")
AMP_REFERENCE = os.path.join(DATA, "amp-reference")
GDML_REFERENCE = os.path.join(DATA, "gdml-reference")


def with_emt_results(atoms):
    """``atoms`` carrying its EMT energy and forces as fixed results (a
    ``SinglePointCalculator``), like a training image read from a file."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = EMT()
    atoms.calc = SinglePointCalculator(
        atoms, energy=atoms.get_potential_energy(),
        forces=atoms.get_forces())
    return atoms


def rattled_with_emt(make, count, stdev, rng=None, seeds=None):
    """``count`` training images carrying their EMT energy and forces.

    Image ``k`` is the structure ``make(k)`` with Gaussian noise of
    ``stdev`` Angstrom added to its positions, drawn from ``rng`` (one
    generator, image after image, so ``make`` may draw from it too) or,
    with ``seeds``, by ASE's ``rattle(stdev, seed=seeds[k])``; then it
    carries its EMT results (:func:`with_emt_results`)."""
    if (rng is None) == (seeds is None):
        raise ValueError("give either rng or seeds")
    images = []
    for k in range(count):
        atoms = make(k)
        if seeds is None:
            atoms.rattle(stdev, rng=rng)
        else:
            atoms.rattle(stdev, seed=seeds[k])
        images.append(with_emt_results(atoms))
    return images


def cu_bulk(a, repeat=(1, 1, 1), cubic=False, pt=()):
    """fcc Cu of lattice constant ``a`` repeated ``repeat`` times, with Pt
    at the indices ``pt``."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=a, cubic=cubic)
    if tuple(repeat) != (1, 1, 1):
        atoms = atoms * repeat
    if len(pt):
        atoms.symbols[list(pt)] = "Pt"
    return atoms


def adatom_slab_images(count, seed=0, stdev=0.05):
    """Pt fcc(111) 2x2x2 slabs (vacuum 6 Angstrom) with a Cu adatom at an
    fcc site, rattled by ``stdev`` from ``default_rng(seed)``; EMT
    results."""
    from ase.build import add_adsorbate, fcc111

    base = fcc111("Pt", (2, 2, 2), vacuum=6.0)
    add_adsorbate(base, "Cu", 2.0, "fcc")
    return rattled_with_emt(lambda k: base.copy(), count, stdev,
                            rng=np.random.default_rng(seed))


def cu_slab_images(seeds, pt=()):
    """Cu fcc(111) 2x2x2 slabs (vacuum 5 Angstrom) with Pt at the indices
    ``pt``, one per seed of ``seeds``, rattled by 0.05 Angstrom with ASE's
    ``rattle(seed=...)``; EMT results."""
    from ase.build import fcc111

    def make(k):
        atoms = fcc111("Cu", (2, 2, 2), vacuum=5.0)
        if len(pt):
            atoms.symbols[list(pt)] = "Pt"
        return atoms
    return rattled_with_emt(make, len(seeds), 0.05, seeds=list(seeds))


def molecule_images(count, symbols="CH4", stdev=0.05):
    """``count`` copies of the ASE molecule ``symbols``, rattled by
    ``stdev`` with ASE's ``rattle(seed=k)`` for k = 0, 1, ...; EMT results
    (a small GDML dataset)."""
    from ase.build import molecule

    return rattled_with_emt(lambda k: molecule(symbols), count, stdev,
                            seeds=range(count))


def strained_cell(seed, stress=True):
    """A rattled, sheared Cu3Pt cubic cell (4 atoms) from
    ``default_rng(seed)``, with its EMT energy, forces and (when
    ``stress``) stress as fixed results: a stress-training image."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.symbols[[1]] = "Pt"
    atoms.set_cell(atoms.cell * (1 + 0.03 * rng.normal(size=(3, 3))),
                   scale_atoms=True)
    atoms.rattle(0.1, rng=rng)
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(),
               "forces": atoms.get_forces()}
    if stress:
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


@pytest.fixture
def amp_reference():
    """Folder of the Amp 1.0.1 reference data."""
    return AMP_REFERENCE


@pytest.fixture
def gdml_reference():
    """Folder of the sgdml 1.0.3 reference data."""
    return GDML_REFERENCE


# --------------------------------------------------- parallel-test helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
SSH_ALIAS = "amp-ssh-test"
# Workers started by the tests import the test-only jobs (parallel_jobs.py)
# from this folder: local workers inherit this environment, SSH sessions
# get it from ENVCOMMAND.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [TESTS] + [p for p in [os.environ.get("PYTHONPATH")] if p])
# Run in each SSH session before its workers start: this checkout's venv.
ENVCOMMAND = "cd %s && source %s/bin/activate && export PYTHONPATH=%s" % (
    ROOT, os.path.dirname(os.path.dirname(sys.executable)), TESTS)


def gone(pid, wait=30.0):
    """True once ``pid`` has exited (a zombie counts as exited); False if
    it is still running after ``wait`` seconds (generous: it returns as
    soon as the process is gone, and a loaded machine can be slow)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/status" % pid) as handle:
                if "\nState:\tZ" in handle.read():
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def _parent(pid):
    with open("/proc/%s/stat" % pid, "rb") as handle:
        return int(handle.read().rpartition(b")")[2].split()[1])


def worker_pids(parent=None):
    """Pids of the live ``amp.parallel`` worker processes whose parent is
    ``parent`` (default: this process), so that workers of other programs
    on the machine are never counted."""
    parent = os.getpid() if parent is None else parent
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                argv = handle.read().split(b"\0")
            if b"amp.parallel" not in argv or _parent(name) != parent:
                continue
            with open("/proc/%s/status" % name) as handle:
                if "\nState:\tZ" in handle.read():
                    continue
        except (OSError, IndexError, ValueError):
            continue
        pids.append(int(name))
    return pids


@pytest.fixture(scope="session")
def ssh_alias():
    """The SSH host alias of the local test sshd; skips (fails in CI) when
    ``ssh amp-ssh-test`` does not work."""
    state = os.path.expanduser("~/.ssh/amp-ssh-test/unavailable")
    check = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", SSH_ALIAS,
         "true"], capture_output=True, text=True, timeout=20)
    if check.returncode != 0:
        reason = open(state).read().strip() if os.path.exists(state) else \
            "ssh %s failed: %s" % (SSH_ALIAS, check.stderr.strip())
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("SSH tests must run in CI: " + reason)
        pytest.skip("no local sshd (run scripts/setup_test_system.sh): "
                    + reason)
    return SSH_ALIAS


# ------------------------------------------------------------------ fuzzing

def pytest_addoption(parser):
    parser.addoption("--fuzz-count", type=int, default=None,
                     help="mutated files per reader in tests/test_fuzz.py "
                          "(default 300, or AMP_FUZZ_COUNT)")


def pytest_configure(config):
    count = config.getoption("--fuzz-count")
    if count is not None:
        os.environ["AMP_FUZZ_COUNT"] = str(count)
