"""Training images: splitting a set and checking it is fit for training.

Amp's :func:`randomize_images` and :func:`check_images` (both also in
:mod:`amp.utilities`), with Amp's error type :class:`MissingDataError`.
"""

from typing import Any

import numpy as np

from .utilities import _read_images


class MissingDataError(ValueError):
    """An image lacks the energy (or forces) that training needs (Amp's
    error type; a ``ValueError``)."""


def randomize_images(images, fraction=0.8, rng=None):
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
        images = _read_images(images)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be between 0 and 1, got %r"
                         % (fraction,))
    n = len(images)
    testsize = n - int(fraction * n)
    draw = np.random.randint if rng is None else \
        np.random.default_rng(rng).integers
    # Amp's draw: indices one at a time, repeats skipped.
    test = set()
    while len(test) < testsize:
        test.add(int(draw(n)))
    train_images = [images[i] for i in range(n) if i not in test]
    test_images = [images[i] for i in sorted(test)]
    return train_images, test_images


def check_images(images, forces=True):
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
    missing = {"energy": [], "forces": []}
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
        description = {"source": "fraction", "fraction": fraction,
                       "seed": int(seed)}
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
