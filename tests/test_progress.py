"""amp.progress: the live line, its rate limit, and when it is shown (a
terminal, or Amp(verbose=True)) and not (pipes, files, verbose=False)."""
import io
import os
import pty
import re
import subprocess
import sys
import time

import pytest

from amp.progress import Progress, wants_progress
from conftest import ROOT, TESTS


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_counted_line_rate_and_time_left():
    stream = io.StringIO()
    progress = Progress(40, "fingerprints", enabled=True, unit="images",
                        stream=stream, interval=0)
    for done in range(1, 11):
        progress.update(done)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 11 and text.endswith("\n")
    last = text.split("\r")[-1]
    assert last.startswith("fingerprints, 10/40 images ( 25%)")
    assert "images/s" in last and "left" in last
    assert text.count("\n") == 1  # one updating line, not a scroll


def test_fields_phases_and_padding():
    stream = io.StringIO()
    progress = Progress(None, "training", enabled=True, unit="step",
                        stream=stream, interval=0)
    progress.update(120, loss=0.123456, energy_rmse=1.5e-5)
    assert "training, step 120, loss 0.1235, energy rmse 1.500e-05" in \
        stream.getvalue()
    progress.phase("solve", 0.5)
    line = stream.getvalue().split("\r")[-1]
    assert line.startswith("training, solve  50%")
    # The shorter line covers the longer one it replaces.
    assert len(line) >= len(stream.getvalue().split("\r")[-2])


def test_rate_limited_and_silent_when_short_or_off():
    stream = io.StringIO()
    with Progress(1000, "x", enabled=True, stream=stream,
                  interval=60) as progress:
        for done in range(1000):
            progress.update(done)
    assert stream.getvalue() == ""  # nothing drawn, nothing to close
    single = io.StringIO()  # one image, e.g. an inference call
    with Progress(1, "x", enabled=True, stream=single, interval=0) as one:
        one.update(1)
    assert single.getvalue() == ""
    off = io.StringIO()
    progress = Progress(5, "x", enabled=False, stream=off, interval=0)
    progress.update(3)
    progress.close()
    assert off.getvalue() == ""


def test_limit_and_clearing_a_phase():
    stream = io.StringIO()
    progress = Progress(None, "training", enabled=True, unit="step",
                        stream=stream, interval=0, limit=200)
    progress.phase("building")
    assert stream.getvalue().split("\r")[-1].startswith("training, building")
    progress.phase(None)
    progress.update(7, loss="1.5 eV")
    assert stream.getvalue().split("\r")[-1].startswith(
        "training, step 7/200, loss 1.5 eV, 0:00")


def test_heartbeat_redraws_during_a_long_call():
    """A call that reports nothing still shows a moving clock; the thread
    stops at close (nothing is drawn after it)."""
    stream = io.StringIO()
    progress = Progress(None, "x", enabled=True, stream=stream,
                        interval=0.05, heartbeat=True)
    progress.phase("preconditioner")
    deadline = time.monotonic() + 60
    while stream.getvalue().count("\r") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)        # the caller is busy; it reports nothing
    assert stream.getvalue().count("\rx, preconditioner") >= 3
    progress.close()
    closed = stream.getvalue()
    assert closed.endswith("\n")
    time.sleep(0.2)
    assert stream.getvalue() == closed
    quiet = Progress(None, "x", enabled=False, heartbeat=True)
    assert quiet._beating is None        # no thread when nothing is shown


def test_auto_means_a_terminal():
    assert wants_progress(None, io.StringIO()) is False
    assert wants_progress(None, Terminal()) is True
    assert wants_progress(True, io.StringIO()) is True
    assert wants_progress(False, Terminal()) is False
    closed = io.StringIO()
    closed.close()
    assert wants_progress(None, closed) is False


# A tiny training in a fresh interpreter; the progress line redraws at
# every update (INTERVAL 0) so that a short run shows it.
SCRIPT = """
import sys
import time
import amp.progress
amp.progress.INTERVAL = 0
from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from conftest import cu_slab_images

images = cu_slab_images(range(4))
verbose = {"auto": None, "on": True, "off": False}[sys.argv[2]]
calc = Amp(Gaussian(cutoff=4.0), NeuralNetwork((2,), randomseed=1),
           label=sys.argv[1], cores=1, verbose=verbose)
calc.model.lossfunction = LossFunction(
    convergence={"energy_rmse": 1e-9}, maxiter=5)
try:
    calc.train(images)
except Exception as error:
    print(type(error).__name__)
print("done")
"""


def run_training(tmp_path, verbose, terminal):
    """stderr of the training script, on a pseudo-terminal or a pipe."""
    env = dict(os.environ, TERM="xterm", COLUMNS="200",
               PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    command = [sys.executable, "-c", SCRIPT, str(tmp_path / verbose),
               verbose]
    if not terminal:
        # Bytes: text mode would turn every "\r" into a newline.
        done = subprocess.run(command, capture_output=True, env=env,
                              timeout=120)
        assert b"done" in done.stdout, done.stderr
        return done.stderr.decode(errors="replace")
    master, slave = pty.openpty()
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                   stderr=slave, env=env)
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout = process.communicate(timeout=120)[0].decode()
    assert "done" in stdout
    return b"".join(chunks).decode(errors="replace")


def test_line_on_a_terminal_and_not_in_a_pipe(tmp_path):
    shown = run_training(tmp_path, "auto", terminal=True)
    assert "\rfingerprints, 4/4 images (100%)" in shown
    # step n/maxiter, each RMSE against its criterion, with units
    assert "\rtraining, step 5/5, loss" in shown
    assert re.search(r"energy RMSE [0-9.e+-]+/1e-09 eV/atom, force RMSE "
                     r"[0-9.e+-]+ eV/Å, \d:\d\d", shown)
    # the batches are built under a line of their own
    assert "\rtraining, building batches of 4 images" in shown
    piped = run_training(tmp_path, "auto", terminal=False)
    assert "\r" not in piped and "fingerprints," not in piped
    assert "training," not in piped


@pytest.mark.parametrize("verbose, terminal", [("on", False),
                                               ("off", True)])
def test_verbose_forces_the_line_on_or_off(tmp_path, verbose, terminal):
    text = run_training(tmp_path, verbose, terminal)
    assert ("\rtraining, step 5/5" in text) == (verbose == "on")
