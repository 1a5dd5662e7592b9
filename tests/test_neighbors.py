import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from amp.descriptor.neighbors import atoms_neighbor_list, neighbor_list


def as_set(i, j, offsets):
    return set(zip(i.tolist(), j.tolist(), map(tuple, offsets.tolist())))


def systems():
    rng = np.random.default_rng(3)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True) * (3, 3, 3)
    cu.rattle(0.1, rng=rng)
    yield "bulk108", cu, 6.5
    yield "tiny primitive cell", bulk("Cu", "fcc", a=3.6), 6.5
    slab = fcc111("Pt", (2, 2, 3), vacuum=7.0)
    slab.positions += 25.0  # far outside the cell: must be wrapped
    yield "slab", slab, 6.5
    yield "molecule", molecule("CH3CH2OH"), 6.5
    mixed = molecule("CH3CH2OH")
    mixed.center(vacuum=2.0)
    mixed.pbc = [True, False, True]
    yield "mixed pbc", mixed, 4.0
    tri = bulk("Cu", "fcc", a=3.6) * (2, 3, 4)
    tri.set_cell(tri.cell * [1.0, 1.1, 0.9], scale_atoms=True)
    tri.rattle(0.3, rng=rng)
    yield "triclinic", tri, 5.1
    big = bulk("Cu", "fcc", a=3.6, cubic=True) * (6, 6, 6)
    yield "bulk864", big, 6.5


@pytest.mark.parametrize("name, atoms, rc", list(systems()),
                         ids=[s[0] for s in systems()])
def test_same_entries_as_ase(name, atoms, rc):
    nl = atoms_neighbor_list(atoms, rc)
    i, j, S, d = ase_neighbor_list("ijSd", atoms, rc)
    assert as_set(nl.i, nl.j, nl.offsets) == as_set(i, j, S)
    assert np.all(np.diff(nl.i) >= 0)
    expected = (atoms.positions[nl.j] + nl.offsets @ atoms.cell
                - atoms.positions[nl.i])
    np.testing.assert_allclose(nl.vectors, expected, atol=1e-12)
    np.testing.assert_allclose(nl.distances,
                               np.linalg.norm(expected, axis=1), atol=1e-12)
    assert np.all(nl.distances < rc)


def test_self_images_in_small_cell():
    atoms = Atoms("Cu", cell=np.eye(3) * 2.5, pbc=True)
    nl = atoms_neighbor_list(atoms, 5.1)
    # Every neighbour is an image of the atom itself; 6 at a, 12 at a*sqrt2,
    # 8 at a*sqrt3, 6 at 2a.
    assert set(nl.j.tolist()) == {0}
    assert len(nl.i) == 6 + 12 + 8 + 6
    assert not np.any(np.all(nl.offsets == 0, axis=1))


def test_strict_cutoff_and_isolated_atom():
    atoms = Atoms("H3", positions=[[0, 0, 0], [2.0, 0, 0], [10, 0, 0]])
    nl = atoms_neighbor_list(atoms, 2.0)  # exactly at Rc: not a neighbour
    assert len(nl.i) == 0
    nl = atoms_neighbor_list(atoms, 2.0000001)
    assert sorted(zip(nl.i.tolist(), nl.j.tolist())) == [(0, 1), (1, 0)]
    assert nl.first_entry.tolist() == [0, 1, 2, 2]


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list([[np.nan, 0, 0]], np.eye(3), [False] * 3, 3.0)
    with pytest.raises(ValueError, match="cell vector is zero"):
        neighbor_list([[0, 0, 0]], np.zeros((3, 3)), [True, False, False],
                      3.0)


def test_linear_scaling_of_entries():
    base = bulk("Cu", "fcc", a=3.6, cubic=True)
    n1 = len(atoms_neighbor_list(base * (3, 3, 3), 6.5).i)
    n2 = len(atoms_neighbor_list(base * (5, 5, 5), 6.5).i)
    assert n2 / 125 == pytest.approx(n1 / 27)


def test_coincident_atoms_are_named():
    positions = [[0, 0, 0], [1.5, 0, 0], [0, 0, 3e-7]]
    with pytest.raises(ValueError, match="image 5 has atoms 0 and 2 at the "
                       "same position \\(3e-07 Angstrom apart, closer than "
                       "1e-06 Angstrom\\)"):
        neighbor_list(positions, np.zeros((3, 3)), [False] * 3, 6.5,
                      image="image 5")
    # Just above the threshold: a neighbour like any other.
    positions[2] = [0, 0, 2e-6]
    nl = neighbor_list(positions, np.zeros((3, 3)), [False] * 3, 6.5)
    assert nl.distances.min() == pytest.approx(2e-6)


def test_memory_estimate_refuses_only_hopeless_cutoffs(monkeypatch):
    import amp.descriptor.neighbors as neighbors

    monkeypatch.setattr(neighbors, "available_memory", lambda: 2 * 10 ** 9)
    for name, atoms, rc in systems():  # every ordinary case still runs
        atoms_neighbor_list(atoms, rc)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    with pytest.raises(ValueError, match="a cutoff of 1000 Angstrom is too "
                       "large for image 1: its neighbour search would need "
                       "about 274 GB .* more than the 2 GB available"):
        neighbor_list(cu.positions, cu.cell, cu.pbc, 1000.0, image="image 1")
    for cutoff in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="not a positive finite"):
            neighbor_list(cu.positions, cu.cell, cu.pbc, cutoff)


def test_available_memory_is_a_positive_number():
    from amp.descriptor.neighbors import available_memory

    available = available_memory()
    assert available is None or available > 0


@pytest.mark.parametrize("pbc", [True, False])
def test_image_without_atoms_has_no_entries(pbc):
    nl = atoms_neighbor_list(Atoms(cell=np.eye(3) * 5.0, pbc=pbc), 3.0)
    assert (len(nl.i), len(nl.j), nl.n_atoms) == (0, 0, 0)
    assert nl.offsets.shape == nl.vectors.shape == (0, 3)
    assert nl.first_entry.tolist() == [0]


def test_image_name_is_computed_only_for_an_error():
    def never():
        raise AssertionError("the name was computed without an error")

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    nl = neighbor_list(cu.positions, cu.cell, cu.pbc, 3.0, image=never)
    assert len(nl.i) == 4 * 12
    with pytest.raises(ValueError, match="^the named one has atoms 0 and 1"):
        neighbor_list([[0, 0, 0], [0, 0, 0]], np.zeros((3, 3)), [False] * 3,
                      3.0, image=lambda: "the named one")
