"""``scaling.data`` and ``weights.ZZZ.data``, and writing a folder.

See :mod:`amp.store.n2p2` for the formats.
"""

import os
from collections.abc import Sequence

from .. import limits
from ..files import atomic_file, read_file
from .text import (_INTEGER, N2P2FormatError, _decode, _repr, _where,
                   integer, number)

__all__ = ["read_scaling", "read_weights", "weights_file_name",
           "format_scaling", "format_weights", "write_folder"]


def read_scaling(folder: str | os.PathLike,
                 counts: Sequence[int]) -> list[list[tuple]]:
    """Read ``folder/scaling.data``.

    Parameters
    ----------
    counts : list of int
        Number of symmetry functions of each element, in order of atomic
        number.

    Returns
    -------
    list of list of tuple
        Per element, ``(min, max, mean, sigma)`` of each function in n2p2's
        order (sigma 0 when the file has only four numbers, as older n2p2
        files).
    """
    path = os.path.join(folder, "scaling.data")
    text = _decode(read_file(path, limits.MAX_MODEL_FILE_BYTES), path)
    rows = []
    for line, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("#"):
            continue
        if not raw.strip():
            raise N2P2FormatError(
                "%s: an empty line (n2p2 stops reading scaling.data with an "
                "error there); remove it" % _where(path, line))
        tokens = raw.split()
        if len(tokens) not in (5, 6):
            raise N2P2FormatError("%s: expected e_index sf_index min max "
                                  "mean [sigma], got %d columns"
                                  % (_where(path, line), len(tokens)))
        total = len(counts)
        element = integer(tokens[0], path, line, 1, total)
        function = integer(tokens[1], path, line, 1)
        stats = [number(t, path, line) for t in tokens[2:]]
        rows.append((element, function, tuple(stats + [0.0] * (6 - len(
            tokens))), line))
    if len(rows) != sum(counts):
        raise N2P2FormatError(
            "%s has %d rows but input.nn defines %d symmetry functions (%s "
            "per element)" % (path, len(rows), sum(counts),
                              ", ".join(map(str, counts))))
    out, position = [], 0
    for element, count in enumerate(counts, 1):
        block = []
        for index in range(1, count + 1):
            e, f, stats, line = rows[position]
            position += 1
            if (e, f) != (element, index):
                raise N2P2FormatError(
                    "%s: row for element %d, function %d where element %d, "
                    "function %d was expected (rows follow n2p2's sorted "
                    "order)" % (_where(path, line), e, f, element, index))
            block.append(stats)
        out.append(block)
    return out


def weights_file_name(atomic_number: int) -> str:
    """``weights.ZZZ.data`` of an element."""
    return "weights.%03d.data" % atomic_number


def _connections(widths):
    """``(kind, layer, neuron_s, layer_e, neuron_e)`` of every connection
    in file order (layers from 0, neurons from 1, as n2p2 writes them)."""
    for layer in range(1, len(widths)):
        for source in range(1, widths[layer - 1] + 1):
            for target in range(1, widths[layer] + 1):
                yield "a", layer - 1, source, layer, target
        for target in range(1, widths[layer] + 1):
            yield "b", layer, target, None, None


def read_weights(folder: str | os.PathLike, atomic_number: int,
                 widths: Sequence[int]) -> list[tuple]:
    """Read one element's ``weights.ZZZ.data``.

    Parameters
    ----------
    atomic_number : int
    widths : list of int
        Neurons per layer, input layer first.

    Returns
    -------
    list of tuple
        ``(W, b)`` per layer after the input: ``W`` a list of rows (one per
        source neuron), ``b`` the biases.
    """
    path = os.path.join(folder, weights_file_name(atomic_number))
    expected = sum(widths[k - 1] * widths[k] + widths[k]
                   for k in range(1, len(widths)))
    text = _decode(read_file(path, limits.MAX_MODEL_FILE_BYTES), path)
    values = []
    layout = _connections(widths)
    for line, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("#") or not raw:
            continue
        if not raw.strip():
            raise N2P2FormatError(
                "%s: a line of blanks (n2p2 reads it as a NaN connection); "
                "remove it" % _where(path, line))
        tokens = raw.split()
        values.append(number(tokens[0], path, line))
        if len(values) > expected:
            raise N2P2FormatError(
                "%s has more than the %d connections of a %s network"
                % (path, expected, "-".join(map(str, widths))))
        _check_connection(tokens, next(layout), path, line, widths)
    if len(values) != expected:
        raise N2P2FormatError(
            "%s has %d connections but a %s network has %d"
            % (path, len(values), "-".join(map(str, widths)), expected))
    layers, position = [], 0
    for k in range(1, len(widths)):
        n_in, n_out = widths[k - 1], widths[k]
        matrix = [values[position + row * n_out:position + (row + 1) * n_out]
                  for row in range(n_in)]
        position += n_in * n_out
        layers.append((matrix, values[position:position + n_out]))
        position += n_out
    return layers


def _check_connection(tokens, expected, path, line, widths):
    """When a weights line carries n2p2's type and index columns, check
    them against the connection the network expects there."""
    if len(tokens) < 2 or tokens[1] not in ("a", "b"):
        return
    kind = expected[0]
    if tokens[1] != kind:
        raise N2P2FormatError(
            "%s: a %s was expected here for a %s network, the line says "
            "%r" % (_where(path, line), "weight (a)" if kind == "a"
                    else "bias (b)", "-".join(map(str, widths)), tokens[1]))
    columns = tokens[3:7] if kind == "a" else tokens[3:5]
    wanted = [v for v in expected[1:] if v is not None]
    if len(columns) == len(wanted) and all(
            _INTEGER.match(c) for c in columns):
        if [int(c) for c in columns] != wanted:
            raise N2P2FormatError(
                "%s: connection %s is not the one expected here (%s) for a "
                "%s network" % (_where(path, line), " ".join(columns),
                                " ".join(map(str, wanted)),
                                "-".join(map(str, widths))))


def format_scaling(blocks: Sequence[Sequence[Sequence[float]]]) -> str:
    """The ``scaling.data`` text of per-element ``(min, max, mean, sigma)``
    rows (elements in order of atomic number, functions in n2p2's order).
    """
    out = ["# Symmetry function scaling data: e_index sf_index sf_min "
           "sf_max sf_mean sf_sigma"]
    for element, rows in enumerate(blocks, 1):
        for index, row in enumerate(rows, 1):
            out.append("%d %d %s" % (element, index,
                                     " ".join(_repr(v) for v in row)))
    return "\n".join(out) + "\n"


def format_weights(layers: Sequence[tuple]) -> str:
    """The ``weights.ZZZ.data`` text of ``[(W, b), ...]`` (``W`` rows are
    source neurons), with n2p2's type and index columns."""
    widths = [len(layers[0][0])] + [len(b) for _, b in layers]
    out = ["# connection t index l_s n_s l_e n_e"]
    count = 0
    for k, (matrix, biases) in enumerate(layers, 1):
        if len(matrix) != widths[k - 1]:
            raise ValueError("layer %d has %d rows, expected %d"
                             % (k, len(matrix), widths[k - 1]))
        for source, row in enumerate(matrix, 1):
            for target, value in enumerate(row, 1):
                count += 1
                out.append("%s a %d %d %d %d %d" % (_repr(value), count,
                                                    k - 1, source, k, target))
        for target, value in enumerate(biases, 1):
            count += 1
            out.append("%s b %d %d %d" % (_repr(value), count, k, target))
    return "\n".join(out) + "\n"


def write_folder(folder: str | os.PathLike, files: dict[str, str],
                 overwrite: bool = False) -> None:
    """Write ``{file name: text}`` into ``folder`` (created if needed).

    Each file is written atomically. Nothing is written when one of the
    files exists and ``overwrite`` is False.

    Raises
    ------
    FileExistsError
        A file exists and ``overwrite`` is False.
    """
    folder = os.fspath(folder)
    if not overwrite:
        existing = [n for n in files if os.path.lexists(
            os.path.join(folder, n))]
        if existing:
            raise FileExistsError(
                "%s already holds %s; pass overwrite=True to replace them"
                % (folder, ", ".join(sorted(existing))))
    os.makedirs(folder, exist_ok=True)
    for file_name, text in files.items():
        with atomic_file(os.path.join(folder, file_name)) as handle:
            handle.write(text.encode("utf-8"))
