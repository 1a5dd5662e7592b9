"""What :meth:`amp.Amp.train` checks and records about its images: that
they can be trained on (energies, forces, stresses), the held-out set
and what the saved model keeps of the fit (:attr:`amp.Amp.metadata`)."""

from typing import Any, Callable, Optional

import numpy as np


def refuse_no_images(images: Any) -> None:
    """Raise ValueError when there is nothing to train on (before any file
    is written; a file that holds no images is caught after reading)."""
    if isinstance(images, (list, tuple, dict)) and not images:
        raise ValueError("train() was given no images: pass a list of "
                         "ase.Atoms with energies (or a .traj or ASE .db "
                         "path holding some)")


def every_image(images: dict, held_out: Any) -> dict:
    """The training images, followed by the held-out ones (if any)."""
    if held_out is None:
        return images
    from .utilities import MetaDict

    every: Any = MetaDict(images)
    every.update(held_out.images)
    every.metadata = dict(getattr(images, "metadata", None) or {})
    return every


def check_training_images(images: dict, forces: bool,
                          what: str = "training image") -> None:
    """Raise a ValueError naming the first image unfit for training."""
    refuse_no_images(images)
    for index, (key, atoms) in enumerate(images.items()):
        name = "%s %d (hash %s)" % (what, index, key)
        if atoms.calc is None:
            raise ValueError("%s has no energy: attach a calculator or a "
                             "SinglePointCalculator with its energy" % name)
        try:
            energy = atoms.get_potential_energy(apply_constraint=False)
        except Exception as error:
            raise ValueError("%s has no energy (%s)" % (name, error)) \
                from error
        if not np.isfinite(energy):
            raise ValueError("%s has a NaN or infinite energy" % name)
        if forces:
            try:
                f = atoms.get_forces(apply_constraint=False)
            except Exception as error:
                raise ValueError(
                    "%s has no forces (%s); supply forces or train with "
                    "force_coefficient=None" % (name, error)) from error
            if not np.all(np.isfinite(f)):
                raise ValueError("%s has NaN or infinite forces" % name)


def held_out_set(images: dict, validation: Any, seed: int,
                 patience: Optional[int], log: Callable) -> Any:
    """The :class:`~amp.model.validation.HeldOut` set of
    :meth:`amp.Amp.train` (with its ``training`` images), or None."""
    if validation is None:
        if patience is not None:
            raise ValueError("patience (early stopping) needs held-out "
                             "images: give validation too")
        return None
    from .images import hold_out
    from .model.validation import HeldOut

    training, held, description = hold_out(images, validation, seed)
    chosen = {"fraction": "fraction %g of the images given, seed %d"
              % (description.get("fraction", 0.0),
                 description.get("seed", 0)),
              "path": "from %s" % description.get("path"),
              "images": "given"}[description["source"]]
    # Not Amp's "unique images after hashing." line: its reader takes the
    # first such line for the training image count.
    log(" Held out for validation: %d images (%s)." % (len(held), chosen))
    return HeldOut(held, patience, description, training=training)


def check_stress(model: Any, images: dict, log: Callable) -> None:
    """With a stress term, count the images carrying a stress (at
    least one must)."""
    lossfunction = getattr(model, "lossfunction", None)
    if not getattr(lossfunction, "train_stress", False):
        return
    from .model.batch import reference_stress

    count = sum(reference_stress(atoms) is not None
                for atoms in images.values())
    if not count:
        raise ValueError(
            "stress_coefficient is set but no training image carries a "
            "stress (3-D periodic cells whose calculator gives "
            "get_stress()); add stresses or train without "
            "stress_coefficient")
    log(" Stress training: %d of the %d images carry a stress."
        % (count, len(images)))


def training_record(images: dict, held_out: Any, converged: bool,
                    stopped_early: bool) -> dict[str, Any]:
    """What :attr:`amp.Amp.metadata` keeps of a fit."""
    training = {"n_images": len(images), "converged": bool(converged),
                "stopped_early": stopped_early}
    metadata = {"training": training}
    if held_out is not None:
        record = dict(held_out.description)
        if held_out.history:
            step, errors = held_out.history[-1]
            if stopped_early:
                step = held_out.best_step
                errors = dict(held_out.history)[step]
            record.update(step=step, **{
                key: value for key, value in errors.items()
                if value is not None})
        metadata["validation"] = record
    return metadata
