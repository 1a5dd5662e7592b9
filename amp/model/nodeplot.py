"""Node plots: how a trained network's nodes respond to a set of images.

:class:`NodePlot` (Amp's name, also importable from
:mod:`amp.model.neuralnetwork`) draws, per element and layer, the
distribution of every node's output over the atoms of the images. Nodes
stuck at the ends of tanh's range (+-1) for every atom, or never moving,
are capacity the fit does not use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NodePlot", "node_outputs"]


def node_outputs(calc: Any, images: Any) -> dict[str, Any]:
    """Every layer's outputs for every atom of the images.

    Parameters
    ----------
    calc : Amp
        A calculator with a trained (or given) neural network.
    images : list of ase.Atoms, str or dict

    Returns
    -------
    dict
        ``{element: [o_0, o_1, ..., o_out]}``: ``o_0`` the scaled
        fingerprints, then each hidden layer's and the output node's
        activations, arrays of shape ``(n_atoms, n_nodes)``.
    """
    from ..descriptor.analysis import element_fingerprints

    networks = calc.model.element_networks()
    outputs = {}
    for element, block in element_fingerprints(calc, images).items():
        if element not in networks:
            raise ValueError("the model has no network for element %s "
                             "(it has: %s)" % (element,
                                               ", ".join(sorted(networks))))
        outputs[element] = networks[element].forward(block)
    return outputs


class NodePlot:
    """Plots of the node outputs of a neural network (Amp's ``NodePlot``).

    Parameters
    ----------
    calc : Amp
        A calculator whose model is a
        :class:`~amp.model.neuralnetwork.NeuralNetwork` with weights.

    Attributes
    ----------
    data : dict
        After :meth:`plot`: what :func:`node_outputs` returned.

    Examples
    --------
    >>> NodePlot(calc).plot(images, 'nodeplot.png')  # doctest: +SKIP
    """

    def __init__(self, calc: Any) -> None:
        self._calc = calc
        self.data: Any = None

    def plot(self, images: Any, filename: str = "nodeplot.pdf",
             overwrite: bool = False) -> None:
        """Draw one panel per element and layer: the distribution of each
        node's output over the atoms of ``images``.

        Parameters
        ----------
        images : list of ase.Atoms, str or dict
        filename : str
            The plot file; its extension gives the format (PDF default).
        overwrite : bool
            Replace an existing plot file.

        Raises
        ------
        FileExistsError
            ``filename`` exists and ``overwrite`` is False.
        ImportError
            matplotlib is missing.
        """
        from ..plotting import (check_plotfile, draw_violins, new_figure,
                                save_figure)

        check_plotfile(filename, overwrite)
        new_figure()  # fail early, before any computing, without matplotlib
        self.data = data = node_outputs(self._calc, images)
        n_layers = max(len(layers) - 1 for layers in data.values())
        figure = new_figure(figsize=(3.2 * n_layers + 1.0,
                                     3.2 * len(data) + 0.5))
        for row, (element, layers) in enumerate(sorted(data.items())):
            for number, values in enumerate(layers[1:], start=1):
                ax = figure.add_subplot(len(data), n_layers,
                                        row * n_layers + number)
                nodes = np.arange(1, values.shape[1] + 1)
                draw_violins(ax, list(values.T), list(nodes), "tab:blue")
                ax.set_xticks(nodes)
                ax.set_xlim(0.3, values.shape[1] + 0.7)
                last = number == len(layers) - 1
                ax.set_title("%s: %s (%d atoms)" % (
                    element, "output layer" if last
                    else "hidden layer %d" % number, len(values)))
                ax.set_xlabel("node")
                if number == 1:
                    ax.set_ylabel("node output")
        figure.tight_layout()
        save_figure(figure, filename)
