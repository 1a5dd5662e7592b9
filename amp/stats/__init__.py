"""Statistics on trained models: bootstrap ensembles and uncertainty.

Owns :mod:`amp.stats.bootstrap` (Amp's ``BootStrap``: training ensembles on
bootstrap resamples, and their predictions with percentiles),
:mod:`amp.stats.ensemble` (members sharing one descriptor, the ASE
calculator view with the committee spread, the ensemble file) and
:mod:`amp.stats.calctext` (the safe reader of Amp 1.x ``calc_text``
templates), :mod:`amp.stats.members` (training one member) and
:mod:`amp.stats.ranks` (members spread over the ranks of an MPI job). Nothing is imported here: ``from amp.stats.bootstrap import
BootStrap`` as in Amp.

Ensembles sit with the calculator, on the top floor: they may use
everything below, and must not import :mod:`amp.analysis` or
:mod:`amp.cli`.
"""
