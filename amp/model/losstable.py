"""The loss function's convergence table and progress line: the criteria
block and table Amp 1.x's log readers parse, the live training line
(:mod:`amp.progress`), and the per-step block of held-out and stress
errors written after the optimiser's last line.

:class:`ConvergenceTable` is a mixin of :class:`amp.model.LossFunction`.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from .validation import supplement_lines


class ConvergenceTable:
    """Mixin of :class:`LossFunction` (see the module)."""

    def _new_progress_line(self, heartbeat=False):
        """A live training line (:mod:`amp.progress`): step n/maxiter, the
        loss, and each RMSE against its criterion with its unit."""
        from ..progress import Progress

        return Progress(None, "training", enabled=self.verbose, unit="step",
                        heartbeat=heartbeat, limit=self.parameters.maxiter)

    def _progress_fields(self, result, held_out=None):
        c = self.parameters.convergence
        fields = {"loss": result["loss"]}
        rows = [("energy RMSE", "energy_rmse", "eV/atom")]
        if self.train_forces:
            rows.append(("force RMSE", "force_rmse", "eV/Å"))
        if self.train_stress:
            rows.append(("stress RMSE", "stress_rmse", "eV/Å³"))
        for name, key, unit in rows:
            target = c.get(key)
            fields[name] = ("%.4g/%.4g %s" % (result[key], target, unit)
                            if target is not None else
                            "%.4g %s" % (result[key], unit))
        if held_out is not None:
            fields["validation energy RMSE"] = "%.4g eV/atom" % (
                held_out["energy_rmse"])
        return fields

    def _initialize(self):
        if self._initialized:
            return
        self._initialized = True
        self._start = time.time()
        self._progress = self._new_progress_line()
        if not self.log_losses:
            return
        p, c, log = self.parameters, self.parameters.convergence, self.log
        log(" Loss function convergence criteria:")
        stress = ("stress_rmse", "stress_maxresid") if self.train_stress \
            else ()
        for key in ("energy_rmse", "energy_maxresid", "force_rmse",
                    "force_maxresid") + stress:
            value = c[key]
            if key.startswith("force") and not self.train_forces:
                value = None  # forces not trained: no force criterion
            elif value is None and key.endswith("rmse"):
                # Trained but unbounded; log readers (Amp's too) take the
                # table's columns from whether this is a number.
                value = float("inf")
            log("  %s: %s" % (key, value))
        log("  maxiter: %s" % p.maxiter)
        log(" Loss function set-up:")
        log("  energy_coefficient: %s" % p.energy_coefficient)
        log("  force_coefficient: %s" % p.force_coefficient)
        if self.train_stress:
            log("  stress_coefficient: %s" % p.stress_coefficient)
        log("  overfit: %s" % p.overfit)
        log("  weight_duplicates: %s" % p.weight_duplicates)
        if self.validation is not None:
            # No criterion names here: Amp's reader reads any line with
            # e.g. "energy_rmse:" as the criterion.
            log("  held-out images: %d, scored at every step (after the "
                "table); patience: %s" % (len(self.validation.images),
                                          self.validation.patience))
        log("")
        if self.train_forces:
            header = "%5s %19s %12s %12s %12s %12s %12s"
            log(header % ("", "", "", "", "Energy", "", "Force"))
            log(header % ("Step", "Time", "Loss (SSD)", "EnergyRMSE",
                          "MaxResid", "ForceRMSE", "MaxResid"))
            log(header % ("=" * 5, "=" * 19, "=" * 12, "=" * 12, "=" * 12,
                          "=" * 12, "=" * 12))
        else:
            header = "%5s %19s %12s %12s %12s"
            log(header % ("", "", "", "", "Energy"))
            log(header % ("Step", "Time", "Loss (SSD)", "EnergyRMSE",
                          "MaxResid"))
            log(header % ("=" * 5, "=" * 19, "=" * 12, "=" * 12, "=" * 12))

    def write_supplement(self, log: Optional[Callable] = None) -> None:
        """Write the per-step errors Amp's table has no columns for
        (:func:`amp.model.validation.supplement_lines`); called when the
        fit ends, after the optimiser's last line."""
        for line in supplement_lines(self._stress_history or None,
                                     self.validation):
            (self.log if log is None else log)(line)
