"""Signals that a model is asked about structures unlike its training data.

A model fitted to a set of structures interpolates between them; outside
their range its energies and forces are guesses that look as confident as
anything else. The calculators therefore compare each structure's
descriptor with the range the training descriptors covered:

* :class:`RangeScale` puts descriptor components on the scale ``m = |x -
  mid| / half``, with ``mid`` and ``half`` the centre and half-width of a
  component's training range (``m <= 1`` inside it; a component whose
  training range is narrower than 1e-8 counts as ``1 + |x - min|``). The
  neural network's own input scaling is ``x' = -1 + 2 (x - min) / (max -
  min)``, so ``m = |x'|``: what the network sees.
* :class:`Reporter` turns a calculation's findings into one warning per
  calculator (:class:`ExtrapolationWarning`), or an
  :class:`ExtrapolationError`, as the user chose.

:class:`amp.potential.FingerprintRange` (Gaussian fingerprints against a
network's ``fprange``) and :class:`amp.gdml.calculator.GDMLCalculator`
(inverse distances against the training descriptors) use both. This
module imports nothing of the package.
"""

import warnings

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["ExtrapolationWarning", "ExtrapolationError", "RangeScale",
           "Reporter", "ACTIONS"]

#: What a calculator may do on extrapolation (``on_extrapolation=``).
ACTIONS = ("warn", "raise", "ignore")


class ExtrapolationWarning(UserWarning):
    """A calculation met a structure outside the model's training range."""


class ExtrapolationError(RuntimeError):
    """A calculation met a structure outside the model's training range,
    and the calculator was asked to stop (``on_extrapolation='raise'``)."""


class RangeScale:
    """Descriptor components on the scale of their training range.

    Parameters
    ----------
    low_high : array_like, shape (n_features, 2)
        ``[[min, max], ...]`` of each component over the training data.
    """

    def __init__(self, low_high: ArrayLike) -> None:
        low_high_f2 = np.asarray(low_high, dtype=float).reshape(-1, 2)
        width_f = low_high_f2[:, 1] - low_high_f2[:, 0]
        narrow_f = width_f <= 1e-8  # as the network's input scaling
        self.n_features = len(low_high_f2)
        self.centre_f = np.where(narrow_f, low_high_f2[:, 0],
                                 low_high_f2.mean(axis=1))
        self.inverse_half_f = np.where(
            narrow_f, 1.0, 2.0 / np.where(narrow_f, 1.0, width_f))
        self.narrow_f = narrow_f.astype(float)

    def scaled(self, values_nf: ArrayLike) -> np.ndarray:
        """``m`` of every component of ``values_nf`` (shape (n,
        n_features)); a new array of that shape."""
        magnitude_nf = np.abs(np.asarray(values_nf, dtype=float)
                              - self.centre_f)
        magnitude_nf *= self.inverse_half_f
        magnitude_nf += self.narrow_f
        return magnitude_nf


def check_tolerance(tolerance: float) -> float:
    """``tolerance`` as a float, or ValueError unless it is >= 0."""
    if not tolerance >= 0.0:
        raise ValueError("the extrapolation tolerance must be >= 0, got %r"
                         % (tolerance,))
    return float(tolerance)


class Reporter:
    """Warn once, or raise, when calculations extrapolate.

    Parameters
    ----------
    on_extrapolation : {'warn', 'raise', 'ignore'}
        ``'warn'``: one :class:`ExtrapolationWarning` for the first
        calculation that extrapolates (later ones are only recorded in the
        results); ``'raise'``: :class:`ExtrapolationError` at every such
        calculation; ``'ignore'``: nothing.
    """

    def __init__(self, on_extrapolation: str = "warn") -> None:
        if on_extrapolation not in ACTIONS:
            raise ValueError("on_extrapolation=%r; use one of %s"
                             % (on_extrapolation, ", ".join(ACTIONS)))
        self.action = on_extrapolation
        self.warned = False

    def __call__(self, message: str) -> None:
        """React to a calculation that extrapolates; ``message`` says
        how."""
        if self.action == "raise":
            raise ExtrapolationError(message + " (on_extrapolation='raise')")
        if self.action == "ignore" or self.warned:
            return
        self.warned = True
        warnings.warn(message + ". Warned once per calculator; "
                      "results['extrapolation'] has it at every step, and "
                      "on_extrapolation='raise' stops instead.",
                      ExtrapolationWarning, stacklevel=3)
