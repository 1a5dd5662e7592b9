"""Worker jobs used only by the tests (workers import this module by name:
the tests put this folder on the workers' ``PYTHONPATH``)."""
import os
import time

import numpy as np

from amp.parallel import register_job


@register_job
class Echo:
    """Map job for tests: ``value = {'item': item, 'pid': worker pid}``
    after sleeping ``setup['sleep']`` seconds."""

    def __init__(self, setup):
        self.sleep = float((setup or {}).get("sleep", 0.0))

    def __call__(self, key, item):
        time.sleep(self.sleep)
        return {"item": item, "pid": os.getpid()}


@register_job
class LeastSquares:
    """Persistent stand-in for a loss: partial sums over a share of data.

    ``share``: ``{'X': (m, p) array, 'y': (m,) array}``. ``evaluate(p)``
    returns ``{'loss': sum(r**2)/2, 'gradient': X.T @ r, 'max_residual':
    max|r|, 'count': m}`` with ``r = X @ p - y`` -- the shape of what a
    loss-function share returns (partial sums the master adds up).
    """

    methods = ("evaluate", "sleep", "pid")

    def __init__(self, setup, share):
        self.X = np.asarray(share["X"], dtype=float)
        self.y = np.asarray(share["y"], dtype=float)

    def evaluate(self, parameters):
        residual = self.X @ np.asarray(parameters, dtype=float) - self.y
        return {"loss": 0.5 * float(residual @ residual),
                "gradient": self.X.T @ residual,
                "max_residual": float(np.abs(residual).max(initial=0.0)),
                "count": len(self.y)}

    def sleep(self, seconds):
        time.sleep(seconds)
        return os.getpid()

    def pid(self, args=None):
        return os.getpid()
