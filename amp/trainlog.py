"""Training logs: read the convergence data of ``<label>-log.txt``.

:func:`read_trainlog` (Amp 1.x's name, also in :mod:`amp.analysis`) reads
the logs this library writes and those written by Amp 1.x, and returns
what Amp's function returns. The training code writes its log in the line
structure Amp's reader parses (``Amp training started.``, ``N unique
images after hashing.``, the criteria and coefficients, the step table
with one-token times, ``...optimization successful.``/``unsuccessful.``),
so Amp's tools read this library's logs too. What Amp's table has no
columns for (the training stress errors, the held-out images' errors) is
one block after the optimiser's last line, where Amp's reader has stopped
(:mod:`amp.model.validation`); it is read here. Nothing here needs
matplotlib.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .model.validation import (SUPPLEMENT_TITLE, TRAINING_COLUMNS,
                               VALIDATION_COLUMNS)

__all__ = ["read_trainlog"]

# Optional criteria and coefficients (present when stress is trained).
_STRESS_KEYS = ("stress_rmse", "stress_maxresid", "stress_coefficient")
# Short names of the per-step lists, as Amp's es/emrs/fs/fmrs.
_SHORT = {"loss": "costfxns", "energy_rmse": "es", "energy_maxresid": "emrs",
          "force_rmse": "fs", "force_maxresid": "fmrs",
          "stress_rmse": "ss", "stress_maxresid": "smrs"}

_CRITERIA = ("energy_rmse", "energy_maxresid", "force_rmse",
             "force_maxresid", "energy_coefficient", "force_coefficient")
_ENDINGS = (("...optimization successful.", True),
            ("optimization completed successfully.", True),
            ("...optimization unsuccessful.", False),
            ("could not find parameters for the", None))
_SKIPPED = ("Saving checkpoint data.", "Overwriting file")


def _read_lines(logfile):
    try:
        with open(logfile) as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError("training log %s does not exist"
                                % logfile) from None
    except UnicodeDecodeError as error:
        raise ValueError("%s is not an Amp training log: it is not text "
                         "(%s at byte %d); give <label>-log.txt"
                         % (logfile, error.reason, error.start)) from None


def read_trainlog(logfile: str, verbose: bool = True,
                  multiple: int | bool = 0) -> Any:
    """Read the convergence data of a training log.

    Reads this library's ``<label>-log.txt`` and logs written by Amp 1.x,
    and returns what Amp's function returns.

    Parameters
    ----------
    logfile : str
        Path of the log.
    verbose : bool
        Print the criteria and the table rows as they are read (as Amp).
    multiple : int or True
        Which training run of the log to read, counting from 0 (each
        ``train()`` appends one; -1 is the last); True returns every run
        as a list.

    Returns
    -------
    dict
        ``no_images`` and, once the fit has started, ``convergence``:
        the criteria ``energy_rmse``, ``energy_maxresid``, ``force_rmse``,
        ``force_maxresid`` (None when not set), ``energy_coefficient``,
        ``force_coefficient`` (0.0 when forces are not trained),
        ``costfxngoal`` (the loss the RMSE criteria amount to),
        ``converged`` (True, False or None while the log is still being
        written), and per step of the table: ``steps``, ``es`` and ``fs``
        (energy and force RMSEs), ``emrs`` and ``fmrs`` (maximum
        residuals), ``costfxns`` (the loss), ``costfxnEs`` and
        ``costfxnFs`` (the energy and force terms' shares of it).
        When stress was trained, ``convergence`` also has
        ``stress_rmse``, ``stress_maxresid``, ``stress_coefficient`` and
        per step ``ss`` and ``smrs`` (eV/A^3). When images were held out,
        ``validation``: ``no_images``, per step ``steps``, ``costfxns``
        (their loss per image), ``es``, ``emrs``, ``fs``, ``fmrs`` (and
        ``ss``, ``smrs``), ``best_step`` and ``stopped_early``. Logs
        without either give exactly what Amp's function gives.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a training log, a run that is not there, or a log truncated
        before its convergence table; the message names the file.
    """
    lines = _read_lines(logfile)
    starts = [index for index, line in enumerate(lines)
              if line.startswith("Amp training started.")]
    if not starts:
        raise ValueError("%s is not an Amp training log, or is truncated: "
                         "it has no 'Amp training started.' line" % logfile)
    ends = starts[1:] + [len(lines)]
    if multiple is True:
        return [_read_run(lines[s:e], s, logfile, verbose)
                for s, e in zip(starts, ends)]
    try:
        start, end = starts[multiple], ends[multiple]
    except (IndexError, TypeError):
        raise ValueError("%s has %d training run(s); multiple=%r is not one "
                         "of them (count from 0, or True for all)"
                         % (logfile, len(starts), multiple)) from None
    return _read_run(lines[start:end], start, logfile, verbose)


def _number(text, where):
    text = text.strip()
    if text == "None":
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError("%s: %r is not a number" % (where, text)) from None


def _read_run(lines, first, logfile, verbose):
    """Parse one training run; ``first`` is its first line's index."""
    def where(index):
        return "%s, line %d" % (logfile, first + index + 1)

    def say(text):
        if verbose:
            print(text)

    for line in lines:
        if "unique images after hashing" in line:
            no_images = int(line.split()[0])
            break
    else:
        raise ValueError("%s is truncated: the training run at line %d has "
                         "no '... unique images after hashing.' line"
                         % (logfile, first + 1))
    data = {"no_images": no_images}
    for start, line in enumerate(lines):
        if "Loss function convergence criteria:" in line:
            break
    else:
        return data  # the fit had not started (Amp returns this too)
    d = data["convergence"] = {}
    table = None
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if "Step" in line and "Time" in line:
            table = index + 2
            break
        key, _, value = line.partition(":")
        key = key.strip()
        if key in _CRITERIA + _STRESS_KEYS and key not in d:
            d[key] = _number(value, where(index))
    missing = [k for k in _CRITERIA if k not in d]
    if table is None or missing:
        raise ValueError("%s is truncated: the convergence criteria and "
                         "table header of the training run at line %d are "
                         "incomplete%s" % (logfile, first + 1,
                                           " (no %s)" % ", ".join(missing)
                                           if missing else ""))
    if d["force_coefficient"] is None:
        d["force_coefficient"] = 0.
    trainforces = d["force_rmse"] is not None
    say("train forces: %s" % trainforces)
    for key, value in d.items():
        if key not in _STRESS_KEYS:
            say("%s: %s" % (key, value))
    E = d["energy_rmse"] ** 2 * no_images if d["energy_rmse"] else 0.
    F = d["force_rmse"] ** 2 * no_images if trainforces else 0.
    d["costfxngoal"] = d["energy_coefficient"] * E + \
        d["force_coefficient"] * F
    d["converged"] = None
    columns = {name: [] for name in ("steps", "es", "fs", "emrs", "fmrs",
                                     "costfxns", "costfxnEs", "costfxnFs")}
    n_tokens = 11 if trainforces else 7
    end = len(lines)
    for index in range(table, len(lines)):
        line = lines[index]
        ending = [value for text, value in _ENDINGS if text in line]
        if ending:
            d["converged"] = ending[0]
            end = index
            break
        if not line.strip():
            break  # the run stopped without a word (killed, timed out)
        if any(text in line for text in _SKIPPED):
            continue
        tokens = line.split()
        if not tokens[0].isdigit():
            continue  # a message between rows
        if len(tokens) != n_tokens:
            if index == len(lines) - 1:
                break  # a row being written
            raise ValueError("%s: not a row of the convergence table "
                             "(%d columns, expected %d): %r"
                             % (where(index), len(tokens), n_tokens, line))
        say(line)
        step, costfxn, e, emr = tokens[0], tokens[2], tokens[3], tokens[5]
        costfxn = float(costfxn)
        columns["steps"].append(int(step))
        columns["es"].append(float(e))
        columns["emrs"].append(float(emr))
        columns["costfxns"].append(costfxn)
        # Amp's arithmetic, in its order, for identical floats.
        E = float(e) ** 2 * no_images
        columns["costfxnEs"].append(
            d["energy_coefficient"] * E / costfxn if costfxn else np.nan)
        if trainforces:
            f, fmr = tokens[7], tokens[9]
            columns["fs"].append(float(f))
            columns["fmrs"].append(float(fmr))
            F = float(f) ** 2 * no_images
            columns["costfxnFs"].append(
                d["force_coefficient"] * F / costfxn if costfxn else np.nan)
    d.update(columns)
    _read_supplement(lines, end, data, where)
    return data


def _read_supplement(lines, end, data, where):
    """The per-step block after the table (training stress, held-out
    images) into ``data``; nothing when the run has none."""
    held = [line for line in lines if "Held out for validation:" in line]
    try:
        start = lines.index(SUPPLEMENT_TITLE, end)
    except ValueError:
        return
    if start + 1 == len(lines):
        return  # cut after the title
    names = lines[start + 1].split()[1:]
    known = {name: ("convergence", key) for key, name in TRAINING_COLUMNS}
    known.update({name: ("validation", key)
                  for key, name in VALIDATION_COLUMNS})
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError("%s: unknown columns %s in the per-step block"
                         % (where(start + 1), ", ".join(unknown)))
    columns = {name: [] for name in names}
    steps = []
    index = start + 2
    for index in range(start + 2, len(lines)):
        tokens = lines[index].split()
        if not tokens or not tokens[0].isdigit():
            break
        if len(tokens) != len(names) + 1:
            if index == len(lines) - 1:
                break  # a row being written
            raise ValueError("%s: %d values in a row of the per-step block, "
                             "expected %d" % (where(index), len(tokens) - 1,
                                              len(names)))
        steps.append(int(tokens[0]))
        for name, token in zip(names, tokens[1:]):
            columns[name].append(_number(token, where(index)))
    validation = {}
    for name, values in columns.items():
        part, key = known[name]
        if part == "convergence":
            data["convergence"][_SHORT[key]] = values
        else:
            validation[_SHORT[key]] = values
    if not validation:
        return
    summary = next((line for line in lines[index:]
                    if line.startswith("Validation: lowest loss")), "")
    best = summary.partition(" at step ")[2].split(" ")[0]
    validation.update(
        steps=steps,
        no_images=int(held[0].split(":")[1].split()[0]) if held else None,
        best_step=int(best) if best.isdigit() else None,
        stopped_early="stopped early" in summary)
    data["validation"] = validation
