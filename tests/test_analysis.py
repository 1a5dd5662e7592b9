"""amp.analysis, amp.descriptor.analysis, NodePlot and amp-plotconvergence:
training logs read by this library and by Amp 1.x's parsing logic, plots
that are written and not blank, returned numbers equal to the
calculator's own."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ase.constraints import FixAtoms

from amp import Amp
from amp.analysis import (calc_rmse, plot_convergence, plot_parity_and_error,
                          plot_sensitivity, read_trainlog)
from amp.cli import plotconvergence_main
from amp.descriptor.analysis import FingerprintPlot
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction, TrainingConvergenceError
from amp.model.neuralnetwork import NeuralNetwork, NodePlot
from conftest import AMP_REFERENCE, ROOT, cu_slab_images, with_emt_results

pytest.importorskip("matplotlib")

AMP1_LOG = os.path.join(AMP_REFERENCE, "amp1_training_log.txt")
with open(os.path.join(AMP_REFERENCE,
                       "amp1_training_log_read_trainlog.json")) as _f:
    AMP1_DATA = json.load(_f)


def slab_images(n, seed=0):
    """``n`` rattled Cu7Pt fcc(111) slabs with EMT energies and forces."""
    return cu_slab_images([seed * 100 + k for k in range(n)], pt=[0])


def small_gaussian():
    return Gaussian(cutoff=4.0, Gs=[
        {"type": "G2", "element": "Cu", "eta": 0.1},
        {"type": "G2", "element": "Pt", "eta": 0.5},
        {"type": "G2", "element": "Cu", "eta": 2.0},
        {"type": "G4", "elements": ["Cu", "Cu"], "eta": 0.005, "zeta": 1.0,
         "gamma": 1.0}], elements=["Cu", "Pt"])


def train(label, images, convergence, force_coefficient=0.04, maxiter=None,
          calc=None, checkpoints=None):
    if calc is None:
        calc = Amp(small_gaussian(),
                   NeuralNetwork((3,), randomseed=1, checkpoints=checkpoints),
                   label=label, cores=1)
    calc.model.lossfunction = LossFunction(
        convergence=convergence, force_coefficient=force_coefficient,
        maxiter=maxiter or 100000)
    calc.train(images, overwrite=True)
    return calc


# Amp 1.0.1's own read_trainlog, verbatim (GPL-3.0-or-later, as this
# library), loaded from the reference data: what Amp itself makes of a log.
AMP101_PARSER = os.path.join(AMP_REFERENCE, "amp101_read_trainlog.py")
AMP101_PARSER_SHA256 = \
    "180a3223753f8fe2ecc606dc05e3d7ea9bf4f86b4a63ef9cbdadc2f5d9512267"


def _load_amp101_parser():
    import importlib.util

    spec = importlib.util.spec_from_file_location("amp101_read_trainlog",
                                                  AMP101_PARSER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_trainlog


_amp101_read_trainlog = _load_amp101_parser()


def amp1_read_trainlog(logfile, multiple=0):
    """What Amp 1.0.1's ``read_trainlog`` returns for ``logfile``."""
    return _amp101_read_trainlog(logfile, verbose=False, multiple=multiple)


def not_blank(path):
    """The file exists, is not empty, and its image has varying pixels."""
    from matplotlib.image import imread

    assert os.path.getsize(path) > 0
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100
    return float(np.ptp(pixels)) > 0.5 and len(np.unique(pixels)) > 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two runs appended to one log (checkpoints inside the table), as
    ``calc.train`` twice does."""
    folder = tmp_path_factory.mktemp("trained")
    label = str(folder / "calc")
    images = slab_images(6)
    calc = train(label, images, {"energy_rmse": 0.02, "force_rmse": 0.6},
                 checkpoints=2)
    train(label, images, {"energy_rmse": 0.01, "force_rmse": 0.5},
          calc=calc)
    return label, images


# Training logs ------------------------------------------------------------

def test_amp1_parser_is_amps_text_and_reproduces_amp():
    import hashlib

    # The 167 lines after the license header are Amp 1.0.1's, unedited.
    with open(AMP101_PARSER, "rb") as handle:
        text = handle.read().splitlines(True)
    assert hashlib.sha256(b"".join(text[-167:])).hexdigest() == \
        AMP101_PARSER_SHA256
    assert text[-167].startswith(b"def read_trainlog(logfile, verbose=True")
    for multiple in (0, 1):
        assert amp1_read_trainlog(AMP1_LOG, multiple) == \
            AMP1_DATA["multiple=%d" % multiple]


def test_read_trainlog_reads_amp1_log_as_amp_does(capsys):
    for multiple in (0, 1):
        assert read_trainlog(AMP1_LOG, verbose=False, multiple=multiple) == \
            AMP1_DATA["multiple=%d" % multiple]
    assert capsys.readouterr().out == ""
    assert read_trainlog(AMP1_LOG, verbose=False, multiple=True) == \
        [AMP1_DATA["multiple=0"], AMP1_DATA["multiple=1"]]
    read_trainlog(AMP1_LOG, multiple=1)
    out = capsys.readouterr().out
    assert "train forces: True" in out and "force_rmse: 0.3" in out
    assert "   31 2026-12-01T05:23:11" in out


def test_log_written_here_reads_alike_here_and_in_amp(trained):
    label, images = trained
    log = label + "-log.txt"
    text = open(log).read()
    assert "Saving checkpoint data." in text
    runs = read_trainlog(log, verbose=False, multiple=True)
    assert len(runs) == 2
    for multiple, criteria in enumerate(((0.02, 0.6), (0.01, 0.5))):
        data = runs[multiple]
        assert data == amp1_read_trainlog(log, multiple)
        c = data["convergence"]
        assert data["no_images"] == 6 and c["converged"] is True
        assert (c["energy_rmse"], c["force_rmse"]) == criteria
        assert c["energy_maxresid"] is None and c["force_coefficient"] == 0.04
        assert c["steps"] == list(range(1, len(c["steps"]) + 1))
        assert c["es"][-1] <= criteria[0] and c["fs"][-1] <= criteria[1]
    # The last row is the saved model's: same numbers to the 5 digits
    # the table keeps.
    rmse = calc_rmse([label + ".amp"], images)
    last = runs[1]["convergence"]
    for key, column in (("energy_rmse", "es"), ("force_rmse", "fs"),
                        ("energy_maxresid", "emrs"),
                        ("force_maxresid", "fmrs"), ("loss", "costfxns")):
        assert rmse[key][0] == pytest.approx(last[column][-1], rel=1e-4)
    assert last["costfxnEs"][-1] + last["costfxnFs"][-1] == \
        pytest.approx(1.0, rel=1e-3)


def test_energy_only_unconverged_and_unbounded_force_logs(tmp_path):
    images = slab_images(5, seed=1)
    energy = str(tmp_path / "energy")
    train(energy, images, {"energy_rmse": 0.05, "force_rmse": 0.1},
          force_coefficient=None)
    data = read_trainlog(energy + "-log.txt", verbose=False)
    assert data == amp1_read_trainlog(energy + "-log.txt")
    c = data["convergence"]
    assert c["force_rmse"] is None and c["force_coefficient"] == 0.
    assert c["fs"] == [] and c["converged"] is True

    unbounded = str(tmp_path / "unbounded")
    with pytest.raises(TrainingConvergenceError):
        train(unbounded, images, {"energy_rmse": 1e-9, "force_rmse": None},
              maxiter=4)
    data = read_trainlog(unbounded + "-log.txt", verbose=False)
    assert data == amp1_read_trainlog(unbounded + "-log.txt")
    c = data["convergence"]
    # Forces are trained (force_coefficient 0.04) without a criterion.
    assert c["force_rmse"] == np.inf and len(c["fs"]) == 4
    assert c["converged"] is False and c["steps"] == [1, 2, 3, 4]
    plot_convergence(unbounded + "-log.txt", str(tmp_path / "c.png"))
    assert not_blank(str(tmp_path / "c.png"))


def test_missing_and_truncated_logs_name_the_file(tmp_path, trained):
    missing = str(tmp_path / "nothing-log.txt")
    with pytest.raises(FileNotFoundError, match="nothing-log.txt"):
        read_trainlog(missing)
    lines = open(trained[0] + "-log.txt").read().splitlines(True)
    index = {name: next(i for i, line in enumerate(lines) if name in line)
             for name in ("Amp training started.", "unique images",
                          "convergence criteria:", "force_coefficient:",
                          "Step", "...optimization")}
    cut = str(tmp_path / "cut-log.txt")
    for end, match in ((index["Amp training started."], "no 'Amp training"),
                       (index["unique images"], "unique images"),
                       (index["force_coefficient:"], "incomplete"),
                       (index["Step"], "incomplete")):
        open(cut, "w").writelines(lines[:end])
        with pytest.raises(ValueError, match=match) as error:
            read_trainlog(cut, verbose=False)
        assert "cut-log.txt" in str(error.value)
    # Cut before the fit: Amp's answer (images only), and no plot.
    open(cut, "w").writelines(lines[:index["convergence criteria:"]])
    assert read_trainlog(cut, verbose=False) == {"no_images": 6}
    with pytest.raises(ValueError, match="cut-log.txt.*no convergence"):
        plot_convergence(cut, str(tmp_path / "no.png"))
    # Cut inside the table (a run still going, or killed): the rows so far.
    open(cut, "w").writelines(lines[:index["...optimization"] - 1] +
                              [lines[index["...optimization"] - 1][:30]])
    c = read_trainlog(cut, verbose=False)["convergence"]
    assert c["converged"] is None
    assert len(c["steps"]) == index["...optimization"] - index["Step"] - 3
    with pytest.raises(ValueError, match="run\\(s\\); multiple=7"):
        read_trainlog(trained[0] + "-log.txt", multiple=7)


# Plots --------------------------------------------------------------------

def test_plot_convergence_png_pdf_and_figure(tmp_path, trained, monkeypatch):
    log = trained[0] + "-log.txt"
    png = str(tmp_path / "convergence.png")
    assert plot_convergence(log, png) is None
    assert not_blank(png)
    monkeypatch.chdir(tmp_path)
    plot_convergence(AMP1_LOG)  # Amp's default: convergence.pdf, here
    assert open("convergence.pdf", "rb").read(5) == b"%PDF-"
    figure = plot_convergence(read_trainlog(log, verbose=False),
                              plotfile=None)
    assert len(figure.axes) == 2


def test_parity_and_error_returns_the_calculators_numbers(tmp_path, trained):
    label, images = trained
    calc = Amp.load(label + ".amp")
    png = str(tmp_path / "parity.png")
    # Fixed atoms compare unconstrained forces, as training does.
    images = images[:5] + [with_emt_results(images[5].copy())]
    images[5].set_constraint(FixAtoms(indices=[1, 2]))
    energy_data, force_data = plot_parity_and_error(
        calc, images, plotfile=png, returndata=True)
    assert not_blank(png)
    for key, image in zip(energy_data, images):
        atoms = image.copy()
        atoms.calc = calc
        reference, model, per_atom, error = energy_data[key]
        assert model == atoms.get_potential_energy()
        assert reference == image.get_potential_energy()
        assert per_atom == reference / len(image)
        assert error == abs(model - reference) / len(image)
        forces = atoms.get_forces(apply_constraint=False)
        np.testing.assert_array_equal(force_data[key][1], forces)
        np.testing.assert_array_equal(force_data[key][2], np.abs(
            forces - image.get_forces(apply_constraint=False)))
    assert np.all(force_data[key][1][1:3] != 0.0)
    with pytest.raises(FileExistsError, match="parity.png"):
        plot_parity_and_error(calc, images, plotfile=png)
    # A path, energies only, Amp's default file name <label>-plot.pdf.
    prefix = str(tmp_path / "energies")
    energy_only = plot_parity_and_error(label + ".amp", images,
                                        label=prefix, plot_forces=False,
                                        returndata=True)
    assert energy_only == energy_data
    assert open(prefix + "-plot.pdf", "rb").read(5) == b"%PDF-"


def test_parity_with_validation_by_set_and_element(tmp_path, trained,
                                                   monkeypatch):
    import amp.analysis

    label, images = trained
    calc = Amp.load(label + ".amp")
    held_out = slab_images(2, seed=5)
    figures = []
    monkeypatch.setattr(amp.analysis, "save_figure",
                        lambda figure, path: figures.append(figure))
    result = plot_parity_and_error(calc, images, validation=held_out,
                                   plotfile=str(tmp_path / "p.png"),
                                   returndata=True)
    energy_data, force_data, held_energy, held_forces = result
    assert len(energy_data) == 6 and len(held_energy) == 2
    for image, key in zip(held_out, held_energy):
        atoms = image.copy()
        atoms.calc = calc
        assert held_energy[key][1] == atoms.get_potential_energy()
        np.testing.assert_array_equal(held_forces[key][1],
                                      atoms.get_forces())
    (figure,) = figures
    energy_parity, energy_error, force_parity, force_error = figure.axes
    assert "eV/atom" in energy_error.get_xlabel() + energy_error.get_ylabel()
    labels = force_parity.get_legend_handles_labels()[1]
    assert [text.split(":")[0] for text in labels] == [
        "Cu training", "Pt training", "Cu validation", "Pt validation"]
    # The numbers beside each label: RMSE and MAE of that element's
    # components in that set.
    residual = np.concatenate([d[1] - d[0] for d in held_forces.values()])
    pt = residual[[0, 8]]  # atom 0 (Pt) of each 8-atom slab
    assert labels[3] == "Pt validation: RMSE %.3g, MAE %.3g eV/Å" % (
        np.sqrt(np.mean(pt ** 2)), np.mean(np.abs(pt)))
    colours = {line.get_label().split(":")[0]: line.get_color()
               for line in force_parity.get_lines()}
    assert colours["Cu training"] == colours["Pt training"] != \
        colours["Cu validation"]
    per_atom = np.array([d[3] for d in held_energy.values()])
    assert energy_parity.get_legend_handles_labels()[1][1] == \
        "validation: RMSE %.3g, MAE %.3g eV/atom" % (
            np.sqrt(np.mean(per_atom ** 2)), np.mean(per_atom))


def test_sensitivity_and_calc_rmse(tmp_path, trained):
    label, images = trained
    calc = Amp.load(label + ".amp")
    vector = calc.model.vector.copy()
    png = str(tmp_path / "sensitivity.png")
    result = plot_sensitivity(calc, images, plotfile=png)
    assert not_blank(png)
    np.testing.assert_array_equal(calc.model.vector, vector)  # restored
    rmse = calc_rmse(label + ".amp", images)
    assert result["loss"] == rmse["loss"][0]
    n = len(vector)
    assert result["losses"].shape == (n, 3)
    assert np.all(result["losses"][:, 1] == result["loss"])
    np.testing.assert_allclose(result["parameters"][:, 2] - vector, 1e-4,
                               rtol=1e-6)
    assert np.any(result["losses"][:, [0, 2]] != result["loss"])
    # Several files; a checkpoint-style name gives its step number.
    other = str(tmp_path / "100.amp")
    calc.save(other)
    both = calc_rmse([label + ".amp", other], images, force_coefficient=None)
    assert both["steps"] == [0, 100] and "force_rmse" not in both
    assert both["energy_rmse"][0] == both["energy_rmse"][1] == \
        rmse["energy_rmse"][0]


def test_fingerprint_plot(tmp_path, trained):
    label, images = trained
    calc = Amp.load(label + ".amp")
    plot = FingerprintPlot(calc)
    png = str(tmp_path / "fingerprints.png")
    plot(images, png, overlay=slab_images(2, seed=3))
    assert not_blank(png)
    assert sorted(plot.data) == ["Cu", "Pt"]
    assert plot.data["Cu"].shape == (7 * 6, 4)
    first = calc.descriptor.compute(images[0], False)
    np.testing.assert_array_equal(plot.data["Pt"][0], first.values["Pt"][0])
    np.testing.assert_array_equal(plot.data["Cu"][:7], first.values["Cu"])
    plot(images[:2], png, overlay=[images[0][0], images[0][3]],
         overwrite=True)
    assert not_blank(png)
    with pytest.raises(FileExistsError):
        plot(images, png, overwrite=False)


def test_fingerprint_plot_rewrites_its_file_as_amps(tmp_path, monkeypatch,
                                                   trained):
    # The calls of Amp 1.x's misc_test/fpplot_test.py: the default file
    # name three times, a whole image as the overlay, then two atoms.
    label, images = trained
    calc = Amp.load(label + ".amp")
    monkeypatch.chdir(tmp_path)
    fpplot = FingerprintPlot(calc)
    fpplot(images)
    first = os.path.getsize("fingerprints.pdf")
    fpplot(images, overlay=images[0])
    assert os.path.getsize("fingerprints.pdf") != first  # a second set drawn
    assert sorted(os.listdir(tmp_path)) == ["fingerprints.pdf"]
    fpplot(images, overlay=[images[1][2], images[0][-1]])
    assert os.path.getsize("fingerprints.pdf") > 0
    np.testing.assert_array_equal(
        fpplot.data["Cu"][:7], calc.descriptor.compute(images[0]).values["Cu"])


def test_node_plot_output_layer_gives_atomic_energies(tmp_path, trained):
    label, images = trained
    calc = Amp.load(label + ".amp")
    plot = NodePlot(calc)
    png = str(tmp_path / "nodes.png")
    plot.plot(images[:3], png)
    assert not_blank(png)
    layers = plot.data["Cu"]
    assert [layer.shape[1] for layer in layers] == [4, 3, 1]
    atoms = images[0].copy()
    atoms.calc = calc
    energies = atoms.get_potential_energies()
    scaling = calc.model.parameters.scalings["Cu"]
    np.testing.assert_allclose(
        scaling["slope"] * layers[-1][:7, 0] + scaling["intercept"],
        energies[1:], rtol=1e-12)


def test_without_matplotlib_plots_say_what_to_install(tmp_path, monkeypatch,
                                                      trained):
    label, images = trained
    calc = Amp.load(label + ".amp")
    for name in [n for n in sys.modules
                 if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    png = str(tmp_path / "x.png")
    for make in (lambda: plot_convergence(AMP1_LOG, png),
                 lambda: plot_parity_and_error(calc, images, plotfile=png),
                 lambda: plot_sensitivity(calc, images, plotfile=png),
                 lambda: FingerprintPlot(calc)(images, png),
                 lambda: NodePlot(calc).plot(images, png)):
        with pytest.raises(ImportError,
                           match=r"not installed .*: pip install matplotlib$"):
            make()
    assert not os.path.exists(png)
    # Reading a log needs no matplotlib.
    assert read_trainlog(AMP1_LOG, verbose=False) == AMP1_DATA["multiple=0"]


# amp-plotconvergence -------------------------------------------------------

def test_plotconvergence_command(tmp_path, capsys):
    png = str(tmp_path / "c.png")
    assert plotconvergence_main([AMP1_LOG, "--plotfile", png]) == 0
    assert not_blank(png)
    assert png in capsys.readouterr().out
    # Amp 1.x's form: the plot file as the second argument.
    positional = str(tmp_path / "positional.png")
    assert plotconvergence_main([AMP1_LOG, positional]) == 0
    assert not_blank(positional)
    with pytest.raises(SystemExit):
        plotconvergence_main([AMP1_LOG, positional, "--plotfile", png])
    missing = str(tmp_path / "gone-log.txt")
    assert plotconvergence_main([missing]) == 1
    assert "gone-log.txt" in capsys.readouterr().err
    # The wrapper in tools/, in a fresh interpreter: exit 0, file written,
    # and pyplot (the user's backend state) never imported.
    pdf = str(tmp_path / "c.pdf")
    script = ("import runpy, sys; sys.argv = %r; "
              "code = 0\ntry:\n runpy.run_path(%r, run_name='__main__')\n"
              "except SystemExit as e:\n code = e.code\n"
              "print('pyplot' if 'matplotlib.pyplot' in sys.modules "
              "else 'no pyplot', code)"
              % (["amp-plotconvergence", AMP1_LOG, "--plotfile", pdf],
                 os.path.join(ROOT, "tools", "amp-plotconvergence")))
    done = subprocess.run([sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("no pyplot 0")
    assert open(pdf, "rb").read(5) == b"%PDF-"
