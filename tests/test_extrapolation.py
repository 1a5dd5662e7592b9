"""Extrapolation flagged at every calculation: exact counts and scaled
values on constructed ranges, one warning per calculator, the strict mode,
per-atom flags, and ASE's property export unaffected."""
import warnings

import numpy as np
import pytest
from ase.build import bulk

from amp import Amp, ExtrapolationError, ExtrapolationWarning
from amp.descriptor.fingerprints import ImageFingerprints
from amp.descriptor.gaussian import Gaussian
from amp.model.neuralnetwork import NeuralNetwork
from amp.potential import FingerprintRange
from amp.utilities import hash_images
from conftest import with_emt_results


def test_counts_and_scaled_values_on_a_constructed_range():
    # Cu: two features, range [0, 2] and [1, 1] (too narrow: unscaled);
    # Pt: one feature, range [-1, 3].
    fprange = {"Cu": [[0.0, 2.0], [1.0, 1.0]], "Pt": [[-1.0, 3.0]]}
    values = {"Cu": np.array([[1.0, 1.0],     # inside: 0, 1 + 0
                              [2.09, 1.0],    # 1.09: within tolerance
                              [2.3, 1.0],     # 1.3: out
                              [0.5, 1.05]]),  # 1 + 0.05: inside
              "Pt": np.array([[3.0], [-3.0]])}  # 1.0; 2.0: out
    symbols = ["Cu", "Pt", "Cu", "Cu", "Cu", "Pt"]
    fingerprints = ImageFingerprints(symbols, values)
    found = FingerprintRange(fprange, tolerance=0.1).check(
        fingerprints, per_atom=True)
    expected = np.array([1.0, 1.0, 1.09, 1.3, 1.05, 2.0])
    np.testing.assert_allclose(found["scaled"], expected, rtol=1e-12)
    assert found["atoms"].tolist() == [False, False, False, True, False,
                                       True]
    assert found["count"] == 2
    assert found["worst"] == pytest.approx(2.0, rel=1e-12)
    assert (found["atom"], found["element"], found["feature"]) == \
        (5, "Pt", 0)
    # A tighter tolerance counts the atom at 1.09 and the narrow feature.
    tight = FingerprintRange(fprange, tolerance=0.01).check(fingerprints)
    assert tight["count"] == 4 and "scaled" not in tight
    # An element the range does not know extrapolates.
    strange = FingerprintRange({"Cu": fprange["Cu"]}).check(fingerprints)
    assert strange["count"] == 3 and strange["worst"] == np.inf
    assert strange["element"] == "Pt"
    with pytest.raises(ValueError, match="tolerance"):
        FingerprintRange(fprange, tolerance=-1)


def cell(a=3.6, rattle=0.05, seed=0):
    atoms = bulk("Cu", "fcc", a=a, cubic=True) * (2, 1, 1)
    atoms.rattle(rattle, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A network whose fingerprint range is that of a few cells near
    a = 3.6 A (random weights: the check does not depend on them)."""
    path = str(tmp_path_factory.mktemp("model") / "cu.amp")
    calc = Amp(Gaussian(cutoff=4.5), NeuralNetwork((3,), randomseed=1),
               cores=1, logging=False)
    images = hash_images([with_emt_results(cell(seed=k)) for k in range(4)])
    calc.descriptor.calculate_fingerprints(images)
    calc.model.fit(images, calc.descriptor, only_setup=True)
    calc.save(path)
    return path, list(images.values())


def expected_count(path, atoms, tolerance):
    """Atoms outside the saved range by more than ``tolerance``, from the
    fingerprints and the range directly."""
    calc = Amp.load(path)
    values = calc.descriptor.compute(atoms, False).values["Cu"]
    low_high = np.array(calc.model.parameters.fprange["Cu"])
    half = (low_high[:, 1] - low_high[:, 0]) / 2
    scaled = np.abs(values - low_high.mean(axis=1)) / half
    return int(np.sum(scaled.max(axis=1) > 1 + tolerance)), scaled.max()


def test_every_calculation_reports_and_warns_once(model_file):
    path, images = model_file
    calc = Amp.load(path, extrapolation_per_atom=True)
    inside = images[0].copy()
    inside.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning inside the range
        inside.get_potential_energy()
    found = calc.results["extrapolation"]
    assert found["count"] == 0 and found["worst"] <= 1.0 + 1e-12
    assert found["atoms"].shape == (8,) and not found["atoms"].any()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for a in (3.3, 3.2, 3.1):  # compressed: fingerprints grow
            squeezed = cell(a=a)
            squeezed.calc = calc
            squeezed.get_forces()
            count, worst = expected_count(path, squeezed, 0.1)
            assert count > 0
            assert calc.results["extrapolation"]["count"] == count
            assert calc.results["extrapolation"]["worst"] == \
                pytest.approx(worst, rel=1e-12)
            # ASE's own property export leaves the extra key out.
            assert "extrapolation" not in squeezed.get_properties(
                ["energy", "forces", "stress"])
    ours = [w for w in caught if issubclass(w.category, ExtrapolationWarning)]
    assert len(ours) == 1
    assert "of 8 atoms have fingerprints outside the model's training " \
        "range" in str(ours[0].message)
    # Another calculator warns again (once).
    with pytest.warns(ExtrapolationWarning):
        other = cell(a=3.2)
        other.calc = Amp.load(path)
        other.get_potential_energy()


def test_strict_mode_raises_and_ignore_stays_quiet(model_file):
    path, images = model_file
    strict = Amp.load(path, on_extrapolation="raise")
    fine = images[1].copy()
    fine.calc = strict
    fine.get_forces()
    squeezed = cell(a=3.2)
    squeezed.calc = strict
    with pytest.raises(ExtrapolationError, match="on_extrapolation='raise'"):
        squeezed.get_forces()
    assert strict.results == {}
    quiet = Amp.load(path, on_extrapolation="ignore",
                     extrapolation_tolerance=0.5)
    squeezed.calc = quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        squeezed.get_forces()
    count, _ = expected_count(path, squeezed, 0.5)
    assert quiet.results["extrapolation"]["count"] == count
    assert quiet.results["extrapolation"]["tolerance"] == 0.5
    with pytest.raises(ValueError, match="on_extrapolation"):
        Amp.load(path, on_extrapolation="sometimes")
