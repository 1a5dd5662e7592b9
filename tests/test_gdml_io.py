"""amp.gdml.io: sgdml file formats, md5, safe loading, validation."""
import hashlib
import os
import pickle

import numpy as np
import pytest

from amp.gdml import io


def _ref(gdml_reference, name):
    return os.path.join(gdml_reference, name)


def test_dataset_md5_matches_stored(gdml_reference):
    ds = io.load_dataset(_ref(gdml_reference, "benzene_dataset.npz"))
    assert io.dataset_md5(ds) == b"0bc230aa3bd6197079a27f6a3a52073d"
    assert bytes(ds["md5"]) == io.dataset_md5(ds)
    # independent recipe: outer md5 over binary digests of z, R, E, F
    outer = hashlib.md5()
    for key in "zREF":
        outer.update(hashlib.md5(ds[key].tobytes()).digest())
    assert outer.hexdigest().encode() == io.dataset_md5(ds)


def test_load_model_object_arrays(gdml_reference):
    model = io.load_model(_ref(gdml_reference, "benzene_sgdml_model.npz"))
    ref = np.load(_ref(gdml_reference, "benzene_sgdml_model.npz"),
                  allow_pickle=True)
    assert set(model) == set(ref.files)
    for key in ref.files:
        if ref[key].dtype == object:
            assert model[key].dtype == object
        else:
            assert model[key].dtype == ref[key].dtype
            np.testing.assert_array_equal(model[key], ref[key])
    f_err = model["f_err"].item()
    assert set(f_err) == {"mae", "rmse"} and np.isnan(f_err["mae"])
    assert model["md5_test"].item() is None


def test_model_round_trip_is_sgdml_compatible(gdml_reference, tmp_path):
    model = io.load_model(_ref(gdml_reference, "benzene_gdml_model.npz"))
    out = tmp_path / "m.npz"
    io.save_model(out, model)
    again = np.load(out, allow_pickle=True)  # as sgdml reads it
    ref = np.load(_ref(gdml_reference, "benzene_gdml_model.npz"),
                  allow_pickle=True)
    assert set(again.files) == set(ref.files)
    for key in ref.files:
        assert again[key].dtype.kind == ref[key].dtype.kind, key
        assert again[key].shape == ref[key].shape, key
        if ref[key].dtype != object:
            np.testing.assert_array_equal(again[key], ref[key])
    assert again["md5_train"].dtype.kind == "S"
    assert again["dataset_name"].dtype.kind == "U"
    assert again["f_err"].item().keys() == {"mae", "rmse"}
    loaded = io.load_model(out)
    np.testing.assert_array_equal(loaded["alphas_F"], model["alphas_F"])


def test_dataset_and_task_round_trip(gdml_reference, tmp_path):
    ds = io.load_dataset(_ref(gdml_reference, "benzene_dataset.npz"))
    io.save_dataset(tmp_path / "d.npz", ds)
    back = io.load_dataset(tmp_path / "d.npz")
    assert bytes(back["md5"]) == bytes(ds["md5"])
    for key in ("name", "theory", "r_unit", "e_unit", "md5"):
        assert back[key].dtype.kind == "S", key
    for key in ("type", "code_version"):
        assert back[key].dtype.kind == "U", key
    np.testing.assert_allclose(back["E_var"], ds["E_var"], rtol=1e-12)
    task = io.load_task(_ref(gdml_reference, "benzene_sgdml_task.npz"))
    io.save_task(tmp_path / "t.npz", task)
    tback = io.load_task(tmp_path / "t.npz")
    for key in task:
        np.testing.assert_array_equal(tback[key], task[key])
        assert tback[key].dtype == task[key].dtype, key


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, ("touch " + self.path,))


def test_crafted_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty((), dtype=object)
    arr[()] = {"mae": _Evil(str(marker))}
    evil = tmp_path / "evil.npz"
    np.savez(evil, type=np.array("m"), f_err=arr)
    assert b"system" in pickle.dumps(arr)
    with pytest.raises(io.UnsafeFileError, match="system"):
        io.load_npz(evil)
    with pytest.raises(ValueError):
        io.load_model(evil)
    assert not marker.exists()


def test_crafted_builtins_eval_refused(tmp_path):
    payload = (b"\x80\x04cbuiltins\neval\n(V__import__('os').getcwd()\ntR.")
    arr_path = tmp_path / "x.npz"
    import zipfile
    header = {"descr": "|O", "fortran_order": False, "shape": ()}
    import io as pyio
    buf = pyio.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zipfile.ZipFile(arr_path, "w") as zf:
        zf.writestr("e_err.npy", buf.getvalue() + payload)
    with pytest.raises(io.UnsafeFileError, match="builtins.eval"):
        io.load_npz(arr_path)


def test_plain_object_arrays_allowed(tmp_path):
    arr = np.empty((), dtype=object)
    arr[()] = {"mae": np.float64(0.5), "rmse": 1.5, "list": [1, "a", b"b"],
               "arr": np.arange(3)}
    np.savez(tmp_path / "ok.npz", e=arr)
    got = io.load_npz(tmp_path / "ok.npz")["e"].item()
    assert got["mae"] == 0.5 and got["list"] == [1, "a", b"b"]
    np.testing.assert_array_equal(got["arr"], np.arange(3))


def _small_dataset():
    rng = np.random.default_rng(0)
    return {"R": rng.normal(size=(5, 3, 3)), "z": np.array([8, 1, 1]),
            "F": rng.normal(size=(5, 3, 3)), "E": rng.normal(size=5)}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("F"), "missing the key"),
    (lambda d: d.pop("R"), "missing the key"),
    (lambda d: d.__setitem__("F", d["F"][:4]), "'F' has shape"),
    (lambda d: d.__setitem__("E", d["E"][:3]), "'E' has shape"),
    (lambda d: d.__setitem__("z", d["z"][:2]), "'R' must have shape"),
    (lambda d: d["R"].__setitem__((1, 1, 1), np.nan), "NaN"),
    (lambda d: d["E"].__setitem__(2, np.nan), "NaN"),
    (lambda d: d.__setitem__("lattice", np.ones((3, 3))), "lattice"),
])
def test_validate_dataset_errors(mutate, message):
    ds = _small_dataset()
    mutate(ds)
    with pytest.raises(ValueError, match=message):
        io.validate_dataset(ds)


def test_wrong_file_type(gdml_reference):
    with pytest.raises(ValueError, match="task file, expected a model"):
        io.load_model(_ref(gdml_reference, "benzene_gdml_task.npz"))


def test_dataset_from_atoms():
    from ase import Atoms
    from ase.calculators.emt import EMT
    images = []
    for shift in (0.0, 0.05, 0.1):
        a = Atoms("CuCu", positions=[(0, 0, 0), (2.5 + shift, 0, 0)])
        a.calc = EMT()
        a.get_potential_energy()
        images.append(a)
    ds = io.dataset_from_atoms(images, name="cu2")
    io.validate_dataset(ds)
    assert ds["R"].shape == (3, 2, 3) and ds["name"].dtype.kind == "S"
    np.testing.assert_allclose(ds["F"][1], images[1].get_forces())
    assert bytes(ds["md5"]) == io.dataset_md5(ds)
