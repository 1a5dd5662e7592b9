"""The regressor: minimises a model's loss with ``scipy.optimize``.

Amp's :class:`Regressor`. The loss function raises
:class:`~amp.model.ConvergenceOccurred` the moment the convergence criteria
are met, which stops the optimiser wherever it is (inside a line search
too); :class:`~amp.model.MaxIterationsReached` stops it unconverged.
"""

import copy

import numpy as np

from ..model import ConvergenceOccurred, MaxIterationsReached

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


class Regressor:
    """Drive the minimisation of a model's loss function.

    Parameters
    ----------
    optimizer : str or callable
        'BFGS' (default), 'L-BFGS-B', 'TNC' or 'Newton-CG' (through
        ``scipy.optimize.minimize`` with Amp's options), or any callable
        ``optimizer(function, x0, jac=..., **optimizer_kwargs)`` that
        behaves like ``scipy.optimize.minimize``.
    optimizer_kwargs : dict, optional
        Extra keywords for the optimiser; an ``options`` dict is merged into
        the preset's options.
    lossprime : bool
        Give the optimiser the analytic gradient (``jac=True``); otherwise
        it sees the loss only.
    """

    def __init__(self, optimizer="BFGS", optimizer_kwargs=None,
                 lossprime=True):
        kwargs = {}
        if isinstance(optimizer, str):
            if optimizer not in PRESETS:
                raise ValueError("unknown optimizer %r; presets: %s, or pass "
                                 "a callable" % (optimizer,
                                                 ", ".join(PRESETS)))
            kwargs = copy.deepcopy(PRESETS[optimizer])
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

    def regress(self, model, log):
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
            reached or the optimiser stopped unconverged (the model then
            holds the lowest-loss parameters evaluated).
        """
        lossprime = self.lossprime

        def function(vector):
            return model.get_loss(vector, lossprime=lossprime)

        x0 = np.array(model.vector, dtype=float)
        log("Starting parameter optimization.", tic="opt")
        log(" Optimizer: %s" % self.name)
        log(" Optimizer kwargs: %s" % self.optimizer_kwargs)
        log(" Parameters: %i" % len(x0))
        try:
            if isinstance(self.optimizer, str):
                from scipy.optimize import minimize

                minimize(function, x0, jac=lossprime,
                         **self.optimizer_kwargs)
            else:
                self.optimizer(function, x0, jac=lossprime,
                               **self.optimizer_kwargs)
        except ConvergenceOccurred:
            log("...optimization successful.", toc="opt")
            return True
        except MaxIterationsReached as stop:
            log("...optimization unsuccessful: %s." % stop, toc="opt")
        else:
            log("...optimization unsuccessful: the optimizer stopped "
                "before the criteria were met.", toc="opt")
        lossfunction = model.lossfunction
        best = getattr(lossfunction, "best_vector", None)
        if best is not None:
            model.vector = best
        gradient = getattr(lossfunction, "dloss_dparameters", None)
        if lossprime and gradient is not None:
            log("...maximum absolute value of loss prime: %.3e"
                % np.max(np.abs(gradient)))
        return False
