"""Amp-compatible atomistic machine-learning potentials for ASE.

The calculator class :class:`Amp` arrives with the calculator module; the
descriptor (:mod:`amp.descriptor.gaussian`), the databases
(:mod:`amp.utilities`) and the GDML force fields (:mod:`amp.gdml`) can be
used on their own.
"""

__version__ = "0.1.0"
