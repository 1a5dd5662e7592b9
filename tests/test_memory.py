"""The one answer to "how much memory may this process still allocate"
(amp.store.memory): the system, RLIMIT_AS and cgroup v1/v2 limits."""
import os
import subprocess
import sys

import pytest

from amp.store import memory
from amp.store.memory import available_memory, cgroup_room


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def fake_proc(tmp_path, lines):
    proc = tmp_path / "proc"
    write(str(proc / "self" / "cgroup"), "".join(line + "\n"
                                                 for line in lines))
    return str(proc)


def test_one_function_for_the_neighbour_search_and_the_training_budget():
    from amp.descriptor import budget, neighbors

    assert neighbors.available_memory is memory.available_memory
    assert budget.available_memory is memory.available_memory


def test_available_memory_is_the_smallest_source(monkeypatch):
    available = available_memory()
    assert available is None or available > 0
    monkeypatch.setattr(memory, "_system_available", lambda: 5000)
    monkeypatch.setattr(memory, "_rlimit_room", lambda: None)
    monkeypatch.setattr(memory, "cgroup_room", lambda: 3000)
    assert available_memory() == 3000
    monkeypatch.setattr(memory, "_rlimit_room", lambda: 1000)
    assert available_memory() == 1000
    for name in ("_system_available", "_rlimit_room", "cgroup_room"):
        monkeypatch.setattr(memory, name, lambda: None)
    assert available_memory() is None


def test_system_memory_is_memavailable():
    with open("/proc/meminfo") as handle:
        kb = [int(line.split()[1]) for line in handle
              if line.startswith("MemAvailable:")]
    # MemAvailable moves while other programs run: compare loosely.
    assert memory._system_available() == pytest.approx(kb[0] * 1024,
                                                       rel=0.2)


def test_cgroup_v2_every_ancestor_limits_and_page_cache_is_free(tmp_path):
    proc = fake_proc(tmp_path, ["0::/jobs/run"])
    mount = tmp_path / "cgroup"
    leaf = mount / "jobs" / "run"
    write(str(leaf / "memory.max"), "1000000\n")
    write(str(leaf / "memory.current"), "400000\n")
    write(str(leaf / "memory.stat"), "anon 250000\ninactive_file 100000\n")
    assert cgroup_room(proc, str(mount)) == 1000000 - (400000 - 100000)
    write(str(mount / "jobs" / "memory.max"), "900000\n")
    write(str(mount / "jobs" / "memory.current"), "700000\n")
    assert cgroup_room(proc, str(mount)) == 200000  # the parent is fuller
    write(str(mount / "jobs" / "memory.max"), "max\n")
    assert cgroup_room(proc, str(mount)) == 700000
    write(str(leaf / "memory.current"), "2000000\n")  # over: no room
    assert cgroup_room(proc, str(mount)) == 0


def test_cgroup_v2_without_limits_or_files(tmp_path):
    proc = fake_proc(tmp_path, ["0::/"])
    mount = tmp_path / "cgroup"
    os.makedirs(str(mount))
    assert cgroup_room(proc, str(mount)) is None  # the root has no max
    write(str(mount / "memory.max"), "max\n")
    write(str(mount / "memory.current"), "123\n")
    assert cgroup_room(proc, str(mount)) is None
    assert cgroup_room(str(tmp_path / "nowhere"), str(mount)) is None


def test_cgroup_v2_namespace_path_missing_uses_the_mount(tmp_path):
    """Without a cgroup namespace a container sees its host path, while
    its own cgroup is mounted at the root."""
    proc = fake_proc(tmp_path, ["0::/system.slice/docker-1.scope"])
    mount = tmp_path / "cgroup"
    write(str(mount / "memory.max"), "5000\n")
    write(str(mount / "memory.current"), "1000\n")
    assert cgroup_room(proc, str(mount)) == 4000


def test_cgroup_v1_limit_usage_and_hierarchical_limit(tmp_path):
    proc = fake_proc(tmp_path, ["5:cpu,cpuacct:/x", "4:memory:/x/y",
                                "0::/"])
    folder = tmp_path / "cgroup" / "memory" / "x" / "y"
    write(str(folder / "memory.limit_in_bytes"), "5000\n")
    write(str(folder / "memory.usage_in_bytes"), "3000\n")
    mount = str(tmp_path / "cgroup")
    assert cgroup_room(proc, mount) == 2000
    write(str(folder / "memory.stat"), "cache 900\ninactive_file 500\n"
          "hierarchical_memory_limit 4000\ntotal_inactive_file 700\n")
    assert cgroup_room(proc, mount) == 4000 - (3000 - 500)
    # v1's "no limit" is a huge number: room, but never the smallest.
    write(str(folder / "memory.stat"), "inactive_file 0\n")
    write(str(folder / "memory.limit_in_bytes"), "9223372036854771712\n")
    assert cgroup_room(proc, mount) == 9223372036854771712 - 3000


def test_cgroup_files_are_read_as_hostile(tmp_path):
    """A link or an oversized file is skipped, never followed or read
    whole."""
    proc = fake_proc(tmp_path, ["0::/"])
    mount = tmp_path / "cgroup"
    write(str(tmp_path / "elsewhere"), "10\n")
    os.makedirs(str(mount))
    os.symlink(str(tmp_path / "elsewhere"), str(mount / "memory.max"))
    write(str(mount / "memory.current"), "1\n")
    assert cgroup_room(proc, str(mount)) is None
    os.unlink(str(mount / "memory.max"))
    write(str(mount / "memory.max"), "100\n")
    write(str(mount / "memory.stat"),
          "inactive_file 1\n" + "x 1\n" * memory._CAP_BYTES)
    assert cgroup_room(proc, str(mount)) == 99  # stat refused: none free
    write(str(mount / "memory.max"), "1" * (memory._CAP_BYTES + 1))
    assert cgroup_room(proc, str(mount)) is None


def test_rlimit_as_is_honoured():
    """Under a soft RLIMIT_AS 256 MiB above the process's size, no more
    than that is available (run in a child: the limit is process-wide)."""
    script = r"""
import os, resource
from amp.store import memory
with open("/proc/self/statm") as handle:
    used = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
_, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (used + 2 ** 28, hard))
print(memory.available_memory(), memory._rlimit_room())
"""
    result = subprocess.run([sys.executable, "-c", script],
                            capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-2000:]
    available, room = (int(word) for word in result.stdout.split())
    assert 0 < room <= 2 ** 28
    assert room > 2 ** 28 - 2 ** 24  # the child grew by less than 16 MiB
    assert available <= room
