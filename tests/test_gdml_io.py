"""amp.gdml.io: sgdml file formats, md5, safe loading, validation."""
import hashlib
import os
import pickle

import numpy as np
import pytest

from amp.gdml import io
from conftest import molecule_images, with_emt_results


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


_FILES = {"d": "benzene_dataset.npz", "t": "benzene_sgdml_task.npz",
          "m": "benzene_sgdml_model.npz"}
_NAMES = {"d": "dataset", "t": "task", "m": "model"}


@pytest.mark.parametrize("kind", ["d", "t", "m"])
def test_load_kind_is_the_one_reader_of_each_kind(gdml_reference, kind):
    path = _ref(gdml_reference, _FILES[kind])
    data = io.load_kind(path, kind)
    wrapper = {"d": io.load_dataset, "t": io.load_task,
               "m": io.load_model}[kind]
    any_kind, any_data = io.load_any(path)
    with open(path, "rb") as handle:
        from_handle = io.load_kind(handle, kind)
    assert any_kind == kind
    for other in (wrapper(path), any_data, from_handle):
        assert set(other) == set(data)
        for key in data:
            if data[key].dtype != object:
                np.testing.assert_array_equal(other[key], data[key])
    for wrong in set(_NAMES) - {kind}:
        with pytest.raises(ValueError, match="is an sgdml {} file, expected "
                           "a {} file".format(_NAMES[kind], _NAMES[wrong])):
            io.load_kind(path, wrong)
    with pytest.raises(ValueError, match="kind must be one of 'd', 't', 'm'"):
        io.load_kind(path, "model")


def _object_array(value):
    arr = np.empty((), dtype=object)
    arr[()] = value
    return arr


@pytest.mark.parametrize("value, expected", [
    (np.array(20), 20),
    (np.array([1.5]), 1.5),
    (np.array([[True]]), True),
    (np.float32(0.25), 0.25),
    (np.array(b"abc"), b"abc"),
    (np.array("t"), "t"),
    (_object_array({"mae": 0.5}), {"mae": 0.5}),
    (_object_array(None), None),
    ({"rmse": 1.0}, {"rmse": 1.0}),
    (None, None),
])
def test_scalar_is_the_python_value_of_one_element(value, expected):
    got = io.scalar(value)
    assert got == expected and type(got) is type(expected)


def test_scalar_leaves_other_arrays_as_arrays(gdml_reference):
    np.testing.assert_array_equal(io.scalar([1, 2, 3]), [1, 2, 3])
    assert io.scalar(np.zeros((0,))).shape == (0,)
    model = io.load_model(_ref(gdml_reference, "benzene_sgdml_model.npz"))
    assert io.scalar(model["sig"]) == 7
    assert io.scalar(model["md5_test"]) is None
    f_err = io.scalar(model["f_err"])
    assert set(f_err) == {"mae", "rmse"} and np.isnan(f_err["rmse"])


@pytest.mark.parametrize("data, mode", [
    ({"use_E": np.array(True), "use_E_cstr": np.array(False)}, "constant"),
    ({"use_E": np.array(True), "use_E_cstr": np.array(True)}, "constraints"),
    ({"use_E": np.array(False), "use_E_cstr": np.array(True)}, "none"),
    ({"use_E": np.array(True), "alphas_E": np.zeros(3)}, "constraints"),
    ({"use_E": np.array(False), "alphas_E": np.zeros(3)}, "none"),
    ({"use_E": np.array(True)}, "constant"),
    ({}, "constant"),   # sgdml always writes use_E; read as using energies
])
def test_energy_mode(data, mode):
    assert io.energy_mode(data) == mode
    assert mode in io.ENERGY_MODES


def _model_in_mode(model, mode):
    model = dict(model)
    if mode == "none":
        model["use_E"] = np.array(False)
        model.pop("e_err")
    elif mode == "constraints":
        model["alphas_E"] = np.linspace(-1.0, 1.0, len(model["idxs_train"]))
    return model


@pytest.mark.parametrize("mode, line", [
    ("none", "none (forces only)"),
    ("constant", "global integration constant"),
    ("constraints", "pointwise energy constraints"),
])
def test_show_and_resume_read_the_energy_mode_alike(gdml_reference, mode,
                                                     line):
    from amp.gdml.show import print_model, print_task
    from amp.gdml.task import create_task_from_model
    ds = io.load_dataset(_ref(gdml_reference, "benzene_dataset.npz"))
    model = _model_in_mode(io.load_model(
        _ref(gdml_reference, "benzene_sgdml_model.npz")), mode)
    assert io.energy_mode(model) == mode
    task = create_task_from_model(model, ds)
    assert io.energy_mode(task) == mode
    assert task["use_E"] == (mode != "none")
    assert task["use_E_cstr"] == (mode == "constraints")
    assert ("E_train" in task) == (mode != "none")
    for show, data in ((print_model, model), (print_task, task)):
        lines = []
        show(data, write=lines.append)
        offset = [text for text in lines if "Energy offset:" in text]
        assert offset == ["  {:<16} {}".format("Energy offset:", line)]


def test_dataset_from_atoms():
    from ase import Atoms
    images = [with_emt_results(Atoms("CuCu", positions=[
        (0, 0, 0), (2.5 + shift, 0, 0)])) for shift in (0.0, 0.05, 0.1)]
    ds = io.dataset_from_atoms(images, name="cu2")
    io.validate_dataset(ds)
    assert ds["R"].shape == (3, 2, 3) and ds["name"].dtype.kind == "S"
    np.testing.assert_allclose(ds["F"][1], images[1].get_forces())
    assert bytes(ds["md5"]) == io.dataset_md5(ds)


# ----------------------------------------------- hostile files (all readers)

def test_fifo_in_place_of_a_model_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    for reader in (io.load_model, io.load_dataset, io.load_task, io.load_npz):
        with pytest.raises(io.UnsafeFileError, match="FIFO"):
            reader(fifo)


def test_directory_and_device_are_refused(tmp_path):
    with pytest.raises(io.UnsafeFileError, match="directory"):
        io.load_dataset(tmp_path)
    with pytest.raises(io.UnsafeFileError, match="device"):
        io.load_npz("/dev/zero")
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.load_model(tmp_path / "missing.npz")


def test_file_size_is_bounded_before_reading(gdml_reference, monkeypatch):
    from amp.gdml.io import safe
    monkeypatch.setattr(safe, "MAX_FILE_BYTES", 1000)
    with pytest.raises(io.UnsafeFileError, match="limit of 1000 bytes"):
        io.load_dataset(_ref(gdml_reference, "benzene_dataset.npz"))


def test_huge_declared_array_is_refused_before_allocating(tmp_path):
    import zipfile
    header = {"descr": "<f8", "fortran_order": False,
              "shape": (10 ** 6, 10 ** 6)}           # 8 TB declared
    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(b"\0" * 64)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("R.npy", buf.getvalue())
    with pytest.raises(ValueError, match="declares an array of 8000000000000"
                                         " bytes"):
        io.load_npz(path)


def test_inflating_member_is_bounded(tmp_path, monkeypatch):
    from amp.gdml.io import safe
    path = tmp_path / "big.npz"
    np.savez_compressed(path, R=np.zeros(200000))   # 1.6 MB of zeros
    assert os.path.getsize(path) < 10000
    monkeypatch.setattr(safe, "MAX_MEMBER_BYTES", 10 ** 6)
    with pytest.raises(io.UnsafeFileError, match="declares 1600128 bytes"):
        io.load_npz(path)


def test_malformed_archives_are_value_errors(gdml_reference, tmp_path):
    data = open(_ref(gdml_reference, "benzene_sgdml_model.npz"), "rb").read()
    rng = np.random.default_rng(0)
    for case in range(40):
        blob = bytearray(data)
        if case % 2:
            blob = blob[:rng.integers(1, len(blob))]
        else:
            for pos in rng.integers(0, len(blob), 20):
                blob[pos] ^= 1 << int(rng.integers(8))
        path = tmp_path / "m{}.npz".format(case)
        path.write_bytes(bytes(blob))
        try:
            io.load_model(path)
        except ValueError:       # UnsafeFileError is one too
            pass


def test_text_file_is_named_not_an_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npz file"):
        io.load_dataset(path)
    with pytest.raises(ValueError, match="not an sgdml dataset, task or "
                                         "model"):
        np.savez(tmp_path / "plain.npz", a=np.zeros(3))
        io.load_any(tmp_path / "plain.npz")


def test_npz_to_dict_matches_load_npz(gdml_reference):
    path = _ref(gdml_reference, "benzene_sgdml_model.npz")
    with np.load(path) as npz:
        got = io.npz_to_dict(npz)
    ref = io.load_npz(path)
    assert set(got) == set(ref)
    assert got["f_err"].item().keys() == {"mae", "rmse"}


# ------------------------------------------------------------- dataset tools

@pytest.mark.parametrize("fmt", ["traj", "extxyz"])
def test_dataset_from_traj_and_extxyz(tmp_path, fmt):
    import ase.io
    frames = molecule_images(6)
    path = tmp_path / "ch4.{}".format(fmt)
    ase.io.write(path, frames)
    data = io.dataset_from_traj(path, theory="EMT", energy_unit="kcal/mol",
                                length_unit="Ang")
    assert io.to_str(data["name"]) == "ch4"
    assert data["e_unit"].dtype.kind == "S"
    assert io.to_str(data["e_unit"]) == "kcal/mol"
    assert io.to_str(data["theory"]) == "EMT"
    np.testing.assert_allclose(data["R"][2], frames[2].positions, atol=1e-8)
    np.testing.assert_allclose(data["F"][2], frames[2].get_forces(),
                               atol=1e-6)
    np.testing.assert_allclose(data["E"][2], frames[2].get_potential_energy(),
                               atol=1e-6)
    assert "lattice" not in data
    io.save_dataset(tmp_path / "ch4.npz", data)
    again = io.load_dataset(tmp_path / "ch4.npz")
    assert again["md5"] == io.dataset_md5(again)


def test_dataset_from_traj_errors_name_the_frame(tmp_path):
    import ase.io
    from ase.build import molecule
    frames = molecule_images(4)
    mixed = frames[:2] + molecule_images(1, "CH3OH") + frames[2:]
    with pytest.raises(ValueError, match="frame 2 has 6 atoms but frame 0 "
                                         "has 5"):
        io.dataset_from_traj(mixed)
    swapped = [f.copy() for f in frames]
    for f, src in zip(swapped, frames):
        f.calc = src.calc
    swapped[3] = swapped[3][[1, 0, 2, 3, 4]]
    swapped[3].calc = frames[3].calc
    with pytest.raises(ValueError, match="frame 3 has the atoms HCHHH but frame 0 has "
                                         "CHHHH"):
        io.dataset_from_traj(swapped)
    bare = frames[:2] + [molecule("CH4")]
    with pytest.raises(ValueError, match="frame 2 has no energy and no "
                                         "forces"):
        io.dataset_from_traj(bare)
    path = tmp_path / "noforces.extxyz"
    ase.io.write(path, [molecule("CH4")] * 2)
    with pytest.raises(ValueError, match="noforces.extxyz: frame 0 has no "
                                         "energy"):
        io.dataset_from_traj(path)
    with pytest.raises(FileNotFoundError):
        io.dataset_from_traj(tmp_path / "missing.traj")
    (tmp_path / "junk.traj").write_bytes(b"\0junk")
    with pytest.raises(ValueError, match="cannot be read as a trajectory"):
        io.dataset_from_traj(tmp_path / "junk.traj")


def test_xyz_geometry_round_trip_and_symbols(tmp_path):
    R = np.arange(9.0).reshape(3, 3) / 7
    io.write_geometry(tmp_path / "w.xyz", R, [8, 1, 1], "water")
    with open(tmp_path / "w.xyz", "a") as handle:   # a second frame
        handle.write("3\n\nO 0 0 0\nH 0 0 1\nH 0 1 0\n")
    R2, z = io.read_xyz(tmp_path / "w.xyz")
    assert R2.shape == (2, 9)
    np.testing.assert_allclose(R2[0], R.ravel())
    np.testing.assert_array_equal(z, [8, 1, 1])
    assert io.z_to_z_str([6, 1, 8]) == ["C", "H", "O"]
    np.testing.assert_array_equal(io.z_str_to_z(["C", "H", "O"]), [6, 1, 8])
    with pytest.raises(ValueError, match="unknown element symbol 'Xx'"):
        io.z_str_to_z(["Xx"])
    text = io.generate_xyz_str(R, [8, 1, 1], e=1.5, f=R)
    assert 'Energy="1.50000000"' in text and ":force:R:3" in text


def test_file_names_follow_sgdml(gdml_reference):
    task = io.load_task(_ref(gdml_reference, "benzene_sgdml_task.npz"))
    n = len(task["idxs_train"])
    P = len(task["perms"])
    sig = int(np.squeeze(task["sig"]))
    assert io.task_file_name(task) == "task-train{}-sym{}-sig{:04d}.npz" \
        .format(n, P, sig)
    assert io.model_file_name(task) == "model-train{}-sym{}-sig{:04d}.npz" \
        .format(n, P, sig)
    ds = {"name": np.array(b"eth"), "theory": np.array(b"PBE/def2 (x)")}
    assert io.train_dir_name(ds, 200, True, False, False) == \
        "sgdml_cv_eth-PBE.def2.x.-train200-sym-noE"
    assert io.parse_list_or_range("10:10:40") == [10, 20, 30, 40]
    assert io.parse_list_or_range("7") == [7]
    with pytest.raises(ValueError, match="neither a positive integer"):
        io.parse_list_or_range("a:b")


@pytest.mark.parametrize("key, value, message", [
    ("tril_perms_lin", lambda m: m["tril_perms_lin"] + 10 ** 6,
     "holds indices outside"),
    ("std", lambda m: np.array(-1.0), "'std' must be one positive"),
    ("std", lambda m: np.array(np.nan), "'std' contains NaN"),
    ("sig", lambda m: np.array("ten"), "'sig' must hold numbers"),
])
def test_hostile_model_values_are_refused_before_use(gdml_reference,
                                                     tmp_path, key, value,
                                                     message):
    model = io.load_model(_ref(gdml_reference, "benzene_sgdml_model.npz"))
    model[key] = value(model)
    path = tmp_path / "m.npz"
    np.savez(path, **model)
    with pytest.raises(ValueError, match=message):
        io.load_model(path)
