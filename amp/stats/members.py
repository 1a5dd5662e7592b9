"""Training one bootstrap member: the template's settings as plain data,
a fresh member calculator built from them, its seeds, and the training
(with retries on new seeds), in this process or as a worker's job
(:class:`TrainMember`). :class:`amp.stats.bootstrap.BootStrap` trains its
members with these, one after another, on ZMQ workers or on the ranks of
an MPI job (:mod:`amp.stats.ranks`).
"""

import os
from typing import Any

import numpy as np

from .. import Amp
from ..parallel import register_job
from ..store import modelfile
from ..utilities import Logger, TrainingConvergenceError, make_filename


def _template_spec(calc):
    """The settings every member copies from a template calculator, as
    plain data (what a worker needs to build a member)."""
    from ..model.neuralnetwork import NeuralNetwork
    from ..regression import Regressor

    if not isinstance(calc, Amp):
        raise TypeError("the template calc must be an amp.Amp calculator, "
                        "got %s" % type(calc).__name__)
    model = calc.model
    if not isinstance(model, NeuralNetwork):
        raise TypeError("BootStrap trains NeuralNetwork models; the "
                        "template's model is a %s" % type(model).__name__)
    settings = model.todict()
    loss = model.lossfunction.parameters
    regressor = model.regressor if model.regressor is not None \
        else Regressor()
    stress = {} if loss.get("stress_coefficient") is None else \
        {"stress_coefficient": loss["stress_coefficient"]}
    return {
        "descriptor": calc.descriptor.todict(),
        "model": {"hiddenlayers": settings["hiddenlayers"],
                  "activation": settings["activation"],
                  "prescale": settings["prescale"],
                  "checkpoints": settings["checkpoints"]},
        "loss": {"energy_coefficient": loss["energy_coefficient"],
                 "force_coefficient": loss["force_coefficient"],
                 "convergence": dict(loss["convergence"]),
                 "overfit": loss["overfit"],
                 "weight_duplicates": loss["weight_duplicates"],
                 "maxiter": loss["maxiter"], **stress},
        "regressor": {"optimizer": regressor.optimizer,
                      "optimizer_kwargs": regressor.optimizer_kwargs,
                      "lossprime": regressor.lossprime}}


def _build_member(spec, label, dblabel, randomseed):
    """A fresh, untrained member calculator from a template spec."""
    from ..model import LossFunction
    from ..model.neuralnetwork import NeuralNetwork
    from ..importing import from_importname
    from ..regression import Regressor

    model = NeuralNetwork(randomseed=randomseed,
                          lossfunction=LossFunction(**spec["loss"]),
                          regressor=Regressor(**spec["regressor"]),
                          **spec["model"])
    return Amp(descriptor=from_importname(spec["descriptor"]), model=model,
               label=label, dblabel=dblabel, cores=1)


def _member_seed(seed, index, attempt):
    """The weight-initialisation seed of attempt ``attempt`` of member
    ``index``."""
    state = np.random.SeedSequence([seed, index, attempt]).generate_state(1)
    return int(state[0] >> 1)


def _train_member(spec, images, label, dblabel, seeds, log):
    """Train one member, trying each seed in turn until one converges.

    Returns
    -------
    dict
        ``converged``, ``seeds`` (those tried) and, when converged,
        ``text`` (the member's ``.amp`` text).
    """
    tried = []
    for attempt, randomseed in enumerate(seeds):
        checkpoint = make_filename(label, "-checkpoint.amp")
        if attempt and os.path.exists(checkpoint):
            os.remove(checkpoint)  # a retry starts from its own seed
        member = _build_member(spec, label, dblabel, randomseed)
        tried.append(randomseed)
        try:
            member.train(images, overwrite=True)
        except TrainingConvergenceError as error:
            log("  %s: not converged with seed %d (%s)."
                % (os.path.basename(label), randomseed, error))
            continue
        return {"converged": True, "seeds": tried,
                "text": modelfile.dumps(member.descriptor.todict(),
                                        member.model.todict())}
    return {"converged": False, "seeds": tried}


@register_job
class TrainMember:
    """Worker job: train one ensemble member (see :meth:`BootStrap.train`).

    ``setup``: ``{'spec': template spec}``; each item: ``{'images': [Atoms],
    'label': str, 'dblabel': str, 'seeds': [int]}``; the value is
    :func:`_train_member`'s dict.
    """

    def __init__(self, setup: dict[str, Any]) -> None:
        self.spec = setup["spec"]

    def __call__(self, key: Any, item: dict[str, Any]) -> dict[str, Any]:
        return _train_member(self.spec, item["images"], item["label"],
                             item["dblabel"], [int(s) for s in item["seeds"]],
                             Logger(None))
