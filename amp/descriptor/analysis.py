"""Fingerprint plots: what the descriptor makes of a set of images.

:class:`FingerprintPlot` (Amp's name) draws, per element, the
distribution of every fingerprint component over the atoms of the images,
raw and scaled as the model's networks see them. Images outside the
fingerprint range the model was trained on show up as scaled values
beyond -1..1; given a second image set, both distributions are drawn side
by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["FingerprintPlot", "element_fingerprints"]


def element_fingerprints(calc: Any, images: Any) -> dict[str, np.ndarray]:
    """Fingerprints of every atom of the images, grouped by element.

    Parameters
    ----------
    calc : Amp
        Its descriptor's settings are used (on a copy; ``calc`` is not
        changed). Fingerprints are reused from, and added to, the
        descriptor's databases when it has a ``dblabel``; otherwise they
        are computed in memory.
    images : list of ase.Atoms, str or dict
        Anything :func:`amp.utilities.hash_images` accepts.

    Returns
    -------
    dict
        ``{element: (n_atoms, n_features) array}``, atoms in image order.
    """
    from ..utilities import hash_images

    images = hash_images(images)
    store = fingerprints_of(calc, images)
    blocks: dict[str, list[np.ndarray]] = {}
    for key in images:
        for element, block in store[key].values.items():
            blocks.setdefault(element, []).append(np.asarray(block))
    return {element: np.concatenate(parts)
            for element, parts in sorted(blocks.items())}


def scaled_fingerprints(block: np.ndarray, fprange: Any) -> Any:
    """Fingerprints as the network sees them: ``-1 + 2 (G - min) / (max -
    min)`` per component, unscaled where the range is below 1e-8 (Amp's
    rule)."""
    fprange = np.asarray(fprange, dtype=float)
    width = fprange[:, 1] - fprange[:, 0]
    wide = width > 1e-8
    scaled = np.array(block, dtype=float)
    scaled[:, wide] = -1.0 + 2.0 * (block[:, wide] - fprange[wide, 0]) \
        / width[wide]
    return scaled


def _is_atom_list(overlay):
    from ase import Atom

    return isinstance(overlay, Atom) or (
        isinstance(overlay, (list, tuple)) and len(overlay) > 0
        and all(isinstance(a, Atom) for a in overlay))


class FingerprintPlot:
    """Plots of the fingerprints' distributions (Amp's ``FingerprintPlot``).

    Parameters
    ----------
    calc : Amp
        The calculator whose descriptor (and, for the scaled panel, whose
        model's fingerprint range) is used.

    Attributes
    ----------
    data : dict
        After a call: ``{element: (n_atoms, n_features) array}`` of the
        images' fingerprints.
    figure : matplotlib.figure.Figure
        After a call: the figure written.

    Examples
    --------
    >>> FingerprintPlot(calc)(images, 'fingerprints.png')  # doctest: +SKIP
    """

    def __init__(self, calc: Any) -> None:
        self._calc = calc
        self.data: Any = None
        self.figure = None

    def compile_fingerprints(self, images: Any) -> dict[str, np.ndarray]:
        """Compute (or look up) the images' fingerprints, grouped by
        element; also kept as :attr:`data`."""
        self.data = element_fingerprints(self._calc, images)
        return self.data

    def __call__(self, images: Any, name: str = "fingerprints.pdf",
                 overlay: Any = None, overwrite: bool = True) -> None:
        """Draw the distribution of each fingerprint, per element.

        For each element, two panels: the raw values and, when the model
        has a fingerprint range, the scaled values the network sees
        (-1..1 over the training set).

        Parameters
        ----------
        images : list of ase.Atoms, str or dict
        name : str
            The plot file; its extension gives the format (PDF default).
        overlay : list of ase.Atoms or ase.Atom, optional
            A second image set, drawn next to the first in another colour;
            or, as in Amp, atoms (``ase.Atom`` objects belonging to
            ``Atoms``) whose own fingerprints are marked as points.
        overwrite : bool
            Replace an existing plot file (the default, as Amp's
            ``FingerprintPlot`` does: calling it twice with the default
            name rewrites ``fingerprints.pdf``); False refuses to.

        Raises
        ------
        FileExistsError
            ``name`` exists and ``overwrite`` is False (it is untouched).
        ImportError
            matplotlib is missing.
        """
        from ..plotting import (check_plotfile, draw_violins, new_figure,
                                save_figure)

        check_plotfile(name, overwrite)
        new_figure()  # fail early, before the fingerprints, without matplotlib
        data = self.compile_fingerprints(images)
        second, points = {}, {}
        if overlay is not None and _is_atom_list(overlay):
            points = self._atom_points(overlay)
        elif overlay is not None:
            second = element_fingerprints(self._calc, overlay)
        fprange = getattr(getattr(self._calc, "model", None), "parameters",
                          {}).get("fprange") or {}
        elements = sorted(set(data) | set(second))
        figure = new_figure(figsize=(11.0, 4.0 * len(elements) + 0.5))
        for row, element in enumerate(elements):
            sets: list[Any] = [
                (data.get(element), "tab:blue", "images"),
                (second.get(element), "tab:orange", "second set")]
            sets = [s for s in sets if s[0] is not None]
            n_features = sets[0][0].shape[1]
            panels = [("raw value", None)]
            if element in fprange:
                panels.append(("scaled value", fprange[element]))
            for column, (ylabel, frange) in enumerate(panels):
                ax = figure.add_subplot(len(elements), 2,
                                        2 * row + column + 1)
                shift = 0.2 if len(sets) > 1 else 0.0
                for number, (block, color, _) in enumerate(sets):
                    values = block if frange is None else \
                        scaled_fingerprints(block, frange)
                    positions = np.arange(1, n_features + 1) + \
                        (-shift if number == 0 else shift)
                    draw_violins(ax, list(values.T), list(positions), color,
                                 width=0.8 if not shift else 0.4)
                for atom_values in points.get(element, []):
                    values = atom_values if frange is None else \
                        scaled_fingerprints(atom_values[None, :],
                                            frange)[0]
                    ax.plot(np.arange(1, n_features + 1), values, "k.")
                if frange is not None:
                    ax.axhline(-1.0, color="0.6", lw=0.5)
                    ax.axhline(1.0, color="0.6", lw=0.5)
                ax.set_xlim(0, n_features + 1)
                ax.set_xlabel("fingerprint")
                ax.set_ylabel(ylabel)
                ax.set_title("%s: %s (%d atoms%s)" % (
                    element, ylabel, len(sets[0][0]),
                    "" if len(sets) == 1
                    else " and %d" % len(sets[1][0])))
                if len(sets) > 1 and column == 0:
                    from matplotlib.patches import Patch

                    ax.legend(handles=[Patch(color=c, alpha=0.5, label=t)
                                       for _, c, t in sets],
                              loc="best", fontsize=8.0)
        figure.tight_layout()
        save_figure(figure, name)
        self.figure = figure

    def _atom_points(self, atoms):
        """``{element: [fingerprint of each overlay atom]}``."""
        from ..utilities import get_hash

        atoms = [atoms] if not isinstance(atoms, (list, tuple)) else atoms
        images = [atom.atoms for atom in atoms]
        if any(image is None for image in images):
            raise ValueError("overlay atoms must belong to an Atoms object "
                             "(e.g. atoms[3], not Atom('Cu'))")
        from ..utilities import hash_images

        store = fingerprints_of(self._calc, hash_images(images))
        points = {}
        for atom in atoms:
            fingerprints = store[get_hash(atom.atoms)]
            element = atom.symbol
            index = fingerprints.atom_index[element]
            # images[0][-1] is an Atom whose index is -1
            position = atom.index % len(atom.atoms)
            row = int(np.flatnonzero(index == position)[0])
            points.setdefault(element, []).append(
                np.asarray(fingerprints.values[element][row]))
        return points


def fingerprints_of(calc: Any, images: Any, derivatives: bool = False,
                    dblabel: str | None = None) -> Any:
    """A fingerprint store holding the fingerprints of the hashed
    ``images`` by ``calc``'s descriptor: in memory, or in (and from) the
    databases of ``dblabel``. ``calc`` is untouched (a copy of its
    descriptor computes them)."""
    descriptor = type(calc.descriptor).fromdict(calc.descriptor.todict())
    store = descriptor.open_store(dblabel, images=images)
    descriptor.calculate_fingerprints(
        images, calculate_derivatives=derivatives, store=store)
    return store
