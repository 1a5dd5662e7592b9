"""Vectorised maths of the per-element feed-forward networks.

Everything here works on whole blocks of atoms: the fingerprints of all atoms
of one element (in one image or stacked over many images) go through each
layer as one matrix product. Three passes exist:

* forward: atomic energies, and the activations kept for the passes below;
* input gradient (backpropagation): ``dE/dG`` per atom, from which forces
  are a sparse vector–Jacobian product (:class:`ImageFingerprints`);
* training: the gradient of the energy loss and of the force loss with
  respect to every parameter. The force term needs the derivative of the
  input gradient with respect to the parameters; it is obtained as the
  gradient of the directional derivative ``<u, dE/dG>`` with ``u`` the force
  residuals mapped back to fingerprint space (forward-mode tangent along
  ``u``, then one reverse sweep through both the primal and tangent
  quantities). No per-atom or per-parameter Jacobian is ever built.

The parameter vector layout is Amp's (:class:`Raveler`): for every element
in sorted order, every layer's ``(n_in + 1, n_out)`` weight matrix raveled
row-major (layers in order, last row the bias), then for every element in
sorted order its ``intercept`` and ``slope``.
"""

import numpy as np

ACTIVATIONS = ("tanh", "sigmoid", "linear")

# Inputs whose training range is narrower than this are passed unscaled
# (Amp's rule; a constant feature would otherwise divide by ~0).
FPRANGE_TOLERANCE = 1e-8


def activate(z, activation):
    """Apply the activation to the net input ``z``."""
    if activation == "tanh":
        return np.tanh(z)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if activation == "linear":
        return z
    raise ValueError("unknown activation %r; known: %s"
                     % (activation, ", ".join(ACTIVATIONS)))


def activation_derivatives(o, activation, second=False):
    """First (and optionally second) derivative of the activation.

    Expressed through the output ``o = act(z)``, which every layer keeps.

    Returns
    -------
    d1 or (d1, d2) : ndarray
        ``act'(z)`` and ``act''(z)``, shaped like ``o``.
    """
    if activation == "tanh":
        d1 = 1.0 - o * o
        return (d1, -2.0 * o * d1) if second else d1
    if activation == "sigmoid":
        d1 = o * (1.0 - o)
        return (d1, d1 * (1.0 - 2.0 * o)) if second else d1
    d1 = np.ones_like(o)
    return (d1, np.zeros_like(o)) if second else d1


def input_scaling(fprange, n_features):
    """Affine map ``x' = factor * x + shift`` of Amp's fingerprint scaling.

    Parameters
    ----------
    fprange : array-like, shape (n_features, 2) or None
        ``[[min, max], ...]``; None means no scaling.
    n_features : int

    Returns
    -------
    factor, shift : ndarray, shape (n_features,)
    """
    if fprange is None:
        return np.ones(n_features), np.zeros(n_features)
    fprange = np.asarray(fprange, dtype=float).reshape(-1, 2)
    low, high = fprange[:, 0], fprange[:, 1]
    width = high - low
    scaled = width > FPRANGE_TOLERANCE
    safe = np.where(scaled, width, 1.0)
    factor = np.where(scaled, 2.0 / safe, 1.0)
    # -1 + 2 (x - min) / (max - min) = factor * x + (-1 - factor * min)
    shift = np.where(scaled, -1.0 - factor * low, 0.0)
    return factor, shift


def n_inputs(first_layer):
    """Number of fingerprint features a network takes: the rows of its
    first layer's weights less the bias row."""
    return np.shape(first_layer)[0] - 1


class ElementNetwork:
    """One element's network as arrays, ready for block evaluation.

    Parameters
    ----------
    weights : list of ndarray
        ``[W_1, ..., W_{L+1}]``, each ``(n_in + 1, n_out)``, last row bias.
    slope, intercept : float
    fprange : array-like or None
    activation : str
    """

    def __init__(self, weights, slope, intercept, fprange, activation):
        self.weights = [np.asarray(w, dtype=float) for w in weights]
        self.slope = float(slope)
        self.intercept = float(intercept)
        self.activation = activation
        self.n_features = n_inputs(self.weights[0])
        self.factor, self.shift = input_scaling(fprange, self.n_features)

    def forward(self, fingerprints):
        """Layer outputs for a block of atoms.

        Returns
        -------
        list of ndarray
            ``[o_0, o_1, ..., o_out]``; ``o_0`` is the scaled input and
            ``o_out`` has shape ``(n, 1)``.
        """
        outputs = [fingerprints * self.factor + self.shift]
        for w in self.weights:
            outputs.append(activate(outputs[-1] @ w[:-1] + w[-1],
                                    self.activation))
        return outputs

    def energies(self, outputs):
        """Atomic energies ``slope * o_out + intercept``, shape (n,)."""
        return self.slope * outputs[-1][:, 0] + self.intercept

    def input_gradient(self, outputs):
        """``dE_atom / dG`` (raw, unscaled fingerprints), shape (n, F)."""
        grad = self.slope * activation_derivatives(outputs[-1],
                                                   self.activation)
        for layer in range(len(self.weights) - 1, 0, -1):
            grad = (grad @ self.weights[layer][:-1].T) * \
                activation_derivatives(outputs[layer], self.activation)
        return (grad @ self.weights[0][:-1].T) * self.factor

    def parameter_gradient(self, outputs, energy_weight, direction=None):
        """Gradient of a training objective with respect to the parameters.

        The objective is ``sum_a energy_weight[a] * E_a`` plus, when
        ``direction`` is given, ``sum_a <direction[a], dE_a/dG_a>`` (the
        force-loss term with ``direction = T.T @ dLoss/dF``).

        Parameters
        ----------
        outputs : list of ndarray
            From :meth:`forward`.
        energy_weight : ndarray, shape (n,)
            ``dLoss / dE_a`` for every atom of the block.
        direction : ndarray, shape (n, F), optional

        Returns
        -------
        weight_gradients : list of ndarray
            Shaped like ``self.weights``.
        d_intercept, d_slope : float
        """
        act = self.activation
        n_layers = len(self.weights)
        derivs = [None] + [activation_derivatives(o, act, second=True)
                           for o in outputs[1:]]
        # Forward-mode tangents along the input direction: v_l = d o_l.
        tangents = zdots = None
        if direction is not None:
            # v_l = act'(z_l) * zdot_l with zdot_l = v_{l-1} @ W_l (no bias).
            tangents, zdots = [direction * self.factor], [None]
            for layer in range(1, n_layers + 1):
                zdots.append(tangents[-1] @ self.weights[layer - 1][:-1])
                tangents.append(derivs[layer][0] * zdots[-1])
        # Reverse sweep. o_bar: adjoint of o_l; v_bar: adjoint of v_l.
        o_bar = (self.slope * energy_weight)[:, None]
        d_slope = float(energy_weight @ outputs[-1][:, 0])
        d_intercept = float(energy_weight.sum())
        v_bar = None
        if tangents is not None:
            v_bar = np.full_like(tangents[-1], self.slope)
            d_slope += float(tangents[-1].sum())
        gradients = [None] * n_layers
        for layer in range(n_layers, 0, -1):
            w = self.weights[layer - 1]
            d1, d2 = derivs[layer]
            z_bar = o_bar * d1
            if tangents is not None:
                z_bar = z_bar + v_bar * d2 * zdots[layer]
                zdot_bar = v_bar * d1
            grad = np.empty_like(w)
            grad[:-1] = outputs[layer - 1].T @ z_bar
            grad[-1] = z_bar.sum(axis=0)
            if tangents is not None:
                grad[:-1] += tangents[layer - 1].T @ zdot_bar
            gradients[layer - 1] = grad
            if layer > 1:
                o_bar = z_bar @ w[:-1].T
                if tangents is not None:
                    v_bar = zdot_bar @ w[:-1].T
        return gradients, d_intercept, d_slope


class Raveler:
    """Flatten weights and scalings into one vector and back (Amp's layout).

    Parameters
    ----------
    weights : dict
        ``{element: {layer: (n_in + 1, n_out) array}}``, layers 1, 2, ...
    scalings : dict
        ``{element: {'intercept': float, 'slope': float}}``.

    Notes
    -----
    Order: for each element (sorted), each layer (ascending) raveled
    row-major; then for each element (sorted) ``intercept`` then ``slope``.
    """

    def __init__(self, weights, scalings):
        self.elements = sorted(weights)
        self.shapes = {e: [np.shape(weights[e][k])
                           for k in sorted(weights[e], key=int)]
                       for e in self.elements}
        self.weight_slices = {}
        start = 0
        for e in self.elements:
            self.weight_slices[e] = []
            for shape in self.shapes[e]:
                size = shape[0] * shape[1]
                self.weight_slices[e].append(slice(start, start + size))
                start += size
        self.n_weights = start
        self.scaling_index = {}
        for e in sorted(scalings):
            self.scaling_index[e] = (start, start + 1)  # intercept, slope
            start += 2
        self.count = start

    def to_vector(self, weights, scalings):
        """The flat float64 vector of ``weights`` and ``scalings``."""
        vector = np.empty(self.count)
        for e in self.elements:
            for k, piece in zip(sorted(weights[e], key=int),
                                self.weight_slices[e]):
                vector[piece] = np.asarray(weights[e][k], dtype=float).ravel()
        for e, (i, s) in self.scaling_index.items():
            vector[i] = scalings[e]["intercept"]
            vector[s] = scalings[e]["slope"]
        return vector

    def to_dicts(self, vector):
        """``(weights, scalings)`` dicts from a flat vector (copies)."""
        vector = np.asarray(vector, dtype=float)
        if vector.shape != (self.count,):
            raise ValueError("parameter vector has %s entries; the model has "
                             "%i" % (vector.shape, self.count))
        weights = {e: {k + 1: vector[piece].reshape(shape).copy()
                       for k, (piece, shape) in enumerate(
                           zip(self.weight_slices[e], self.shapes[e]))}
                   for e in self.elements}
        scalings = {e: {"intercept": float(vector[i]),
                        "slope": float(vector[s])}
                    for e, (i, s) in self.scaling_index.items()}
        return weights, scalings

    def weight_mask(self):
        """Boolean mask of the entries that are weights (not biases or
        scalings): those the overfit penalty acts on."""
        mask = np.zeros(self.count, dtype=bool)
        for e in self.elements:
            for piece, shape in zip(self.weight_slices[e], self.shapes[e]):
                block = np.ones(shape, dtype=bool)
                block[-1] = False
                mask[piece] = block.ravel()
        return mask
