"""amp-train and amp-eval (amp.commands): the TOML configuration, the
validation split, the error tables against numbers computed by hand, the
predictions file, and both commands end to end (in process, as console
scripts and as python -m amp)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from amp import Amp
from amp.commands import config as cfg
from amp.commands import main as amp_main
from amp.commands.data import (DataFileError, read_images,
                               split_validation)
from amp.commands.evaluate import error_table, predict
from amp.commands.evaluate import main as eval_main
from amp.commands.train import build_calculator
from amp.commands.train import main as train_main
from conftest import cu_bulk

BIN = os.path.dirname(sys.executable)


def frames(count=10, seed=0):
    """Rattled Cu7Pt cells with EMT energies, forces and stresses."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        atoms = cu_bulk(3.6, repeat=(2, 1, 1), cubic=True, pt=[0])
        atoms.rattle(0.05, rng=rng)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(),
            forces=atoms.get_forces(), stress=atoms.get_stress())
        images.append(atoms)
    return images


CONFIG = """
seed = 3
validation = 2
[NeuralNetwork]
hiddenlayers = [4]
[LossFunction]
convergence = {energy_rmse = 0.02, force_rmse = 0.4}
maxiter = 3000
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One amp-train run on data.xyz (in process); its folder and output."""
    folder = tmp_path_factory.mktemp("train")
    write(str(folder / "data.xyz"), frames())
    (folder / "config.toml").write_text(CONFIG)
    old = os.getcwd()
    os.chdir(folder)
    try:
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = train_main(["config.toml", "--data", "data.xyz",
                               "--label", "run/calc"])
    finally:
        os.chdir(old)
    return folder, code, out.getvalue(), err.getvalue()


# The configuration ---------------------------------------------------------

def test_defaults_without_a_file():
    config = cfg.read_config(None)
    assert config["validation"] == 0.1 and config["seed"] == 0
    assert config["plots"] is True and config["data"] is None
    assert all(config[table] == {} for table in cfg.TABLES)


def test_every_table_holds_its_class_keywords():
    assert "hiddenlayers" in cfg.table_keywords("NeuralNetwork")
    assert "lossfunction" not in cfg.table_keywords("NeuralNetwork")
    assert "descriptor" not in cfg.table_keywords("Amp")
    assert set(cfg.table_keywords("Amp")) >= {"label", "cores", "dblabel"}
    assert set(cfg.table_keywords("train")) >= {"overwrite", "memory_limit"}
    assert "optimizer" in cfg.table_keywords("Regressor")
    assert "convergence" in cfg.table_keywords("LossFunction")
    assert "cutoff" in cfg.table_keywords("Gaussian")


@pytest.mark.parametrize("text, message", [
    ("[NeuralNetwork]\nhiddenlayer = [5]\n",
     r"'hiddenlayer' is not a keyword of \[NeuralNetwork\]; its keywords "
     r"are hiddenlayers, activation"),
    ("[Network]\nx = 1\n", r"unknown key 'Network'; .*\[NeuralNetwork\]"),
    ("NeuralNetwork = 3\n", r"\[NeuralNetwork\] must be a table"),
    ("seed = \n", r"is not valid TOML"),
])
def test_a_bad_file_names_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(cfg.ConfigError, match=message) as caught:
        cfg.read_config(path)
    if "TOML" in message:
        assert str(path) in str(caught.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(cfg.ConfigError, match="nothere.toml does not exist"):
        cfg.read_config(tmp_path / "nothere.toml")


def test_overrides_are_toml_values_or_text():
    assert cfg.parse_override("NeuralNetwork.hiddenlayers=[10, 10]") == \
        ("NeuralNetwork", "hiddenlayers", [10, 10])
    assert cfg.parse_override("LossFunction.convergence={energy_rmse=0.01}"
                              ) == ("LossFunction", "convergence",
                                    {"energy_rmse": 0.01})
    assert cfg.parse_override("Amp.label=run1") == ("Amp", "label", "run1")
    assert cfg.parse_override("seed=7") == (None, "seed", 7)
    assert cfg.parse_override("train.overwrite=true") == \
        ("train", "overwrite", True)
    with pytest.raises(cfg.ConfigError, match="not TABLE.KEY=VALUE"):
        cfg.parse_override("NeuralNetwork.hiddenlayers")
    with pytest.raises(cfg.ConfigError, match="unknown table 'Net'"):
        cfg.parse_override("Net.x=1")
    config = cfg.apply_overrides(cfg.read_config(None),
                                 ["NeuralNetwork.activation='sigmoid'"])
    assert config["NeuralNetwork"] == {"activation": "sigmoid"}
    with pytest.raises(cfg.ConfigError, match="not a keyword of"):
        cfg.apply_overrides(config, ["Gaussian.cutof=5"])


def test_the_calculator_is_the_configuration_written_down():
    config = cfg.apply_overrides(cfg.read_config(None), [
        "Amp.label=x", "Gaussian.cutoff=5.0",
        "NeuralNetwork.hiddenlayers=[3, 2]",
        "LossFunction.convergence={energy_rmse=0.01}",
        "LossFunction.force_coefficient=0.1", "Regressor.optimizer='L-BFGS-B'",
        "seed=11"])
    calc = build_calculator(config)
    assert calc.label == "x"
    assert calc.descriptor.cutoff.Rc == 5.0
    assert tuple(calc.model.parameters.hiddenlayers) == (3, 2)
    assert calc.model.randomseed == 11      # the seed seeds the weights
    loss = calc.model.lossfunction.parameters
    assert loss.convergence["energy_rmse"] == 0.01
    assert loss.force_coefficient == 0.1
    assert calc.model.regressor.name == "L-BFGS-B"
    config["NeuralNetwork"]["randomseed"] = 5
    assert build_calculator(config).model.randomseed == 5
    config["NeuralNetwork"]["activation"] = "relu6"
    with pytest.raises(cfg.ConfigError,
                       match=r"\[NeuralNetwork\]: unknown activation"):
        build_calculator(config)


# Data and the split --------------------------------------------------------

def test_split_is_seeded_disjoint_and_complete(tmp_path):
    images = frames(10)
    train, valid = split_validation(images, 0.3, seed=4)
    assert (len(train), len(valid)) == (7, 3)
    again = split_validation(images, 0.3, seed=4)
    assert [id(a) for a in again[1]] == [id(a) for a in valid]
    assert {id(a) for a in train} | {id(a) for a in valid} == \
        {id(a) for a in images}
    assert [id(a) for a in split_validation(images, 0.3, seed=5)[1]] != \
        [id(a) for a in valid]
    assert [len(p) for p in split_validation(images, 4)] == [6, 4]
    assert [len(p) for p in split_validation(images, 0)] == [10, 0]
    assert [len(p) for p in split_validation(images, 0.01)] == [9, 1]
    write(str(tmp_path / "v.traj"), images[:2])
    train, valid = split_validation(images, str(tmp_path / "v.traj"))
    assert len(train) == 10 and len(valid) == 2
    with pytest.raises(ValueError, match="leave none to train on"):
        split_validation(images, 10)


@pytest.mark.parametrize("name", ["d.xyz", "d.traj", "d.db"])
def test_any_file_ase_reads(tmp_path, name):
    images = frames(3)
    path = str(tmp_path / name)
    write(path, images)
    back = read_images(path)
    assert len(back) == 3
    for a, b in zip(images, back):
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-7)
        assert b.get_potential_energy() == pytest.approx(
            a.get_potential_energy(), abs=1e-7)
    assert len(read_images(path, "1:")) == 2


def test_bad_data_files_are_named(tmp_path):
    with pytest.raises(DataFileError, match="data file .*nope.xyz does not "
                       "exist"):
        read_images(tmp_path / "nope.xyz")
    (tmp_path / "junk.xyz").write_bytes(b"\x94\x00 not xyz\n")
    with pytest.raises(DataFileError, match="cannot read .*junk.xyz"):
        read_images(tmp_path / "junk.xyz")
    with pytest.raises(DataFileError, match="is not a regular file"):
        read_images(tmp_path)


# Errors and predictions ----------------------------------------------------

def test_error_table_against_numbers_by_hand(trained):
    folder = trained[0]
    calc = Amp.load(str(folder / "run" / "calc.amp"))
    images = frames(4, seed=9)
    table = error_table(images, predict(calc, images, False))
    de, df, dfpt, ds = [], [], [], []
    for atoms in images:
        copy = atoms.copy()
        copy.calc = calc
        de.append((copy.get_potential_energy() - atoms.get_potential_energy())
                  / len(atoms))
        deviation = copy.get_forces() - atoms.get_forces()
        df.append(deviation.ravel())
        dfpt.append(deviation[0])                  # atom 0 is the Pt
        ds.append(copy.get_stress() - atoms.get_stress())
    de, df, ds = np.array(de), np.concatenate(df), np.concatenate(ds)
    dfpt = np.concatenate(dfpt)
    for row, values in (("energy", de), ("forces", df), ("forces Pt", dfpt),
                        ("stress", ds)):
        assert table[row]["count"] == values.size
        assert table[row]["mae"] == pytest.approx(np.mean(np.abs(values)),
                                                  rel=1e-10)
        assert table[row]["rmse"] == pytest.approx(
            np.sqrt(np.mean(values ** 2)), rel=1e-10)
    assert table["energy"]["unit"] == "eV/atom"
    assert table["forces Cu"]["count"] == 4 * 7 * 3
    # the rows of the elements make up the whole
    whole = (table["forces Cu"]["rmse"] ** 2 * table["forces Cu"]["count"]
             + table["forces Pt"]["rmse"] ** 2 * table["forces Pt"]["count"])
    assert whole / table["forces"]["count"] == pytest.approx(
        table["forces"]["rmse"] ** 2, rel=1e-12)
    assert error_table([a.copy() for a in images],
                       predict(calc, images, False)) == {}


# End to end ------------------------------------------------------------------

def test_amp_train_writes_the_model_log_and_plots(trained):
    folder, code, out, err = trained
    assert code == 0, err
    for name in ("calc.amp", "calc-log.txt", "calc-convergence.png",
                 "calc-parity.png"):
        assert (folder / "run" / name).stat().st_size > 0, name
    assert out.startswith("data.xyz: 10 frames; training on 8, validating "
                          "on 2 (seed 3)")
    assert "Errors on the 8 train frames:" in out
    assert "Errors on the 2 validation frames:" in out
    assert "forces Pt" in out and "stress" in out
    assert "wrote run/calc.amp, run/calc-log.txt" in out
    assert err == ""                           # nothing to warn about
    log = (folder / "run" / "calc-log.txt").read_text()
    assert "...optimization successful." in log
    assert "amp-train: errors on the 2 validation frames:" in log
    from amp.analysis import read_trainlog
    data = read_trainlog(str(folder / "run" / "calc-log.txt"),
                         verbose=False)
    assert data["convergence"]["converged"] is True
    # the held-out frames went to Amp.train, which scored them every step
    assert len(data["validation"]["es"]) == len(
        data["convergence"]["steps"])
    metadata = Amp.load(str(folder / "run" / "calc.amp")).metadata
    assert metadata["validation"]["n_images"] == 2


def test_the_same_seed_gives_the_same_model(trained, tmp_path):
    folder = trained[0]
    code = train_main(["--data", str(folder / "data.xyz"), "--label",
                       str(tmp_path / "again"), "--no-plots", "-s",
                       "NeuralNetwork.hiddenlayers=[4]", "-s",
                       "LossFunction.convergence={energy_rmse=0.02,"
                       "force_rmse=0.4}", "-s", "LossFunction.maxiter=3000",
                       "--seed", "3", "--validation", "2"])
    assert code == 0
    first = Amp.load(str(folder / "run" / "calc.amp")).model.vector
    second = Amp.load(str(tmp_path / "again.amp")).model.vector
    np.testing.assert_array_equal(first, second)
    assert not os.path.exists(str(tmp_path / "again-parity.png"))


def test_amp_train_not_converged_exits_1(tmp_path, capsys):
    write(str(tmp_path / "d.traj"), frames(4))
    code = train_main(["--data", str(tmp_path / "d.traj"), "--label",
                       str(tmp_path / "short"), "--no-plots", "--validation",
                       "0", "-s", "LossFunction.maxiter=2", "-s",
                       "NeuralNetwork.hiddenlayers=[2]"])
    out = capsys.readouterr().out
    assert code == 1
    assert "not converged: training did not converge" in out
    assert os.path.exists(str(tmp_path / "short-untrained-parameters.amp"))
    assert not os.path.exists(str(tmp_path / "short.amp"))


@pytest.mark.parametrize("argv, message", [
    (["--data", "nothere.xyz"], "amp-train: error: data file nothere.xyz "
     "does not exist"),
    ([], "amp-train: error: no data file: give --data FILE"),
    (["-s", "NeuralNetwork.hiddenlayer=[3]", "--data", "x.xyz"],
     "amp-train: error: the command line: 'hiddenlayer' is not a keyword of "
     "[NeuralNetwork]"),
    (["--data", "d.xyz", "--cores", "0"], "amp-train: error: [Amp]: "
     "cores=0: give a positive number of workers"),
])
def test_amp_train_refuses_bad_input_in_one_line(tmp_path, monkeypatch,
                                                 capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    write("d.xyz", frames(3))
    assert train_main(argv) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(message)
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert sorted(os.listdir(tmp_path)) == ["d.xyz"]   # nothing written


def test_amp_eval_prints_errors_and_writes_predictions(trained, tmp_path,
                                                       capsys):
    folder = trained[0]
    model = str(folder / "run" / "calc.amp")
    data = str(tmp_path / "test.xyz")
    images = frames(3, seed=21)
    write(data, images)
    assert eval_main([model, data]) == 0
    out = capsys.readouterr().out
    calc = Amp.load(model)
    images = read(data, ":")     # the frames as amp-eval read them
    table = error_table(images, predict(calc, images, False))
    assert "%12.4e %12.4e" % (table["forces Pt"]["mae"],
                              table["forces Pt"]["rmse"]) in out
    assert out.splitlines()[0] == "%s on %s: 3 frames, 24 atoms" % (
        model, data)
    output = str(tmp_path / "test-predictions.xyz")
    assert out.rstrip().endswith("predictions written to %s" % output)
    back = read(output, ":")
    for atoms, original in zip(back, images):
        copy = original.copy()
        copy.calc = calc
        assert atoms.info["amp_energy"] == pytest.approx(
            copy.get_potential_energy(), rel=1e-12)
        # per-atom columns have ASE's 8 decimals
        np.testing.assert_allclose(atoms.arrays["amp_forces"],
                                   copy.get_forces(), atol=1e-8)
        np.testing.assert_allclose(atoms.info["amp_stress"],
                                   copy.get_stress(), atol=1e-12)
        assert atoms.arrays["amp_energies"].sum() == pytest.approx(
            atoms.info["amp_energy"], abs=1e-7)
        # the references are kept beside the predictions
        assert atoms.get_potential_energy() == pytest.approx(
            original.get_potential_energy(), rel=1e-12)
    # an existing output is kept unless asked
    assert eval_main([model, data]) == 1
    err = capsys.readouterr().err
    assert "test-predictions.xyz exists; pass --overwrite" in err
    assert eval_main([model, data, "--overwrite"]) == 0


def test_amp_eval_names_what_it_cannot_use(trained, tmp_path, capsys):
    model = str(trained[0] / "run" / "calc.amp")
    assert eval_main([str(tmp_path / "no.amp"), model, "--no-output"]) == 1
    assert "no.amp" in capsys.readouterr().err
    other = frames(1)[0]
    other.symbols[1] = "Au"
    write(str(tmp_path / "au.xyz"), other)
    assert eval_main([model, str(tmp_path / "au.xyz"), "--no-output"]) == 1
    err = capsys.readouterr().err
    assert "this model was trained for Cu, Pt only; the image has Au" in err


def test_python_m_amp_and_the_console_scripts(trained, tmp_path):
    folder = trained[0]
    model = str(folder / "run" / "calc.amp")
    listing = subprocess.run([sys.executable, "-m", "amp", "--help"],
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0
    for command in ("train", "eval", "compress", "plotconvergence", "gdml"):
        assert "\n  %s " % command in listing.stdout
    result = subprocess.run(
        [os.path.join(BIN, "amp-eval"), model, str(folder / "data.xyz"),
         "--no-output"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "forces Pt" in result.stdout and result.stderr == ""
    result = subprocess.run(
        [sys.executable, "-m", "amp", "train", "--help"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "TABLE.KEY=VALUE" in result.stdout
    assert amp_main(["nonsense"]) == 2


def test_amp_eval_says_which_frames_extrapolate(trained, tmp_path, capsys):
    """Frames far outside the training data (cells compressed by 10 %) are
    counted as extrapolating, and each frame of the predictions file
    carries its count."""
    model = str(trained[0] / "run" / "calc.amp")
    inside, outside = frames(2, seed=30), frames(2, seed=31)
    for atoms in outside:
        atoms.set_cell(atoms.cell * 0.9, scale_atoms=True)
    data = str(tmp_path / "mixed.xyz")
    write(data, inside + outside)
    assert eval_main([model, data, "-o", str(tmp_path / "p.xyz")]) == 0
    out = capsys.readouterr().out
    calc = Amp.load(model)
    predictions = predict(calc, read(data, ":"), False)
    counts = [p["extrapolation"]["count"] for p in predictions]
    assert counts[0] == counts[1] == 0 and counts[2] > 0 and counts[3] > 0
    assert "extrapolating: 2 of 4 frames have atoms outside the model's " \
        "training range (%d atoms;" % sum(counts) in out
    back = read(str(tmp_path / "p.xyz"), ":")
    assert [a.info["amp_extrapolating_atoms"] for a in back] == counts
