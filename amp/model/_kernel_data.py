"""KernelRidge's data: training features and targets, kernel widths,
weights in Amp's layouts, and their plain-data form for model files.

Training atoms are kept by element in training order (image by image,
atoms in image order), as Amp 1.x orders them: Amp's list of energy
weights, one per training atom, is split by element with the training
images' symbols.
"""

import numbers
import os

import numpy as np

from ..utilities import hash_images
from ._kernel_features import (Standardizer, energy_blocks, force_features,
                               key_counts, prime_moments)
from ._kernels import check_width

__all__ = ["collect", "training_references", "partition_targets",
           "read_training_images", "read_weights", "weights_by_element",
           "references_todict", "references_fromdict", "lamdas",
           "sigma_table", "sigma_todict"]


def _stack(parts, shape):
    return np.concatenate(parts) if parts else np.zeros((0,) + shape)


def collect(images: dict, fingerprints, forces: bool, preprocessing: bool,
            targets: bool = True) -> dict:
    """The training atoms' raw features (and targets) by element.

    Parameters
    ----------
    images : dict
        ``{hash: atoms}``, in training order.
    fingerprints : iterable
        ``(hash, ImageFingerprints)`` of each image, in the same order.
    forces : bool
        Also the force features (the fingerprints have derivatives).
    preprocessing : bool
        Also what the force scaler needs (key counts and moments).
    targets : bool
        Also the reference energies (and forces) of the images.

    Returns
    -------
    dict
        ``raw_energy`` and ``image`` (each atom's image) by element,
        ``symbols`` of every training atom, ``n_atoms`` per image; with
        ``forces``: ``raw_forces`` (and ``counts``, ``moments``); with
        ``targets``: ``energies`` and ``force_targets`` by element.
    """
    energy, image, force, count, force_target = {}, {}, {}, {}, {}
    symbols, n_atoms, energies, moments = [], [], [], []
    for number, (key, fps) in enumerate(fingerprints):
        atoms = images[key]
        symbols.extend(fps.symbols)
        n_atoms.append(fps.n_atoms)
        if targets:
            energies.append(float(atoms.get_potential_energy(
                apply_constraint=False)))
        for element, block in energy_blocks(fps).items():
            energy.setdefault(element, []).append(block)
            image.setdefault(element, []).append(
                np.full(len(block), number, dtype=np.int64))
        if not forces:
            continue
        features = force_features(fps)
        reference = np.asarray(atoms.get_forces(apply_constraint=False),
                               dtype=float) if targets else None
        counts = key_counts(fps) if preprocessing else None
        if preprocessing:
            moments.append(prime_moments(fps))
        for element, index in fps.atom_index.items():
            force.setdefault(element, []).append(features[index])
            if targets:
                force_target.setdefault(element, []).append(reference[index])
            if preprocessing:
                count.setdefault(element, []).append(counts[index])
    training = {
        "raw_energy": {e: np.concatenate(v) for e, v in energy.items()},
        "image": {e: np.concatenate(v) for e, v in image.items()},
        "symbols": np.array(symbols), "n_atoms": np.array(n_atoms, float)}
    if targets:
        training["energies"] = np.array(energies)
    if forces:
        training["raw_forces"] = {e: np.concatenate(v)
                                  for e, v in force.items()}
        training["counts"] = {e: np.concatenate(v) for e, v in count.items()}
        training["moments"] = moments
        if targets:
            training["force_targets"] = {e: np.concatenate(v) for e, v in
                                         force_target.items()}
    return training


def training_references(training: dict, preprocessing: bool) -> dict:
    """The features the kernels compare (standardised with
    ``preprocessing``), by element, and the scalers for new atoms."""
    references = {"energy": dict(training["raw_energy"])}
    if preprocessing:
        lengths = {b.shape[1] for b in references["energy"].values()}
        if len(lengths) > 1:
            raise ValueError(
                "preprocessing standardises the fingerprints of every "
                "element together (as Amp), which needs one length for "
                "every element; here they differ (%s)"
                % ", ".join("%s: %d" % (e, b.shape[1]) for e, b in
                            sorted(references["energy"].items())))
        scaler = Standardizer.fit(np.concatenate(
            list(references["energy"].values())))
        references["energy_scaler"] = scaler
        references["energy"] = {e: scaler.transform(b) for e, b in
                                references["energy"].items()}
    if "raw_forces" in training:
        references["forces"] = dict(training["raw_forces"])
        if preprocessing:
            scaler = Standardizer.from_moments(training["moments"])
            references["force_scaler"] = scaler
            references["forces"] = {
                e: scaler.transform(b, training["counts"][e])
                for e, b in references["forces"].items()}
    return references


def partition_targets(path: str, raw_energy: dict) -> dict:
    """Atomic energies of the training atoms from the neural network of an
    ``.amp`` file (Amp's ``nnpartition``), by element."""
    from ..store import modelfile
    from .neuralnetwork import NeuralNetwork

    _, model = modelfile.read(path)
    network = NeuralNetwork.fromdict(model)
    network.check_features({e: b.shape[1] for e, b in raw_energy.items()},
                           "the KernelRidge training fingerprints",
                           every_network=False)
    evaluate = network.block_evaluator(gradient=False)
    return {e: np.asarray(evaluate(e, b)[0], dtype=float)
            for e, b in raw_energy.items()}


def read_training_images(path: str) -> dict:
    """The images of an Amp 1.x model's ``trainingimages`` file, hashed.

    The name comes from a model file, so the file is read as ASE's
    ``.traj`` format only (no format guessing) and only if it is a regular
    file within :data:`amp.store.limits.MAX_MODEL_FILE_BYTES`.
    """
    import io

    import ase.io

    from ..store import limits
    from ..store.files import UnsafeFileError, read_file

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(
            "the KernelRidge model's training images %r are not there "
            "(relative to %s): Amp 1.x KernelRidge files keep no training "
            "features, only the name of the .traj file they were trained "
            "on; run in the folder that holds it" % (path, os.getcwd()))
    try:
        data = read_file(path, limits.MAX_MODEL_FILE_BYTES,
                         "training images %s" % path)
        images = ase.io.read(io.BytesIO(data), index=":", format="traj")
    except UnsafeFileError as error:
        raise ValueError("refusing to read the training images: %s"
                         % error) from None
    except Exception as error:  # any reader failure: the file is bad
        raise ValueError("cannot read the training images %r as an ASE "
                         ".traj file: %s" % (path, error)) from None
    return hash_images(images)


def _forces_array(value, where):
    """Force weights of one element as ``(3, n)`` (Amp: three arrays, or
    one vector shared by the three directions)."""
    array = np.array(value, dtype=float)
    if array.ndim == 1:
        array = np.tile(array, (3, 1))
    if array.ndim != 2 or array.shape[0] != 3:
        raise ValueError("%s must be three vectors (x, y, z) or one, got "
                         "shape %s" % (where, array.shape))
    return array


def read_weights(weights: dict | None) -> dict | None:
    """``{'energy': {element: array} or array, 'forces': {element: (3, n)
    array}}`` from Amp's layouts or this library's."""
    if weights is None:
        return None
    if not isinstance(weights, dict) or "energy" not in weights:
        raise ValueError("KernelRidge weights must be a dict with 'energy' "
                         "(and 'forces') entries")
    energy = weights["energy"]
    out = {}
    if isinstance(energy, dict):
        out["energy"] = {str(e): np.array(w, dtype=float).reshape(-1)
                         for e, w in energy.items()}
    else:  # Amp's: one weight per training atom, in training order
        out["energy"] = np.array(energy, dtype=float).reshape(-1)
    if weights.get("forces") is not None:
        if not isinstance(weights["forces"], dict):
            raise ValueError("KernelRidge force weights must be a dict by "
                             "element")
        out["forces"] = {str(e): _forces_array(
            w, "the force weights of %s" % e)
            for e, w in weights["forces"].items()}
    return out


def weights_by_element(weights: dict, training: dict | None,
                       references: dict, source: str | None) -> dict:
    """The weights by element, checked against the training atoms.

    Amp's energy list (one weight per training atom) is split with the
    training symbols (``training['symbols']``).

    Raises
    ------
    ValueError
        Weights and training atoms do not match (``source`` names the
        training images in the message).
    """
    where = " (are %s the images this model was trained on?)" % (source,) \
        if source is not None else ""
    energy = weights["energy"]
    if not isinstance(energy, dict):
        symbols = training["symbols"] if training is not None else None
        if symbols is None or len(energy) != len(symbols):
            raise ValueError(
                "the model has %d energy weights but its training images "
                "have %s atoms%s" % (len(energy), "no" if symbols is None
                                     else len(symbols), where))
        energy = {e: energy[symbols == e] for e in references["energy"]}
    out = {"energy": energy}
    kinds = [("energy", energy)]
    if weights.get("forces") is not None:
        if "forces" not in references:
            raise ValueError("the model has force weights but no training "
                             "force features")
        out["forces"] = weights["forces"]
        kinds.append(("forces", {e: w[0] for e, w in
                                 weights["forces"].items()}))
    for kind, table in kinds:
        for element, block in references[kind].items():
            n = len(table.get(element, ()))
            if n != len(block):
                raise ValueError(
                    "the model has %d %s weights for %s but its training "
                    "images have %d atoms of %s%s"
                    % (n, kind, element, len(block), element, where))
    return out


def references_todict(references: dict | None) -> dict | None:
    """Plain lists of the training features and scalers (or None)."""
    if references is None:
        return None
    out = {"energy": {e: b.tolist() for e, b in references["energy"].items()}}
    if "forces" in references:
        out["forces"] = {e: b.tolist() for e, b in
                         references["forces"].items()}
    for name in ("energy_scaler", "force_scaler"):
        if references.get(name) is not None:
            out[name] = references[name].todict()
    return out


def references_fromdict(d: dict) -> dict:
    """Inverse of :func:`references_todict`, shapes checked."""
    energy = {str(e): np.array(b, dtype=float) for e, b in
              d["energy"].items()}
    for element, block in energy.items():
        if block.ndim != 2:
            raise ValueError("training features of %s are not a (atoms, "
                             "features) table" % element)
    references = {"energy": energy}
    if d.get("forces") is not None:
        references["forces"] = {str(e): np.array(b, dtype=float)
                                for e, b in d["forces"].items()}
        for element, block in references["forces"].items():
            if block.ndim != 3 or block.shape[1] != 3 or \
                    element not in energy or \
                    block.shape[2] != energy[element].shape[1]:
                raise ValueError("training force features of %s are not "
                                 "(atoms, 3, features of its fingerprints)"
                                 % element)
    lengths = {b.shape[1] for b in energy.values()}
    for name, shape in (("energy_scaler", (min(lengths, default=0),)),
                        ("force_scaler", (3, min(lengths, default=0)))):
        if d.get(name) is not None:
            references[name] = Standardizer.fromdict(d[name])
            if len(lengths) != 1 or references[name].mean.shape != shape \
                    or references[name].scale.shape != shape:
                raise ValueError("the %s does not fit the training features"
                                 % name.replace("_", " "))
    return references


# Widths and regularisation -------------------------------------------------

def lamdas(lamda: float | dict) -> dict:
    """``{'energy': l, 'forces': l}`` from a number or such a dict."""
    def number(value, where):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) \
                or not np.isfinite(value) or value < 0:
            raise ValueError("%s must be a number >= 0, got %r"
                             % (where, value))
        return float(value)

    if isinstance(lamda, dict):
        unknown = set(lamda) - {"energy", "forces"}
        if unknown or not lamda:
            raise ValueError("lamda as a dict has 'energy' and 'forces' "
                             "keys, got %r" % (sorted(lamda),))
        return {k: number(lamda.get(k, 0.0), "lamda[%r]" % k)
                for k in ("energy", "forces")}
    value = number(lamda, "lamda")
    return {"energy": value, "forces": value}


def _per_element(value, elements, where):
    """``{element: value}`` from one value (number or list) or a dict."""
    if isinstance(value, dict):
        value = {str(e): v for e, v in value.items()}
        if elements is None:
            return value
        missing = sorted(set(elements) - set(value))
        if missing:
            raise ValueError(
                "%s has no value for %s (the training atoms' elements are "
                "%s)" % (where, ", ".join(missing), ", ".join(elements)))
        return {e: value[e] for e in elements}  # others are not needed
    return {e: value for e in (elements or ["*"])}


def sigma_table(sigma: float | list | dict, elements: list | None,
                n_features: dict | None, forces: bool) -> dict:
    """Amp's normalised widths: ``{'energy': {element: s}, 'forces':
    {element: {0: s, 1: s, 2: s}}}`` (``s`` a float or an array).

    With ``elements`` None only the form of ``sigma`` is checked.

    Raises
    ------
    ValueError
        A width that is not positive, an anisotropic width of the wrong
        length, or a dict that misses an element or a direction.
    """
    if isinstance(sigma, dict):
        unknown = set(sigma) - {"energy", "forces"}
        if unknown or "energy" not in sigma:
            raise ValueError("sigma as a dict has an 'energy' (and a "
                             "'forces') entry, got keys %r"
                             % (sorted(map(str, sigma)),))
        if forces and "forces" not in sigma:
            raise ValueError("sigma has no 'forces' entry, which force "
                             "training needs")
        energy, force = sigma["energy"], sigma.get("forces")
    else:
        energy = force = sigma

    def width(value, element, where):
        value = check_width(value, where)
        if n_features is not None and np.ndim(value) and \
                len(value) != n_features[element]:
            raise ValueError("%s has %d values but the fingerprints of %s "
                             "have %d features" % (where, len(value),
                                                   element,
                                                   n_features[element]))
        return value

    table = {"energy": {e: width(v, e, "sigma['energy'][%r]" % e)
                        for e, v in _per_element(
                            energy, elements, "sigma['energy']").items()}}
    if forces or (elements is None and force is not None):
        table["forces"] = {}
        for e, value in _per_element(force, elements,
                                     "sigma['forces']").items():
            if not isinstance(value, dict):
                value = {0: value, 1: value, 2: value}
            value = {int(x): v for x, v in value.items()}
            if sorted(value) != [0, 1, 2]:
                raise ValueError("sigma['forces'][%r] needs directions 0, 1 "
                                 "and 2, got %r" % (e, sorted(value)))
            table["forces"][e] = {
                x: width(v, e, "sigma['forces'][%r][%d]" % (e, x))
                for x, v in value.items()}
    return table


def sigma_todict(sigma: object) -> object:
    """JSON-able widths: arrays as lists, directions as strings."""
    if not isinstance(sigma, dict):
        return sigma.tolist() if isinstance(sigma, np.ndarray) else sigma

    def plain(value):
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        return value.tolist() if isinstance(value, np.ndarray) else value
    return plain(sigma)
