"""A trained model behind an i-PI socket.

i-PI (``pip install ipi``) runs the dynamics (path-integral MD, thermostats,
replica exchange...) and asks a client for the energy, forces and virial of
each configuration over a UNIX or TCP socket. :func:`run_client` makes an
ASE calculator of this library that client, through ASE's
:class:`~ase.calculators.socketio.SocketClient` (which speaks i-PI's
protocol; the ``ipi`` package itself is needed only for the server).

i-PI sends positions and the cell; the atoms given to :func:`run_client`
say which element each atom is, in the order of i-PI's input file. The
virial (``-V sigma``) is sent when the atoms are periodic in all three
directions; otherwise zero (the calculators give no stress then).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np
from ase import Atoms

from .calculators import check_elements

__all__ = ["run_client"]


def _connect(host, port, unixsocket, timeout, log, wait):
    """A connected ``SocketClient``, retrying for ``wait`` seconds while
    the server is not listening yet."""
    from ase.calculators.socketio import SocketClient

    deadline = time.monotonic() + wait
    while True:
        try:
            return SocketClient(host=host, port=port, unixsocket=unixsocket,
                                timeout=timeout, log=log)
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def run_client(calc: Any, atoms: Atoms, unixsocket: Optional[str] = None,
               host: str = "localhost", port: Optional[int] = None,
               timeout: Optional[float] = None, wait: float = 60.0,
               log: Any = None) -> int:
    """Serve ``calc``'s energy and forces to an i-PI server until it ends.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
        e.g. ``Amp.load('model.amp')`` or ``GDMLCalculator('model.npz')``.
    atoms : ase.Atoms
        The system of i-PI's input, atoms in the same order: the elements
        and periodicity come from here, positions and cell from i-PI. It
        is copied; the original is not changed.
    unixsocket : str, optional
        The name of i-PI's UNIX socket (``<address>`` of an ``ffsocket``
        with ``mode='unix'``; the file is ``/tmp/ipi_<name>``).
    host, port : str, int, optional
        i-PI's address for ``mode='inet'`` (when ``unixsocket`` is None).
    timeout : float, optional
        Seconds a socket operation may take (None: no limit).
    wait : float
        Seconds to keep trying to connect while i-PI starts up.
    log : file, optional
        Protocol log (ASE's ``SocketClient`` log).

    Returns
    -------
    int
        Number of configurations computed.

    Raises
    ------
    ValueError
        The atoms hold an element the model does not know.
    ConnectionRefusedError, FileNotFoundError
        No i-PI server listened within ``wait`` seconds.
    """
    check_elements(calc, atoms.get_chemical_symbols(),
                   "the atoms given to the i-PI client")
    atoms = atoms.copy()
    atoms.calc = calc
    use_stress = bool(np.all(atoms.pbc)) and \
        "stress" in getattr(calc, "implemented_properties", ())
    client = _connect(host, port, unixsocket, timeout, log, wait)
    computed = 0
    try:
        for _ in client.irun(atoms, use_stress=use_stress):
            computed += 1
    finally:
        client.close()
    return computed
