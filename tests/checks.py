"""Checks shared by the descriptor, network, calculator and GDML tests.

Each takes a function of an ``ase.Atoms`` (an energy, fingerprints, ...)
so the same central differences and symmetry operations test every layer:

* :func:`assert_forces_are_gradients` -- forces equal minus the gradient
  of the energy (central differences of every coordinate);
* :func:`assert_stress_is_strain_derivative` -- the stress (or virial)
  equals the derivative of the energy under a homogeneous strain of cell
  and atoms;
* :func:`assert_invariant` -- a per-image or per-atom quantity does not
  change under translation, rotation, permutation of like atoms and
  moving an atom by a lattice vector;
* :func:`coo_force_matrix` -- the force matrix built the plain way, the
  oracle of ``ImageFingerprints.force_matrix``;
* :func:`watchdog` -- fail instead of hanging.
"""
import contextlib
import signal

import numpy as np

VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


def energy_of(calc):
    """``energy(atoms)`` through the ASE calculator ``calc``."""
    def energy(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return atoms.get_potential_energy()
    return energy


def numerical_forces(energy, atoms, h=1e-5):
    """Minus the central-difference gradient of ``energy``, (n_atoms, 3)."""
    forces = np.zeros((len(atoms), 3))
    for atom in range(len(atoms)):
        for axis in range(3):
            values = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[atom, axis] += sign * h
                values.append(energy(moved))
            forces[atom, axis] = -(values[0] - values[1]) / (2 * h)
    return forces


def numerical_virial(energy, atoms, h=1e-6):
    """``dE / d strain`` by central differences, 3x3, with the strain
    applied to the cell and the atoms together."""
    virial = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            values = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += sign * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell @ strain, scale_atoms=True)
                values.append(energy(strained))
            virial[a, b] = (values[0] - values[1]) / (2 * h)
    return virial


def assert_forces_are_gradients(energy, atoms, forces, h=1e-5, atol=1e-7,
                                rtol=0.0):
    """Assert ``forces`` = minus the gradient of ``energy`` at ``atoms``.

    With ``h = 1e-5`` the central differences are accurate to about 1e-9
    relative, so ``atol`` of 1e-7 (eV/A) leaves room for round-off.
    """
    forces = np.asarray(forces, dtype=float)
    assert forces.shape == (len(atoms), 3)
    assert np.abs(forces).max() > 10 * atol, "forces too small to test"
    np.testing.assert_allclose(forces, numerical_forces(energy, atoms, h),
                               rtol=rtol, atol=atol)


def assert_stress_is_strain_derivative(energy, atoms, stress, h=1e-6,
                                       atol=1e-7, rtol=0.0):
    """Assert ``stress`` = ``dE/d strain / V`` at ``atoms``.

    ``stress`` is ASE's Voigt 6-vector or a 3x3 matrix (for a virial,
    ``dE/d strain`` itself, divide it by the volume first).
    """
    expected = numerical_virial(energy, atoms, h) / atoms.get_volume()
    expected = 0.5 * (expected + expected.T)
    stress = np.asarray(stress, dtype=float)
    if stress.shape == (6,):
        expected = expected[VOIGT]
    np.testing.assert_allclose(stress, expected, rtol=rtol, atol=atol)


def _rotation(angles):
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("xyz", angles, degrees=True).as_matrix()


def symmetry_copies(atoms, operations=("translation", "rotation",
                                       "permutation", "periodic"),
                    seed=0):
    """Yield ``(name, moved_atoms, order)``: ``moved_atoms`` is ``atoms``
    under one operation and ``order`` maps its atoms to the original ones
    (``moved[k]`` is ``atoms[order[k]]``)."""
    rng = np.random.default_rng(seed)
    n = len(atoms)
    identity = np.arange(n)
    if "translation" in operations:
        moved = atoms.copy()
        moved.translate(rng.normal(scale=2.0, size=3))
        yield "translation", moved, identity
    if "rotation" in operations:
        moved = atoms.copy()
        rotation = _rotation(rng.uniform(-180, 180, size=3))
        moved.positions = atoms.positions @ rotation.T
        moved.cell = np.asarray(atoms.cell) @ rotation.T
        yield "rotation", moved, identity
    if "permutation" in operations:
        order = identity.copy()
        numbers = atoms.numbers
        for number in np.unique(numbers):
            same = np.flatnonzero(numbers == number)
            order[same] = same[rng.permutation(len(same))]
        yield "permutation", atoms[order], order
    if "periodic" in operations and any(atoms.pbc) and atoms.cell.rank:
        moved = atoms.copy()
        axis = int(np.flatnonzero(atoms.pbc)[0])
        moved.positions[0] += atoms.cell[axis]
        yield "periodic image", moved, identity


def assert_invariant(function, atoms, per_atom=False, atol=1e-10,
                     operations=("translation", "rotation", "permutation",
                                 "periodic")):
    """Assert ``function(atoms)`` does not change under symmetry operations.

    Parameters
    ----------
    function : callable
        ``function(atoms) -> array``: a per-image value, or with
        ``per_atom`` one row per atom (rows follow a permutation).
    atoms : ase.Atoms
    per_atom : bool
    atol : float
    operations : tuple of str
        Any of ``translation``, ``rotation`` (of atoms and cell),
        ``permutation`` (of atoms of the same element) and ``periodic``
        (one atom moved by a lattice vector; only for periodic cells).
    """
    reference = np.asarray(function(atoms), dtype=float)
    for name, moved, order in symmetry_copies(atoms, operations):
        value = np.asarray(function(moved), dtype=float)
        expected = reference[order] if per_atom else reference
        np.testing.assert_allclose(value, expected, rtol=0, atol=atol,
                                   err_msg="not invariant under " + name)


@contextlib.contextmanager
def watchdog(seconds=20.0):
    """Fail instead of hanging: after ``seconds`` a ``TimeoutError`` is
    raised in the block (SIGALRM interrupts even a blocking ``open()``).
    Main thread only; the previous SIGALRM handler is restored."""
    def expire(signum, frame):
        raise TimeoutError("no answer within %g s: the code hangs" % seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def coo_force_matrix(fp):
    """``fp.force_matrix()`` the plain way: every derivative value of every
    entry as a COO triple, with a plus sign in its centre atom's rows and
    a minus sign in its neighbour's, duplicates summed by ``tocsr``."""
    from scipy.sparse import coo_matrix

    nl = fp.neighbors
    rows, cols, data = [], [], []
    offset = 0
    for element in sorted(fp.values):
        n_e, n_f = fp.values[element].shape
        block = fp.derivatives[element]  # (entries, 3, features)
        if len(block):
            entries = fp.entries[element]
            row_of_atom = np.zeros(fp.n_atoms, dtype=np.int64)
            row_of_atom[fp.atom_index[element]] = np.arange(n_e)
            column = (offset + row_of_atom[nl.i[entries]][:, None, None]
                      * n_f + np.arange(n_f)[None, None, :])
            column = np.broadcast_to(column, block.shape)
            axis = np.arange(3)[None, :, None]
            for atom, sign in ((nl.i[entries], 1.0), (nl.j[entries], -1.0)):
                row = np.broadcast_to(3 * atom[:, None, None] + axis,
                                      block.shape)
                rows.append(row.ravel())
                cols.append(column.ravel())
                data.append(sign * block.ravel())
        offset += n_e * n_f
    if rows:
        rows, cols = np.concatenate(rows), np.concatenate(cols)
        data = np.concatenate(data)
    return coo_matrix((data, (rows, cols)),
                      shape=(3 * fp.n_atoms, offset)).tocsr()
