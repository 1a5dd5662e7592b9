"""Simulated annealing of a calculator's parameters before training
(Amp's ``amp.utilities.Annealer``).

Constructing an :class:`Annealer` runs a Metropolis walk in parameter
space on the loss of ``calc.model.lossfunction``: each move multiplies
every parameter by ``1 + step_size * u`` with ``u`` uniform in [-1, 1];
a move that raises the loss by ``dL`` is accepted with probability
``exp(-dL / T)``, and the temperature falls exponentially from ``Tmax`` to
``Tmin`` over ``steps`` moves. The best parameters met are left in the
calculator, so ``calc.train(images)`` starts its gradient-based fit from
them. The schedule follows perrygeo's ``simanneal``, as Amp's did.
"""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any
import signal
import threading
import time

import numpy as np

from .parallel import is_mpi, pool_for
from .utilities import hash_images, now


class Annealer:
    """Global search in parameter space before training (Amp's).

    >>> calc = Amp(descriptor=Gaussian(), model=NeuralNetwork())
    >>> Annealer(calc=calc, images=images)    # anneals, keeps the best
    >>> calc.train(images=images)              # starts from there

    Parameters
    ----------
    calc : amp.Amp
        Its descriptor fingerprints the images (into the databases its
        training would use) and its model's weights are set up as in
        training, then annealed.
    images : list of ase.Atoms, str or dict
        Training images (as :meth:`amp.Amp.train` takes them).
    Tmax, Tmin : float, optional
        Starting and final temperature (default 20.0 and 2.5, in units of
        the loss).
    steps : int, optional
        Number of moves (default 10000).
    updates : int, optional
        Progress lines written to the calculator's log (default 50).
    train_forces : bool
        Include the force term of the loss (when the loss function has
        one); False anneals on energies only, without fingerprint
        derivatives.
    seed : int or numpy.random.Generator, optional
        Random source of the moves and acceptances; the same seed gives
        the same walk. With ``calc.cores='mpi'`` the loss of each move is
        evaluated over the ranks of the MPI job, which all make the same
        moves (give an int or None: rank 0's seed is used for None).
    step_size : float
        Relative size of a move (Amp's 0.0005).

    Attributes
    ----------
    state : ndarray
        The current parameter vector (the best one once finished).
    best_state, best_loss : ndarray, float
        The lowest-loss parameters met and their loss.
    initial_loss : float
        The loss before annealing.
    step : int
        Moves made (fewer than ``steps`` after :meth:`set_user_exit`).
    """

    Tmax = 20.0
    Tmin = 2.5
    steps = 10000
    updates = 50
    copy_strategy = "copy"
    user_exit = False
    save_state_on_exit = False

    def __init__(self, calc: Any, images: Any, Tmax: float | None = None,
                 Tmin: float | None = None, steps: int | None = None,
                 updates: int | None = None, train_forces: bool = True,
                 seed: int | None = None, step_size: float = 0.0005) -> None:
        for name, value in (("Tmax", Tmax), ("Tmin", Tmin),
                            ("steps", steps), ("updates", updates)):
            if value is not None:
                setattr(self, name, value)
        self.calc = calc
        self.step_size = float(step_size)
        self.rng = np.random.default_rng(seed)
        self._previous_handler = None
        self.step = 0
        log = self._open_log()
        log("")
        log("Amp simulated annealer started. %s" % now())
        log("Descriptor: %s" % type(calc.descriptor).__name__)
        log("Model: %s" % type(calc.model).__name__)
        images = hash_images(images, log=log)
        lossfunction = calc.model.lossfunction
        derivatives = bool(train_forces) and calc.model.forcetraining
        saved = lossfunction.parameters["force_coefficient"]
        if not derivatives:
            lossfunction.parameters["force_coefficient"] = None
        store = calc.descriptor.open_store(calc.dblabel or calc.label,
                                           images=images)
        try:
            # The calculator's cores, as its training uses them.
            with pool_for({"cores": calc.cores,
                           "envcommand": calc.envcommand}, log) as pool:
                calc.descriptor.calculate_fingerprints(
                    images, parallel=pool, log=log,
                    calculate_derivatives=derivatives, store=store)
                ranks = pool if is_mpi(pool) else None
                if ranks is not None:  # inside the ranks' guard
                    self._walk(images, store, log, ranks, seed)
            if ranks is None:
                self._walk(images, store, log)
        finally:
            lossfunction.parameters["force_coefficient"] = saved
            lossfunction.close()
            lossfunction.reset()

    def _walk(self, images, store, log, ranks=None, seed=None):
        """Set the model up and anneal; with the ranks of an MPI job, each
        move's loss is evaluated over the ranks (each holds its share of
        the images) and every rank makes the same moves (the same seed,
        rank 0's when none was given)."""
        calc = self.calc
        calc.model.setup(images, store, log)
        lossfunction = calc.model.lossfunction
        with (lossfunction.evaluator(ranks) if ranks is not None
              else contextlib.nullcontext()):
            if ranks is not None and seed is None:
                self.rng = np.random.default_rng(ranks.broadcast(
                    int(np.random.SeedSequence().entropy % 2 ** 63)))
            self.state = self.copy_state(np.asarray(calc.model.vector,
                                                    dtype=float))
            log("")
            log("Annealing")
            log("=========")
            # Ctrl-C ends an MPI job (the ranks could stop at different
            # moves otherwise).
            if ranks is None:
                self._install_interrupt()
            try:
                best_state, best_loss = self.anneal()
            finally:
                self._restore_interrupt()
        calc.model.vector = np.array(best_state, dtype=float)
        log("Best loss %.6e (initial %.6e) after %d moves; parameters "
            "left in the calculator." % (best_loss, self.initial_loss,
                                         self.step))

    # Logging and interruption -------------------------------------------

    def _open_log(self):
        """The calculator's log, opened as training opens it."""
        opener = getattr(self.calc, "_open_log", None)
        return opener() if callable(opener) else self.calc.log

    @property
    def log(self) -> Any:
        """The calculator's log."""
        return self.calc.log

    def _install_interrupt(self):
        """Ctrl-C ends the walk cleanly (main thread only; the previous
        handler is restored afterwards)."""
        self._previous_handler = None
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT,
                                                   self.set_user_exit)

    def _restore_interrupt(self):
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def set_user_exit(self, signum: int | None = None,
                      frame: Any = None) -> None:
        """Stop after the current move, keeping the best state (Ctrl-C
        calls this while annealing)."""
        self.user_exit = True

    # Amp's / simanneal's methods -----------------------------------------

    @staticmethod
    def round_figures(x: float, n: int) -> float:
        """``x`` rounded to ``n`` significant figures."""
        if x == 0:
            return 0.0
        return round(x, int(n - math.ceil(math.log10(abs(x)))))

    @staticmethod
    def time_string(seconds: float) -> str:
        """Seconds as ``HHHH:MM:SS``."""
        s = int(round(seconds))
        h, s = divmod(s, 3600)
        m, s = divmod(s, 60)
        return "%4i:%02i:%02i" % (h, m, s)

    def copy_state(self, state: Any) -> Any:
        """A copy of ``state`` by :attr:`copy_strategy` (``'copy'``,
        ``'slice'`` or ``'deepcopy'``)."""
        if self.copy_strategy == "slice":
            return state[:]
        if self.copy_strategy == "deepcopy":
            import copy

            return copy.deepcopy(state)
        return state.copy()

    def move(self, state: Any = None) -> Any:
        """A random move: every parameter scaled by ``1 + step_size * u``,
        ``u`` uniform in [-1, 1]. Changes and returns the state."""
        state = self.state if state is None else state
        state *= 1.0 + self.step_size * self.rng.uniform(-1.0, 1.0,
                                                         len(state))
        return state

    def energy(self, state: Any = None) -> float:
        """The loss of ``state`` (default the current one); the
        annealer's "energy"."""
        state = self.state if state is None else state
        result = self.calc.model.lossfunction.calculate_loss(
            np.asarray(state, dtype=float), lossprime=False)
        return float(result["loss"])

    get_loss = energy  # Amp's name

    def set_schedule(self, schedule: dict[str, Any]) -> None:
        """Use the schedule :meth:`auto` returns (``tmax``, ``tmin``,
        ``steps``)."""
        self.Tmax = schedule["tmax"]
        self.Tmin = schedule["tmin"]
        self.steps = int(schedule["steps"])

    def save_state(self, fname: str | None = None) -> str | None:
        """Write the current state and its loss as JSON (never a pickle).

        Parameters
        ----------
        fname : str, optional
            Default ``<date>_loss_<loss>.state``.

        Returns
        -------
        str or None
            The file written (None on the MPI ranks other than 0, which
            write nothing).
        """
        from .parallel.mpi import rank_of
        from .store.files import atomic_file

        loss = self.energy()
        if rank_of(getattr(self.calc, "cores", None)):
            return None
        if not fname:
            fname = "%s_loss_%s.state" % (
                now().replace(" ", "T").replace(":", "-"), loss)
        with atomic_file(fname) as handle:
            handle.write(json.dumps({"state": np.asarray(self.state).tolist(),
                                     "loss": loss}).encode())
        self.log("Saved the annealer state to %s." % fname)
        return fname

    def update(self, step: int, T: float, L: float, acceptance: Any,
               improvement: Any) -> None:
        """Write a progress line: temperature, loss, acceptance and
        improvement rates since the last line, elapsed and remaining
        time."""
        log = self.log
        elapsed = time.time() - self.start
        if step == 0:
            header = " %5s %12s %12s %7s %7s %10s %10s"
            log(header % ("Step", "Temperature", "Loss (SSD)", "Accept",
                          "Improve", "Elapsed", "Remaining"))
            log(header % ("=" * 5, "=" * 12, "=" * 12, "=" * 7, "=" * 7,
                          "=" * 10, "=" * 10))
            log(" %5i %12.2e %12.4e %7s %7s %s" % (
                step, T, L, "", "", self.time_string(elapsed)))
            return
        remain = (self.steps - step) * (elapsed / step)
        log(" %5i %12.2e %12.4e %6.2f%% %6.2f%% %s %s" % (
            step, T, L, 100.0 * acceptance, 100.0 * improvement,
            self.time_string(elapsed), self.time_string(remain)))

    def _accept(self, dL, T):
        """Metropolis: always downhill, uphill with ``exp(-dL / T)``."""
        return dL <= 0.0 or math.exp(-dL / T) >= self.rng.random()

    def _trial(self, T, kept_state, kept_loss):
        """One Metropolis trial at temperature ``T``: a move from the
        current state (``kept_state``, of loss ``kept_loss``), kept or
        undone by :meth:`_accept`.

        Returns
        -------
        kept_state, kept_loss : ndarray, float
            The state and loss after the trial (a copy of the new state
            when the move is accepted).
        accepted, improved : bool
            Whether the move was accepted, and whether it lowered the loss.
        """
        self.move()
        L = self.energy()
        dL = L - kept_loss
        if not self._accept(dL, T):
            self.state = self.copy_state(kept_state)
            return kept_state, kept_loss, False, False
        return self.copy_state(self.state), L, True, dL < 0.0

    def anneal(self) -> tuple[Any, float]:
        """Anneal from :attr:`Tmax` to :attr:`Tmin` over :attr:`steps`
        moves.

        Returns
        -------
        best_state : ndarray
        best_loss : float
        """
        if self.Tmin <= 0.0 or self.Tmax < self.Tmin:
            raise ValueError("exponential cooling needs 0 < Tmin <= Tmax, "
                             "got Tmin=%r, Tmax=%r" % (self.Tmin, self.Tmax))
        self.start = time.time()
        self.step = 0
        cooling = -math.log(self.Tmax / self.Tmin)
        T = self.Tmax
        L = self.energy()
        self.initial_loss = L
        previous_state, previous_loss = self.copy_state(self.state), L
        self.best_state, self.best_loss = self.copy_state(self.state), L
        trials = accepts = improves = 0
        wavelength = self.steps / self.updates if self.updates > 0 else None
        if wavelength:
            self.update(0, T, L, None, None)
        while self.step < self.steps - 1 and not self.user_exit:
            self.step += 1
            T = self.Tmax * math.exp(cooling * self.step / self.steps)
            previous_state, L, accepted, improved = self._trial(
                T, previous_state, previous_loss)
            previous_loss = L
            trials += 1
            accepts += accepted
            improves += improved
            if accepted and L < self.best_loss:
                self.best_state = self.copy_state(self.state)
                self.best_loss = L
            if wavelength and self.step // wavelength > \
                    (self.step - 1) // wavelength:
                self.update(self.step, T, L, accepts / trials,
                            improves / trials)
                trials = accepts = improves = 0
        if self.user_exit:
            self.log("Stopped by the user after %d moves; keeping the best "
                     "state." % self.step)
        self.state = self.copy_state(self.best_state)
        if self.save_state_on_exit:
            self.save_state()
        return self.best_state, self.best_loss

    def auto(self, minutes: float, steps: int = 2000) -> dict[str, Any]:
        """Estimate a schedule: ``Tmax`` where 98 % of moves are accepted,
        ``Tmin`` where none improves, and the number of steps that fits in
        ``minutes``.

        Parameters
        ----------
        minutes : float
            Time the annealing itself should take.
        steps : int
            Moves per exploration stage.

        Returns
        -------
        dict
            ``{'tmax': ..., 'tmin': ..., 'steps': ...}`` for
            :meth:`set_schedule`.
        """
        def run(T, n):
            L = self.energy()
            previous_state = self.copy_state(self.state)
            accepts = improves = 0
            for _ in range(n):
                previous_state, L, accepted, improved = self._trial(
                    T, previous_state, L)
                accepts += accepted
                improves += improved
            return L, accepts / n, improves / n

        self.start = time.time()
        step = 0
        L = self.energy()
        self.update(step, 0.0, L, None, None)
        T = 0.0
        for _ in range(1000):  # a first temperature: any loss change
            step += 1
            self.move()
            T = abs(self.energy() - L)
            if T > 0.0:
                break
        if T == 0.0:
            raise RuntimeError("moves do not change the loss; cannot "
                               "estimate a temperature")
        L, acceptance, improvement = run(T, steps)
        step += steps
        while acceptance > 0.98:
            T = self.round_figures(T / 1.5, 2)
            L, acceptance, improvement = run(T, steps)
            step += steps
            self.update(step, T, L, acceptance, improvement)
        while acceptance < 0.98:
            T = self.round_figures(T * 1.5, 2)
            L, acceptance, improvement = run(T, steps)
            step += steps
            self.update(step, T, L, acceptance, improvement)
        Tmax = T
        while improvement > 0.0 and T > 0.0:
            T = self.round_figures(T / 1.5, 2)
            L, acceptance, improvement = run(T, steps)
            step += steps
            self.update(step, T, L, acceptance, improvement)
        Tmin = T
        elapsed = time.time() - self.start
        duration = self.round_figures(int(60.0 * minutes * step / elapsed), 2)
        return {"tmax": Tmax, "tmin": Tmin, "steps": duration}
