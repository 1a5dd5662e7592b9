"""Starting workers on a host: subprocesses here, a launcher over SSH.

Local workers are ``python -m amp.parallel`` subprocesses that get the run's
secret on stdin; on another host, one pxssh session (as the current user,
key authentication only) runs the environment command and then one
launcher that starts that host's workers (:func:`amp.parallel.worker.launcher_main`).
:mod:`amp.parallel` re-exports :func:`start_workers` and
:class:`WorkerError`.
"""

import getpass
import os
import re
import socket
import subprocess
import sys

from .hosts import check_host_name

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?")


class WorkerError(RuntimeError):
    """Workers failed (died, stopped answering, raised) and the run stops."""

    __module__ = "amp.parallel"  # where users import it from


def is_local(host):
    """True when ``host`` names this machine."""
    return host in _LOCAL_NAMES or host in (
        socket.gethostname(), socket.getfqdn(),
        socket.gethostname().split(".")[0])


def login(host, timeout):
    """Open a pxssh session to ``host`` as the current user (keys only).

    The host name is checked (:func:`amp.parallel.hosts.check_host_name`)
    and given to ssh after ``--``, so it can never be read as an option.
    """
    from pexpect import pxssh

    check_host_name(host)
    user = getpass.getuser()
    if not _USER_NAME.fullmatch(user):
        raise WorkerError("the user name %r cannot be given to ssh" % user)
    session = pxssh.pxssh(timeout=timeout, options={
        "BatchMode": "yes", "ConnectTimeout": str(int(max(1, timeout)))})
    try:
        # pxssh appends the server to "ssh <options> -l user": "--" ends
        # the options there.
        session.login("-- " + host, user, login_timeout=timeout,
                      sync_original_prompt=False)
    except Exception as error:
        try:
            session.close(force=True)
        except Exception:  # failed before ssh was started
            pass
        raise WorkerError("cannot open an SSH session to %s as %s (key "
                          "authentication; see docs/parallel.md): %s"
                          % (host, user, error)) from None
    return session


def remote_run(session, command):
    """Run ``command`` in a pxssh session; return its output lines."""
    session.sendline(command)
    session.prompt()
    return session.before.decode(errors="replace").splitlines()[1:]


def start_workers(process_ids, workerhostname, workercommand, log,
                  envcommand=None, address=None, secret=None, session=None,
                  timeout=30.0):
    """Start the workers ``process_ids`` on one host (Amp's function).

    Parameters
    ----------
    process_ids : list of int
    workerhostname : str
        ``'localhost'`` (or this machine's name): subprocesses; anything
        else: an SSH session through pxssh, in which ``envcommand`` runs
        first and then one launcher starts the host's workers.
    workercommand : str or list
        How to run ``python -m amp.parallel`` there (a list for local
        workers, a shell string for remote ones).
    log : callable
    envcommand : str, optional
        e.g. ``'source ~/venv/bin/activate'`` (remote hosts only).
    address, secret : str
        The master's ZMQ address and the run's secret (sent on stdin).
    session : pxssh, optional
        An open session to reuse (remote hosts).

    Returns
    -------
    list of subprocess.Popen, or pxssh session
    """
    check_host_name(workerhostname)  # it goes into a remote command line
    if is_local(workerhostname):
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        # The workers import this very package, wherever it was imported from.
        env["PYTHONPATH"] = os.pathsep.join(
            [_PACKAGE_PARENT] + [p for p in [env.get("PYTHONPATH")] if p])
        command = list(workercommand or [sys.executable, "-m", "amp.parallel"])
        processes = []
        for process_id in process_ids:
            process = subprocess.Popen(
                command + ["worker", address, str(process_id),
                           workerhostname], stdin=subprocess.PIPE, env=env)
            process.stdin.write((secret + "\n").encode())
            process.stdin.flush()  # kept open: its end tells the worker to go
            processes.append(process)
        log(" Started %d local workers." % len(processes))
        return processes
    if session is None:
        session = login(workerhostname, timeout)
    if envcommand:
        log(" Environment command on %s: %s" % (workerhostname, envcommand))
        remote_run(session, envcommand)
    command = workercommand or "python3 -m amp.parallel"
    session.sendline("%s launch %s %s %s" % (
        command, address, ",".join(map(str, process_ids)), workerhostname))
    if session.expect(["<amp-secret>", session.PROMPT], timeout=timeout):
        raise WorkerError("the worker launcher did not start on %s: %s" % (
            workerhostname, session.before.decode(errors="replace")[-2000:]))
    session.sendline(secret)  # the launcher has switched terminal echo off
    session.expect(r"<amp-launched \d+>", timeout=timeout)
    log(" Started %d workers on %s." % (len(process_ids), workerhostname))
    return session
