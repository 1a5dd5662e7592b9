"""The symmetry functions of one centre element, compiled for the kernels."""

import numpy as np

from .workspace import Workspace


class ElementPlan:
    """The symmetry functions of one centre element, grouped for speed.

    Parameters
    ----------
    Gs : list of dict
        Validated symmetry-function dicts of this element, in fingerprint
        order.
    elements : list of str
        Every element that can appear (sorted); defines the element codes.

    Attributes
    ----------
    n_features : int
        Number of symmetry functions (fingerprint length).
    g2_columns, g2_element, g2_eta, g2_offset : ndarray, shape (n_g2,)
        Fingerprint column, neighbour element code, eta and offset ``Rs``
        of each G2 whose neighbour element can occur.
    pair_groups : dict
        ``{pair code: [(column, kind, eta, zeta, gamma), ...]}``: the G4
        and G5 functions of each sorted element pair ``(a, b)``, code
        ``a * n_elements + b``.
    templates : list of tuple
        ``(template, kind, eta, zeta, gamma)`` for every distinct
        three-body function shape, whatever its element pair.
    template_columns : ndarray, shape (n_elements ** 2, n_templates)
        Column of each template's function for each pair code,
        ``n_features`` where that pair has none.
    workspace : Workspace
        Scratch memory of the kernels, reused from call to call.
    """

    def __init__(self, Gs, elements):
        code = {element: k for k, element in enumerate(elements)}
        n_elements = len(elements)
        self.n_features = len(Gs)
        g2 = [(k, G) for k, G in enumerate(Gs) if G["type"] == "G2"]
        three = [(k, G) for k, G in enumerate(Gs) if G["type"] != "G2"]
        # G2 functions whose neighbour element can occur at all.
        g2 = [(k, G) for k, G in g2 if G["element"] in code]
        self.g2_columns = np.array([k for k, _ in g2], dtype=np.int64)
        self.g2_element = np.array([code[G["element"]] for _, G in g2],
                                   dtype=np.int64)
        self.g2_eta = np.array([G["eta"] for _, G in g2], dtype=float)
        self.g2_offset = np.array([G.get("offset", 0.0) for _, G in g2],
                                  dtype=float)
        # Three-body functions grouped by the (sorted) element pair code.
        self.pair_groups = {}
        for k, G in three:
            a, b = G["elements"]
            if a not in code or b not in code:
                continue
            ca, cb = sorted((code[a], code[b]))
            pair = ca * n_elements + cb
            self.pair_groups.setdefault(pair, []).append(
                (k, G["type"], float(G["eta"]), float(G["zeta"]),
                 float(G["gamma"])))
        self.needs_all_triplets = any(G["type"] == "G5" for _, G in three)
        self.has_triplets = bool(self.pair_groups)
        self.n_elements = n_elements
        # All element pairs at once: the distinct (kind, eta, zeta, gamma)
        # and, per pair code, the column of each (n_features when that
        # pair has no such function).
        shapes = sorted({function[1:] for functions in
                         self.pair_groups.values() for function in functions})
        self.templates = [(f,) + shape for f, shape in enumerate(shapes)]
        self.template_columns = np.full((n_elements ** 2, len(shapes)),
                                        self.n_features, dtype=np.int64)
        for pair, functions in self.pair_groups.items():
            for column, *shape in functions:
                self.template_columns[pair, shapes.index(tuple(shape))] = \
                    column
        present = self.template_columns < self.n_features
        self.template_code, self.template_index = np.nonzero(present)
        self.template_target = self.template_columns[present]
        self.workspace = Workspace()
