"""Committees of networks on one descriptor: predictions, spread, files.

An :class:`Ensemble` holds ``m`` trained models that share one descriptor
(the same cutoff and symmetry functions). A prediction fingerprints the
image once, with derivatives, and evaluates the ``m`` networks on the same
arrays: the energy derivatives ``dE/dG`` of all members are contracted with
the fingerprint derivatives in one ``einsum`` per element, and the
neighbour-entry gradients become forces through one sparse product, so a
call costs one fingerprinting plus ``m`` small network passes.

:class:`EnsembleCalculator` is the ASE view (mean energy and forces, the
committee spread in ``results['energy_std']`` and
``results['forces_std']``). :func:`write_ensemble` and
:func:`read_ensemble` handle the ensemble file: JSON holding each member's
``.amp`` text (never a pickle); Amp 1.x ``.ensemble`` files (a JSON list of
Amp 1.x model texts) are read too, through the restricted literal reader.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..potential import image_fingerprints, results_without_atoms
from ..store import modelfile
from ..store.files import atomic_file
from ..utilities import get_hash

FORMAT = "amp-mlip-ensemble"
VERSION = 1


class EnsembleFileError(ValueError):
    """An ensemble file is truncated, corrupt or inconsistent."""


class Ensemble:
    """Trained models sharing one descriptor.

    Parameters
    ----------
    descriptor : Gaussian
        Shared by every member.
    models : list of NeuralNetwork
        Trained members (weights, scalings and fingerprint ranges set).
    dblabel : str, optional
        Keep fingerprints in ``<dblabel>-*.ampdb`` databases; by default
        they live in memory for the latest image only and nothing is
        written.
    """

    def __init__(self, descriptor: Any, models: list[Any],
                 dblabel: str | None = None) -> None:
        if len(models) == 0:
            raise ValueError("an ensemble needs at least one member")
        self.descriptor = descriptor
        self.models = list(models)
        self.dblabel = dblabel
        self._evaluators = [model.block_evaluator() for model in self.models]
        self._last: Any = None  # (atoms copy, predictions)
        self._store = None  # the fingerprint store of dblabel, once opened

    def __len__(self):
        return len(self.models)

    def _fingerprints(self, atoms):
        store = None
        if self.dblabel is not None:
            if self._store is None:
                self._store = self.descriptor.open_store(
                    self.dblabel, images={get_hash(atoms): atoms})
            store = self._store
        return image_fingerprints(self.descriptor, atoms, store)

    def predict(self, atoms: Any) -> dict[str, Any]:
        """Every member's energy, atomic energies, forces and stress.

        Repeated calls on an unchanged image return the stored arrays.

        Returns
        -------
        dict
            ``energy`` (m,), ``energies`` (m, n_atoms), ``forces``
            (m, n_atoms, 3) and, for a 3-D periodic cell, ``stress``
            (m, 6) in Voigt order; otherwise ``stress`` is None.
        """
        if self._last is not None and self._last[0] == atoms:
            return self._last[1]
        if len(atoms) == 0:
            return results_without_atoms(atoms, len(self.models))
        fp = self._fingerprints(atoms)
        m, n = len(self.models), len(atoms)
        nl = fp.neighbors
        atomic = np.empty((m, n))
        # dE / d r_e of every entry and member, entry-major: (E, m, 3).
        gradient = np.zeros((len(nl.i), m, 3))
        row_of_atom = np.empty(n, dtype=np.int64)
        for element, block in fp.values.items():
            index = fp.atom_index[element]
            dE_dG = np.empty((len(index), block.shape[1], m))
            for k, evaluate in enumerate(self._evaluators):
                atomic[k, index], dE_dG[:, :, k] = evaluate(element, block)
            derivatives = fp.derivatives[element]  # (entries, 3, features)
            if len(derivatives):
                entries = fp.entries[element]
                row_of_atom[index] = np.arange(len(index))
                rows = row_of_atom[nl.i[entries]]
                # One small (3, F) @ (F, m) product per entry (batched
                # matmul: about 3x faster than the equivalent einsum).
                gradient[entries] = np.matmul(
                    derivatives, dE_dG[rows]).transpose(0, 2, 1)
        flat = gradient.reshape(len(nl.i), 3 * m)
        forces = _entry_forces(nl, flat).reshape(n, m, 3).transpose(1, 0, 2)
        stress = None
        if atoms.cell.rank == 3 and all(atoms.pbc):
            virial = (nl.vectors.T @ flat).reshape(3, m, 3).transpose(1, 0, 2)
            virial = 0.5 * (virial + virial.transpose(0, 2, 1))
            virial /= atoms.get_volume()
            stress = virial[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        predictions = {"energy": atomic.sum(axis=1), "energies": atomic,
                       "forces": forces, "stress": stress}
        self._last = (atoms.copy(), predictions)
        return predictions


def _entry_forces(nl, flat):
    """Per-atom sums of entry gradients, every column at once: entry ``e``
    acts with ``+`` on atom ``i[e]`` and ``-`` on atom ``j[e]``.

    ``flat`` is (n_entries, columns); returns (n_atoms, columns).
    """
    from scipy.sparse import coo_matrix

    n_entries = len(nl.i)
    incidence = coo_matrix(
        (np.concatenate([np.ones(n_entries), -np.ones(n_entries)]),
         (np.concatenate([nl.i, nl.j]),
          np.tile(np.arange(n_entries), 2))),
        shape=(nl.n_atoms, n_entries)).tocsr()
    return np.asarray(incidence @ flat)


def apply_output(values: np.ndarray, output: Any, mean: bool,
                 method: str) -> Any:
    """Amp's ``output`` codes applied to the members' predictions.

    Parameters
    ----------
    values : ndarray, shape (m, ...)
        One prediction per member.
    output : sequence
        Quantiles in [0, 1] (``0.5`` the median), optionally followed by
        ``'e'`` for the whole ensemble.
    mean : bool
        With a single quantile and no ``'e'``, return the ensemble mean
        instead (Amp's default, so that the result is ASE-like).
    method : {'mquantiles', 'linear'}
        Amp's quantile definitions: scipy's ``mquantiles`` (energies,
        atomic energies) or numpy's linear percentile (forces).

    Returns
    -------
    float, ndarray or list
        One value when one is asked for, otherwise a list (quantiles in the
        order given, then the ensemble when ``'e'`` is last).
    """
    output = list(output)
    if not output:
        raise ValueError("output is empty: give quantiles (e.g. (.5,)) "
                         "and/or 'e'")
    ensemble = isinstance(output[-1], str)
    if ensemble and output[-1] != "e":
        raise ValueError("output codes are quantiles in [0, 1] and a final "
                         "'e' for the ensemble, got %r" % (output[-1],))
    quantiles = output[:-1] if ensemble else output
    for q in quantiles:
        if isinstance(q, (bool, str)) or not 0.0 <= q <= 1.0:
            raise ValueError("quantiles must be numbers between 0 and 1 "
                             "('e' only last), got %r" % (q,))
    values = np.asarray(values, dtype=float)
    if len(quantiles) == 1 and not ensemble and mean:
        return _scalar(values.mean(axis=0))
    if method == "mquantiles":
        from scipy.stats.mstats import mquantiles

        result = [_scalar(np.asarray(r)) for r in
                  np.asarray(mquantiles(values, prob=quantiles, axis=0))]
    else:
        result = [_scalar(r) for r in
                  np.percentile(values, np.array(quantiles) * 100.0, axis=0)]
    if ensemble:
        result.append(values.tolist() if values.ndim == 1 else values)
    return result[0] if len(result) == 1 else result


def _scalar(value):
    return float(value) if np.ndim(value) == 0 else value


class EnsembleCalculator(Calculator):
    """ASE calculator view of an ensemble: the members' mean, with the
    committee spread.

    ``results``: ``energy``, ``free_energy``, ``energies``, ``forces`` and
    (3-D periodic cells) ``stress`` are ensemble means; ``energy_std`` (eV)
    and ``forces_std`` (per atom and component, eV/Angstrom) are the
    standard deviations over the members (``ddof=1``), and
    ``energy_ensemble`` / ``forces_ensemble`` hold every member's values.

    Parameters
    ----------
    ensemble : Ensemble
    k : int, optional
        Use only the first ``k`` members.
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies",
                              "stress"]
    ignored_changes = {"initial_charges", "initial_magmoms"}

    def __init__(self, ensemble: Ensemble, k: int | None = None,
                 **kwargs: Any) -> None:
        Calculator.__init__(self, **kwargs)
        self.ensemble = ensemble
        self.k = k

    def calculate(self, atoms: Any = None, properties: Any = None,
                  system_changes: Any = all_changes) -> None:
        """Fill :attr:`results` for ``atoms`` (one fingerprinting, every
        member evaluated)."""
        Calculator.calculate(self, atoms, properties, system_changes)
        predictions = self.ensemble.predict(self.atoms)
        members = slice(None, self.k)
        energy = predictions["energy"][members]
        forces = predictions["forces"][members]
        ddof = 1 if len(energy) > 1 else 0
        self.results = {
            "energy": float(energy.mean()),
            "free_energy": float(energy.mean()),
            "energies": predictions["energies"][members].mean(axis=0),
            "forces": forces.mean(axis=0),
            "energy_std": float(energy.std(ddof=ddof)),
            "forces_std": forces.std(axis=0, ddof=ddof),
            "energy_ensemble": energy.copy(),
            "forces_ensemble": forces.copy()}
        if predictions["stress"] is not None:
            self.results["stress"] = \
                predictions["stress"][members].mean(axis=0)


# Files ---------------------------------------------------------------------

def write_ensemble(filename: str, member_texts: list[str],
                   training: dict[str, Any] | None = None,
                   overwrite: bool = True) -> None:
    """Write an ensemble file (JSON; each member's ``.amp`` text inside).

    Parameters
    ----------
    filename : str
    member_texts : list of str
        Model-file texts (:func:`amp.store.modelfile.dumps`).
    training : dict, optional
        What training recorded (image hashes, resamples, seeds, ...).
    overwrite : bool
    """
    text = json.dumps({"format": FORMAT, "version": VERSION,
                       "members": list(member_texts),
                       "training": training or {}}, indent=1)
    with atomic_file(filename, overwrite=overwrite) as handle:
        handle.write(text.encode())


def read_ensemble(filename: str) -> tuple[list[Any], dict[str, Any]]:
    """Read an ensemble file.

    Returns
    -------
    members : list of (dict, dict)
        Each member's descriptor and model dicts (plain data).
    training : dict
        The training record (empty for Amp 1.x files).

    Raises
    ------
    EnsembleFileError
        Missing, truncated, corrupt or unsafe content, or no members.
    """
    try:
        with open(filename) as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise EnsembleFileError("cannot read ensemble file %s: %s"
                                % (filename, error)) from error
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise EnsembleFileError("%s is not an ensemble file (truncated or "
                                "corrupt JSON: %s)" % (filename, error)) \
            from error
    training: Any
    if isinstance(content, list):  # Amp 1.x: a list of model texts
        texts, training = content, {}
    elif isinstance(content, dict) and content.get("format") == FORMAT:
        if content.get("version") != VERSION:
            raise EnsembleFileError(
                "%s has ensemble format version %r; this version of amp "
                "reads version %d" % (filename, content.get("version"),
                                      VERSION))
        texts, training = content.get("members"), content.get("training")
    else:
        raise EnsembleFileError("%s is not an ensemble file" % filename)
    if not isinstance(texts, list) or not texts or \
            not all(isinstance(t, str) for t in texts):
        raise EnsembleFileError("%s holds no member models" % filename)
    members = []
    for index, member in enumerate(texts):
        try:
            members.append(modelfile.read(io.StringIO(member)))
        except modelfile.ModelFileError as error:
            raise EnsembleFileError("%s: member %d: %s"
                                    % (filename, index, error)) from error
    return members, training if isinstance(training, dict) else {}
