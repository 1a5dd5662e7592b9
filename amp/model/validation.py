"""Held-out images scored while training, early stopping, and the per-step
block that Amp's convergence table has no columns for.

A :class:`HeldOut` set is evaluated by the loss function at every loss
evaluation (a row of the convergence table) with the same batches and
code as the training images, without the gradient: energies from the
fingerprints, forces (and stress) from the stored fingerprint derivatives
through the batch's sparse maps. Its rows, and the training stress errors
when stress is trained, are kept in memory and written to the log as one
block when the fit ends (:func:`supplement_lines`), after the optimiser's
``...optimization successful.``/``unsuccessful.`` line: Amp 1.x's
``read_trainlog`` stops reading at that line, and every row of its table
must have exactly Amp's columns, so nothing can be interleaved with them.
:func:`amp.trainlog.read_trainlog` reads the block back.

With ``patience``, the fit stops once the validation loss has not improved
for that many evaluations (:class:`EarlyStoppingOccurred`), and the
parameters of the lowest validation loss are kept.
"""

from typing import Any, Optional

import numpy as np

from ..utilities import EarlyStoppingOccurred

__all__ = ["HeldOut", "errors", "supplement_lines", "SUPPLEMENT_TITLE",
           "EarlyStoppingOccurred"]

#: First line of the per-step block (read back by amp.trainlog).
SUPPLEMENT_TITLE = ("Per-step values beside the convergence table "
                    "(Amp 1.x's readers stop above):")
#: Column names of the block: the training stress errors, then the
#: held-out images' (``Val`` columns), by the key in :func:`errors`.
TRAINING_COLUMNS = (("stress_rmse", "StressRMSE"),
                    ("stress_maxresid", "StressMaxResid"))
VALIDATION_COLUMNS = (("loss", "ValLoss"),
                      ("energy_rmse", "ValEnergyRMSE"),
                      ("energy_maxresid", "ValEnergyMaxResid"),
                      ("force_rmse", "ValForceRMSE"),
                      ("force_maxresid", "ValForceMaxResid"),
                      ("stress_rmse", "ValStressRMSE"),
                      ("stress_maxresid", "ValStressMaxResid"))


# Stands in for an image count of zero when the losses are divided by it:
# the RMSEs of no images are then 0 (a sum of nothing over it), not NaN.
_NO_IMAGES = 1e-300


def errors(total: dict, energy_coefficient: float = 1.0,
           force_coefficient: Optional[float] = None,
           stress_coefficient: Optional[float] = None) -> dict[str, Any]:
    """RMSEs, maximum residuals and the mean loss from summed partials.

    Parameters
    ----------
    total : dict
        :func:`amp.model.combine_partials` of the batches' partial sums.
    energy_coefficient, force_coefficient, stress_coefficient : float
        The loss function's coefficients (None: no such term).

    Returns
    -------
    dict
        ``energy_rmse = sqrt(energy_loss / n_images)``, ``force_rmse``
        likewise, ``stress_rmse = sqrt(stress_loss / n_stress_images)``
        (eV/A^3; None without a stress term), the maxima, and ``loss``:
        the coefficients' weighted sum of the terms per image (no
        ``overfit`` penalty), which is what early stopping compares.
    """
    n = max(total["n_images"], _NO_IMAGES)
    out = {"energy_rmse": float(np.sqrt(total["energy_loss"] / n)),
           "energy_maxresid": total["energy_maxresid"],
           "force_rmse": float(np.sqrt(total["force_loss"] / n)),
           "force_maxresid": total["force_maxresid"],
           "stress_rmse": None, "stress_maxresid": None}
    loss = energy_coefficient * total["energy_loss"]
    if force_coefficient is not None:
        loss += force_coefficient * total["force_loss"]
    if stress_coefficient is not None and "stress_loss" in total:
        n_stress = max(total["n_stress_images"], 1e-300)
        out["stress_rmse"] = float(np.sqrt(total["stress_loss"] / n_stress))
        out["stress_maxresid"] = total["stress_maxresid"]
        loss += stress_coefficient * total["stress_loss"]
    out["loss"] = float(loss / n)
    return out


class HeldOut:
    """The held-out images of a fit and what they gave at each step.

    Parameters
    ----------
    images : dict
        ``{hash: atoms}`` with reference energies (and forces, stress).
    patience : int, optional
        Stop the fit once the validation loss has not improved for this
        many loss evaluations; None never stops.
    description : dict, optional
        How the images were chosen (logged and saved with the model).
    training : dict, optional
        The training images they were held out from (for the caller).

    Attributes
    ----------
    history : list of tuple
        ``(step, errors)`` per loss evaluation (see :func:`errors`).
    best_step, best_loss, best_vector
        The evaluation of the lowest validation loss so far.
    stopped_early : bool
        Whether the patience ran out.
    batches : list of TrainingBatch or None
        Their batches when evaluated here (built by the loss function).
    workers : WorkerBatches or None
        Their shares on the workers while the loss function's
        :meth:`~amp.model.LossFunction.evaluator` uses workers.
    """

    def __init__(self, images: dict, patience: Optional[int] = None,
                 description: Optional[dict] = None,
                 training: Optional[dict] = None) -> None:
        if patience is not None and (int(patience) != patience
                                     or patience < 1):
            raise ValueError("patience must be a whole number of loss "
                             "evaluations >= 1, got %r" % (patience,))
        if not len(images):
            raise ValueError("the validation set has no images")
        self.images = images
        self.patience = None if patience is None else int(patience)
        self.description = description
        self.training = training
        self.batches: Optional[list] = None
        self.workers: Any = None
        self.reset()

    def reset(self) -> None:
        """Forget the rows, the best step and the batches (a new fit)."""
        self.close()
        self.batches = None
        self.history: list[tuple[int, dict]] = []
        self.best_step: Optional[int] = None
        self.best_loss = np.inf
        self.best_vector: Optional[np.ndarray] = None
        self.stopped_early = False

    def make_batches(self, lossfunction: Any, n_shares: int = 1) -> list:
        """The images in ``n_shares`` batches, as ``lossfunction`` makes
        its training batches."""
        groups = [g for g in np.array_split(np.arange(len(self.images)),
                                            n_shares) if len(g)]
        return lossfunction._make_batches(
            self.images, groups, lossfunction._image_weights(self.images))

    def evaluate(self, lossfunction: Any,
                 vector: np.ndarray) -> dict[str, Any]:
        """The images' :func:`errors` for the parameters ``vector`` of
        ``lossfunction``'s model: with its coefficients, by the workers
        holding their shares, or here (no gradient either way)."""
        from .lossfunction import combine_partials

        vector = np.array(vector, dtype=float)
        lossfunction._model.vector = vector
        p = lossfunction.parameters
        force = p.force_coefficient if lossfunction.train_forces else None
        if self.workers is not None:
            partials = self.workers.partials(vector, False)
        else:
            if self.batches is None:
                self.batches = self.make_batches(lossfunction)
            partials = lossfunction._serial_partials(self.batches, False,
                                                     force)
        return errors(combine_partials(partials), p.energy_coefficient,
                      force, p.get("stress_coefficient"))

    def close(self) -> None:
        """Let the workers drop their shares (evaluated here after)."""
        if self.workers is not None:
            workers, self.workers = self.workers, None
            workers.close()

    def record(self, step: int, vector: np.ndarray, row: dict,
               may_stop: bool = True) -> None:
        """Keep ``row`` (from :func:`errors`) of ``step``.

        Raises
        ------
        EarlyStoppingOccurred
            With ``patience`` and ``may_stop``, when the lowest validation
            loss is more than ``patience`` evaluations old.
        """
        self.history.append((step, row))
        if row["loss"] < self.best_loss:
            self.best_step, self.best_loss = step, row["loss"]
            self.best_vector = np.array(vector, dtype=float)
        best = step if self.best_step is None else self.best_step
        if may_stop and self.patience is not None and \
                step - best >= self.patience:
            self.stopped_early = True
            raise EarlyStoppingOccurred(
                "the validation loss has not improved for %d loss "
                "evaluations (lowest %.4e at step %d)"
                % (step - best, self.best_loss, best))

    def summary(self) -> str:
        """One line on the best step (and the early stop) for the log."""
        if self.best_step is None:
            return "Validation: no step was evaluated."
        text = ("Validation: lowest loss %.4e at step %d of %d"
                % (self.best_loss, self.best_step, self.history[-1][0]))
        if self.stopped_early:
            text += ("; stopped early (patience %s): the parameters of "
                     "step %d are kept" % (self.patience, self.best_step))
        return text + "."


def supplement_lines(stress_rows: Optional[list] = None,
                     held_out: Optional[HeldOut] = None) -> list[str]:
    """The per-step block for the log (empty when there is nothing).

    Parameters
    ----------
    stress_rows : list of tuple, optional
        ``(step, errors)`` of the training images, when stress is trained.
    held_out : HeldOut, optional

    Returns
    -------
    list of str
        :data:`SUPPLEMENT_TITLE`, the column names, one row per step and
        an empty line; then :meth:`HeldOut.summary`.
    """
    columns, sources = [], []
    if stress_rows:
        columns += [name for _, name in TRAINING_COLUMNS]
        sources.append((dict(stress_rows), [k for k, _ in TRAINING_COLUMNS]))
    if held_out is not None and held_out.history:
        first = held_out.history[0][1]
        present = [(k, name) for k, name in VALIDATION_COLUMNS
                   if first.get(k) is not None]
        columns += [name for _, name in present]
        sources.append((dict(held_out.history), [k for k, _ in present]))
    if not columns:
        return []
    steps = sorted(set().union(*(rows.keys() for rows, _ in sources)))
    lines = [SUPPLEMENT_TITLE,
             "%5s" % "Step" + "".join(" %14s" % name for name in columns)]
    for step in steps:
        values = []
        for rows, keys in sources:
            row = rows.get(step)
            values += [row[k] if row is not None else np.nan for k in keys]
        lines.append("%5i" % step + "".join(" %14.6e" % v for v in values))
    lines.append("")
    if held_out is not None and held_out.history:
        lines.append(held_out.summary())
    return lines
