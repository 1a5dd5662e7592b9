"""amp.gdml.predict: fixture numbers, finite differences, API."""
import os
import warnings

import numpy as np
import pytest

from amp.gdml import io
from amp.gdml.predict import GDMLPredict


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
    r = ref["ds"]["R"][7].ravel()
    _, F = gp.predict(r)
    h = 1e-5
    steps = np.eye(r.size) * h
    Ep, _ = gp.predict(r + steps)
    Em, _ = gp.predict(r - steps)
    F_fd = -(Ep - Em) / (2 * h)
    np.testing.assert_allclose(F[0], F_fd, atol=2e-6 * np.abs(F).max())


def test_batches_chunks_and_workers_agree(ref):
    R = ref["ds"]["R"][:23].reshape(23, -1)
    base_E, base_F = GDMLPredict(ref["sgdml"], num_workers=0).predict(R)
    for workers, chunk, bulk in [(0, 7, False), (1, None, False),
                                 (1, 13, True), (2, 5, False)]:
        gp = GDMLPredict(ref["sgdml"], num_workers=workers, batch_size=chunk,
                         max_processes=3)
        gp._set_bulk_mp(bulk)
        E, F = gp.predict(R)
        np.testing.assert_allclose(E, base_E, rtol=1e-13)
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
