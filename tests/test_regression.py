"""Regressor and NeuralNetwork.fit: convergence, stopping, maxiter, log,
presets, custom optimisers, checkpoints."""
import io
import os

import numpy as np
import pytest

from amp import Amp
from amp.descriptor.gaussian import Gaussian
from amp.model import LossFunction
from amp.model.neuralnetwork import NeuralNetwork
from amp.regression import Regressor
from amp.utilities import Logger, TrainingConvergenceError, hash_images

from conftest import AMP_REFERENCE


@pytest.fixture(scope="module")
def training():
    """ptcu_train.traj (5 images) with default Gaussian fingerprints."""
    images = hash_images(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    descriptor = Gaussian()
    descriptor.calculate_fingerprints(images)
    return images, descriptor


def _energy_rmse(model, images, descriptor):
    residuals = [(model.evaluate(descriptor.arrays[k], forces=False)[0].sum()
                  - a.get_potential_energy()) / len(a)
                 for k, a in images.items()]
    return float(np.sqrt(np.mean(np.square(residuals))))


def _table_rows(text):
    return [line for line in text.splitlines()
            if line[:5].strip().isdigit() and line.rstrip()[-1] in "C-"]


def test_energy_training_converges_and_stops_at_once(training):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(3, 3), randomseed=1)
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.02, "force_rmse": None},
        force_coefficient=None)
    text = io.StringIO()
    assert model.fit(images, descriptor, Logger(text), {"cores": 1}) is True
    assert _energy_rmse(model, images, descriptor) <= 0.02
    log = text.getvalue()
    assert "EnergyRMSE" in log and "ForceRMSE" not in log
    assert "...optimization successful." in log
    rows = _table_rows(log)
    steps = [int(row.split()[0]) for row in rows]
    assert steps == list(range(1, len(rows) + 1))
    assert steps[-1] == model.lossfunction._step
    # Stopped at the first evaluation meeting the criteria, no later
    # (columns: step, time, loss, energy RMSE, its mark, ...).
    assert rows[-1].split()[4] == "C"
    assert all(row.split()[4] == "-" for row in rows[:-1])
    assert float(rows[-1].split()[3]) <= 0.02


def test_maxiter_returns_false_with_best_parameters(training):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(3,), randomseed=2)
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 1e-9}, force_coefficient=None,
        maxiter=12)
    text = io.StringIO()
    assert model.fit(images, descriptor, Logger(text), None) is False
    assert model.lossfunction._step == 12
    assert "optimization unsuccessful" in text.getvalue()
    assert len(_table_rows(text.getvalue())) == 12
    best_loss, best_vector = model.lossfunction._best
    np.testing.assert_array_equal(model.vector, best_vector)
    check = LossFunction(raise_ConvergenceOccurred=False, log_losses=False,
                         force_coefficient=None)
    model.lossfunction = check
    check.attach_model(model, images=images)
    assert check.get_loss(model.vector)["loss"] == best_loss


def test_force_training_table_and_lbfgs(training):
    images = hash_images(os.path.join(AMP_REFERENCE, "ptcu_train.traj"))
    descriptor = Gaussian(cutoff=4.0, Gs=[
        {"type": "G2", "element": "Cu", "eta": 0.1},
        {"type": "G2", "element": "Pt", "eta": 0.1},
        {"type": "G4", "elements": ["Pt", "Pt"], "eta": 0.005, "zeta": 1.0,
         "gamma": 1.0}], elements=["Cu", "Pt"])
    descriptor.calculate_fingerprints(images, calculate_derivatives=True)
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0,
                          regressor=Regressor("L-BFGS-B"))
    model.lossfunction = LossFunction(
        convergence={"energy_rmse": 0.5, "force_rmse": 50.0})
    text = io.StringIO()
    assert model.fit(images, descriptor, Logger(text), None) is True
    log = text.getvalue()
    assert "ForceRMSE" in log and "L-BFGS-B" in log
    row = _table_rows(log)[-1].split()
    assert len(row) == 11 and row[4] == row[8] == "C"


@pytest.mark.parametrize("optimizer, maxiter", [
    ("TNC", 200), ("Newton-CG", 200),                 # Amp's presets
    ("CG", 300), ("l-bfgs-b", 300), ("SLSQP", 300),   # any scipy name
])
def test_optimizers_by_name_converge(training, optimizer, maxiter):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0,
                          regressor=Regressor(optimizer))
    model.lossfunction = LossFunction(convergence={"energy_rmse": 0.3},
                                      force_coefficient=None, maxiter=maxiter)
    assert model.fit(images, descriptor, Logger(None), None) is True
    assert model.regressor.stop_reason == "converged"


def test_callable_optimizer_and_unconverged_finish(training):
    images, descriptor = training
    calls = []

    def few_steps(function, x0, jac=None, **kwargs):
        """Three plain gradient steps, then give up."""
        calls.append(jac)
        x = x0
        for _ in range(3):
            loss, gradient = function(x)
            x = x - 1e-3 * gradient
        return x

    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0,
                          regressor=Regressor(few_steps))
    model.lossfunction = LossFunction(force_coefficient=None,
                                      convergence={"energy_rmse": 1e-9})
    assert model.fit(images, descriptor, Logger(None), None) is False
    assert calls == [True]
    assert model.lossfunction._step == 3


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown optimizer"):
        Regressor("NoSuchOptimizer")


def test_checkpoints_every_n_steps(training, tmp_path, monkeypatch):
    images, descriptor = training
    saved = []
    monkeypatch.setattr(Amp, "save", lambda self, filename, overwrite=False:
                        saved.append((filename, overwrite)))
    label = str(tmp_path / "run" / "calc")
    for checkpoints, maxiter, expected in ((4, 10, 2), (None, 5, 0)):
        saved.clear()
        model = NeuralNetwork(hiddenlayers=(2,), randomseed=0,
                              checkpoints=checkpoints)
        model.lossfunction = LossFunction(force_coefficient=None,
                                          maxiter=maxiter,
                                          convergence={"energy_rmse": 1e-9})
        calc = Amp(descriptor=descriptor, model=model, label=label)
        with pytest.raises(TrainingConvergenceError):
            calc.train(images, overwrite=True)
        # Steps 4 and 8 (step 10 raises MaxIterationsReached before saving).
        checkpoints_saved = [entry for entry in saved
                             if entry[0].endswith("-checkpoint.amp")]
        assert checkpoints_saved == [(label + "-checkpoint.amp", True)] * \
            expected


def test_on_step_follows_every_evaluation(training):
    images, descriptor = training
    model = NeuralNetwork(hiddenlayers=(2,), randomseed=0)
    model.lossfunction = LossFunction(force_coefficient=None, maxiter=10,
                                      convergence={"energy_rmse": 1e-9})
    steps = []
    assert model.fit(images, descriptor, Logger(None), None,
                     on_step=steps.append) is False
    assert steps == list(range(1, 10))


# BFGS in O(n^2) ---------------------------------------------------------

def _smooth_problem(n=25, seed=0):
    """A smooth, non-quadratic loss with its gradient."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    A = A @ A.T / n + np.eye(n)
    b = rng.normal(size=n)

    def fun(x):
        loss = (0.5 * x @ A @ x - b @ x + 0.1 * np.sum(x ** 4)
                + np.sum(np.log(np.cosh(x))))
        return loss, A @ x - b + 0.4 * x ** 3 + np.tanh(x)

    return fun, rng.normal(size=n)


def _iterates(minimizer, fun, x0, **kwargs):
    steps = []
    result = minimizer(fun, x0, callback=lambda xk: steps.append(xk.copy()),
                       **kwargs)
    return np.array(steps), result


@pytest.mark.parametrize("norm", [np.inf, 2])
def test_bfgs_iterates_match_scipy(norm):
    from scipy.optimize import minimize

    from amp.regression.bfgs import minimize_bfgs

    fun, x0 = _smooth_problem()
    ours, mine = _iterates(minimize_bfgs, fun, x0, jac=True, maxiter=20,
                           gtol=1e-15, norm=norm)
    theirs, ref = _iterates(minimize, fun, x0, jac=True, method="BFGS",
                            options={"maxiter": 20, "gtol": 1e-15,
                                     "norm": norm})
    assert ours.shape == theirs.shape == (20, len(x0))
    scale = np.linalg.norm(theirs, axis=1)
    assert np.all(np.linalg.norm(ours - theirs, axis=1) <= 1e-8 * scale)
    assert (mine.nfev, mine.nit, mine.status, mine.message) == \
        (ref.nfev, ref.nit, ref.status, ref.message)
    # The inverse Hessian itself, before late steps amplify rounding.
    mine = minimize_bfgs(fun, x0, jac=True, maxiter=3, norm=norm)
    ref = minimize(fun, x0, jac=True, method="BFGS",
                   options={"maxiter": 3, "norm": norm})
    np.testing.assert_allclose(mine.hess_inv, ref.hess_inv, rtol=0,
                               atol=1e-12 * np.abs(ref.hess_inv).max())


def test_bfgs_stopping_rules_match_scipy():
    from scipy.optimize import minimize

    from amp.regression.bfgs import minimize_bfgs

    fun, x0 = _smooth_problem(n=8, seed=3)
    for options in ({"gtol": 1e-6}, {"gtol": 1e-15, "xrtol": 1e-3},
                    {"gtol": 1e30}):
        mine = minimize_bfgs(fun, x0, jac=True, **options)
        ref = minimize(fun, x0, jac=True, method="BFGS", options=options)
        assert (mine.nit, mine.status, mine.message) == \
            (ref.nit, ref.status, ref.message)
        np.testing.assert_allclose(mine.x, ref.x, rtol=1e-8, atol=1e-12)
    # A loss that only goes down along no direction: the line search
    # fails, as in scipy.
    flat = lambda x: (float(np.sum(x ** 2)), np.ones_like(x))  # noqa: E731
    mine = minimize_bfgs(flat, np.zeros(3), jac=True)
    ref = minimize(flat, np.zeros(3), jac=True, method="BFGS")
    assert mine.status == ref.status == 2 and mine.message == ref.message


def test_default_regressor_uses_own_bfgs_on_network(training):
    """The default optimizer follows scipy's BFGS on a network's loss."""
    from scipy.optimize import minimize

    images, descriptor = training
    results = {}
    for name in ("own", "scipy"):
        model = NeuralNetwork(hiddenlayers=(4, 3), randomseed=5)
        model.lossfunction = LossFunction(force_coefficient=None, maxiter=40,
                                          convergence={"energy_rmse": 1e-9})
        if name == "scipy":
            def scipy_bfgs(function, x0, jac=None, **kwargs):
                return minimize(function, x0, jac=jac, **kwargs)

            model.regressor = Regressor(scipy_bfgs, optimizer_kwargs={
                "method": "BFGS", "options": {"gtol": 1e-15}})
        else:
            model.regressor = Regressor()
        text = io.StringIO()
        assert model.fit(images, descriptor, Logger(text), None) is False
        results[name] = (model.vector.copy(), model.lossfunction._best[0],
                         model.regressor.stop_reason)
    own, ref = results["own"], results["scipy"]
    assert abs(own[1] - ref[1]) <= 1e-10 * abs(ref[1])
    np.testing.assert_allclose(own[0], ref[0], rtol=1e-8, atol=1e-10)
    assert own[2].startswith("maxiter reached")


def test_lbfgsb_keyword_passing():
    regressor = Regressor("L-BFGS-B", optimizer_kwargs={
        "options": {"maxcor": 30}})
    assert regressor.optimizer_kwargs["method"] == "L-BFGS-B"
    assert regressor.optimizer_kwargs["options"]["maxcor"] == 30
    assert regressor.optimizer_kwargs["options"]["maxls"] == 2000


def test_stop_reason_in_training_convergence_error(tmp_path):
    """The exception states why the optimizer stopped, not always
    'maxiter'."""
    from amp import Amp
    from amp.model import TrainingConvergenceError
    from conftest import cu_bulk, rattled_with_emt

    images = rattled_with_emt(lambda k: cu_bulk(3.6, (2, 1, 1)), 3, 0.1,
                              rng=np.random.default_rng(0))

    def calc(label, regressor, maxiter=100000):
        amp = Amp(descriptor=Gaussian(cutoff=4.0),
                  model=NeuralNetwork(hiddenlayers=(2,), randomseed=1,
                                      regressor=regressor),
                  label=str(tmp_path / label), cores=1)
        amp.model.lossfunction = LossFunction(
            convergence={"energy_rmse": 1e-12}, force_coefficient=None,
            maxiter=maxiter)
        return amp

    # The optimizer's own rule (gtol) ends it first.
    with pytest.raises(TrainingConvergenceError) as error:
        calc("gtol", Regressor(optimizer_kwargs={
            "options": {"gtol": 1e30}})).train(images)
    message = str(error.value)
    assert "did not converge: the optimizer stopped after 0 iterations" \
        in message
    assert "Optimization terminated successfully" in message
    assert "maxiter" not in message
    assert "gtol-untrained-parameters.amp" in message
    # The optimizer's own iteration limit.
    with pytest.raises(TrainingConvergenceError,
                       match="stopped after 2 iterations before the criteria "
                             "were met: Maximum number of iterations"):
        calc("own", Regressor(optimizer_kwargs={
            "options": {"maxiter": 2}})).train(images)
    # The loss function's maxiter.
    with pytest.raises(TrainingConvergenceError,
                       match="maxiter reached: no convergence after 4 loss "
                             "evaluations"):
        calc("maxiter", Regressor(), maxiter=4).train(images)
