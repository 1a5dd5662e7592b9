"""Figures on matplotlib's Agg canvas, shared by every plot of the library.

matplotlib (which ASE requires) is imported only when a figure is made;
figures are :class:`matplotlib.figure.Figure` objects on their own Agg
canvas, so the user's backend and pyplot's state are never touched.
"""

import os

import numpy as np

_INSTALL = ("plotting needs matplotlib, which is not installed (ASE "
            "requires it; an environment installed with --no-deps lacks "
            "it): pip install matplotlib")


def new_figure(**kwargs):
    """A matplotlib :class:`~matplotlib.figure.Figure` on an Agg canvas.

    Parameters
    ----------
    **kwargs
        Passed to ``Figure`` (``figsize``, ...).

    Raises
    ------
    ImportError
        matplotlib is missing; the message says what to install.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(_INSTALL) from error
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def check_plotfile(plotfile, overwrite):
    """Raise FileExistsError when ``plotfile`` exists and ``overwrite`` is
    False (the existing file is left alone)."""
    if not overwrite and os.path.exists(plotfile):
        raise FileExistsError("%s exists; set overwrite=True to replace it "
                              "or choose another file name" % plotfile)


def save_figure(figure, plotfile):
    """Write ``figure`` to ``plotfile`` (format from the extension; PDF
    when it has none that matplotlib knows)."""
    extension = os.path.splitext(str(plotfile))[1].lstrip(".").lower()
    formats = figure.canvas.get_supported_filetypes()
    figure.savefig(plotfile, format=extension if extension in formats
                   else "pdf")


def draw_violins(ax, columns, positions, color, width=0.8):
    """Violin plots of ``columns`` (1-D arrays) at ``positions``; a
    column without spread (where a density cannot be estimated) is drawn
    as a short horizontal bar at its value."""
    spread = [k for k, c in enumerate(columns)
              if len(c) > 1 and np.ptp(c) > 1e-12 * max(1.0, np.abs(c).max())]
    if spread:
        parts = ax.violinplot([columns[k] for k in spread],
                              positions=[positions[k] for k in spread],
                              widths=width, showextrema=True)
        for body in parts["bodies"]:
            body.set_facecolor(color)
            body.set_edgecolor(color)
            body.set_alpha(0.5)
        for key in ("cbars", "cmins", "cmaxes"):
            if key in parts:
                parts[key].set_color(color)
    flat = [k for k in range(len(columns)) if k not in spread and
            len(columns[k])]
    for k in flat:
        ax.plot([positions[k] - width / 2, positions[k] + width / 2],
                [columns[k][0]] * 2, color=color, lw=2)
