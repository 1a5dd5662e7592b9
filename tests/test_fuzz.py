"""Seeded fuzzing of every reader of outside data.

Each reader (a loose database entry, ``archive.tar.gz``, a JSON ``.amp``
file, an Amp 1.x ``.amp`` file, a worker message) is given a valid input
that is then mutated at random: bit flips, truncations, inserted, deleted,
duplicated and swapped spans, "interesting" bytes, and format-aware changes
that keep the container valid but lie inside it (huge declared sizes and
shapes, odd dtypes, swapped tar members, NaN and huge numbers, deep
nesting). Every case must either load or raise the library's own named
error, within a per-case time limit, in a child process whose address
space is capped (so a reader that allocates without bound fails the test
with MemoryError instead of exhausting the machine).

The number of cases per reader is ``--fuzz-count`` (or ``AMP_FUZZ_COUNT``;
default 300, about ten seconds for the whole module); a longer run is one
flag away::

    python -m pytest tests/test_fuzz.py -s --fuzz-count 5000

``-s`` shows each reader's counts (cases, loads, named errors, seconds).
"""
import io
import logging
import multiprocessing
import os
import re
import resource
import tempfile
import time
import traceback
import zipfile
import zlib

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from amp import Amp
from amp.parallel import wire
from amp.store.database import (CorruptEntryError, FileDatabase,
                                UnsupportedEntryError, decode_entry,
                                encode_entry)
from amp.store.modelfile import ModelFileError
from checks import watchdog
from conftest import AMP_REFERENCE

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"),
    reason="the memory ceiling needs Linux's /proc and fork")

COUNT = int(os.environ.get("AMP_FUZZ_COUNT", "300"))
SEED = int(os.environ.get("AMP_FUZZ_SEED", "20261201"))
CASE_SECONDS = 20.0  # per case: only a hang takes this long
MEMORY_HEADROOM = 1536 * 2 ** 20  # address space a child may add
LEGACY = os.path.join(AMP_REFERENCE, "ptcu_nn33.amp")


# --------------------------------------------------------------- mutations

INTERESTING = [b"\x00", b"\xff" * 4, b"\x7f\xff\xff\xff", b"9" * 12,
               b"-1", b"[", b"{", b"}", b"]", b'"', b"\\", b"nan", b"NaN",
               b"1e999", b"-Infinity", b"99999999999999999999", b"(", b")",
               b",", b"\n", b"\xc3\x28", b"U300000000", b"'", b"\x80"]


def flip_bits(rng, data):
    data = bytearray(data)
    for _ in range(rng.integers(1, 17)):
        if data:
            data[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
    return bytes(data)


def truncate(rng, data):
    return data[:rng.integers(len(data) + 1)]


def insert(rng, data):
    at = rng.integers(len(data) + 1)
    extra = rng.integers(0, 256, rng.integers(1, 65), dtype=np.uint8)
    return data[:at] + extra.tobytes() + data[at:]


def delete(rng, data):
    start = rng.integers(len(data) + 1)
    return data[:start] + data[start + rng.integers(1, 257):]


def duplicate(rng, data):
    start = rng.integers(len(data) + 1)
    span = data[start:start + rng.integers(1, 513)]
    at = rng.integers(len(data) + 1)
    return data[:at] + span + data[at:]


def swap(rng, data):
    if len(data) < 4:
        return data
    a, b = sorted(rng.integers(len(data), size=2))
    size = int(rng.integers(1, max(2, min(b - a, 256) + 1)))
    if a + size > b:
        return data
    return (data[:a] + data[b:b + size] + data[a + size:b] + data[a:a + size]
            + data[b + size:])


def interesting(rng, data):
    value = INTERESTING[rng.integers(len(INTERESTING))]
    at = rng.integers(len(data) + 1)
    if rng.random() < 0.5:
        return data[:at] + value + data[at + len(value):]
    return data[:at] + value + data[at:]


BYTE_MUTATIONS = [flip_bits, truncate, insert, delete, duplicate, swap,
                  interesting]

_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_HUGE = [b"NaN", b"Infinity", b"-Infinity", b"1e308", b"10000000000000",
         b"-9223372036854775809", b"4" * 5000, b"1e-320", b"0", b"-1",
         b'"x"', b"[]", b"{}", b"null", b"true"]


def replace_number(rng, text, choices=_HUGE):
    """Replace one number of the text with a huge, odd or non-finite one."""
    numbers = list(_NUMBER.finditer(text))
    if not numbers:
        return text
    match = numbers[rng.integers(len(numbers))]
    value = choices[rng.integers(len(choices))]
    return text[:match.start()] + value + text[match.end():]


def nest_deeply(rng, text, opening=b"[", closing=b"]"):
    depth = int(rng.choice([50, 101, 1000, 100000]))
    at = rng.integers(len(text) + 1)
    return text[:at] + opening * depth + b"1" + closing * depth + text[at:]


def mutate(rng, data, structured):
    """One mutation (half the cases, so that a structured one alone often
    reaches the reader's deeper checks) or two or three; each byte-level or
    (half the time) structured."""
    for _ in range(1 if rng.random() < 0.5 else rng.integers(2, 4)):
        if structured and rng.random() < 0.5:
            operation = structured[rng.integers(len(structured))]
        else:
            operation = BYTE_MUTATIONS[rng.integers(len(BYTE_MUTATIONS))]
        data = operation(rng, data)
    return data


# ----------------------------------------------------- the valid inputs

def sample_value():
    rng = np.random.default_rng(0)
    return {"fingerprints": {"Cu": rng.normal(size=(4, 6)),
                             "Pt": rng.normal(size=(2, 6))},
            "neighbors": (np.arange(12, dtype=np.int32),
                          np.zeros((12, 3), dtype=np.int8)),
            "symbols": ["Cu"] * 4 + ["Pt"] * 2, "energy": np.float64(-1.5),
            "count": 6, "note": "fuzz", "none": None,
            "fortran": np.asfortranarray(rng.normal(size=(3, 2)))}


def zip_members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in
                archive.infolist()]


def rezip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, content in members:
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)),
                             content)
    return buffer.getvalue()


def entry_header_lie(rng, data):
    """Keep the zip valid (right CRCs) but make entry.json lie: huge or
    negative shapes, odd dtypes, wrong references, deep nesting."""
    try:
        members = zip_members(data)
    except Exception:
        return data
    index = [name for name, _ in members].index("entry.json") \
        if any(name == "entry.json" for name, _ in members) else None
    if index is None:
        return data
    name, text = members[index]
    lie = rng.integers(5)
    if lie == 0:
        text = replace_number(rng, text, [b"1000000000000", b"-5", b"0",
                                          b"3037000500", b"1e9", b"2"])
    elif lie == 1:
        dtypes = [b'"U300000000"', b'"(12000,12000)f8"', b'"O"', b'"V8"',
                  b'"<f8"', b'"|b1"', b'[["a", "<f8"]]', b'"M8[s]"', b"5"]
        text = re.sub(rb'"(<f8|<i4|\|i1)"', dtypes[rng.integers(len(dtypes))],
                      text, count=1)
    elif lie == 2:
        text = nest_deeply(rng, text)
    elif lie == 3:
        text = text.replace(b'"$array": 0', b'"$array": %d'
                            % rng.choice([-1, 99, 2 ** 40]), 1)
    else:
        text = mutate(rng, text, [])
    members[index] = (name, text)
    if rng.random() < 0.3 and len(members) > 2:  # swapped array members
        a, b = rng.choice(np.arange(1, len(members)), 2, replace=False)
        members[a], members[b] = (members[a][0], members[b][1]), \
            (members[b][0], members[a][1])
    return rezip(members)


def npy_header_lie(rng, data):
    """An array member whose .npy header asks for a huge shape."""
    try:
        members = zip_members(data)
    except Exception:
        return data
    arrays = [k for k, (name, _) in enumerate(members) if name.endswith(
        ".npy")]
    if not arrays:
        return data
    k = arrays[rng.integers(len(arrays))]
    name, content = members[k]
    content = re.sub(rb"'shape': \([^)]*\)", b"'shape': (100000, 100000)",
                     content, count=1)
    members[k] = (name, content)
    return rezip(members)


def tar_lie(rng, data):
    """Inflate the archive, lie inside the tar (huge member sizes with a
    valid checksum, swapped members, a bomb tail), deflate again."""
    try:
        tar = bytearray(zlib.decompress(data, wbits=31))
    except zlib.error:
        return data
    headers = [offset for offset in range(0, len(tar) - 511, 512)
               if tar[offset + 257:offset + 262] == b"ustar"]
    lie = rng.integers(4)
    if lie == 0 and headers:
        offset = int(headers[rng.integers(len(headers))])
        size = rng.choice([8 ** 11 - 1, 2 ** 31, 10 ** 6, 0, 7])
        tar[offset + 124:offset + 136] = b"%011o\0" % size
        tar[offset + 148:offset + 156] = b" " * 8
        tar[offset + 148:offset + 156] = b"%06o\0 " % sum(
            tar[offset:offset + 512])
    elif lie == 1 and len(headers) > 2:
        # Swap two whole members (header and data).
        spans = [(a, b) for a, b in zip(headers, headers[1:])]
        i, j = sorted(rng.choice(len(spans), 2, replace=False))
        (a0, a1), (b0, b1) = spans[i], spans[j]
        tar = tar[:a0] + tar[b0:b1] + tar[a1:b0] + tar[a0:a1] + tar[b1:]
    elif lie == 2:
        tar += bytes(int(rng.choice([2 ** 20, 32 * 2 ** 20])))
    else:
        tar = bytearray(mutate(rng, bytes(tar), []))
    return gzip_member(bytes(tar), 6) if rng.random() < 0.9 \
        else gzip_two_members(bytes(tar))


def gzip_member(data, level=-1):
    """One gzip member (zlib.compress takes wbits only from Python 3.11)."""
    deflater = zlib.compressobj(level, zlib.DEFLATED, 31)
    return deflater.compress(data) + deflater.flush()


def gzip_two_members(tar):
    half = len(tar) // 2
    return gzip_member(tar[:half]) + gzip_member(tar[half:])


def json_lie(rng, text):
    lie = rng.integers(4)
    if lie == 0:
        return replace_number(rng, text)
    if lie == 1:
        return nest_deeply(rng, text, *[(b"[", b"]"), (b'{"a":', b"}")][
            rng.integers(2)])
    if lie == 2:  # a list one element short or long: shapes that disagree
        starts = [m.start() for m in re.finditer(rb"\[\s*-?\d", text)]
        if starts:
            at = starts[rng.integers(len(starts))]
            end = text.find(b",", at)
            if end > 0:
                return text[:at + 1] + text[end + 1:]
        return text
    strings = list(re.finditer(rb'"[A-Za-z]+"', text))
    if not strings:
        return text
    match = strings[rng.integers(len(strings))]
    return text[:match.start()] + b'"' + b"x" * int(
        rng.choice([1, 1000, 10 ** 6])) + b'"' + text[match.end():]


def legacy_lie(rng, text):
    lie = rng.integers(4)
    if lie == 0:
        return replace_number(rng, text, [b"nan", b"inf", b"-inf", b"1e308",
                                          b"4" * 5000, b"0", b"'x'", b"[]",
                                          b"None", b"True"])
    if lie == 1:
        dtype = [b'"U300000000"', b'("f8", (12000, 12000))', b'"O"',
                 b"object", b'"(9,9)i8"', b"float", b'"f4"'][
            rng.integers(7)]
        at = text.find(b"OrderedDict(")
        return text[:at] + b"array([1.0, 2.0], dtype=%s), " % dtype \
            + text[at:] if at > 0 else text
    if lie == 2:
        return nest_deeply(rng, text, *[(b"[", b"]"), (b"dict(a=", b")"),
                                        (b"-", b"")][rng.integers(3)])
    return insert_call(rng, text)


def insert_call(rng, text):
    calls = [b"__import__('os').system('true')", b"eval('1')", b"a.b.c()",
             b"(lambda: 1)()", b"[x for x in range(10**9)]", b"1+1",
             b"'a' * 10**9", b"list('abc')", b"{[1]: 2}", b"array({})"]
    at = text.find(b"dict(")
    if at < 0:
        return text
    at = text.find(b"(", at) + 1
    return text[:at] + b"x=" + calls[rng.integers(len(calls))] + b", " \
        + text[at:]


def message_lie(rng, frames):
    """A worker message that lies: shapes, dtypes, frame counts, data."""
    head = bytearray(frames[0])
    lie = rng.integers(6)
    if lie == 0:
        head = re.sub(rb"\[(\d+)(, \d+)?\]\]", b"[1000000000000, 3]]",
                      bytes(head), count=1)
    elif lie == 1:
        dtype = [b'"(12000,12000)f8"', b'"O"', b'"U300000000"', b'"V8"',
                 b'"|b1"', b"[1, 2]", b'{"names": ["a"], "formats": ["O"]}'][
            rng.integers(7)]
        head = re.sub(rb'"<f8"', dtype, bytes(head), count=1)
    elif lie == 2:
        frames = frames[:-1] if rng.random() < 0.5 else frames + [b"1234"]
    elif lie == 3:
        order = rng.permutation(len(frames) - 1) + 1
        frames = [frames[0]] + [frames[k] for k in order]
    elif lie == 4:
        head = nest_deeply(rng, bytes(head))
    else:
        head = replace_number(rng, bytes(head))
    return [bytes(head)] + list(frames[1:])


# ------------------------------------------------------------- the readers

class Quiet:
    """Silence the database's damage reports during a run."""

    def __enter__(self):
        self.logger = logging.getLogger("amp.store.database")
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def entry_reader(folder):
    data = encode_entry(sample_value())
    db = FileDatabase(os.path.join(folder, "entries"))
    db["valid"] = 0
    path = os.path.join(db.loosepath, "k")

    def run(rng):
        mutated = mutate(rng, data, [entry_header_lie, npy_header_lie])
        try:
            decode_entry(mutated)
            direct = "load"
        except (CorruptEntryError, UnsupportedEntryError):
            direct = "named"
        with open(path, "wb") as handle:
            handle.write(mutated)
        fresh = FileDatabase(db.path)
        try:
            fresh["k"]
            loaded = "load"
        except KeyError:  # damaged: reported and treated as missing
            loaded = "named"
        except UnsupportedEntryError:
            loaded = "named"
        assert loaded == direct
        return loaded

    return data, run


def archive_reader(folder):
    source = FileDatabase(os.path.join(folder, "source"))
    value = sample_value()
    for k in range(6):
        source["key%d" % k] = value if k % 2 else np.arange(k + 3.0)
    source.archive()
    data = open(source.tarpath, "rb").read()
    db = FileDatabase(os.path.join(folder, "archive"))
    os.makedirs(db.path)
    counter = [0]

    def run(rng):
        mutated = mutate(rng, data, [tar_lie])
        counter[0] += 1
        with open(db.tarpath, "wb") as handle:
            handle.write(mutated)
        fresh = FileDatabase(db.path)
        loads = 0
        for key in set(fresh.keys()) | {"key%d" % k for k in range(6)}:
            try:
                fresh[key]
                loads += 1
            except (KeyError, UnsupportedEntryError):
                pass
        if counter[0] % 10 == 0:  # amp-compress's path as well
            try:
                fresh.archive()
            except (UnsupportedEntryError, OSError):
                pass
        fresh.close()
        return "load" if loads == 6 else "named"

    return data, run


def model_reader(text):
    def run(rng, structured):
        mutated = mutate(rng, text, structured)
        try:
            Amp.load(io.BytesIO(mutated))
        except ModelFileError:
            return "named"
        return "load"

    return run


def json_model_reader(folder):
    calc = Amp.load(LEGACY)
    path = os.path.join(folder, "model.amp")
    calc.save(path)
    data = open(path, "rb").read()
    run = model_reader(data)
    return data, lambda rng: run(rng, [json_lie])


def legacy_model_reader(folder):
    data = open(LEGACY, "rb").read()
    run = model_reader(data)
    return data, lambda rng: run(rng, [legacy_lie])


def message_reader(folder):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0,
                                       forces=np.zeros((4, 3)))
    frames = [bytes(frame) for frame in wire.encode(
        {"subject": "result", "token": 7},
        {"images": [atoms], "vector": np.arange(5.0),
         "counts": np.arange(3, dtype=np.int32), "flags": np.ones(2, bool),
         "$odd": {"nested": [1, 2.5, "x"]}})]

    def run(rng):
        if rng.random() < 0.5:
            mutated = message_lie(rng, frames)
        else:
            k = rng.integers(len(frames))
            mutated = list(frames)
            mutated[k] = mutate(rng, frames[k], [])
        try:
            wire.decode(mutated)
        except wire.ProtocolError:
            return "named"
        return "load"

    return frames, run


READERS = {"loose entry": entry_reader, "archive.tar.gz": archive_reader,
           "JSON .amp": json_model_reader,
           "legacy .amp": legacy_model_reader,
           "worker message": message_reader}


# ------------------------------------------------------- the child process

def _address_space():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _fuzz_child(name, count, seed, pipe):
    """Run ``count`` cases of one reader under a capped address space and
    send back the counts, or the first failing case."""
    counts = {"cases": 0, "load": 0, "named": 0}
    try:
        with tempfile.TemporaryDirectory() as folder, Quiet():
            _, run = READERS[name](folder)
            limit = _address_space() + MEMORY_HEADROOM
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            start = time.monotonic()
            for case in range(count):
                rng = np.random.default_rng([seed, case])
                try:
                    with watchdog(CASE_SECONDS):
                        outcome = run(rng)
                except BaseException as error:
                    pipe.send({"failed": case, "error": "%s: %s" % (
                        type(error).__name__, str(error)[:500]),
                        "traceback": traceback.format_exc()[-4000:]})
                    return
                counts["cases"] += 1
                counts[outcome] += 1
            counts["seconds"] = time.monotonic() - start
        pipe.send(counts)
    except BaseException:
        pipe.send({"failed": None, "error": "set-up failed",
                   "traceback": traceback.format_exc()[-4000:]})


@pytest.mark.parametrize("name", list(READERS))
def test_fuzz_reader(name):
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_fuzz_child,
                            args=(name, COUNT, SEED, send))
    child.start()
    send.close()
    # Generous: every case has its own watchdog inside the child.
    deadline = 60.0 + COUNT * 2.0
    if not receive.poll(deadline):
        child.kill()
        child.join()
        pytest.fail("%s: the fuzz child gave no answer within %g s"
                    % (name, deadline))
    try:
        result = receive.recv()
    except EOFError:
        result = {"failed": None, "error": "the child died (exit status %s)"
                  % child.exitcode, "traceback": ""}
    child.join(10)
    if "failed" in result:
        pytest.fail("%s: case %s (seed %d) raised %s\n%s"
                    % (name, result["failed"], SEED, result["error"],
                       result["traceback"]))
    print("\nfuzz %s: %d cases, %d loaded, %d named errors, %.1f s"
          % (name, result["cases"], result["load"], result["named"],
             result["seconds"]))
    assert result["cases"] == COUNT
    assert result["load"] + result["named"] == COUNT
    # The mutations reach both outcomes: neither all refused nor all loaded.
    assert result["named"] > 0


def test_mutations_are_seeded():
    data = open(LEGACY, "rb").read()
    first = [mutate(np.random.default_rng([1, k]), data, [legacy_lie])
             for k in range(20)]
    again = [mutate(np.random.default_rng([1, k]), data, [legacy_lie])
             for k in range(20)]
    assert first == again
    assert len(set(first)) > 15
