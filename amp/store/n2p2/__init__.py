"""n2p2 (and RuNNer) potential folders as text: read, check and write.

A potential folder holds three kinds of files. They are read here as text
from someone else: every file through :func:`amp.store.files.read_file`
(regular files only, size capped by :data:`amp.store.limits.
MAX_MODEL_FILE_BYTES`), every number parsed strictly (no ``atof`` prefix
reading), every line that does not fit refused with its file and line
number. Nothing here knows what the numbers mean physically: like the
rest of :mod:`amp.store`, this package must not import the descriptor, the
models or the calculator.

``input.nn``
    One keyword per line, then its arguments, separated by blanks. ``#``
    and ``!`` start a comment that runs to the end of the line. Most
    keywords may appear once; ``symfunction_short``, ``atom_energy`` and
    the ``element_*_short`` keywords once per use. :func:`parse_settings`
    sorts every keyword into one of four sets: those that define the
    prediction (read into :class:`Settings`), n2p2's and RuNNer's training
    and bookkeeping keywords (they do not change a prediction; listed in
    :attr:`Settings.ignored`), those that would change the numbers in a
    way this reader does not implement (electrostatics, charge networks,
    RuNNer's global symmetry-function keywords, ...: refused by name), and
    unknown words (refused by name, since n2p2 would skip them silently;
    ``ignore=`` lets a caller accept named ones). ``symfunction_short``
    lines are ``<centre> <type> <fields...>`` with these fields:

    ======  ==========================================================
    type    fields after the type
    ======  ==========================================================
    2       neighbour, eta, rs, rc
    3, 9    neighbour 1, neighbour 2, eta, lambda, zeta, rc [, rs]
    12      eta, rs, rc
    13      eta, rs, lambda, zeta, rc
    20      neighbour, rl, rc, subtype
    21, 22  neighbour 1, neighbour 2, rl, rc, left angle, right angle,
            subtype
    23      rl, rc, subtype
    24, 25  rl, rc, left angle, right angle, subtype
    ======  ==========================================================

``scaling.data``
    Lines starting with ``#`` are comments. Every other line is ``e_index
    sf_index min max mean [sigma]``, one per symmetry function, element by
    element in order of atomic number and, within an element, in n2p2's
    sorted order of its functions (indices from 1).

``weights.ZZZ.data``
    One file per element, ``ZZZ`` its atomic number with three digits.
    Lines starting with ``#`` are comments; every other line starts with
    one connection value. Layer after layer, all weights come first, with
    the source neuron as the outer and the target neuron as the inner
    loop, then the layer's biases. n2p2 reads only the first column;
    when a line also has n2p2's type column (``a`` for a weight, ``b`` for
    a bias) and its layer and neuron columns, they are checked against
    the network's shape.

``input.data``
    Structures for ``nnp-predict`` (:mod:`.structures`).

The writers (:func:`format_settings`, :func:`format_scaling`,
:func:`format_weights`, :func:`write_folder`, :func:`format_structures`)
produce exactly these formats, with numbers written so that they read
back to the same bits.

Modules: :mod:`.settings` (``input.nn``), :mod:`.tables`
(``scaling.data``, weights, writing a folder), :mod:`.structures`
(``input.data``), :mod:`.text` (the error, strict numbers).
"""

from .settings import (ACTIVATIONS, SYMMETRY_FUNCTION_TYPES, Settings,
                       SymmetryFunctionLine, format_settings,
                       network_topology, parse_settings, read_settings)
from .structures import format_structures, read_structures
from .tables import (format_scaling, format_weights, read_scaling,
                     read_weights, weights_file_name, write_folder)
from .text import N2P2FormatError, integer, number

__all__ = ["N2P2FormatError", "Settings", "SymmetryFunctionLine",
           "parse_settings", "read_settings", "read_scaling",
           "read_weights", "weights_file_name", "format_settings",
           "format_scaling", "format_weights", "write_folder",
           "network_topology", "ACTIVATIONS", "SYMMETRY_FUNCTION_TYPES",
           "read_structures", "format_structures", "number", "integer"]
