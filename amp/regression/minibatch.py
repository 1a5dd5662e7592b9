"""Mini-batch optimizers: Adam, and SGD with momentum.

An *epoch* visits every training image once, in mini-batches of
``batch_size`` images drawn from a permutation of the images made by a
seeded ``numpy.random.Generator`` (so the parameters reached depend only
on the seed, the images and the settings: not on workers, nor on whether
the data are in memory or in chunk files). Each step evaluates the loss of
one mini-batch only, scaled to the whole set
(:meth:`amp.model.LossFunction.minibatch_loss`), and moves the parameters:

Adam (Kingma & Ba, 2015), step ``t`` with gradient ``g``::

    m = beta1 m + (1 - beta1) g          v = beta2 v + (1 - beta2) g**2
    x -= lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon)

SGD with momentum (heavy ball)::

    u = momentum u - lr g                x += u

At the end of each epoch the loss function evaluates the whole training
set once (``model.get_loss``, streamed when the data are in chunks): that
logs a line of Amp's convergence table, checks Amp's convergence criteria,
lets :class:`amp.Amp` save a checkpoint (every ``checkpoints`` epochs) and
counts towards ``maxiter``, which therefore counts epochs for these
optimizers. The learning rate then follows its schedule:

``'constant'``
    ``learning_rate`` throughout.
``'exponential'``
    multiplied by ``decay`` after every epoch.
``'plateau'``
    multiplied by ``factor`` when the whole-set loss has not fallen below
    ``(1 - threshold)`` times its best for ``patience`` epochs (then the
    count starts again), never below ``min_learning_rate``.

The regression package knows a model only by ``vector``, ``get_loss`` and
the loss function's ``minibatch_loss`` and ``n_training_images``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.optimize import OptimizeResult

__all__ = ["OPTIMIZERS", "DEFAULTS", "LearningRate", "minimize_minibatch",
           "minibatch_options"]

#: The mini-batch optimizers by name.
OPTIMIZERS = ("Adam", "SGD")

#: Default settings (``optimizer_kwargs`` of :class:`Regressor` update
#: them); ``batch_size`` is in images, ``seed`` seeds the shuffling.
DEFAULTS: dict[str, dict[str, Any]] = {
    "Adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999,
             "epsilon": 1e-8},
    "SGD": {"learning_rate": 1e-3, "momentum": 0.9},
}
_COMMON: dict[str, Any] = {
    "batch_size": 32, "seed": 0, "schedule": "constant", "decay": 0.95,
    "factor": 0.5, "patience": 10, "threshold": 1e-4,
    "min_learning_rate": 0.0}
SCHEDULES = ("constant", "exponential", "plateau")


def minibatch_options(name: str, options: dict | None = None
                      ) -> dict[str, Any]:
    """The settings of optimizer ``name`` (``'Adam'`` or ``'SGD'``):
    defaults updated by ``options``, checked.

    Raises
    ------
    ValueError
        An unknown setting or schedule, or a value out of range.
    """
    settings: dict[str, Any] = dict(_COMMON, **DEFAULTS[name])
    unknown = set(options or {}) - set(settings)
    if unknown:
        raise ValueError("unknown %s settings %s; known: %s"
                         % (name, sorted(unknown), sorted(settings)))
    settings.update(options or {})
    if settings["schedule"] not in SCHEDULES:
        raise ValueError("schedule %r; one of %s"
                         % (settings["schedule"], ", ".join(SCHEDULES)))
    if int(settings["batch_size"]) < 1 or \
            int(settings["batch_size"]) != settings["batch_size"]:
        raise ValueError("batch_size must be a whole number of images >= 1")
    for key in ("learning_rate", "decay", "factor"):
        if not float(settings[key]) > 0:
            raise ValueError("%s must be positive" % key)
    return settings


class LearningRate:
    """The learning rate of an epoch and its schedule (see the module).

    Parameters
    ----------
    learning_rate : float
    schedule : {'constant', 'exponential', 'plateau'}
    decay, factor, patience, threshold, min_learning_rate
        As in the module.
    """

    def __init__(self, learning_rate: float, schedule: str = "constant",
                 decay: float = 0.95, factor: float = 0.5,
                 patience: int = 10, threshold: float = 1e-4,
                 min_learning_rate: float = 0.0) -> None:
        self.value = float(learning_rate)
        self.schedule = schedule
        self.decay, self.factor = float(decay), float(factor)
        self.patience, self.threshold = int(patience), float(threshold)
        self.minimum = float(min_learning_rate)
        self.best, self.waited = np.inf, 0

    def epoch_end(self, loss: float) -> float:
        """Update after an epoch whose whole-set loss was ``loss``;
        returns the new rate."""
        if self.schedule == "exponential":
            self.value *= self.decay
        elif self.schedule == "plateau":
            if loss < (1.0 - self.threshold) * self.best:
                self.best, self.waited = loss, 0
            else:
                self.waited += 1
                if self.waited >= self.patience:
                    self.value *= self.factor
                    self.waited = 0
        self.value = max(self.value, self.minimum)
        return self.value


StepLoss = Callable[[np.ndarray, np.ndarray], "tuple[float, np.ndarray]"]


def minimize_minibatch(step_loss: StepLoss,
                       epoch_loss: Callable[[np.ndarray], float],
                       x0: Any, n_images: int, method: str = "Adam",
                       options: dict | None = None,
                       callback: Callable[..., Any] | None = None
                       ) -> OptimizeResult:
    """Minimise by mini-batch steps until ``epoch_loss`` stops it.

    Parameters
    ----------
    step_loss : callable
        ``step_loss(x, image_ids)`` → ``(loss, gradient)`` of a mini-batch
        (``image_ids`` increasing).
    epoch_loss : callable
        ``epoch_loss(x)`` → the whole-set loss at the end of an epoch; it
        ends the optimisation by raising (Amp's loss function raises
        ``ConvergenceOccurred`` or ``MaxIterationsReached``).
    x0 : array_like
    n_images : int
    method : {'Adam', 'SGD'}
    options : dict, optional
        See :func:`minibatch_options`; also ``max_epochs`` (None: until
        ``epoch_loss`` raises).
    callback : callable, optional
        ``callback(epoch, x, loss, learning_rate)`` after every epoch.

    Returns
    -------
    OptimizeResult
        When it returns at all: ``x``, ``fun``, ``nit`` (epochs),
        ``message`` (``max_epochs`` reached, or a non-finite loss).
    """
    options = dict(options or {})
    max_epochs = options.pop("max_epochs", None)
    settings = minibatch_options(method, options)
    rate = LearningRate(settings["learning_rate"], settings["schedule"],
                        settings["decay"], settings["factor"],
                        settings["patience"], settings["threshold"],
                        settings["min_learning_rate"])
    rng = np.random.default_rng(settings["seed"])
    batch_size = int(settings["batch_size"])
    x = np.array(x0, dtype=float)
    first = np.zeros_like(x)    # Adam's m, SGD's velocity
    second = np.zeros_like(x)   # Adam's v
    t, epoch, loss = 0, 0, np.nan
    while max_epochs is None or epoch < max_epochs:
        order = rng.permutation(n_images)
        for start in range(0, n_images, batch_size):
            ids = np.sort(order[start:start + batch_size])
            value, gradient = step_loss(x, ids)
            if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
                return OptimizeResult(
                    x=x, fun=value, nit=epoch, success=False,
                    message="a mini-batch loss or gradient was not finite "
                    "(epoch %d); lower the learning rate" % (epoch + 1))
            t += 1
            lr = rate.value
            if method == "Adam":
                b1, b2 = settings["beta1"], settings["beta2"]
                first *= b1
                first += (1.0 - b1) * gradient
                second *= b2
                second += (1.0 - b2) * gradient * gradient
                x -= lr * (first / (1.0 - b1 ** t)) / (
                    np.sqrt(second / (1.0 - b2 ** t)) + settings["epsilon"])
            else:
                first *= settings["momentum"]
                first -= lr * gradient
                x += first
        epoch += 1
        loss = epoch_loss(x)
        rate.epoch_end(loss)
        if callback is not None:
            callback(epoch, x, loss, rate.value)
    return OptimizeResult(x=x, fun=loss, nit=epoch, success=False,
                          message="max_epochs (%d) reached" % epoch)
