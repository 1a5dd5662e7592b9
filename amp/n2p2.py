r"""Read and write n2p2 (RuNNer) potential folders.

An n2p2 potential folder (``input.nn``, ``scaling.data``,
``weights.ZZZ.data``, :mod:`amp.store.n2p2`) is what n2p2's
``nnp-predict`` and LAMMPS's ``pair_style hdnnp`` run.

* :func:`load` turns a folder into an ASE calculator (an :class:`amp.Amp`
  with n2p2's descriptor and networks) that reproduces n2p2's energies and
  forces, and gives stress and per-atom energies too;
* :func:`save` (or ``calc.save(folder, format='n2p2')``) writes a trained
  Amp ``Gaussian`` + ``NeuralNetwork`` calculator, or a loaded n2p2
  potential, as such a folder.

Units
-----
n2p2 works in the units of its training data and records none. As in
LAMMPS's ``pair_style hdnnp``, ``cflength`` and ``cfenergy`` convert ASE's
units into the potential's: a length in Angstrom times ``cflength`` is in
the potential's unit, an energy in eV times ``cfenergy`` too. A potential
in bohr and hartree takes ``cflength=1/ase.units.Bohr`` (1.8897...) and
``cfenergy=1/ase.units.Hartree`` (0.03674...); the defaults (1) are for
potentials in Angstrom and eV, which is what :func:`save` writes for Amp
models.

Mapping Amp models
------------------
Amp's G2, G4 and G5 are n2p2's types 2, 3 and 9 with ``eta / Rc^2`` (Amp
divides ``eta`` by the squared cutoff radius, n2p2 does not), ``Rs`` as
``rs`` and Amp's ``gamma`` as ``lambda``; Amp's ``Cosine`` cutoff is
``cutoff_type 1``, its ``Polynomial`` cutoff with ``gamma = 2`` is
``cutoff_type 5`` (other ``gamma`` have no n2p2 equivalent and are
refused). n2p2 sorts each element's functions, so the rows of the first
weight matrix and of ``scaling.data`` are permuted to its order. Amp's
input scaling ``-1 + 2 (G - min) / (max - min)`` is n2p2's ``scale``
scaling with ``Smin = -1``, ``Smax = 1``; a feature Amp leaves unscaled
(range below ``1e-8``) gets statistics ``c -+ h`` around its value ``c``
(``h = max(1, |c|)``) and the first layer compensates, so n2p2 never
divides by zero. Networks of different widths are padded with neurons
whose weights are zero (exact); Amp's activated output neuron becomes a
hidden layer of width 1 and its ``slope`` and ``intercept`` the weight
and bias of a linear output layer, so the atomic energy is the same
expression. All elements must have the same number of hidden layers (n2p2
cannot build others).
"""

from __future__ import annotations

import math
import os
from typing import Any
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from . import Amp
from .descriptor.n2p2 import (N2P2Descriptor, SymmetryFunction,
                              element_order, sort_key)
from .model.n2p2 import N2P2Network, scaling_map
from .store import n2p2 as files

__all__ = ["load", "save", "read_structures", "write_structures",
           "Potential", "N2P2Calculator", "N2P2FormatError"]

N2P2FormatError = files.N2P2FormatError

_LETTERS = {"tanh": "t", "sigmoid": "s", "linear": "l"}

# Amp leaves features with a narrower training range unscaled.
_FPRANGE_TOLERANCE = 1e-8


@dataclass
class Potential:
    """An n2p2 potential in memory.

    Attributes
    ----------
    settings : amp.store.n2p2.Settings
    scaling : dict
        ``{element: [(min, max, mean, sigma), ...]}`` in n2p2's order.
    weights : dict
        ``{element: [(W rows, biases), ...]}`` per layer after the input.
    """

    settings: files.Settings
    scaling: dict
    weights: dict

    @property
    def elements(self) -> list[str]:
        """The elements, by atomic number."""
        return element_order(list(self.settings.elements))

    def symmetry_functions(self) -> list[SymmetryFunction]:
        """Every ``symfunction_short`` line as a :class:`SymmetryFunction`.
        """
        out = []
        for line in self.settings.symmetry_functions:
            out.append(SymmetryFunction.from_parameters(
                line.element, line.type, line.parameters, line.line))
        return out


def read_potential(folder: str | os.PathLike,
                   ignore: Iterable[str] = ()) -> Potential:
    """Read an n2p2 potential folder into a :class:`Potential`.

    Raises
    ------
    N2P2FormatError
        A malformed or inconsistent file, or keywords this reader refuses.
    """
    settings = files.read_settings(folder, ignore)
    potential = Potential(settings, {}, {})
    functions = _checked(potential.symmetry_functions)
    elements = potential.elements
    counts = [sum(f.element == e for f in functions) for e in elements]
    blocks = files.read_scaling(folder, counts)
    from ase.data import atomic_numbers

    for element, block, count in zip(elements, blocks, counts):
        potential.scaling[element] = block
        widths, _ = files.network_topology(settings, element, count)
        potential.weights[element] = files.read_weights(
            folder, atomic_numbers[element], widths)
    return potential


def _checked(make):
    try:
        return make()
    except ValueError as error:
        raise N2P2FormatError(str(error)) from None


class N2P2Calculator(Amp):
    """An ASE calculator running an n2p2 potential (see :func:`load`).

    It is an :class:`amp.Amp` whose descriptor is n2p2's symmetry
    functions and whose model is n2p2's networks: ``energy``,
    ``energies``, ``forces`` and, for periodic cells, ``stress``, in eV and
    Angstrom. It evaluates; n2p2's ``nnp-train`` trains.

    Attributes
    ----------
    potential : Potential
    cflength, cfenergy : float
    """

    def __init__(self, potential: Any, cflength: float = 1.0,
                 cfenergy: float = 1.0, **kwargs: Any) -> None:
        if kwargs.get("dblabel") is not None:
            raise ValueError("an n2p2 calculator computes fingerprints as it "
                             "goes and keeps no database; drop dblabel")
        for name, value in (("cflength", cflength), ("cfenergy", cfenergy)):
            if not (isinstance(value, (int, float)) and value > 0
                    and math.isfinite(value)):
                raise ValueError("%s must be a positive number, got %r"
                                 % (name, value))
        self.potential = potential
        self.cflength, self.cfenergy = float(cflength), float(cfenergy)
        descriptor, model = _build(potential, self.cflength, self.cfenergy)
        kwargs.setdefault("logging", False)
        Amp.__init__(self, descriptor=descriptor, model=model, **kwargs)

    def _check_compatible(self):
        return None

    def train(self, *args: Any,  # type: ignore[override]
              **kwargs: Any) -> None:
        """Not available: n2p2 potentials are trained with n2p2."""
        raise NotImplementedError(
            "an n2p2 potential is trained with n2p2's nnp-train; this "
            "calculator evaluates it (train an Amp model and export it with "
            "save(folder, format='n2p2') instead)")

    def save(self, filename: str | os.PathLike, overwrite: bool = False,
             format: str = "n2p2") -> None:
        """Write the potential as an n2p2 folder (the only format).

        Raises
        ------
        ValueError
            Another format.
        FileExistsError
            A file of the folder exists and ``overwrite`` is False.
        """
        if format != "n2p2":
            raise ValueError("an n2p2 potential is saved as an n2p2 folder "
                             "(format='n2p2'), not %r" % (format,))
        write_potential(self.potential, filename, overwrite)


def _build(potential, cflength, cfenergy):
    """Descriptor and model of a :class:`Potential`."""
    s = potential.settings
    functions = _checked(potential.symmetry_functions)
    conv_length = s.normalization[2] if s.normalization else 1.0
    descriptor = _checked(lambda: N2P2Descriptor(
        functions, s.elements, s.cutoff_type, s.cutoff_alpha,
        length_unit=1.0 / cflength, conv_length=conv_length))
    networks, scalings = {}, {}
    for element in descriptor.elements:
        count = len(descriptor.functions[element])
        _, letters = files.network_topology(s, element, count)
        networks[element] = [(np.array(w, dtype=float).reshape(-1, len(b)),
                              np.array(b, dtype=float), letter)
                             for (w, b), letter in zip(
                                 potential.weights[element], letters)]
        rows = [r[:4] for r in potential.scaling[element]]
        try:
            scalings[element] = scaling_map(s.scaling, s.scale_min,
                                            s.scale_max, rows)
        except ValueError as error:
            raise N2P2FormatError("element %s, %s" % (element, error)) \
                from None
    mean, conv_energy = (s.normalization[:2] if s.normalization
                         else (0.0, 1.0))
    model = N2P2Network(networks, scalings, mean, conv_energy,
                        s.atom_energy, energy_unit=1.0 / cfenergy,
                        normalize_nodes=s.normalize_nodes)
    return descriptor, model


def load(folder: str | os.PathLike, cflength: float = 1.0,
         cfenergy: float = 1.0, ignore: Iterable[str] = (),
         **kwargs: Any) -> "N2P2Calculator":
    """Load an n2p2 potential folder as an ASE calculator.

    Parameters
    ----------
    folder : str or path-like
        Holds ``input.nn``, ``scaling.data`` and ``weights.ZZZ.data``.
    cflength, cfenergy : float
        Multiply Angstrom and eV to get the potential's units (as in
        LAMMPS's ``pair_style hdnnp``); 1 for a potential in Angstrom and
        eV, ``1 / ase.units.Bohr`` and ``1 / ase.units.Hartree`` for one in
        bohr and hartree.
    ignore : iterable of str
        Unknown ``input.nn`` keywords to skip instead of refusing them.
    **kwargs
        Passed to the calculator (``label``, ...).

    Returns
    -------
    N2P2Calculator

    Raises
    ------
    N2P2FormatError
        A malformed, inconsistent or unsupported potential (the message
        names the file and line).
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError("%s is not a folder; an n2p2 potential is a "
                                "folder holding input.nn, scaling.data and "
                                "weights.ZZZ.data" % folder)
    return N2P2Calculator(read_potential(folder, ignore), cflength,
                          cfenergy, **kwargs)


def write_potential(potential: Potential, folder: str | os.PathLike,
                    overwrite: bool = False) -> None:
    """Write a :class:`Potential` as an n2p2 folder."""
    from ase.data import atomic_numbers

    elements = potential.elements
    files_out = {"input.nn": files.format_settings(
        potential.settings, header=(
            "n2p2 potential written by amp-mlip.",))}
    files_out["scaling.data"] = files.format_scaling(
        [potential.scaling[e] for e in elements])
    for element in elements:
        files_out[files.weights_file_name(atomic_numbers[element])] = \
            files.format_weights(potential.weights[element])
    files.write_folder(folder, files_out, overwrite)


def save(calc: Amp, folder: str | os.PathLike,
         overwrite: bool = False) -> None:
    """Write a calculator as an n2p2 potential folder.

    Parameters
    ----------
    calc : Amp or N2P2Calculator
        A trained Amp ``Gaussian`` + ``NeuralNetwork`` calculator (lengths
        in Angstrom, energies in eV; the folder is in those units), or an
        n2p2 calculator.
    folder : str or path-like
        Created if needed.
    overwrite : bool
        Replace the files of an existing potential.

    Raises
    ------
    ValueError
        What n2p2 cannot express (named): a Polynomial cutoff with
        ``gamma != 2``, ``|gamma| > 1`` in a G4/G5, elements with different
        numbers of hidden layers, a model without weights or fingerprint
        range.
    FileExistsError
        A file exists and ``overwrite`` is False (nothing is written).
    """
    potential = getattr(calc, "potential", None)
    if not isinstance(potential, Potential):
        potential = potential_from_amp(calc)
    write_potential(potential, folder, overwrite)


def potential_from_amp(calc: Amp) -> Potential:
    """The :class:`Potential` equivalent to an Amp ``Gaussian`` +
    ``NeuralNetwork`` calculator (see the module docstring)."""
    from .descriptor.cutoffs import Cosine, Polynomial
    from .descriptor.gaussian import Gaussian
    from .model.neuralnetwork import NeuralNetwork

    descriptor, model = calc.descriptor, calc.model
    if not isinstance(descriptor, Gaussian) or not isinstance(
            model, NeuralNetwork):
        raise ValueError("only Gaussian + NeuralNetwork calculators map onto "
                         "n2p2, got %s + %s" % (type(descriptor).__name__,
                                                type(model).__name__))
    cutoff = descriptor.cutoff
    if isinstance(cutoff, Cosine):
        cutoff_type = 1
    elif isinstance(cutoff, Polynomial) and cutoff.gamma == 2.0:
        cutoff_type = 5
    else:
        raise ValueError(
            "%r has no n2p2 equivalent: n2p2's cutoffs are cos (Amp's "
            "Cosine) and the polynomials of cutoff_type 5 to 8, of which "
            "only type 5 is Amp's Polynomial, with gamma=2" % (cutoff,))
    p = model.parameters
    if p.weights is None or p.scalings is None:
        raise ValueError("the model has no weights yet; train it first")
    if p.fprange is None:
        raise ValueError("the model has no fingerprint range (fprange); "
                         "n2p2 needs it for scaling.data; train the model "
                         "or set fprange")
    if descriptor.Gs is None:
        raise ValueError("the descriptor has no symmetry functions yet")
    rc = cutoff.Rc
    elements = element_order(sorted(descriptor.Gs))
    lines, permutation = {}, {}
    index = {e: k for k, e in enumerate(elements)}
    for element in elements:
        own = []
        for G in descriptor.Gs[element]:
            own.append(_amp_function(element, G, rc))
        order = sorted(range(len(own)), key=lambda k: sort_key(
            SymmetryFunction.from_parameters(element, own[k].type,
                                             own[k].parameters), index,
            cutoff_type))
        lines[element] = [own[k] for k in order]
        permutation[element] = order
    layers = {e: len(p.weights[e]) for e in elements}
    if len(set(layers.values())) != 1:
        raise ValueError(
            "the elements have different numbers of hidden layers (%s); "
            "n2p2 gives every element the same number"
            % ", ".join("%s: %d" % (e, n - 1) for e, n in layers.items()))
    n_layers = layers[elements[0]]
    widths = [max(np.shape(p.weights[e][k])[1] for e in elements)
              for k in range(1, n_layers)]
    settings = files.Settings(
        elements=tuple(elements), cutoff_type=cutoff_type, cutoff_alpha=0.0,
        scaling="scale", scale_min=-1.0, scale_max=1.0,
        hidden_layers=n_layers, nodes=tuple(widths) + (1,),
        activations=(_LETTERS[p.activation],) * n_layers + ("l",),
        symmetry_functions=[line for e in elements for line in lines[e]])
    potential = Potential(settings, {}, {})
    for element in elements:
        rows, shift, stretch = _scaling_rows(
            p.fprange[element], permutation[element])
        potential.scaling[element] = rows
        potential.weights[element] = _layers(
            p.weights[element], p.scalings[element], permutation[element],
            shift, stretch, widths)
    return potential


def _amp_function(element, G, rc):
    """The ``symfunction_short`` line of one Amp function."""
    eta = G["eta"] / (rc * rc)
    if G["type"] == "G2":
        return files.SymmetryFunctionLine(element, 2, {
            "e1": G["element"], "eta": eta, "rs": G.get("offset", 0.0),
            "rc": rc}, None)
    if abs(G["gamma"]) > 1.0:
        raise ValueError(
            "%s function %r: |gamma| > 1 has no n2p2 equivalent (n2p2 sets "
            "the term to 0 where 1 + lambda cos(theta) <= 0, Amp does not)"
            % (element, G))
    e1, e2 = G["elements"]
    return files.SymmetryFunctionLine(
        element, 3 if G["type"] == "G4" else 9,
        {"e1": e1, "e2": e2, "eta": eta, "lambda": G["gamma"],
         "zeta": G["zeta"], "rc": rc, "rs": 0.0}, None)


def _scaling_rows(fprange, permutation):
    """``scaling.data`` rows in n2p2's order, and per Amp feature the
    centre and half-width given to features Amp does not scale."""
    fprange = np.asarray(fprange, dtype=float).reshape(-1, 2)
    n = len(fprange)
    shift, stretch = np.zeros(n), np.zeros(n)
    rows = []
    for k in permutation:
        low, high = fprange[k]
        if high - low > _FPRANGE_TOLERANCE:
            rows.append((low, high, 0.5 * (low + high), 0.5 * (high - low)))
            continue
        centre = 0.5 * (low + high)
        half = max(1.0, abs(centre))
        shift[k], stretch[k] = centre, half
        rows.append((centre - half, centre + half, centre, half))
    return rows, shift, stretch


def _layers(weights, scalings, permutation, shift, stretch, widths):
    """n2p2 layers (padded) of one element's Amp network.

    Amp: ``y = act(x' W + b)`` layer by layer, the last layer one neuron,
    then ``E = slope y + intercept``. n2p2 input ``n`` is Amp feature
    ``permutation[n]``; an unscaled Amp feature reaches n2p2's network as
    ``(G - shift) / stretch``, so its weights are multiplied by
    ``stretch`` and the bias takes ``W shift``.
    """
    matrices = [np.asarray(weights[k], dtype=float)
                for k in sorted(weights, key=int)]
    first = matrices[0]
    w, b = first[:-1], first[-1].copy()
    unscaled = stretch > 0.0
    b = b + shift[unscaled] @ w[unscaled]
    w = np.where(unscaled[:, None], w * np.where(unscaled, stretch,
                                                 1.0)[:, None], w)
    layers = [(w[permutation], b)]
    for matrix in matrices[1:]:
        layers.append((matrix[:-1], matrix[-1]))
    out = []
    n_in = len(permutation)
    targets = list(widths) + [1]
    for (w, b), n_out in zip(layers, targets):
        padded = np.zeros((n_in, n_out))
        padded[:w.shape[0], :w.shape[1]] = w
        bias = np.zeros(n_out)
        bias[:len(b)] = b
        out.append((padded.tolist(), bias.tolist()))
        n_in = n_out
    out.append(([[float(scalings["slope"])]],
                [float(scalings["intercept"])]))
    return out


def read_structures(path: str | os.PathLike, cflength: float = 1.0,
                    cfenergy: float = 1.0) -> list:
    """Structures of an n2p2 ``input.data`` file as ``ase.Atoms``.

    Lengths are divided by ``cflength`` and energies and forces by
    ``cfenergy`` (see :func:`load`); a structure with lattice lines is
    periodic in three directions. Reference energies and forces, when the
    file gives them, are attached as a ``SinglePointCalculator``.
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for s in files.read_structures(path):
        positions = np.array(s["positions"], dtype=float).reshape(-1, 3)
        periodic = s["cell"] is not None
        atoms = Atoms(s["symbols"], positions=positions / cflength,
                      cell=(np.array(s["cell"]) / cflength if periodic
                            else None), pbc=periodic)
        forces = np.array(s["forces"], dtype=float).reshape(-1, 3)
        if s["energy"] is not None:
            atoms.calc = SinglePointCalculator(
                atoms, energy=s["energy"] / cfenergy,
                forces=forces * cflength / cfenergy)
        out.append(atoms)
    return out


def write_structures(path: str | os.PathLike, images: Iterable,
                     cflength: float = 1.0, cfenergy: float = 1.0) -> None:
    """Write ``ase.Atoms`` as an n2p2 ``input.data`` file (for
    ``nnp-predict``), lengths times ``cflength``; the energies and forces
    an image's calculator already holds (``atoms.calc.results``, e.g. a
    ``SinglePointCalculator``; nothing is computed) are converted with
    ``cfenergy`` (see :func:`load`), others written as 0. A cell is
    written for images periodic in three directions; others are written
    without one."""
    from .store.files import atomic_file

    structures = []
    for atoms in images:
        periodic = atoms.cell.rank == 3 and all(atoms.pbc)
        if any(atoms.pbc) and not periodic:
            raise ValueError("n2p2 structures are periodic in all three "
                             "directions or in none; this image is "
                             "periodic along %s" % list(atoms.pbc))
        results = getattr(atoms.calc, "results", None) or {}
        energy = results.get("energy")
        forces = results.get("forces")
        if energy is not None:
            energy = float(energy) * cfenergy
        if forces is not None:
            forces = (np.asarray(forces) * cfenergy / cflength).tolist()
        structures.append({
            "cell": (np.asarray(atoms.cell) * cflength).tolist()
            if periodic else None,
            "positions": (atoms.positions * cflength).tolist(),
            "symbols": atoms.get_chemical_symbols(),
            "energy": energy, "forces": forces})
    with atomic_file(path) as handle:
        handle.write(files.format_structures(structures).encode("utf-8"))
