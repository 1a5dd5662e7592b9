"""Descriptors: turn atomic environments into fingerprints.

Owns what every descriptor shares (:mod:`amp.descriptor.base`: filling a
fingerprint store it is given, by itself or with workers, and Amp 1.x's
views), the Gaussian (Behler–Parrinello) descriptor
(:mod:`amp.descriptor.gaussian`), its symmetry-function kernels
(:mod:`amp.descriptor.symmetry`), the Zernike and bispectrum descriptors
(:mod:`amp.descriptor.zernike`, :mod:`amp.descriptor.bispectrum`, their
common part :mod:`amp.descriptor.density` and their kernels
:mod:`amp.descriptor.spherical`), the cutoff functions
(:mod:`amp.descriptor.cutoffs`), the one neighbour search every descriptor
uses (:mod:`amp.descriptor.neighbors`), the array form of one image's
fingerprints and derivatives (:mod:`amp.descriptor.fingerprints`), where
they are kept (:mod:`amp.descriptor.fingerprint_store`: memory or
databases) and how an image becomes database entries
(:mod:`amp.descriptor.entries`), the memory estimate of force training
(:mod:`amp.descriptor.budget`), Amp's fingerprint plots
(:mod:`amp.descriptor.analysis`) and n2p2's symmetry functions
(:mod:`amp.descriptor.n2p2`).

The descriptor knows no networks: it must not import :mod:`amp.model`,
:mod:`amp.regression`, :mod:`amp.potential` or the calculator. It may use
:mod:`amp.store` (databases), :mod:`amp.parallel` (fingerprints computed
by workers) and :mod:`amp.utilities`.
"""
