"""Training images: splitting a set and checking it is fit for training.

Amp's :func:`randomize_images` and :func:`check_images` (both also in
:mod:`amp.utilities`), with Amp's error type :class:`MissingDataError`.
"""

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
