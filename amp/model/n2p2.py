r"""n2p2's atomic neural networks, with its input scaling and energy units.

For an atom of element ``e`` with symmetry functions ``G`` (unscaled, in
n2p2's order), n2p2 (``Mode``, ``SymFnc::scale``, ``NeuralNetwork``)
computes:

1. scaled inputs, one of (``scaling`` below)::

       none          Gs = G
       scale         Gs = Smin + (Smax - Smin) (G - Gmin) / (Gmax - Gmin)
       center        Gs = G - Gmean
       scalecenter   Gs = Smin + (Smax - Smin) (G - Gmean) / (Gmax - Gmin)
       sigma         Gs = Smin + (Smax - Smin) (G - Gmean) / Gsigma

2. a feed-forward network: ``y_0 = Gs``, ``y_l = f_l(W_l^T y_{l-1} + b_l)``
   (divided by the previous layer's width before ``f_l`` with
   ``normalize_nodes``), one output ``o``; ``f_l`` is one of n2p2's
   activations (letters as in ``input.nn``)::

       l  x          t  tanh x          s  1 / (1 + e^-x)   p  ln(1 + e^x)
       r  max(x, 0)  g  e^(-x^2/2)      c  cos x            S  1 - 1/(1 + e^-x)
       e  e^-x       h  x^2

   (``s`` and ``p`` switch to their limits beyond ``|x| > 35`` as n2p2
   does);

3. the atom's energy in the potential's unit, ``o / conv_energy +
   mean_energy + E_offset(e)`` (without normalisation ``o + E_offset``),
   multiplied by :attr:`N2P2Network.energy_unit` to give eV.

``dE/dG`` comes from backpropagation through the network, times the
derivative of the scaling. The whole computation is one set of matrix
products per block of atoms of one element.
"""

from collections.abc import Callable

import numpy as np

__all__ = ["N2P2Network", "activation", "SCALINGS"]

#: n2p2's scaling types (``ST_NONE`` ... ``ST_SCALESIGMA``).
SCALINGS = ("none", "scale", "center", "scalecenter", "sigma")

# n2p2's NeuralNetwork.cpp EXP_LIMIT.
_EXP_LIMIT = 35.0


def activation(letter: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """n2p2's activation ``letter`` and its derivative at ``x``.

    Returns
    -------
    value, slope : ndarray
    """
    if letter == "l":
        return x, np.ones_like(x)
    if letter == "t":
        value = np.tanh(x)
        return value, 1.0 - value * value
    if letter in ("s", "S"):
        with np.errstate(over="ignore"):
            sigma = 1.0 / (1.0 + np.exp(-x))
        if letter == "S":
            return 1.0 - sigma, sigma * (sigma - 1.0)
        inside = np.abs(x) <= _EXP_LIMIT
        value = np.where(inside, sigma, np.where(x > 0.0, 1.0, 0.0))
        return value, np.where(inside, sigma * (1.0 - sigma), 0.0)
    if letter == "p":
        clipped = np.clip(x, -_EXP_LIMIT, _EXP_LIMIT)
        e = np.exp(clipped)
        value = np.log(1.0 + e)
        slope = 1.0 / (1.0 + 1.0 / e)
        return (np.where(x > _EXP_LIMIT, x, np.where(x < -_EXP_LIMIT, 0.0,
                                                      value)),
                np.where(x > _EXP_LIMIT, 1.0, np.where(x < -_EXP_LIMIT, 0.0,
                                                        slope)))
    if letter == "r":
        positive = x > 0.0
        return np.where(positive, x, 0.0), positive.astype(float)
    if letter == "g":
        value = np.exp(-0.5 * x * x)
        return value, -x * value
    if letter == "c":
        return np.cos(x), -np.sin(x)
    if letter == "e":
        value = np.exp(-x)
        return value, -value
    if letter == "h":
        return x * x, 2.0 * x
    raise ValueError("unknown n2p2 activation %r" % (letter,))


class _ElementNetwork:
    def __init__(self, layers, scaling, normalize_nodes):
        self.weights = [np.asarray(w, dtype=float) for w, _, _ in layers]
        self.biases = [np.asarray(b, dtype=float) for _, b, _ in layers]
        self.letters = [a for _, _, a in layers]
        self.normalize = normalize_nodes
        self.factor, self.shift = scaling

    def evaluate(self, g_af, gradient):
        """Network output per atom and ``d output / d G``."""
        y = g_af * self.factor + self.shift
        slopes = []
        for w, b, letter in zip(self.weights, self.biases, self.letters):
            net = y @ w + b
            if self.normalize:
                net = net / w.shape[0]
            y, slope = activation(letter, net)
            slopes.append(slope)
        output = y[:, 0]
        if not gradient:
            return output, None
        delta = slopes[-1]
        for layer in range(len(self.weights) - 1, -1, -1):
            w = self.weights[layer]
            if self.normalize:
                delta = delta / w.shape[0]
            delta = delta @ w.T
            if layer:
                delta = delta * slopes[layer - 1]
        return output, delta * self.factor


def scaling_map(kind: str, smin: float, smax: float,
                rows) -> tuple[np.ndarray, np.ndarray]:
    """``Gs = factor G + shift`` of one element's functions.

    Parameters
    ----------
    kind : str
        One of :data:`SCALINGS`.
    smin, smax : float
    rows : array-like, shape (n_functions, 4)
        ``(Gmin, Gmax, Gmean, Gsigma)`` per function.

    Returns
    -------
    factor, shift : ndarray

    Raises
    ------
    ValueError
        A scaling that divides by zero (a constant function), naming the
        function (its position in n2p2's order, from 1).
    """
    rows = np.asarray(rows, dtype=float).reshape(-1, 4)
    gmin, gmax, gmean, gsigma = rows.T
    n = len(rows)
    if kind == "none":
        return np.ones(n), np.zeros(n)
    if kind == "center":
        return np.ones(n), -gmean
    spread = gsigma if kind == "sigma" else gmax - gmin
    bad = np.flatnonzero(~(spread != 0.0) | ~np.isfinite(spread))
    if len(bad):
        raise ValueError(
            "symmetry function %d: its %s in scaling.data is %r, so n2p2's "
            "scaling divides by zero" % (bad[0] + 1, "sigma" if kind ==
                                         "sigma" else "max - min",
                                         float(spread[bad[0]])))
    factor = (smax - smin) / spread
    origin = gmin if kind == "scale" else gmean
    return factor, smin - factor * origin


class N2P2Network:
    """The per-element networks of an n2p2 potential.

    Parameters
    ----------
    networks : dict
        ``{element: [(W, b, letter), ...]}``, one triple per layer after
        the input: ``W`` of shape ``(n_in, n_out)``, biases ``b``,
        activation letter.
    scalings : dict
        ``{element: (factor, shift)}`` (see :func:`scaling_map`).
    mean_energy, conv_energy : float
        n2p2's normalisation (0 and 1 without).
    atom_energy : dict
        ``{element: offset}`` in the potential's energy unit.
    energy_unit : float
        Energy of the potential's unit in eV (``ase.units.Hartree`` for a
        potential in hartree).
    normalize_nodes : bool
    """

    #: Declared capability: :meth:`block_evaluator` (see
    #: :func:`amp.potential.evaluate`).
    block_evaluation = True

    def __init__(self, networks, scalings, mean_energy=0.0, conv_energy=1.0,
                 atom_energy=None, energy_unit=1.0, normalize_nodes=False):
        if not (energy_unit > 0.0 and np.isfinite(energy_unit)):
            raise ValueError("energy_unit must be a positive number, got %r"
                             % (energy_unit,))
        self.networks = {e: _ElementNetwork(layers, scalings[e],
                                            normalize_nodes)
                         for e, layers in networks.items()}
        self.mean_energy = float(mean_energy)
        self.conv_energy = float(conv_energy)
        self.atom_energy = dict(atom_energy or {})
        self.energy_unit = float(energy_unit)

    def __repr__(self):
        return "N2P2Network(elements=%s)" % sorted(self.networks)

    def feature_counts(self) -> dict[str, int]:
        """``{element: inputs of its network}``."""
        return {e: n.weights[0].shape[0] for e, n in self.networks.items()}

    def block_evaluator(self, gradient: bool = True) -> Callable:
        """``f(element, g_af) -> (energies, dE_dG)`` for a block of atoms
        of one element: energies in eV, ``dE_dG`` in eV per unit of the
        unscaled functions (None without ``gradient``)."""
        unit = self.energy_unit
        to_energy = unit / self.conv_energy

        def evaluate(element, g_af):
            network = self.networks.get(element)
            if network is None:
                raise ValueError("the potential has no network for %s"
                                 % element)
            output, slope = network.evaluate(np.asarray(g_af, dtype=float),
                                             gradient)
            offset = self.mean_energy + self.atom_energy.get(element, 0.0)
            energies = (output / self.conv_energy + offset) * unit
            return energies, None if slope is None else slope * to_energy
        return evaluate
