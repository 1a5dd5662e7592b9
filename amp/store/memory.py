"""How much memory this process may still allocate: one answer for every
part of the library that refuses work too large to fit (the neighbour
search, the force-training budget).

:func:`available_memory` is the smallest of

* the system's available memory (``MemAvailable`` in ``/proc/meminfo``,
  else ``sysconf``);
* the room left under the soft ``RLIMIT_AS`` (the limit minus the
  process's address-space size, ``/proc/self/statm``);
* the room left in the process's memory cgroup and each of its ancestors:
  cgroup v2 ``memory.max`` minus ``memory.current``, cgroup v1
  ``memory.limit_in_bytes`` (or, when ``memory.stat`` has it, the
  ``hierarchical_memory_limit`` that includes the ancestors' limits) minus
  ``memory.usage_in_bytes``. The usage counts the page cache, which the
  kernel reclaims before it refuses an allocation, so its inactive part
  (``inactive_file`` in ``memory.stat``) is not counted as used, as
  container runtimes count a cgroup's working set.

Every source that is missing or unreadable is skipped; the files are read
with :func:`amp.store.files.read_file` under a small cap.
"""

import os

from .files import read_file

__all__ = ["available_memory", "cgroup_room"]

# /proc/meminfo, memory.stat and the others are a few kB at most.
_CAP_BYTES = 2 ** 16

_PROC = "/proc"
_CGROUP_MOUNT = "/sys/fs/cgroup"  # v2, or the folder of v1's hierarchies


def available_memory() -> int | None:
    """Bytes this process may still allocate, or None when no source says.

    The smallest of the system's available memory, the room under
    ``RLIMIT_AS`` and the room in the process's memory cgroup (see the
    module's description).
    """
    candidates = [room for room in (_system_available(), _rlimit_room(),
                                    cgroup_room()) if room is not None]
    return min(candidates) if candidates else None


def _read_text(path):
    try:
        return read_file(path, _CAP_BYTES).decode("ascii", "replace")
    except OSError:
        return None


def _system_available():
    text = _read_text(os.path.join(_PROC, "meminfo"))
    for line in (text or "").splitlines():
        if line.startswith("MemAvailable:"):
            try:
                return int(line.split()[1]) * 1024
            except (ValueError, IndexError):
                break
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _rlimit_room():
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    text = _read_text(os.path.join(_PROC, "self", "statm"))
    try:
        used = int(text.split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, IndexError, OSError):
        return None
    return max(soft - used, 0)


def _number(text):
    """The integer in a cgroup file, or None (``max``, missing, garbage)."""
    try:
        return int(text.strip())
    except (AttributeError, ValueError):
        return None


def _stat(folder, key):
    """The value of ``key`` in ``folder/memory.stat``, or None."""
    for line in (_read_text(os.path.join(folder, "memory.stat"))
                 or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _number(value)
    return None


def _room(limit, usage, folder):
    """``limit - usage`` with the inactive page cache not counted."""
    if limit is None or usage is None:
        return None
    reclaimable = _stat(folder, "inactive_file") or 0
    return max(limit - max(usage - reclaimable, 0), 0)


def _folders(mount, path):
    """``mount/path`` and its ancestors up to ``mount`` that exist."""
    parts = [part for part in path.split("/") if part]
    folders = [os.path.join(mount, *parts[:n])
               for n in range(len(parts), -1, -1)]
    return [folder for folder in folders if os.path.isdir(folder)]


def cgroup_room(proc: str = _PROC,
                mount: str = _CGROUP_MOUNT) -> int | None:
    """Bytes left under the memory limits of this process's cgroup and its
    ancestors (v2 and v1), or None when none is set or readable.

    Parameters
    ----------
    proc, mount : str
        Where ``self/cgroup`` and the cgroup file systems are (for tests).
    """
    rooms = []
    for line in (_read_text(os.path.join(proc, "self", "cgroup"))
                 or "").splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # cgroup v2: every ancestor's limit applies
            for folder in _folders(mount, path):
                rooms.append(_room(
                    _number(_read_text(os.path.join(folder, "memory.max"))),
                    _number(_read_text(os.path.join(folder,
                                                    "memory.current"))),
                    folder))
        elif "memory" in controllers.split(","):  # v1: the nearest folder
            folder = (_folders(os.path.join(mount, "memory"), path)
                      or [None])[0]
            if folder is None:
                continue
            limit = _stat(folder, "hierarchical_memory_limit") or _number(
                _read_text(os.path.join(folder, "memory.limit_in_bytes")))
            rooms.append(_room(limit, _number(_read_text(os.path.join(
                folder, "memory.usage_in_bytes"))), folder))
    rooms = [room for room in rooms if room is not None]
    return min(rooms) if rooms else None
