"""amp.gdml.train: parity with sgdml, kernel, perms, solvers, diagnostics."""
import os
import warnings

import numpy as np
import pytest

from ase import Atoms

from amp.gdml import io
from amp.gdml.desc import from_R, tril_perms_lin
from amp.gdml.predict import GDMLPredict
from amp.gdml.train import GDMLTrain
from checks import assert_forces_are_gradients
from conftest import GDML_REFERENCE


def _path(name):
    return os.path.join(GDML_REFERENCE, name)


@pytest.fixture(scope="module")
def ds():
    return io.load_dataset(_path("benzene_dataset.npz"))


@pytest.fixture(scope="module")
def trainer():
    return GDMLTrain(max_processes=1)


def _rows(perms):
    return {tuple(int(i) for i in p) for p in perms}


def _check_against_pred(model, ds, kind):
    pred = np.load(_path("benzene_{}_pred.npz".format(kind)))
    R = ds["R"][pred["idx"]]
    E, F = GDMLPredict(model, num_workers=0).predict(R)
    F_ref = pred["F"].reshape(len(R), -1)
    assert np.abs(E - pred["E"]).max() <= 1e-6 * np.abs(pred["E"]).max()
    assert np.abs(F - F_ref).max() <= 1e-6 * np.abs(F_ref).max()
    assert np.abs(E - pred["E"]).max() <= 1e-6  # eV, the README's bound


@pytest.mark.parametrize("kind", ["gdml", "sgdml"])
def test_retrain_from_stored_indices_matches_sgdml(ds, trainer, kind):
    meta_model = io.load_model(_path("benzene_{}_model.npz".format(kind)))
    task = trainer.create_task(ds, 60, ds, 100, sig=meta_model["sig"],
                               lam=1e-10, use_sym=(kind == "sgdml"))
    assert _rows(task["perms"]) == _rows(meta_model["perms"])
    # impose the stored split (and order) on the task
    idx = meta_model["idxs_train"]
    task.update(idxs_train=idx, R_train=ds["R"][idx], F_train=ds["F"][idx],
                E_train=ds["E"][idx], idxs_valid=meta_model["idxs_valid"])
    model = trainer.train(task)
    assert model["solver_name"] == "analytic"
    np.testing.assert_allclose(model["std"], meta_model["std"], rtol=1e-12)
    np.testing.assert_allclose(model["R_desc"], meta_model["R_desc"],
                               rtol=1e-13)
    np.testing.assert_array_equal(model["tril_perms_lin"] if kind == "gdml"
                                  else np.sort(model["tril_perms_lin"]),
                                  meta_model["tril_perms_lin"]
                                  if kind == "gdml"
                                  else np.sort(meta_model["tril_perms_lin"]))
    assert abs(model["c"] - meta_model["c"]) < 1e-3
    _check_against_pred(model, ds, kind)
    # the task written to disk loads in sgdml's layout
    for key in ("md5_train", "r_unit", "e_unit"):
        assert bytes(task[key]) == bytes(meta_model[key])


def test_train_from_fixture_task_file(ds, trainer):
    task = io.load_task(_path("benzene_sgdml_task.npz"))
    model = trainer.train(task)
    _check_against_pred(model, ds, "sgdml")
    assert set(model) >= set(io.load_model(
        _path("benzene_sgdml_model.npz")))


def test_perm_recovery_finds_the_12_benzene_symmetries(ds, trainer):
    from amp.gdml.perm import find_perms, is_group
    task = io.load_task(_path("benzene_sgdml_task.npz"))
    perms = find_perms(task["R_train"], task["z"])
    assert _rows(perms) == _rows(task["perms"])
    assert len(perms) == 12 and is_group(perms)
    np.testing.assert_array_equal(perms[0], np.arange(12))
    given = task["perms"][:2]
    t = trainer.create_task(ds, 10, ds, 5, sig=7, perms=task["perms"])
    assert _rows(t["perms"]) == _rows(task["perms"])
    with pytest.raises(ValueError, match="different species"):
        trainer.create_task(ds, 10, ds, 5, sig=7,
                            perms=np.array([[6, 1, 2, 3, 4, 5, 0, 7, 8, 9,
                                             10, 11]]))
    with pytest.raises(ValueError, match="shape"):
        trainer.create_task(ds, 10, ds, 5, sig=7, perms=given[:, :5])


def test_kernel_matrix_conventions(ds, trainer):
    task = io.load_task(_path("benzene_sgdml_task.npz"))
    R = task["R_train"][:6]
    X, J = from_R(R)
    tpl = tril_perms_lin(task["perms"])
    K = trainer._assemble_kernel_mat(X, J, tpl, 7)
    assert K.shape == (6 * 36, 6 * 36)
    np.testing.assert_allclose(K, K.T, atol=1e-12 * abs(K).max())
    assert np.linalg.eigvalsh(-K).min() > -1e-10 * abs(K).max()  # -K is PSD
    # columns subsets equal the corresponding columns of the full matrix
    sub = trainer._assemble_kernel_mat(X, J, tpl, 7, col_idxs=np.s_[36:108],
                                       exploit_sym=False)
    np.testing.assert_allclose(sub, K[:, 36:108], atol=1e-13 * abs(K).max())
    cols = np.array([0, 5, 40, 200])
    np.testing.assert_allclose(
        trainer._assemble_kernel_mat(X, J, tpl, 7, col_idxs=cols),
        K[:, cols], atol=1e-13 * abs(K).max())
    keep = trainer._assemble_kernel_mat(X, J, tpl, 7,
                                        cols_3n_keep_idxs=[0, 1, 2])
    np.testing.assert_allclose(
        keep, K[:, (np.arange(6)[:, None] * 36 + [0, 1, 2]).ravel()],
        atol=1e-13 * abs(K).max())
    lim = trainer._assemble_kernel_mat(X, J, tpl, 7, cols_m_limit=2)
    np.testing.assert_allclose(lim, K[:, :72], atol=1e-13 * abs(K).max())
    extra = trainer._assemble_kernel_mat(X, J, tpl, 7, alloc_extra_rows=3)
    assert extra.shape == (6 * 36 + 3, 6 * 36) and not extra[-3:].any()
    with pytest.raises(ValueError, match="beyond range"):
        trainer._assemble_kernel_mat(X, J, tpl, 7, col_idxs=[0, 10 ** 6])
    # one block against an independent dense formula
    from amp.gdml.desc import Desc
    Jf = Desc(12).d_desc_from_comp(J)
    T = np.array([Desc.perm(p) for p in task["perms"]])
    blk = np.zeros((36, 36))
    for t in T:
        d = X[1] - X[3][t]
        u = np.linalg.norm(d)
        e = np.exp(-np.sqrt(5) * u / 7)
        g = 5 * (7 + np.sqrt(5) * u) * e / (3 * 7 ** 3)
        h = 25 * e / (3 * 7 ** 4)
        blk += Jf[1].T @ (g * np.eye(66) - h * np.outer(d, d)) @ Jf[3][t]
    np.testing.assert_allclose(-K[36:72, 108:144], blk,
                               atol=1e-12 * abs(blk).max())
    # callback protocol
    seen = []
    trainer._assemble_kernel_mat(X, J, tpl, 7,
                                 callback=lambda c, t, s=None: seen.append(
                                     (c, t)))
    assert seen and seen[-1][0] == seen[-1][1]


def test_energy_constraints(ds, trainer):
    np.random.seed(0)
    task = trainer.create_task(ds, 20, ds, 10, sig=10, use_sym=False,
                               use_E_cstr=True)
    K = trainer._assemble_kernel_mat(*from_R(task["R_train"][:4]),
                                     tril_perms_lin(task["perms"]), 10,
                                     use_E_cstr=True)
    assert K.shape == (4 * 37, 4 * 37)
    np.testing.assert_allclose(K, K.T, atol=1e-12 * abs(K).max())
    model = trainer.train(task)
    assert model["alphas_E"].shape == (20,)
    assert model["c"] == pytest.approx(np.mean(task["E_train"]))
    # same model as a dense solve of sgdml's full system (K with energy rows)
    X, J = from_R(task["R_train"])
    K = -trainer._assemble_kernel_mat(X, J, model["tril_perms_lin"], 10,
                                      use_E_cstr=True)
    y = np.concatenate([task["F_train"].ravel(),
                        -task["E_train"] + task["E_train"].mean()])
    assert model["std"] == pytest.approx(np.std(y), rel=1e-12)
    a = np.linalg.solve(K + 1e-10 * np.eye(len(K)), y / model["std"])
    full = trainer.create_model(task, "analytic", X, J,
                                model["tril_perms_lin"], model["std"],
                                -a[:-20], alphas_E=-a[-20:])
    full["c"] = np.mean(task["E_train"])
    R = ds["R"][200:230]
    E0, F0 = GDMLPredict(full, num_workers=0).predict(R)
    E1, F1 = GDMLPredict(model, num_workers=0).predict(R)
    assert np.abs(E1 - E0).max() < 1e-6
    assert np.abs(F1 - F0).max() < 1e-6 * np.abs(F0).max()
    # energies of the training points are reproduced (up to the part of the
    # labels no smooth energy can follow)
    E, _ = GDMLPredict(model, num_workers=0).predict(task["R_train"])
    np.testing.assert_allclose(E, task["E_train"], atol=1e-2)
    # the energy-constraint terms alone: forces are minus the FD gradient
    only_E = dict(model, alphas_E=np.linspace(-1, 1, 20),
                  R_d_desc_alpha=np.zeros_like(model["R_d_desc_alpha"]))
    for m, h, tol in ((only_E, 1e-4, 1e-7), (model, 1e-3, 1e-3)):
        gp = GDMLPredict(m, num_workers=0)
        atoms = Atoms(numbers=ds["z"], positions=ds["R"][200])
        F = gp.predict(atoms.positions)[1][0]
        assert_forces_are_gradients(
            lambda moved: float(gp.predict(moved.positions)[0][0]), atoms,
            F.reshape(-1, 3), h=h, atol=tol * np.abs(F).max())


def test_iterative_solver_and_resume(ds):
    task = io.load_task(_path("benzene_sgdml_task.npz"))
    dense = GDMLTrain(solver="analytic").train(task)
    cg = GDMLTrain(max_memory=0.09, solver="cg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        partial = cg.train(dict(task, solver_maxiter=20))
    assert partial["solver_name"] == "cg" and partial["solver_iters"] == 20
    resumed_task = cg.create_task_from_model(partial, ds)
    np.testing.assert_array_equal(resumed_task["alphas0_F"],
                                  partial["alphas_F"])
    model = cg.train(resumed_task)
    assert model["solver_iters"] > 20
    assert model["solver_resid"] <= 1e-4 * model["norm_y_train"] * 1.0001
    R = ds["R"][:30]
    E0, F0 = GDMLPredict(dense, num_workers=0).predict(R)
    E1, F1 = GDMLPredict(model, num_workers=0).predict(R)
    assert np.abs(F1 - F0).max() < 1e-3 * np.abs(F0).max()
    assert np.abs(E1 - E0).max() < 1e-3 * np.ptp(E0) + 1e-3


def test_draw_strat_sample(trainer):
    np.random.seed(1)
    T = np.random.default_rng(2).normal(size=500)
    idx = trainer.draw_strat_sample(T, 50)
    assert len(idx) == 50 and len(np.unique(idx)) == 50
    # the sample covers the distribution: both tails and the middle
    assert T[idx].min() < np.percentile(T, 10)
    assert T[idx].max() > np.percentile(T, 90)
    excl = np.arange(0, 500, 2)
    idx2 = trainer.draw_strat_sample(T, 100, excl_idxs=excl)
    assert len(np.unique(idx2)) == 100 and not np.isin(idx2, excl).any()
    assert len(trainer.draw_strat_sample(T[:50], 50)) == 50
    with pytest.raises(ValueError, match="only"):
        trainer.draw_strat_sample(T, 300, excl_idxs=excl)


def test_create_task_fields_and_errors(ds, trainer):
    np.random.seed(3)
    task = trainer.create_task(ds, 60, ds, 100, sig=10, use_sym=False)
    assert not np.isin(task["idxs_valid"], task["idxs_train"]).any()
    assert task["dataset_name"].dtype.kind == "U"
    assert bytes(task["md5_train"]) == bytes(ds["md5"])
    np.testing.assert_array_equal(task["E_train"], ds["E"][task["idxs_train"]])
    np.testing.assert_array_equal(task["perms"], np.arange(12)[None])
    with pytest.raises(ValueError, match="exceeds"):
        trainer.create_task(ds, 250, ds, 51, sig=10)
    with pytest.raises(ValueError, match="sig must be > 0"):
        trainer.create_task(ds, 10, ds, 10, sig=0)
    with pytest.raises(ValueError, match="sig must be > 0"):
        trainer.create_task(ds, 10, ds, 10, sig=-2)
    no_E = {k: v for k, v in ds.items() if k != "E"}
    with pytest.raises(ValueError, match="no energy labels"):
        trainer.create_task(no_E, 10, no_E, 10, sig=10)
    t = trainer.create_task(no_E, 10, no_E, 10, sig=10, use_E=False,
                            use_sym=False)
    m = trainer.train(t)
    assert not m["use_E"] and "e_err" not in m and m["c"] == 0.0
    bad = dict(ds, F=ds["F"][:, :11])
    with pytest.raises(ValueError, match="'F' has shape"):
        trainer.create_task(bad, 10, bad, 10, sig=10)
    nan = dict(ds, R=ds["R"].copy())
    nan["R"][3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        trainer.create_task(nan, 10, nan, 10, sig=10)


@pytest.fixture(scope="module")
def small_task(ds):
    np.random.seed(0)
    return GDMLTrain().create_task(ds, 30, ds, 10, sig=10, use_sym=False)


def test_recov_int_const_diagnoses(small_task, trainer):
    model = trainer.train(small_task)
    c = trainer._recov_int_const(model, small_task)
    assert c == pytest.approx(model["c"], abs=1e-8)
    flipped = dict(small_task, F_train=-small_task["F_train"])
    with pytest.raises(ValueError, match="switched sign"):
        trainer.train(flipped)
    scaled = dict(small_task, E_train=small_task["E_train"] * 3.0)
    with pytest.raises(ValueError, match="different units or scales"):
        trainer.train(scaled)
    shuffled = dict(small_task, E_train=np.random.default_rng(5).permutation(
        small_task["E_train"]))
    with pytest.raises(ValueError, match="inconsistent energy labels"):
        trainer.train(shuffled)


def test_periodic_lattice(trainer):
    rng = np.random.default_rng(0)
    lattice = np.diag([5.0, 6.0, 7.0])
    base = np.array([[0.5, 0.5, 0.5], [1.4, 0.6, 0.5], [4.6, 5.5, 6.6]])
    R = base[None] + 0.05 * rng.normal(size=(12, 3, 3))
    # forces/energies from a pair potential with minimum-image distances
    from amp.gdml.desc import pair_differences, lattice_and_inverse
    lai = lattice_and_inverse(lattice)
    diff = pair_differences(R, lai)
    d = np.linalg.norm(diff, axis=2)
    E = (1.0 / d).sum(axis=1)
    fpair = diff / d[..., None] ** 3
    F = np.zeros_like(R)
    a, b = np.tril_indices(3, -1)
    for k in range(3):
        F[:, a[k]] += fpair[:, k]
        F[:, b[k]] -= fpair[:, k]
    data = {"R": R, "z": np.array([1, 1, 8]), "F": F, "E": E,
            "lattice": lattice}
    task = trainer.create_task(data, 8, data, 4, sig=1.0, use_sym=False)
    assert "lattice" in task
    model = trainer.train(task)
    np.testing.assert_array_equal(model["lattice"], lattice)
    shifted = R + np.array([5.0, 0, 0])[None, None]    # whole-lattice shift
    shifted[:, 2] -= np.array([0, 6.0, 7.0])
    gp = GDMLPredict(model, num_workers=0)
    np.testing.assert_allclose(gp.predict(shifted)[1], gp.predict(R)[1],
                               atol=1e-9)
    with pytest.raises(ValueError, match="invalid lattice"):
        trainer.create_task(dict(data, lattice=np.zeros((3, 3))), 8, data, 4,
                            sig=1.0)
    with pytest.raises(ValueError, match="invalid lattice"):
        trainer.train(dict(task, lattice=np.ones((3, 3))))


def test_torch_request_fails_clearly():
    try:
        import torch
        if torch.cuda.is_available():
            return
    except ImportError:
        pass
    with pytest.raises((ImportError, RuntimeError), match="torch|GPU"):
        GDMLTrain(use_torch=True)


@pytest.mark.parametrize("use_E_cstr", [False, True])
def test_assemble_kernel_mat_wkr_fills_columns_of_the_full_matrix(
        use_E_cstr):
    from amp.gdml import train as train_module
    from amp.gdml.desc import Desc
    from amp.gdml.kernel import sgdml_kernel_matrix
    rng = np.random.default_rng(3)
    N, M, sig = 5, 4, 3.0
    R = rng.normal(size=(M, N, 3)) * 1.5
    desc = Desc(N)
    X, J = desc.from_R(R.reshape(M, -1))
    tpl = tril_perms_lin(np.array([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4]]))
    K_full = sgdml_kernel_matrix(X, J, tpl, sig, use_E_cstr=use_E_cstr)
    glob = train_module.glob
    glob["R_desc"], glob["R_desc_shape"] = train_module.share_array(X)
    glob["R_d_desc"], glob["R_d_desc_shape"] = train_module.share_array(J)
    glob["K"], glob["K_shape"] = train_module.share_array(
        np.zeros_like(K_full))
    glob["desc_func"] = desc
    K = np.frombuffer(glob["K"]).reshape(glob["K_shape"])
    n3 = 3 * N
    # one force column block: exactly the slice of the full matrix
    assert train_module._assemble_kernel_mat_wkr(
        2, tpl, sig, use_E_cstr=use_E_cstr) == n3
    np.testing.assert_allclose(K[:, 2 * n3:3 * n3],
                               K_full[:, 2 * n3:3 * n3], rtol=1e-12,
                               atol=1e-15)
    assert not K[:, :2 * n3].any()
    # every column; with exploit_sym also the mirrored rows
    for j in range(M + (M if use_E_cstr else 0)):
        train_module._assemble_kernel_mat_wkr(
            j, tpl, sig, use_E_cstr=use_E_cstr, exploit_sym=not use_E_cstr)
    np.testing.assert_allclose(K, K_full, rtol=1e-12, atol=1e-15)
    # selective columns: (position in K, point, partials kept)
    K[:] = 0
    keep = np.array([0, 4, 7])
    assert train_module._assemble_kernel_mat_wkr(
        (5, 1, keep), tpl, sig, use_E_cstr=use_E_cstr) == 3
    np.testing.assert_allclose(K[:, 5:8], K_full[:, n3 + keep], rtol=1e-12,
                               atol=1e-15)


def test_perm_search_without_a_group_warns_and_uses_none():
    from amp.gdml.perm import find_perms
    R = np.random.default_rng(0).normal(size=(30, 8, 3)) * 2  # no symmetry
    with pytest.warns(RuntimeWarning, match="training without symmetries"):
        perms = find_perms(R, np.ones(8, dtype=int))
    np.testing.assert_array_equal(perms, np.arange(8)[None, :])
