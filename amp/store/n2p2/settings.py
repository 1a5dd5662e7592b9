"""``input.nn``: keywords, symmetry-function lines, network topology.

See :mod:`amp.store.n2p2` for the format. :func:`parse_settings` sorts
every keyword into those that define the prediction (read into
:class:`Settings`), training and bookkeeping keywords of n2p2 and RuNNer
(listed in :attr:`Settings.ignored`), keywords that would change the
numbers in ways this reader does not implement (refused by name) and
unknown words (refused by name unless the caller names them in
``ignore``).
"""

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .. import limits
from ..files import read_file
from .text import (_MAX_TOKEN, N2P2FormatError, _decode, _lines, _repr,
                   _where, integer, number)

__all__ = ["ACTIVATIONS", "SYMMETRY_FUNCTION_TYPES", "Settings",
           "SymmetryFunctionLine", "parse_settings", "read_settings",
           "network_topology", "format_settings"]

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


def parse_settings(text: str, name: str = "input.nn",
                   ignore: Iterable[str] = ()) -> "Settings":
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


def network_topology(settings: "Settings", element: str, n_inputs: int,
                     name: str = "input.nn") -> tuple[list, list]:
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


def read_settings(folder: str | os.PathLike,
                  ignore: Iterable[str] = ()) -> "Settings":
    """Parse ``folder/input.nn`` (see :func:`parse_settings`)."""
    path = os.path.join(folder, "input.nn")
    data = read_file(path, limits.MAX_MODEL_FILE_BYTES)
    return parse_settings(_decode(data, path), path, ignore)


def format_settings(settings: "Settings", header: Sequence[str] = ()) -> str:
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
