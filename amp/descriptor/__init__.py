"""Descriptors: turn atomic environments into fingerprints.

:mod:`amp.descriptor.gaussian` holds Behler–Parrinello symmetry functions,
:mod:`amp.descriptor.cutoffs` the cutoff functions, and
:mod:`amp.descriptor.neighbors` the one neighbour search they all use.
"""
