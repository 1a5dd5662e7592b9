"""Reading single fields of a loaded dataset, task or model.

sgdml stores its numbers and flags (``sig``, ``lam``, ``use_E``,
``n_test``, ...) as 0-d arrays and its error records (``f_err``,
``e_err``) as 0-d object arrays; :func:`scalar` turns any of them into
the Python value. :func:`energy_mode` answers the one question every
step asks of a task or model: what does it do with energies?
"""

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["ENERGY_MODES", "scalar", "energy_mode"]

#: The answers of :func:`energy_mode`: forces only; energies fix the
#: global integration constant ``c``; pointwise energy constraints in the
#: kernel (coefficients ``alphas_E``).
ENERGY_MODES = ("none", "constant", "constraints")


def scalar(value: Any) -> Any:
    """The Python value of a one-element field; anything else as an array.

    Parameters
    ----------
    value : object
        A 0-d (or other one-element) array, a NumPy or Python scalar, or a
        value an object array holds (dict, bytes, str, None).

    Returns
    -------
    object
        ``float``/``int``/``bool``/``bytes``/``str``/``dict``/``None`` for
        one element, else ``numpy.asarray(value)``.

    Examples
    --------
    >>> scalar(np.array(20))
    20
    >>> scalar(np.array({"mae": 0.1}, dtype=object))
    {'mae': 0.1}
    """
    array = np.asarray(value)
    if array.size == 1:
        return array.reshape(()).item()
    return array


def energy_mode(data: Mapping[str, Any]) -> str:
    """What a task or model does with energies.

    sgdml writes ``use_E`` into every task and model (a file without it
    is read as using energies, as sgdml's command line read it); a task
    says ``use_E_cstr``, and a model trained with energy constraints
    holds their coefficients ``alphas_E``. Constraints count only when
    energies are used.

    Parameters
    ----------
    data : mapping
        A task or model (loaded or as built in memory).

    Returns
    -------
    str
        One of :data:`ENERGY_MODES`: ``'none'`` (forces only),
        ``'constant'`` (energies fix the integration constant) or
        ``'constraints'`` (pointwise energy constraints in the kernel).
    """
    if not bool(scalar(data.get("use_E", True))):
        return "none"
    if "use_E_cstr" in data:
        constrained = bool(scalar(data["use_E_cstr"]))
    else:
        constrained = "alphas_E" in data
    return "constraints" if constrained else "constant"
