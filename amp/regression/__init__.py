"""The regressor: minimises a model's loss.

Amp's :class:`Regressor`. ``'BFGS'`` (the default) is
:func:`amp.regression.bfgs.minimize_bfgs`, scipy's BFGS algorithm with an
O(n^2) inverse-Hessian update; ``'Adam'`` and ``'SGD'`` are the mini-batch
optimizers of :mod:`amp.regression.minibatch`; every other method is
``scipy.optimize.minimize``'s. The loss function raises
:class:`~amp.model.ConvergenceOccurred` the moment the convergence criteria
are met, which stops the optimiser wherever it is (inside a line search
too); :class:`~amp.model.MaxIterationsReached` stops it unconverged, and
:class:`~amp.model.EarlyStoppingOccurred` when the held-out images' loss
stopped improving (the model then keeps the parameters that were best on
them).

The regressor knows a model only by ``model.vector`` and
``model.get_loss``: this package imports nothing above
:mod:`amp.utilities` (both exceptions live there), and the models import
it for their default regressor.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Callable

import numpy as np

from ..utilities import (ConvergenceOccurred, EarlyStoppingOccurred,
                         MaxIterationsReached)
from .bfgs import minimize_bfgs
from .minibatch import OPTIMIZERS as MINIBATCH_OPTIMIZERS
from .minibatch import minibatch_options, minimize_minibatch

__all__ = ["Regressor", "PRESETS", "SCIPY_METHODS", "minimize_bfgs"]

# Amp's presets: method and options for scipy.optimize.minimize.
PRESETS = {
    "BFGS": {"method": "BFGS", "options": {"gtol": 1e-15}},
    "L-BFGS-B": {"method": "L-BFGS-B",
                 "options": {"ftol": 1e-05, "gtol": 1e-08,
                             "maxfun": 1000000, "maxiter": 1000000,
                             "maxls": 2000}},
    "TNC": {"method": "TNC",
            "options": {"ftol": 0.0, "xtol": 0.0, "gtol": 1e-08,
                        "maxfun": 1000000}},
    "Newton-CG": {"method": "Newton-CG", "options": {"xtol": 1e-15}},
}

#: ``scipy.optimize.minimize`` methods usable by name (with scipy's own
#: defaults when there is no preset above).
SCIPY_METHODS = ("Nelder-Mead", "Powell", "CG", "BFGS", "Newton-CG",
                 "L-BFGS-B", "TNC", "COBYLA", "COBYQA", "SLSQP",
                 "trust-constr", "dogleg", "trust-ncg", "trust-exact",
                 "trust-krylov")


class Regressor:
    """Drive the minimisation of a model's loss function.

    Parameters
    ----------
    optimizer : str or callable
        'BFGS' (default: this package's O(n^2) BFGS,
        :func:`~amp.regression.bfgs.minimize_bfgs`, with Amp's options),
        'L-BFGS-B' (the choice for large networks: memory and time per
        step grow linearly with the number of parameters), 'TNC' or
        'Newton-CG' (``scipy.optimize.minimize`` with Amp's options),
        'Adam' or 'SGD' (mini-batch optimizers, see
        :mod:`amp.regression.minibatch`: ``optimizer_kwargs`` such as
        ``{'batch_size': 32, 'learning_rate': 1e-3, 'seed': 0,
        'schedule': 'plateau'}``; the loss function's ``maxiter`` and the
        model's ``checkpoints`` count epochs), any
        other ``scipy.optimize.minimize`` method name (scipy's defaults),
        or any callable ``optimizer(function, x0, jac=...,
        **optimizer_kwargs)`` that behaves like
        ``scipy.optimize.minimize``.
    optimizer_kwargs : dict, optional
        Extra keywords for the optimiser; an ``options`` dict is merged into
        the preset's options. For 'Adam' and 'SGD', their settings
        (:func:`~amp.regression.minibatch.minibatch_options`).
    lossprime : bool
        Give the optimiser the analytic gradient (``jac=True``); otherwise
        it sees the loss only (and BFGS is scipy's, with finite
        differences).

    Attributes
    ----------
    stop_reason : str or None
        After :meth:`regress`: why the optimisation stopped, e.g.
        ``'converged'``, ``'maxiter reached: ...'`` or the optimizer's own
        message (``'the optimizer stopped after 12 iterations: Desired
        error not necessarily achieved due to precision loss.'``).
    """

    def __init__(self, optimizer: str | Callable[..., Any] = "BFGS",
                 optimizer_kwargs: dict[str, Any] | None = None,
                 lossprime: bool = True) -> None:
        kwargs: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.minibatch = isinstance(optimizer, str) and \
            optimizer in MINIBATCH_OPTIMIZERS
        if self.minibatch:
            assert isinstance(optimizer, str)
            if not lossprime:
                raise ValueError("%s needs the gradient (lossprime=True)"
                                 % optimizer)
            minibatch_options(optimizer, optimizer_kwargs)  # checked now
            self.name = optimizer
            self.optimizer: str | Callable[..., Any] = optimizer
            self.optimizer_kwargs = dict(optimizer_kwargs or {})
            self.lossprime = True
            return
        if isinstance(optimizer, str):
            names = {m.lower(): m for m in SCIPY_METHODS}
            if optimizer not in PRESETS and optimizer.lower() not in names:
                raise ValueError(
                    "unknown optimizer %r; presets: %s; mini-batch: %s; "
                    "or any scipy.optimize.minimize method (%s), or a "
                    "callable" % (optimizer, ", ".join(PRESETS),
                                  ", ".join(MINIBATCH_OPTIMIZERS),
                                  ", ".join(SCIPY_METHODS)))
            kwargs = copy.deepcopy(PRESETS.get(
                optimizer, {"method": names.get(optimizer.lower())}))
            self.name = optimizer
        elif callable(optimizer):
            self.name = getattr(optimizer, "__name__", repr(optimizer))
        else:
            raise TypeError("optimizer must be a preset name or a callable")
        for key, value in (optimizer_kwargs or {}).items():
            if key == "options" and "options" in kwargs:
                kwargs["options"].update(value)
            else:
                kwargs[key] = value
        self.optimizer = optimizer
        self.optimizer_kwargs = kwargs
        self.lossprime = lossprime

    def _minimize(self, function, x0):
        """``scipy.optimize.minimize``, with BFGS as :func:`minimize_bfgs`
        when the gradient is given."""
        kwargs = dict(self.optimizer_kwargs)
        method = kwargs.get("method")
        if self.lossprime and isinstance(method, str) and \
                method.lower() == "bfgs":
            kwargs.pop("method")
            options = dict(kwargs.pop("options", None) or {})
            tol = kwargs.pop("tol", None)
            if tol is not None:  # as scipy: the options' gtol wins
                options.setdefault("gtol", tol)
            for key in ("hess", "hessp", "bounds", "constraints"):
                if kwargs.pop(key, None) is not None:
                    warnings.warn("Method BFGS does not use %s." % key,
                                  RuntimeWarning, stacklevel=3)
            options.update(kwargs)  # args, callback
            return minimize_bfgs(function, x0, jac=True, **options)
        from scipy.optimize import minimize

        return minimize(function, x0, jac=self.lossprime, **kwargs)

    def _minimize_minibatch(self, model: Any, x0: Any) -> Any:
        """Epochs of mini-batch steps (:mod:`amp.regression.minibatch`);
        the model's ``get_loss`` ends each epoch."""
        lossfunction = model.lossfunction

        def step_loss(vector, ids):
            result = lossfunction.minibatch_loss(vector, ids)
            return result["loss"], result["dloss_dparameters"]

        def epoch_loss(vector):
            return model.get_loss(vector, lossprime=False)

        return minimize_minibatch(step_loss, epoch_loss, x0,
                                  lossfunction.n_training_images,
                                  str(self.optimizer), self.optimizer_kwargs)

    def regress(self, model: Any, log: Any) -> bool:
        """Minimise ``model``'s loss starting from ``model.vector``.

        Parameters
        ----------
        model : Model
            Provides ``vector``, ``get_loss(vector, lossprime)`` and
            ``lossfunction``.
        log : Logger

        Returns
        -------
        bool
            True when the convergence criteria were met (the model then
            holds the converged parameters); False when ``maxiter`` was
            reached, the optimiser stopped unconverged or the fit stopped
            early (the model then holds the loss function's
            ``best_vector``: the lowest-loss parameters evaluated, or with
            early stopping the lowest validation loss's).
        """
        lossprime = self.lossprime

        def function(vector):
            return model.get_loss(vector, lossprime=lossprime)

        x0 = np.array(model.vector, dtype=float)
        log("Starting parameter optimization.", tic="opt")
        log(" Optimizer: %s" % self.name)
        log(" Optimizer kwargs: %s" % self.optimizer_kwargs)
        log(" Parameters: %i" % len(x0))
        self.stop_reason = None
        try:
            if self.minibatch:
                result = self._minimize_minibatch(model, x0)
            elif isinstance(self.optimizer, str):
                result = self._minimize(function, x0)
            else:
                result = self.optimizer(function, x0, jac=lossprime,
                                        **self.optimizer_kwargs)
        except ConvergenceOccurred:
            self.stop_reason = "converged"
            log("...optimization successful.", toc="opt")
            return True
        except MaxIterationsReached as stop:
            self.stop_reason = "maxiter reached: %s" % stop
            # "...optimization unsuccessful." is what log readers look for.
            log("...optimization unsuccessful.", toc="opt")
            log(" Reason: %s." % stop)
        except EarlyStoppingOccurred as stop:
            # The criteria were not met (Amp's readers see an unsuccessful
            # run); the loss function's best_vector is the validation's.
            self.stop_reason = "stopped early: %s" % stop
            log("...optimization unsuccessful.", toc="opt")
            log(" Reason: %s." % self.stop_reason)
        else:
            self.stop_reason = _optimizer_stop(result)
            log("...optimization unsuccessful.", toc="opt")
            log(" Reason: %s" % self.stop_reason)
        lossfunction = model.lossfunction
        best = getattr(lossfunction, "best_vector", None)
        if best is not None:
            model.vector = best
        gradient = getattr(lossfunction, "dloss_dparameters", None)
        if lossprime and gradient is not None:
            log("...maximum absolute value of loss prime: %.3e"
                % np.max(np.abs(gradient)))
        return False


def _optimizer_stop(result):
    """Why an optimizer returned before the criteria were met, from its
    result (an ``OptimizeResult``, or anything else a callable gave)."""
    message = getattr(result, "message", None)
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    iterations = getattr(result, "nit", None)
    text = "the optimizer stopped"
    if iterations is not None:
        text += " after %s iterations" % iterations
    text += " before the criteria were met"
    if message:
        text += ": %s" % str(message).strip()
        return text if text.endswith(".") else text + "."
    return text + " (it gave no reason)."
