"""amp.gdml.predict: fixture numbers, finite differences, API."""
import os

import numpy as np
import pytest

from ase import Atoms

from amp.gdml import io
from amp.gdml.predict import GDMLPredict
from checks import assert_forces_are_gradients


@pytest.fixture(scope="module")
def ref():
    from conftest import GDML_REFERENCE
    out = {"ds": io.load_dataset(os.path.join(GDML_REFERENCE,
                                              "benzene_dataset.npz"))}
    for kind in ("gdml", "sgdml"):
        out[kind] = io.load_model(os.path.join(
            GDML_REFERENCE, "benzene_{}_model.npz".format(kind)))
        out[kind + "_pred"] = dict(np.load(os.path.join(
            GDML_REFERENCE, "benzene_{}_pred.npz".format(kind))))
    return out


@pytest.mark.parametrize("kind", ["gdml", "sgdml"])
def test_fixture_model_predicts_reference(ref, kind):
    pred = ref[kind + "_pred"]
    R = ref["ds"]["R"][pred["idx"]]
    E, F = GDMLPredict(ref[kind], num_workers=0).predict(
        R.reshape(len(R), -1))
    F_ref = pred["F"].reshape(len(R), -1)
    np.testing.assert_allclose(E, pred["E"], rtol=1e-10, atol=0)
    assert np.abs(F - F_ref).max() <= 1e-10 * np.abs(F_ref).max()


@pytest.mark.parametrize("kind", ["gdml", "sgdml"])
def test_forces_are_minus_energy_gradient(ref, kind):
    gp = GDMLPredict(ref[kind], num_workers=0)
    atoms = Atoms(numbers=ref["ds"]["z"], positions=ref["ds"]["R"][7])
    _, F = gp.predict(atoms.positions)

    def energy(moved):
        return float(gp.predict(moved.positions)[0][0])
    assert_forces_are_gradients(energy, atoms, F.reshape(-1, 3), h=1e-5,
                                atol=2e-6 * np.abs(F).max())


def test_batches_chunks_and_workers_agree(ref):
    R = ref["ds"]["R"][:23].reshape(23, -1)
    base_E, base_F = GDMLPredict(ref["sgdml"], num_workers=0).predict(R)
    for workers, chunk, bulk in [(0, 7, False), (1, None, False),
                                 (1, 13, True), (2, 5, False)]:
        gp = GDMLPredict(ref["sgdml"], num_workers=workers, batch_size=chunk,
                         max_processes=3)
        gp._set_bulk_mp(bulk)
        E, F = gp.predict(R)
        # chunks change the summation order of terms much larger than E
        np.testing.assert_allclose(E, base_E, rtol=1e-12)
        np.testing.assert_allclose(F, base_F, atol=1e-12 * abs(base_F).max())
    singles = np.array([GDMLPredict(ref["sgdml"], num_workers=0).predict(
        r)[0][0] for r in R[:3]])
    np.testing.assert_allclose(singles, base_E[:3], rtol=1e-12)


def test_shapes_and_return_E(ref):
    gp = GDMLPredict(ref["gdml"], num_workers=0)
    R = ref["ds"]["R"][:4]
    E, F = gp.predict(R)                   # (M, N, 3) accepted
    assert E.shape == (4,) and F.shape == (4, 36)
    (F2,) = gp.predict(R.reshape(4, -1), return_E=False)
    np.testing.assert_array_equal(F2, F)


def test_atom_count_mismatch_and_nan(ref):
    gp = GDMLPredict(ref["gdml"], num_workers=0)
    with pytest.raises(ValueError, match="trained for 12 atoms"):
        gp.predict(np.zeros((2, 33)))
    bad = ref["ds"]["R"][:1].reshape(1, -1).copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gp.predict(bad)
    with pytest.raises(ValueError, match="set_R_desc"):
        gp.predict()


def test_cached_descriptors_and_set_alphas(ref):
    from amp.gdml.desc import from_R
    model = ref["sgdml"]
    task_R = ref["ds"]["R"][model["idxs_train"]]
    X, J = from_R(task_R)
    gp = GDMLPredict(model, num_workers=0)
    E_direct, F_direct = gp.predict(task_R)
    gp.set_R_desc(X)
    gp.set_R_d_desc(J)
    E, F = gp.predict()
    np.testing.assert_allclose(E, E_direct, rtol=1e-13)
    np.testing.assert_allclose(F, F_direct, atol=1e-11)
    # set_alphas with the model's own coefficients reproduces it
    gp.set_alphas(model["alphas_F"])
    E2, F2 = gp.predict()
    np.testing.assert_allclose(F2, F, atol=1e-6 * np.abs(F).max())
    # linear in the coefficients
    gp.set_alphas(2 * model["alphas_F"])
    _, F3 = gp.predict()
    np.testing.assert_allclose(F3, 2 * F2, atol=1e-6 * np.abs(F).max())


def test_parallel_api_and_deprecations(ref):
    gp = GDMLPredict(ref["gdml"], max_processes=2)
    gps = gp.prepare_parallel(n_bulk=3)
    assert gps > 0
    gps2, cached = gp.prepare_parallel(n_bulk=3, return_is_from_cache=True)
    assert cached and gps2 == gps
    with pytest.warns(DeprecationWarning):
        gp._set_batch_size(10)
    assert gp.chunk_size == 10
    with pytest.warns(DeprecationWarning):
        gp.set_opt_num_workers_and_batch_size_fast(n_bulk=3)
    gp._set_num_workers(0)
    assert gp.num_workers == 0
    with pytest.raises(ValueError):
        gp._set_chunk_size(0)


def test_torch_requests_fail_clearly(ref):
    try:
        import torch  # noqa: F401
        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return  # cannot exercise the failure path on this machine
    with pytest.raises((ImportError, RuntimeError), match="torch|GPU"):
        GDMLPredict(ref["gdml"], use_torch=True)
    gp = GDMLPredict(ref["gdml"], num_workers=0)
    with pytest.raises((ImportError, RuntimeError)):
        gp.get_GPU_batch()


def test_model_from_path_and_npzfile(ref):
    from conftest import GDML_REFERENCE
    path = os.path.join(GDML_REFERENCE, "benzene_gdml_model.npz")
    R = ref["ds"]["R"][:2]
    E1, _ = GDMLPredict(path, num_workers=0).predict(R)
    with np.load(path, allow_pickle=True) as npz:
        E2, _ = GDMLPredict(npz, num_workers=0).predict(R)
    np.testing.assert_array_equal(E1, E2)
    with pytest.raises(ValueError, match="not a valid model"):
        GDMLPredict({"type": "d", "z": np.ones(3)})


# --------------------------------------------------- layouts of R (sgdml's)

def test_every_sgdml_layout_of_R_gives_the_same_numbers(ref):
    gp = GDMLPredict(ref["sgdml"], num_workers=0)
    R = ref["ds"]["R"][:3]                          # (M, N, 3)
    E, F = gp.predict(R)
    for layout in (R.reshape(3, -1), R.copy()):
        E2, F2 = gp.predict(layout)
        np.testing.assert_array_equal(E2, E)
        np.testing.assert_array_equal(F2, F)
    for single in (R[1], R[1].ravel()):             # (N, 3) and (3N,)
        E1, F1 = gp.predict(single)
        np.testing.assert_allclose(E1, E[1:2], rtol=1e-12)
        np.testing.assert_allclose(F1, F[1:2], rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("shape", [(2, 3, 12), (12, 3, 2), (2, 12, 3, 1),
                                   (35,)])
def test_wrong_layout_of_R_is_a_clear_error(ref, shape):
    gp = GDMLPredict(ref["sgdml"], num_workers=0)
    with pytest.raises(ValueError, match=r"expected \(M, 12, 3\) or "
                                         r"\(M, 36\)"):
        gp.predict(np.ones(shape))


def test_transposed_geometries_are_refused_not_mispredicted(ref):
    # (M, 3, N) used to be reshaped silently into wrong geometries
    gp = GDMLPredict(ref["sgdml"], num_workers=0)
    R = ref["ds"]["R"][:2]
    with pytest.raises(ValueError, match=r"shape \(2, 3, 12\)"):
        gp.predict(R.transpose(0, 2, 1))


def test_model_from_np_load_reads_object_keys_safely(ref):
    from conftest import GDML_REFERENCE
    path = os.path.join(GDML_REFERENCE, "benzene_sgdml_model.npz")
    R = ref["ds"]["R"][:2]
    with np.load(path) as npz:                      # allow_pickle=False
        gp = GDMLPredict(npz, num_workers=0)
    E, F = gp.predict(R)
    E0, F0 = GDMLPredict(path, num_workers=0).predict(R)
    np.testing.assert_array_equal(E, E0)
    np.testing.assert_array_equal(F, F0)


def test_model_from_np_load_refuses_code(ref, tmp_path):
    model = dict(ref["sgdml"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > {}".format(
                tmp_path / "pwned"),))
    arr = np.empty((), dtype=object)
    arr[()] = Evil()
    model["f_err"] = arr
    path = tmp_path / "evil.npz"
    np.savez(path, **model)
    with np.load(path, allow_pickle=True) as npz:
        with pytest.raises(io.UnsafeFileError, match="os|posix|system"):
            GDMLPredict(npz, num_workers=0)
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------- sgdml's module-level worker

def test_predict_wkr_sums_to_the_prediction(ref):
    from amp.gdml.predict import _predict_wkr, globs
    for kind in ("gdml", "sgdml"):
        gp = GDMLPredict(ref[kind], num_workers=0)
        assert globs[gp.glob_id]["n_perms"] == gp.n_perms
        r = ref["ds"]["R"][11].ravel()
        E, F = gp.predict(r)
        full = _predict_wkr(r, None, None, gp.glob_id)
        assert full.shape == (1 + r.size,)
        np.testing.assert_allclose(full[0] * gp.std + gp.c, E[0],
                                   rtol=1e-12)
        np.testing.assert_allclose(full[1:] * gp.std, F[0], rtol=1e-9,
                                   atol=1e-9 * np.abs(F).max())
        # partial sums over training ranges (chunked) add up
        cut = gp.n_train // 3
        parts = (_predict_wkr(r, None, None, gp.glob_id, (0, cut), 4)
                 + _predict_wkr(r, None, None, gp.glob_id,
                                (cut, gp.n_train), 7))
        np.testing.assert_allclose(parts, full, rtol=1e-10,
                                   atol=1e-12 * np.abs(full).max())
        # descriptors given instead of r, full (D, 3N) Jacobian
        X, J = gp.desc.from_R(r)
        given = _predict_wkr(None, (X[0], gp.desc.d_desc_from_comp(J)[0]),
                             None, gp.glob_id)
        np.testing.assert_allclose(given, full, rtol=1e-12, atol=1e-14)


def test_predictors_register_for_the_worker_only_when_asked(ref):
    import gc
    import weakref
    from amp.gdml.predict import _predict_wkr, globs
    r = ref["ds"]["R"][11].ravel()
    before = len(globs)
    alive = []
    for _ in range(25):
        gp = GDMLPredict(ref["sgdml"], num_workers=0)
        gp.predict(r)
        alive += [weakref.ref(gp), weakref.ref(gp._Xp), weakref.ref(gp._Wp)]
    del gp
    gc.collect()
    assert [w for w in alive if w() is not None] == []
    assert len(globs) == before
    # the worker API registers on first use of glob_id, follows
    # set_alphas, and lets go when the predictor is gone
    gp = GDMLPredict(ref["sgdml"], num_workers=0)
    E, F = gp.predict(r)
    glob_id = gp.glob_id
    assert gp.glob_id == glob_id and len(globs) == before + 1
    full = _predict_wkr(r, None, None, glob_id)
    np.testing.assert_allclose(full[0] * gp.std + gp.c, E[0], rtol=1e-12)
    gp.set_R_d_desc(gp.desc.from_R(
        ref["ds"]["R"][ref["sgdml"]["idxs_train"]].reshape(gp.n_train, -1))
        [1])
    gp.set_alphas(2 * ref["sgdml"]["alphas_F"])
    E2, F2 = gp.predict(r)
    doubled = _predict_wkr(r, None, None, glob_id)
    assert abs(E2[0] - E[0]) > 1e-3 * abs(E[0])
    np.testing.assert_allclose(doubled[0] * gp.std + gp.c, E2[0],
                               rtol=1e-12)
    np.testing.assert_allclose(doubled[1:] * gp.std, F2[0], rtol=1e-9,
                               atol=1e-9 * np.abs(F2).max())
    arrays = weakref.ref(gp._Xp)
    del gp
    gc.collect()
    assert globs[glob_id] is None and arrays() is None
    with pytest.raises(ValueError, match="no longer exists"):
        _predict_wkr(r, None, None, glob_id)


def test_virial_needs_a_periodic_model(ref):
    gp = GDMLPredict(ref["sgdml"], num_workers=0)
    with pytest.raises(ValueError, match="periodic model"):
        gp.predict(ref["ds"]["R"][:1], return_virial=True)
