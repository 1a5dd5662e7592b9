"""Which hosts and how many cores: Amp's ``assign_cores`` and helpers.

Batch-system variables are parsed here without calling any batch command
(no ``scontrol``), so this works on login and compute nodes alike.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import numpy as np


def _split_top(text):
    """Split at commas that are not inside brackets."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM host list: ``'node[01-03,07],gpu1'`` -> names.

    Zero padding is kept (``01-03`` -> ``01``, ``02``, ``03``); several
    bracket groups in one name (``r[1-2]n[1-2]``) expand in order.
    """
    hosts = []
    for part in _split_top(nodelist):
        match = re.search(r"\[([^\]]*)\]", part)
        if match is None:
            hosts.append(part)
            continue
        prefix, suffix = part[:match.start()], part[match.end():]
        for item in match.group(1).split(","):
            low, _, high = item.strip().partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise ValueError("cannot read the node list %r" % nodelist)
            width = len(low)
            for number in range(int(low), int(high or low) + 1):
                hosts.extend(expand_nodelist(
                    "%s%0*d%s" % (prefix, width, number, suffix)))
    return hosts


def expand_tasks(tasks: str) -> list[int]:
    """Expand ``SLURM_TASKS_PER_NODE``: ``'16(x2),8'`` -> ``[16, 16, 8]``."""
    counts = []
    for part in tasks.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match is None:
            raise ValueError("cannot read SLURM_TASKS_PER_NODE=%r" % tasks)
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


# RFC 1123 labels (letters, digits, inner hyphens; underscores too, as in
# ssh aliases), dot-separated, 253 characters at most; or an IPv6 literal.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(r"(?:%s)(?:\.%s)*\.?" % (_LABEL, _LABEL))
_IPV6 = re.compile(r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*"
                   r"(?:%[A-Za-z0-9_.-]{1,64})?")


def check_host_name(host: str) -> str:
    """Return ``host`` if it is a host name or address, else raise.

    A host name reaches ``ssh`` and a remote shell, so only what the
    host-name grammar allows passes: dot-separated labels of letters,
    digits, hyphens and underscores that neither start nor end with a
    hyphen (so never an ssh option), or an IPv4 or IPv6 address.

    Raises
    ------
    ValueError
        Naming the host and why.
    """
    if not isinstance(host, str) or len(host) > 253 or not (
            _HOST_NAME.fullmatch(host) or _IPV6.fullmatch(host)):
        raise ValueError(
            "%r is not a host name: give a name (letters, digits, '-', '_', "
            "'.', starting with a letter or digit) or an IP address"
            % (host,))
    return host


def _count_lines(path, field=None):
    cores = {}
    with open(path) as handle:
        for line in handle:
            words = line.split()
            if not words:
                continue
            count = int(words[field]) if field is not None else 1
            cores[words[0]] = cores.get(words[0], 0) + count
    return cores


def _local_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def assign_cores(cores: int | dict[str, int] | None,
                 log: Callable[..., Any] | None = None) -> dict[str, int]:
    """Return ``{hostname: number of workers}`` (Amp's ``assign_cores``).

    Parameters
    ----------
    cores : int, dict or None
        An int gives that many workers on ``'localhost'``; a dict is taken
        as it is; None reads the environment: SLURM (``SLURM_JOB_NODELIST``
        or ``SLURM_NODELIST``, ``SLURM_TASKS_PER_NODE``, checked against
        ``SLURM_NNODES``), SGE (``PE_HOSTFILE``), PBS/Torque
        (``PBS_NODEFILE``), LSF (``LSB_MCPU_HOSTS``), otherwise the CPUs
        this process may use on this machine.
    log : callable, optional
        Receives a line saying what was found.

    Raises
    ------
    ValueError
        When the counts are not positive integers or the batch-system
        variables contradict each other.
    """
    log = log if log is not None else (lambda *a, **k: None)
    found: dict[Any, Any]
    if isinstance(cores, dict):
        found, source = dict(cores), "given"
    elif cores is not None:
        found, source = {"localhost": cores}, "given"
    else:
        env = os.environ
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        if nodelist and "SLURM_TASKS_PER_NODE" in env:
            hosts = expand_nodelist(nodelist)
            counts = expand_tasks(env["SLURM_TASKS_PER_NODE"])
            nnodes = int(env.get("SLURM_NNODES", len(hosts)))
            if not len(hosts) == len(counts) == nnodes:
                raise ValueError(
                    "SLURM variables disagree: %d nodes in %r, %d task counts "
                    "in %r, SLURM_NNODES=%d" % (
                        len(hosts), nodelist, len(counts),
                        env["SLURM_TASKS_PER_NODE"], nnodes))
            found, source = dict(zip(hosts, counts)), "SLURM"
        elif env.get("PE_HOSTFILE"):
            found, source = _count_lines(env["PE_HOSTFILE"], 1), "SGE"
        elif env.get("PBS_NODEFILE"):
            found, source = _count_lines(env["PBS_NODEFILE"]), "PBS"
        elif env.get("LSB_MCPU_HOSTS"):
            words = env["LSB_MCPU_HOSTS"].split()
            found = {}
            for host, count in zip(words[::2], words[1::2]):
                found[host] = found.get(host, 0) + int(count)
            source = "LSF"
        else:
            found, source = {"localhost": _local_cpus()}, "this machine"
    for host, count in found.items():
        check_host_name(host)
        if isinstance(count, bool) or \
                int(count) != count or count < 1:
            raise ValueError("cores must be positive integers per host, "
                             "got %r: %r" % (host, count))
    found = {host: int(count) for host, count in found.items()}
    log(" Parallel cores (%s): %s" % (source, ", ".join(
        "%s: %d" % item for item in found.items())))
    return found


def make_sublists(masterlist: list[Any], n: int) -> list[list[Any]]:
    """Randomly divide ``masterlist`` into ``n`` lists of nearly equal size.

    As Amp's: meant to split keys among workers; the items are shuffled
    (``numpy.random``) and ``masterlist`` is emptied on the way to save
    memory. Sizes differ by at most one.
    """
    np.random.shuffle(masterlist)
    sizes = [len(masterlist) // n + (index < len(masterlist) % n)
             for index in range(n)]
    sublists = []
    for size in sizes:
        sublists.append(masterlist[:size])
        del masterlist[:size]
    return sublists
