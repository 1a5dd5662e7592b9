"""Training images: splitting a set and checking it is fit for training.

Amp's :func:`randomize_images` and :func:`check_images` (both also in
:mod:`amp.utilities`), with Amp's error type :class:`MissingDataError`;
:func:`check_energy_force_units`, which :meth:`amp.Amp.train` runs, finds
energies and forces in different units (:class:`EnergyForceUnitsError`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .utilities import _read_images

if TYPE_CHECKING:
    from ase import Atoms


class MissingDataError(ValueError):
    """An image lacks the energy (or forces) that training needs (Amp's
    error type; a ``ValueError``)."""


def randomize_images(images: list[Atoms] | str, fraction: float = 0.8,
                     rng: np.random.Generator | int | None = None
                     ) -> tuple[list[Atoms], list[Atoms]]:
    """Split images at random into a training and a test list (Amp's).

    Parameters
    ----------
    images : list of ase.Atoms or str
        The images, or the path of a ``.traj`` or ASE ``.db`` file.
    fraction : float
        Share of the images that go to the training list
        (``int(fraction * len(images))`` of them).
    rng : numpy.random.Generator or int, optional
        Random source for a reproducible split; by default numpy's global
        state, as in Amp (``np.random.seed(...)`` before the call makes it
        reproducible, and gives Amp 1.x's split).

    Returns
    -------
    train_images, test_images : list
        Both in the images' original order.
    """
    if isinstance(images, str):
        images = list(_read_images(images))
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be between 0 and 1, got %r"
                         % (fraction,))
    n = len(images)
    testsize = n - int(fraction * n)
    draw = np.random.randint if rng is None else \
        np.random.default_rng(rng).integers
    # Amp's draw: indices one at a time, repeats skipped.
    test: set[int] = set()
    while len(test) < testsize:
        test.add(int(draw(n)))
    train_images = [images[i] for i in range(n) if i not in test]
    test_images = [images[i] for i in sorted(test)]
    return train_images, test_images


def check_images(images: dict[str, Atoms] | list[Atoms],
                 forces: bool = True) -> None:
    """Check that every image has an energy (and forces) to train on.

    Parameters
    ----------
    images : dict or list of ase.Atoms
        Hashed images (``{hash: atoms}``) or a list.
    forces : bool
        Also require forces.

    Raises
    ------
    MissingDataError
        Naming the first image without a finite energy (or forces), and
        how many images lack them.
    """
    items = list(images.items()) if hasattr(images, "items") else \
        list(enumerate(images))
    missing: dict[str, list[str]] = {"energy": [], "forces": []}
    for position, (key, atoms) in enumerate(items):
        name = "image %d" % position if key == position else \
            "image %d (hash %s)" % (position, key)
        try:
            energy = atoms.get_potential_energy(apply_constraint=False)
            ok = energy is not None and bool(np.isfinite(energy))
        except Exception:  # no calculator, or one that cannot give it
            ok = False
        if not ok:
            missing["energy"].append(name)
        if forces:
            try:
                values = atoms.get_forces(apply_constraint=False)
                ok = bool(np.all(np.isfinite(values)))
            except Exception:
                ok = False
            if not ok:
                missing["forces"].append(name)
    problems = ["%s has no finite %s (%d image(s) lack it)"
                % (names[0], what, len(names))
                for what, names in missing.items() if names]
    if problems:
        hint = "; supply forces or train with force_coefficient=None" \
            if missing["forces"] else ""
        raise MissingDataError("; ".join(problems) + hint)


def hold_out(images: dict, validation: Any,
             seed: int = 0) -> tuple[dict, dict, dict]:
    """Split held-out images from hashed training images.

    Parameters
    ----------
    images : dict
        Hashed training images (``{hash: atoms}``, as from
        :func:`amp.utilities.hash_images`).
    validation : float, list of ase.Atoms, str or dict
        A fraction (0 < f < 1) of ``images`` to hold out, drawn with
        ``seed``; or the held-out images themselves (a list, a ``.traj``/
        ASE ``.db`` path, or hashed images), which must not be among the
        training images.
    seed : int
        Seed of the draw of a fraction (``numpy.random.default_rng``).

    Returns
    -------
    training, held_out : dict
        Hashed images, each in the given order (``training`` keeps the
        ``metadata`` of ``images``).
    description : dict
        How they were chosen, for the log and the model file: ``source``
        (``'fraction'``, ``'path'`` or ``'images'``), ``fraction`` and
        ``seed`` (a fraction), ``path`` (a path), ``n_images`` and
        ``hashes`` of the held-out images.
    """
    from .utilities import MetaDict, hash_images

    if isinstance(validation, (float, np.floating)) and \
            not isinstance(validation, bool):
        fraction = float(validation)
        if not 0.0 < fraction < 1.0:
            raise ValueError("validation=%r: a fraction of the images to "
                             "hold out is between 0 and 1" % (validation,))
        keys = list(images)
        count = int(round(fraction * len(keys)))
        if count < 1 or count >= len(keys):
            raise ValueError(
                "validation=%r holds out %d of %d images; at least one must "
                "be held out and one kept for training" % (
                    validation, count, len(keys)))
        chosen = set(np.random.default_rng(seed).choice(
            len(keys), size=count, replace=False).tolist())
        description: dict[str, Any] = {
            "source": "fraction", "fraction": fraction, "seed": int(seed)}
        held: Any = MetaDict((k, images[k]) for n, k in enumerate(keys)
                             if n in chosen)
        training: Any = MetaDict((k, images[k]) for n, k in enumerate(keys)
                                 if n not in chosen)
        training.metadata = dict(getattr(images, "metadata", None) or {})
        held.metadata["duplicates"] = {}
    else:
        description = {"source": "images"}
        if isinstance(validation, (str, bytes)) or \
                hasattr(validation, "__fspath__"):
            import os

            description = {"source": "path",
                           "path": os.fspath(validation)}
        held = hash_images(validation)
        if not len(held):
            raise ValueError("the validation images are empty")
        shared = [key for key in held if key in images]
        if shared:
            raise ValueError(
                "%d of the %d validation images are also training images "
                "(first: hash %s); held-out images must not be trained on"
                % (len(shared), len(held), shared[0]))
        training = images
    description.update(n_images=len(held), hashes=list(held))
    return training, held, description


class EnergyForceUnitsError(ValueError):
    """The energies and forces of the training images are not in matching
    units (e.g. energies in kcal/mol with forces in eV/Å), or the forces
    have the wrong sign (gradients instead of forces)."""


#: Largest displacement (Å) of any atom between two images whose energy
#: difference is compared with the work of their forces; the trapezoid
#: rule's error grows as the cube of it (0.25 Å steps of an EMT MD agree
#: to 2 %).
UNITS_MAX_STEP = 0.5
#: Fewest such pairs for a verdict.
UNITS_MIN_PAIRS = 4


def energy_force_ratio(images: dict[str, Atoms] | list[Atoms]
                       ) -> tuple[float, float, int] | None:
    """How energy differences compare with the work of the forces.

    For every two consecutive images with the same atoms and cell whose
    atoms moved at most :data:`UNITS_MAX_STEP`, the energy difference
    ``E_b - E_a`` is compared with the trapezoid estimate of the work
    ``-(F_a + F_b) . (r_b - r_a) / 2``; a least-squares slope through the
    origin and the correlation of the two are returned.

    Parameters
    ----------
    images : dict or list of ase.Atoms
        In the order given (MD or relaxation frames are consecutive).

    Returns
    -------
    tuple or None
        ``(slope, correlation, n_pairs)``; None with fewer than
        :data:`UNITS_MIN_PAIRS` pairs to compare.
    """
    frames = list(images.values()) if hasattr(images, "values") else \
        list(images)
    work, difference = [], []
    for a, b in zip(frames[:-1], frames[1:]):
        if len(a) != len(b) or not np.array_equal(a.numbers, b.numbers) \
                or not np.allclose(a.cell[:], b.cell[:]):
            continue
        step = b.positions - a.positions
        if not len(step) or np.abs(step).max() > UNITS_MAX_STEP:
            continue
        try:
            forces = (a.get_forces(apply_constraint=False)
                      + b.get_forces(apply_constraint=False))
            energies = (a.get_potential_energy(apply_constraint=False),
                        b.get_potential_energy(apply_constraint=False))
        except Exception:  # images without forces: nothing to compare
            return None
        work.append(-0.5 * float(np.sum(forces * step)))
        difference.append(energies[1] - energies[0])
    if len(work) < UNITS_MIN_PAIRS:
        return None
    w, d = np.array(work), np.array(difference)
    if not np.any(w) or not np.any(d):
        return None
    slope = float(w @ d / (w @ w))
    correlation = float(np.corrcoef(w, d)[0, 1])
    return slope, correlation, len(w)


def check_energy_force_units(images: dict[str, Atoms] | list[Atoms]
                             ) -> None:
    """Raise :class:`EnergyForceUnitsError` when the energies and forces
    of consecutive images clearly disagree (see
    :func:`energy_force_ratio`): energy differences 2 or more times
    larger or smaller than the forces' work, or of the opposite sign,
    over well-correlated pairs. Images that are not a path (no close
    consecutive pairs) are not judged."""
    found = energy_force_ratio(images)
    if found is None:
        return
    slope, correlation, n = found
    if abs(correlation) < 0.9:
        return
    if slope < 0:
        raise EnergyForceUnitsError(
            "over %d pairs of consecutive images the energy rises where the "
            "forces point (energy change = %.3g x the forces' work): the "
            "forces seem to be energy gradients; give forces = -dE/dr" % (
                n, slope))
    if 0.5 <= slope <= 2.0:
        return
    hint = ""
    for name, factor in (("kcal/mol", 23.0605), ("kJ/mol", 96.4853),
                         ("Hartree", 1 / 27.2114), ("meV", 1000.0)):
        if abs(np.log(slope / factor)) < 0.1:
            hint = " (as energies in %s with forces in eV/Å give)" % name
        elif abs(np.log(slope * factor)) < 0.1:
            hint = " (as forces in %s/Å with energies in eV give)" % name
    raise EnergyForceUnitsError(
        "over %d pairs of consecutive images the energy changes %.4g times "
        "as much as the forces' work predicts%s: energies and forces are "
        "in different units. Convert both to eV and eV/Å (ase.units has "
        "the factors) before training" % (n, slope, hint))
