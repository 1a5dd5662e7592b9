"""n2p2 (and RuNNer) potential folders as text: read, check and write.

A potential folder holds three kinds of files. They are read here as text
from someone else: every file through :func:`amp.store.files.read_file`
(regular files only, size capped by :data:`amp.store.limits.
MAX_MODEL_FILE_BYTES`), every number parsed strictly (no ``atof`` prefix
reading), every line that does not fit refused with its file and line
number. Nothing here knows what the numbers mean physically.

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

The writers (:func:`format_settings`, :func:`format_scaling`,
:func:`format_weights`, :func:`write_folder`) produce exactly these
formats, with numbers written so that they read back to the same bits.
"""

import math
import os
import re
from dataclasses import dataclass, field

from . import limits
from .files import atomic_file, read_file

__all__ = ["N2P2FormatError", "Settings", "SymmetryFunctionLine",
           "parse_settings", "read_settings", "read_scaling",
           "read_weights", "weights_file_name", "format_settings",
           "format_scaling", "format_weights", "write_folder",
           "network_topology", "ACTIVATIONS", "read_structures",
           "format_structures"]


class N2P2FormatError(ValueError):
    """An n2p2 file is malformed, inconsistent, or uses something this
    reader refuses; the message names the file, the line and the fix."""


#: Activation letters of ``global_activation_short`` (n2p2's names).
ACTIVATIONS = {"l": "identity", "t": "tanh", "s": "logistic",
               "p": "softplus", "r": "relu", "g": "gaussian", "c": "cos",
               "S": "reverse logistic", "e": "exp", "h": "harmonic"}

# Keywords that define a short-range (2G) prediction.
_PREDICTION = {
    "number_of_elements", "elements", "atom_energy", "cutoff_type",
    "symfunction_short", "scale_symmetry_functions", "scale_min_short",
    "scale_max_short", "center_symmetry_functions",
    "scale_symmetry_functions_sigma", "global_hidden_layers_short",
    "global_nodes_short", "global_activation_short",
    "element_hidden_layers_short", "element_nodes_short",
    "element_activation_short", "normalize_nodes", "mean_energy",
    "conv_length", "conv_energy", "nnp_type", "nn_type", "nnp_generation"}

# Keywords that may appear on several lines.
_REPEATABLE = {"symfunction_short", "atom_energy",
               "element_hidden_layers_short", "element_nodes_short",
               "element_activation_short"}

# n2p2's training keywords (Settings.cpp) and RuNNer's training, output and
# bookkeeping keywords: none of them changes a prediction.
_TRAINING = set("""
random_seed test_fraction epochs use_short_forces rmse_threshold
rmse_threshold_energy rmse_threshold_force rmse_threshold_charge
rmse_threshold_trials rmse_threshold_trials_energy rmse_threshold_trials_force
rmse_threshold_trials_charge energy_fraction force_fraction charge_fraction
use_old_weights_short use_old_weights_charge weights_min weights_max
nguyen_widrow_weights_short nguyen_widrow_weights_charge precondition_weights
main_error_metric write_trainpoints write_trainforces write_traincharges
write_weights_epoch write_neuronstats write_trainlog repeated_energy_update
updater_type parallel_mode jacobian_mode update_strategy selection_mode
selection_mode_energy selection_mode_force selection_mode_charge
task_batch_size_energy task_batch_size_force task_batch_size_charge
gradient_type gradient_eta gradient_adam_eta gradient_adam_beta1
gradient_adam_beta2 gradient_adam_epsilon kalman_type kalman_epsilon
kalman_eta kalman_etatau kalman_etamax kalman_q0 kalman_qtau kalman_qmin
kalman_lambda_short kalman_nue_short memorize_symfunc_results force_weight
short_energy_error_threshold short_force_error_threshold
short_energy_fraction short_force_fraction
runner_mode use_short_nn random_number_type points_in_memory mix_all_points
fitting_unit optmode_short_energy optmode_short_force force_update_scaling
short_energy_group short_force_group calculate_forces calculate_stress
calculate_hessian max_force initialization_only print_sensitivity
use_atom_energies remove_atom_energies energy_threshold bond_threshold
write_symfunctions detailed_timing silent_mode check_forces debug_mode
update_single_element update_worst_short_energies update_worst_short_forces
fix_weights growth_mode use_damping use_noisematrix
write_pdb write_xyz write_pov write_pwscf write_unformatted
enforce_totcharge read_kalman_matrices save_kalman_matrices
""".split())

# Keywords that change the numbers in a way this reader does not implement.
_UNSUPPORTED = {
    "initial_hardness": "electrostatics (4G-HDNNP)",
    "fixed_gausswidth": "electrostatics (4G-HDNNP)",
    "screen_electrostatics": "electrostatics (4G-HDNNP)",
    "ewald_truncation_error_method": "electrostatics (4G-HDNNP)",
    "ewald_prec": "electrostatics (4G-HDNNP)",
    "four_pi_epsilon": "electrostatics (4G-HDNNP)",
    "conv_charge": "electrostatics (4G-HDNNP)",
    "global_hidden_layers_electrostatic": "a charge network (4G or Q-HDNNP)",
    "global_nodes_electrostatic": "a charge network (4G or Q-HDNNP)",
    "global_activation_electrostatic": "a charge network (4G or Q-HDNNP)",
    "committee_mode": "committee prediction",
    "use_electrostatics": "RuNNer's electrostatics",
    "electrostatic_type": "RuNNer's electrostatics",
    "nn_type_elec": "RuNNer's electrostatics",
    "use_vdw": "RuNNer's van der Waals correction",
    "vdw_type": "RuNNer's van der Waals correction",
    "nn_type_short": "RuNNer's pair networks (only type 1 is n2p2's)",
    "global_symfunction_short": "RuNNer's global symmetry-function lines "
                                "(n2p2 skips them)",
    "element_symfunction_short": "RuNNer's per-element symmetry-function "
                                 "lines (n2p2 skips them)",
}

# Alternative spellings n2p2 accepts.
_ALIASES = {"nn_type": "nnp_type"}

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_INTEGER = re.compile(r"[+-]?\d+\Z")
_SUBTYPE = re.compile(r"(p[1-4]a?|e)\Z")

# Field names of each symmetry-function type, in file order; a trailing
# "?" marks an optional field.
_FIELDS = {
    2: ("e1", "eta", "rs", "rc"),
    3: ("e1", "e2", "eta", "lambda", "zeta", "rc", "rs?"),
    9: ("e1", "e2", "eta", "lambda", "zeta", "rc", "rs?"),
    12: ("eta", "rs", "rc"),
    13: ("eta", "rs", "lambda", "zeta", "rc"),
    20: ("e1", "rl", "rc", "subtype"),
    21: ("e1", "e2", "rl", "rc", "angle_left", "angle_right", "subtype"),
    22: ("e1", "e2", "rl", "rc", "angle_left", "angle_right", "subtype"),
    23: ("rl", "rc", "subtype"),
    24: ("rl", "rc", "angle_left", "angle_right", "subtype"),
    25: ("rl", "rc", "angle_left", "angle_right", "subtype"),
}

#: The symmetry-function types n2p2 implements (``symfunction_short``).
SYMMETRY_FUNCTION_TYPES = tuple(sorted(_FIELDS))

# Longest element symbol, number token and line we accept.
_MAX_TOKEN = 64


def _where(name, line):
    return "%s line %d" % (name, line)


def number(token, name, line, what="a number"):
    """``float(token)``, refusing anything but a plain finite decimal."""
    if len(token) > _MAX_TOKEN or not _NUMBER.match(token):
        raise N2P2FormatError("%s: %r is not %s" % (_where(name, line),
                                                   token[:_MAX_TOKEN], what))
    value = float(token)
    if not math.isfinite(value):
        raise N2P2FormatError("%s: %r is out of range" % (_where(name, line),
                                                         token))
    return value


def integer(token, name, line, low=None, high=None):
    """``int(token)`` within ``[low, high]``, refusing anything else."""
    if len(token) > _MAX_TOKEN or not _INTEGER.match(token):
        raise N2P2FormatError("%s: %r is not a whole number"
                              % (_where(name, line), token[:_MAX_TOKEN]))
    value = int(token)
    if (low is not None and value < low) or (high is not None
                                             and value > high):
        raise N2P2FormatError("%s: %d is outside [%s, %s]" % (
            _where(name, line), value, low, high))
    return value


@dataclass
class SymmetryFunctionLine:
    """One ``symfunction_short`` line, its fields typed.

    Attributes
    ----------
    element : str
        The centre element.
    type : int
        n2p2's type number.
    parameters : dict
        The fields of :data:`_FIELDS` by name (``e1``, ``e2`` element
        symbols, ``subtype`` a string, the rest floats); an optional ``rs``
        that is absent is 0.
    line : int
        Line number in ``input.nn`` (from 1).
    """

    element: str
    type: int
    parameters: dict
    line: int


@dataclass
class Settings:
    """What an ``input.nn`` says about a short-range prediction.

    Attributes
    ----------
    elements : tuple of str
        As listed by ``elements``.
    atom_energy : dict
        ``{element: offset}`` from ``atom_energy`` lines.
    cutoff_type : int
    cutoff_alpha : float
    scaling : str
        ``'none'``, ``'scale'``, ``'center'``, ``'scalecenter'`` or
        ``'sigma'`` (n2p2's ``ST_*`` from the three scaling keywords).
    scale_min, scale_max : float
        ``scale_min_short`` and ``scale_max_short`` (n2p2's defaults 0 and
        1 when absent).
    hidden_layers : int or None
        ``global_hidden_layers_short``.
    nodes : tuple of int
        ``global_nodes_short``.
    activations : tuple of str
        ``global_activation_short`` letters, hidden layers then output.
    element_hidden_layers, element_nodes, element_activations : dict
        The ``element_*_short`` lines by element.
    normalize_nodes : bool
    normalization : tuple or None
        ``(mean_energy, conv_energy, conv_length)``.
    symmetry_functions : list of SymmetryFunctionLine
        In file order.
    ignored : list of tuple
        ``(keyword, line)`` of training and bookkeeping keywords, and of
        those the caller chose to ignore.
    """

    elements: tuple = ()
    atom_energy: dict = field(default_factory=dict)
    cutoff_type: int = 0
    cutoff_alpha: float = 0.0
    scaling: str = "none"
    scale_min: float = 0.0
    scale_max: float = 1.0
    hidden_layers: object = None
    nodes: tuple = ()
    activations: tuple = ()
    element_hidden_layers: dict = field(default_factory=dict)
    element_nodes: dict = field(default_factory=dict)
    element_activations: dict = field(default_factory=dict)
    normalize_nodes: bool = False
    normalization: object = None
    symmetry_functions: list = field(default_factory=list)
    ignored: list = field(default_factory=list)


def _decode(data, name):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise N2P2FormatError("%s: not UTF-8 text" % _where(name, line)) \
            from None


def _lines(text):
    """``(number, tokens)`` of every line with content, comments cut."""
    for number_, line in enumerate(text.splitlines(), 1):
        for mark in "#!":
            cut = line.find(mark)
            if cut >= 0:
                line = line[:cut]
        tokens = line.split()
        if tokens:
            yield number_, tokens


def parse_settings(text, name="input.nn", ignore=()):
    """Parse the text of an ``input.nn``.

    Parameters
    ----------
    text : str
    name : str
        Names the file in error messages.
    ignore : iterable of str
        Unknown keywords to accept (and ignore) instead of refusing them.

    Returns
    -------
    Settings

    Raises
    ------
    N2P2FormatError
        Unknown or unsupported keywords, repeated keywords, missing or
        malformed arguments.
    """
    ignore = set(ignore)
    found = {}
    settings = Settings()
    for line, tokens in _lines(text):
        keyword, arguments = tokens[0], tokens[1:]
        keyword = _ALIASES.get(keyword, keyword)
        if keyword in _UNSUPPORTED:
            raise N2P2FormatError(
                "%s: %r means %s, which this reader does not implement; "
                "only short-range potentials (2G-HDNNP) are read"
                % (_where(name, line), keyword, _UNSUPPORTED[keyword]))
        if keyword in _TRAINING or keyword in ignore:
            settings.ignored.append((keyword, line))
            continue
        if keyword not in _PREDICTION:
            raise N2P2FormatError(
                "%s: unknown keyword %r. n2p2 skips keywords it does not "
                "know, so it may not mean what was intended; remove it, or "
                "pass ignore=[%r] if it does not change predictions"
                % (_where(name, line), keyword[:_MAX_TOKEN],
                   keyword[:_MAX_TOKEN]))
        if keyword in found and keyword not in _REPEATABLE:
            raise N2P2FormatError(
                "%s: %r appears again (first on line %d); n2p2 refuses "
                "repeated keywords" % (_where(name, line), keyword,
                                       found[keyword][0][1]))
        found.setdefault(keyword, []).append((arguments, line))
    _interpret(settings, found, name)
    return settings


def _one(found, keyword, name, count=None, required=True):
    """The arguments and line of a keyword given once, or (None, None)."""
    if keyword not in found:
        if required:
            raise N2P2FormatError("%s has no %r line" % (name, keyword))
        return None, None
    arguments, line = found[keyword][0]
    if count is not None and len(arguments) != count:
        raise N2P2FormatError("%s: %r takes %d argument(s), got %d"
                              % (_where(name, line), keyword, count,
                                 len(arguments)))
    return arguments, line


def _interpret(s, found, name):
    """Fill ``s`` from the keyword lines ``found``."""
    generation, line = _one(found, "nnp_type", name, 1, required=False)
    if generation is not None and generation[0] not in ("2G-HDNNP", "2", "0"):
        raise N2P2FormatError(
            "%s: nnp_type %s is not a short-range potential (2G-HDNNP); "
            "only those are read" % (_where(name, line), generation[0]))
    generation, line = _one(found, "nnp_generation", name, 1, required=False)
    if generation is not None and generation[0] != "2":
        raise N2P2FormatError(
            "%s: nnp_generation %s is not a short-range potential; only "
            "generation 2 is read" % (_where(name, line), generation[0]))
    count, line = _one(found, "number_of_elements", name, 1)
    count = integer(count[0], name, line, 1, 118)
    elements, line = _one(found, "elements", name)
    if len(elements) != count:
        raise N2P2FormatError(
            "%s: %d elements listed but number_of_elements is %d"
            % (_where(name, line), len(elements), count))
    if len(set(elements)) != len(elements):
        raise N2P2FormatError("%s: an element is listed twice"
                              % _where(name, line))
    for symbol in elements:
        _symbol(symbol, elements, name, line, listed=False)
    s.elements = tuple(elements)
    for arguments, line in found.get("atom_energy", []):
        if len(arguments) != 2:
            raise N2P2FormatError("%s: atom_energy takes an element and an "
                                  "energy" % _where(name, line))
        symbol = _symbol(arguments[0], elements, name, line)
        if symbol in s.atom_energy:
            raise N2P2FormatError("%s: a second atom_energy for %s"
                                  % (_where(name, line), symbol))
        s.atom_energy[symbol] = number(arguments[1], name, line)
    cutoff, line = _one(found, "cutoff_type", name)
    if len(cutoff) not in (1, 2):
        raise N2P2FormatError("%s: cutoff_type takes a type and an optional "
                              "alpha" % _where(name, line))
    s.cutoff_type = integer(cutoff[0], name, line, 0, 8)
    if len(cutoff) == 2:
        s.cutoff_alpha = number(cutoff[1], name, line)
    flags = []
    for keyword in ("scale_symmetry_functions", "center_symmetry_functions",
                    "scale_symmetry_functions_sigma", "normalize_nodes"):
        arguments, line = _one(found, keyword, name, required=False)
        if arguments:
            raise N2P2FormatError("%s: %s takes no argument"
                                  % (_where(name, line), keyword))
        flags.append(arguments is not None)
    scale, center, sigma, s.normalize_nodes = flags
    # n2p2's order of tests (Mode::setupSymmetryFunctionScaling).
    s.scaling = ("scale" if scale and not center else
                 "center" if center and not scale else
                 "scalecenter" if scale and center else
                 "sigma" if sigma else "none")
    for keyword, attribute in (("scale_min_short", "scale_min"),
                               ("scale_max_short", "scale_max")):
        arguments, line = _one(found, keyword, name, 1, required=False)
        if arguments is not None:
            setattr(s, attribute, number(arguments[0], name, line))
    present = [k for k in ("mean_energy", "conv_energy", "conv_length")
               if k in found]
    if present and len(present) != 3:
        raise N2P2FormatError(
            "%s uses %s without the other normalisation keywords; n2p2 "
            "needs all or none of mean_energy, conv_energy, conv_length"
            % (name, ", ".join(present)))
    if present:
        values = []
        for keyword in ("mean_energy", "conv_energy", "conv_length"):
            arguments, line = _one(found, keyword, name, 1)
            values.append(number(arguments[0], name, line))
        if values[1] == 0.0 or values[2] <= 0.0:
            raise N2P2FormatError("%s: conv_energy must not be 0 and "
                                  "conv_length must be positive" % name)
        s.normalization = tuple(values)
    _interpret_network(s, found, name)
    for arguments, line in found.get("symfunction_short", []):
        s.symmetry_functions.append(
            _symmetry_function(arguments, elements, name, line))


def _symbol(token, elements, name, line, listed=True):
    if len(token) > 3 or not token.isalpha():
        raise N2P2FormatError("%s: %r is not an element symbol"
                              % (_where(name, line), token[:_MAX_TOKEN]))
    if listed and token not in elements:
        raise N2P2FormatError("%s: element %s is not in the elements line "
                              "(%s)" % (_where(name, line), token,
                                        " ".join(elements)))
    return token


def _interpret_network(s, found, name):
    arguments, line = _one(found, "global_hidden_layers_short", name, 1,
                           required=False)
    if arguments is not None:
        # n2p2's networks have at least one hidden layer.
        s.hidden_layers = integer(arguments[0], name, line, 1, 1000)
    arguments, line = _one(found, "global_nodes_short", name,
                           required=False)
    if arguments is not None:
        s.nodes = tuple(integer(a, name, line, 1, 10 ** 6)
                        for a in arguments)
    arguments, line = _one(found, "global_activation_short", name,
                           required=False)
    if arguments is not None:
        s.activations = tuple(_activation(a, name, line) for a in arguments)
    for keyword, target in (("element_hidden_layers_short",
                             s.element_hidden_layers),
                            ("element_nodes_short", s.element_nodes),
                            ("element_activation_short",
                             s.element_activations)):
        for arguments, line in found.get(keyword, []):
            if len(arguments) < 2:
                raise N2P2FormatError("%s: %s needs an element and values"
                                      % (_where(name, line), keyword))
            symbol = _symbol(arguments[0], s.elements, name, line)
            if symbol in target:
                raise N2P2FormatError("%s: a second %s for %s"
                                      % (_where(name, line), keyword, symbol))
            if keyword == "element_activation_short":
                values = tuple(_activation(a, name, line)
                               for a in arguments[1:])
            else:
                values = tuple(integer(a, name, line, 0, 10 ** 6)
                               for a in arguments[1:])
            target[symbol] = (values, line)


def _activation(token, name, line):
    if token not in ACTIVATIONS:
        raise N2P2FormatError(
            "%s: unknown activation %r; n2p2's are %s"
            % (_where(name, line), token[:_MAX_TOKEN],
               ", ".join(sorted(ACTIVATIONS))))
    return token


def _symmetry_function(arguments, elements, name, line):
    if len(arguments) < 2:
        raise N2P2FormatError("%s: symfunction_short needs an element, a "
                              "type and parameters" % _where(name, line))
    centre = _symbol(arguments[0], elements, name, line)
    kind = integer(arguments[1], name, line)
    if kind not in _FIELDS:
        raise N2P2FormatError(
            "%s: symmetry-function type %d is not one of n2p2's (%s)"
            % (_where(name, line), kind,
               ", ".join(map(str, SYMMETRY_FUNCTION_TYPES))))
    fields = _FIELDS[kind]
    required = [f for f in fields if not f.endswith("?")]
    values = arguments[2:]
    if not len(required) <= len(values) <= len(fields):
        raise N2P2FormatError(
            "%s: type %d takes %s fields after the type (%s), got %d"
            % (_where(name, line), kind,
               len(required) if len(required) == len(fields) else
               "%d or %d" % (len(required), len(fields)),
               ", ".join(f.rstrip("?") for f in fields), len(values)))
    parameters = {"rs": 0.0} if "rs?" in fields else {}
    for field_name, token in zip(fields, values):
        field_name = field_name.rstrip("?")
        if field_name in ("e1", "e2"):
            parameters[field_name] = _symbol(token, elements, name, line)
        elif field_name == "subtype":
            if not _SUBTYPE.match(token):
                raise N2P2FormatError(
                    "%s: compact function subtype %r is not one of n2p2's "
                    "(p1, p2, p3, p4, p1a to p4a, e)"
                    % (_where(name, line), token[:_MAX_TOKEN]))
            parameters[field_name] = token
        else:
            parameters[field_name] = number(token, name, line)
    return SymmetryFunctionLine(centre, kind, parameters, line)


def network_topology(settings, element, n_inputs, name="input.nn"):
    """Layer widths and activations of one element's network, as n2p2
    builds them (``Mode::setupNeuralNetwork``).

    The global keywords give every element its hidden layers; the
    ``element_*_short`` keywords may change the widths of the hidden
    layers but the last, and the activations of the hidden layers. What
    n2p2 would silently keep from the global keywords despite a different
    per-element value, and what n2p2 cannot build, is refused.

    Returns
    -------
    widths : list of int
        ``[n_inputs, hidden..., 1]``.
    activations : list of str
        One letter per layer after the input.
    """
    hidden = settings.hidden_layers
    own = settings.element_hidden_layers.get(element)
    if own is not None:
        values, line = own
        if len(values) != 1:
            raise N2P2FormatError("%s: element_hidden_layers_short takes "
                                  "an element and one number"
                                  % _where(name, line))
        count = values[0]
        if count != hidden:
            raise N2P2FormatError(
                "%s: element %s has %d hidden layers but the global number "
                "is %s; n2p2 cannot build networks with different numbers "
                "of layers" % (_where(name, line), element, count, hidden))
    if hidden is None:
        raise N2P2FormatError("%s has no global_hidden_layers_short" % name)
    if len(settings.nodes) != hidden:
        raise N2P2FormatError(
            "%s: global_nodes_short gives %d widths for %d hidden layers"
            % (name, len(settings.nodes), hidden))
    if len(settings.activations) != hidden + 1:
        raise N2P2FormatError(
            "%s: global_activation_short gives %d activations; %d hidden "
            "layers and the output need %d"
            % (name, len(settings.activations), hidden, hidden + 1))
    widths = [n_inputs] + list(settings.nodes) + [1]
    activations = list(settings.activations)
    if element in settings.element_nodes:
        values, line = settings.element_nodes[element]
        if len(values) != hidden:
            raise N2P2FormatError("%s: element_nodes_short needs %d widths"
                                  % (_where(name, line), hidden))
        if values[-1] != settings.nodes[-1]:
            raise N2P2FormatError(
                "%s: n2p2 keeps the global width %d of the last hidden "
                "layer for %s (it does not read the last value of "
                "element_nodes_short), so %d would be ignored; write %d"
                % (_where(name, line), settings.nodes[-1], element,
                   values[-1], settings.nodes[-1]))
        widths[1:hidden] = values[:-1]
    if element in settings.element_activations:
        values, line = settings.element_activations[element]
        if len(values) != hidden + 1:
            raise N2P2FormatError("%s: element_activation_short needs %d "
                                  "activations" % (_where(name, line),
                                                   hidden + 1))
        if values[-1] != settings.activations[-1]:
            raise N2P2FormatError(
                "%s: n2p2 keeps the global output activation %r for %s (it "
                "does not read the last letter of element_activation_short),"
                " so %r would be ignored; write %r"
                % (_where(name, line), settings.activations[-1], element,
                   values[-1], settings.activations[-1]))
        activations[:hidden] = values[:-1]
    if 0 in widths[1:]:
        raise N2P2FormatError("%s: a layer of %s has no neurons"
                              % (name, element))
    return widths, activations


def read_settings(folder, ignore=()):
    """Parse ``folder/input.nn`` (see :func:`parse_settings`)."""
    path = os.path.join(folder, "input.nn")
    data = read_file(path, limits.MAX_MODEL_FILE_BYTES)
    return parse_settings(_decode(data, path), path, ignore)


def read_scaling(folder, counts):
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
        if raw.startswith("#") or not raw.strip():
            continue
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


def weights_file_name(atomic_number):
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


def read_weights(folder, atomic_number, widths):
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
        if raw.startswith("#") or not raw.strip():
            continue
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


# Writing -----------------------------------------------------------------

def _repr(value):
    """A float as text that reads back to the same bits."""
    return repr(float(value))


def format_settings(settings, header=()):
    """The ``input.nn`` text of :class:`Settings` (a canonical form).

    Parameters
    ----------
    header : sequence of str
        Comment lines put at the top.
    """
    s = settings
    out = ["# " + text for text in header]
    if s.normalization is not None:
        for keyword, value in zip(("mean_energy", "conv_energy",
                                   "conv_length"), s.normalization):
            out.append("%-32s %s" % (keyword, _repr(value)))
    out.append("%-32s %d" % ("number_of_elements", len(s.elements)))
    out.append("%-32s %s" % ("elements", " ".join(s.elements)))
    for element, energy in s.atom_energy.items():
        out.append("%-32s %s %s" % ("atom_energy", element, _repr(energy)))
    out.append("%-32s %d %s" % ("cutoff_type", s.cutoff_type,
                                _repr(s.cutoff_alpha)))
    flags = {"none": (), "scale": ("scale_symmetry_functions",),
             "center": ("center_symmetry_functions",),
             "scalecenter": ("scale_symmetry_functions",
                             "center_symmetry_functions"),
             "sigma": ("scale_symmetry_functions_sigma",)}[s.scaling]
    out.extend(flags)
    out.append("%-32s %s" % ("scale_min_short", _repr(s.scale_min)))
    out.append("%-32s %s" % ("scale_max_short", _repr(s.scale_max)))
    out.append("%-32s %d" % ("global_hidden_layers_short", s.hidden_layers))
    out.append("%-32s %s" % ("global_nodes_short",
                             " ".join(map(str, s.nodes))))
    out.append("%-32s %s" % ("global_activation_short",
                             " ".join(s.activations)))
    for keyword, table in (("element_nodes_short", s.element_nodes),
                           ("element_activation_short",
                            s.element_activations)):
        for element, (values, _) in table.items():
            out.append("%-32s %s %s" % (keyword, element,
                                        " ".join(map(str, values))))
    if s.normalize_nodes:
        out.append("normalize_nodes")
    for sf in s.symmetry_functions:
        out.append(_format_symmetry_function(sf))
    return "\n".join(out) + "\n"


def _format_symmetry_function(sf):
    fields = []
    for field_name in _FIELDS[sf.type]:
        value = sf.parameters[field_name.rstrip("?")]
        fields.append(value if isinstance(value, str) else _repr(value))
    return "symfunction_short %s %d %s" % (sf.element, sf.type,
                                           " ".join(fields))


def format_scaling(blocks):
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


def format_weights(layers):
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


def write_folder(folder, files, overwrite=False):
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


def read_structures(path, max_structures=None):
    """Read structures from an n2p2 ``input.data`` file.

    Each structure is ``begin``, optional ``comment`` lines, zero or three
    ``lattice`` lines, ``atom x y z element charge energy fx fy fz`` lines,
    optional ``energy`` and ``charge`` lines, and ``end``.

    Returns
    -------
    list of dict
        ``cell`` (3 rows or None), ``positions``, ``symbols``, ``energy``
        (or None) and ``forces`` (rows), numbers as given.
    """
    text = _decode(read_file(path, limits.MAX_MODEL_FILE_BYTES), path)
    structures, current = [], None
    for line, tokens in _lines(text):
        keyword = tokens[0]
        if keyword == "begin":
            if current is not None:
                raise N2P2FormatError("%s: begin before end" %
                                      _where(path, line))
            current = {"cell": [], "positions": [], "symbols": [],
                       "forces": [], "energy": None}
        elif current is None:
            raise N2P2FormatError("%s: %r outside begin ... end"
                                  % (_where(path, line),
                                     keyword[:_MAX_TOKEN]))
        elif keyword == "comment":
            continue
        elif keyword == "lattice":
            current["cell"].append([number(t, path, line)
                                    for t in tokens[1:4]])
        elif keyword == "atom":
            if len(tokens) != 10:
                raise N2P2FormatError("%s: an atom line has 10 columns"
                                      % _where(path, line))
            current["positions"].append([number(t, path, line)
                                         for t in tokens[1:4]])
            current["symbols"].append(_symbol(tokens[4], tokens[4], path,
                                              line, listed=False))
            current["forces"].append([number(t, path, line)
                                      for t in tokens[7:10]])
        elif keyword == "energy":
            current["energy"] = number(tokens[1], path, line)
        elif keyword == "charge":
            continue
        elif keyword == "end":
            if len(current["cell"]) not in (0, 3):
                raise N2P2FormatError("%s: a structure needs 0 or 3 lattice "
                                      "lines" % _where(path, line))
            current["cell"] = current["cell"] or None
            structures.append(current)
            current = None
            if max_structures is not None and len(structures) >= \
                    max_structures:
                break
        else:
            raise N2P2FormatError("%s: unknown input.data keyword %r"
                                  % (_where(path, line),
                                     keyword[:_MAX_TOKEN]))
    if current is not None:
        raise N2P2FormatError("%s: the last structure has no end" % path)
    return structures


def format_structures(structures):
    """The ``input.data`` text of structures (dicts as
    :func:`read_structures` returns; ``energy`` and ``forces`` may be None,
    written as 0)."""
    out = []
    for s in structures:
        out.append("begin")
        for row in s["cell"] or ():
            out.append("lattice %s %s %s" % tuple(_repr(v) for v in row))
        forces = s.get("forces") or [[0.0] * 3] * len(s["symbols"])
        for position, symbol, force in zip(s["positions"], s["symbols"],
                                           forces):
            out.append("atom %s %s %s %s 0.0 0.0 %s %s %s" % (
                tuple(_repr(v) for v in position) + (symbol,)
                + tuple(_repr(v) for v in force)))
        out.append("energy %s" % _repr(s.get("energy") or 0.0))
        out.append("charge 0.0")
        out.append("end")
    return "\n".join(out) + "\n"
