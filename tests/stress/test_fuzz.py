"""Fuzz: damaged queue files of every kind, each case opened in its own process.

Modelled: a queue folder whose files were damaged at rest (a bad disk, a stray write, a bad
copy, a truncated or extended file), for every file kind: ``control.cq``, segment files,
``readers/<name>.pos`` and ``writer.lock``. Two base queues (5 segments of 16 KiB, a named
reader committed mid-way): one closed cleanly, one whose writer died (writer state OPEN).
Each case copies a base and applies one mutation:

- ``flip``: 1..8 random bytes XORed, at offsets drawn from the file's headers, from record
  headers (record-aligned offsets) or anywhere;
- ``word``: one aligned 8-byte word set to 0, -1, a huge or a small value;
- ``truncate``: cut to a random length (0, inside the header, page-aligned, or anywhere);
- ``extend``: 1..8192 bytes of zeros or random bytes appended.

Each case then runs in a child forked from a warmed server process (its own process, so a
crash cannot hide behind another case): read everything anonymously, read as the named
reader (and commit), ``chronicle inspect --json``, open the publisher (``repair=True`` after
a CorruptRecordError) and append, read everything again. Judged by signal (the child must
exit 0, never die of a signal), time (``CASE_TIMEOUT``) and typed output: any exception must
be a ``chronicle_async.ChronicleError``. Not judged: *what* is read from a damaged queue
(readers do not verify checksums, by design).

Cases: ``CHRONICLE_FUZZ_CASES`` (default 300); ``CHRONICLE_FUZZ_SEED`` replays a run.
"""
from __future__ import annotations

import collections
import os
import random
import shutil
import struct

import pytest

from chronicle_async import Queue, WriterConfig
from chronicle_async.hot import layout as L

from . import _soak_workers as S
from ._workers import expected

SEGMENT_SIZE = 16 * 1024
MAX_SIZE = 300
READER = "fz"
CASE_TIMEOUT = 20.0
CASES = int(os.environ.get("CHRONICLE_FUZZ_CASES", "300"))

SEED = int(os.environ.get("CHRONICLE_FUZZ_SEED", "7"))  # fixed by default: the suite is reproducible

#: Known library bugs, by a signature of their failure text -> reason. A run whose only failures
#: are known ones is xfailed (any other failure fails it); each is replayed alone below.
KNOWN_BUGS: dict[str, str] = {}
#: Known failing cases: (seed, case index) -> the KNOWN_BUGS signature they hit.
KNOWN: dict[tuple[int, int], str] = {}
#: Cases that found a bug, now fixed: replayed alone as regression tests.
#: (7, 271) and (7, 1701): a reader file whose damaged slot held generation INT64_MAX made
#: QueueReader.commit() raise an untyped struct.error (generations now come from valid slots only).
FIXED = [(7, 271), (7, 1701)]


def build_base(path: str, crashed: bool) -> None:
    with Queue.open_publisher(path, WriterConfig(segment_size=SEGMENT_SIZE)) as w:
        r = Queue.open_subscriber(path, READER, "earliest")
        for seq in range(400):
            tid, data = expected(seq, MAX_SIZE)
            w.append(tid, data)
            if seq == 150:
                for _ in range(150):
                    r.next()
                r.commit()
        r.close()
    assert len([n for n in os.listdir(path) if L.parse_segment_file_name(n) is not None]) >= 5
    if crashed:
        with open(os.path.join(path, L.CONTROL_FILE_NAME), "r+b") as f:
            f.seek(L.CTL_WRITER_STATE_OFFSET)
            f.write(struct.pack("<I", L.WRITER_STATE_OPEN))


def queue_files(path: str) -> list[str]:
    out = []
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            out.append(name)
    out += [os.path.join(L.READERS_DIR_NAME, n) for n in sorted(os.listdir(os.path.join(path, L.READERS_DIR_NAME)))]
    return out


def mutate(path: str, rng: random.Random) -> str:
    """Damage one file of queue ``path``; returns a description that replays it."""
    files = queue_files(path)
    # every kind equally often: control, lock, a segment, the reader file
    kind = rng.choice(["control", "lock", "segment", "reader"])
    pick = {
        "control": [f for f in files if f == L.CONTROL_FILE_NAME],
        "lock": [f for f in files if f == L.WRITER_LOCK_NAME],
        "segment": [f for f in files if L.parse_segment_file_name(f) is not None],
        "reader": [f for f in files if f.endswith(L.READER_FILE_SUFFIX)],
    }[kind]
    name = rng.choice(pick)
    p = os.path.join(path, name)
    size = os.path.getsize(p)
    how = rng.choice(["flip", "flip", "word", "truncate", "extend"])
    with open(p, "r+b") as f:
        if how == "flip" and size:
            spots = []
            for _ in range(rng.randint(1, 8)):
                where = rng.random()
                if where < 0.4:
                    off = rng.randrange(min(size, 256))
                elif where < 0.7 and size > L.SEGMENT_DATA_OFFSET:
                    off = rng.randrange(0, size, L.RECORD_ALIGNMENT) + rng.randrange(L.RECORD_HEADER_LENGTH)
                    off = min(off, size - 1)
                else:
                    off = rng.randrange(size)
                f.seek(off)
                b = f.read(1)[0]
                f.seek(off)
                f.write(bytes([b ^ (1 << rng.randrange(8)) if rng.random() < 0.7 else b ^ rng.randrange(1, 256)]))
                spots.append(off)
            return f"{name}: flip bytes at {spots}"
        if how == "word" and size >= 8:
            off = rng.randrange(0, min(size, 1024) - 7, 8) if rng.random() < 0.7 else rng.randrange(0, size - 7, 8)
            val = rng.choice([0, -1, 1 << 62, (1 << 63) - 1, -(1 << 63), rng.randrange(1, 70000), SEGMENT_SIZE])
            f.seek(off)
            f.write(struct.pack("<q", val))
            return f"{name}: word at {off} := {val}"
        if how == "extend":
            n = rng.choice([1, 7, 64, 4096, rng.randrange(1, 8193)])
            data = bytes(n) if rng.random() < 0.5 else rng.randbytes(n)
            f.seek(0, 2)
            f.write(data)
            return f"{name}: extended by {n} bytes"
        cut = rng.choice([0, rng.randrange(min(size, 64) + 1), (rng.randrange(size + 1) // 4096) * 4096,
                          rng.randrange(size + 1)])
        f.truncate(cut)
        return f"{name}: truncated from {size} to {cut}"


def failures_of(ev: dict) -> list[str]:
    """Why case event ``ev`` fails the judge: a signal, a timeout, no output, an untyped error."""
    why = []
    if ev["timed_out"]:
        why.append(f"timed out after {CASE_TIMEOUT} s")
    elif ev["rc"] != 0:
        why.append(f"exit status {ev['rc']}" + (" (killed by a signal)" if ev["rc"] < 0 else ""))
    if ev["ops"] is None:
        if not why:
            why.append("the case process reported nothing")
        return why
    for o in ev["ops"]:
        if not o["ok"] and not o["typed"]:
            why.append(f"{o['op']}: untyped {o['type']}: {o['msg']}\n{o['tb']}")
    return why


def run_cases(spawn_dir, n: int, seed: int) -> tuple[list[tuple[int, str, list[str]]], collections.Counter]:
    bases = {}
    for crashed in (False, True):
        b = os.path.join(spawn_dir, f"base-{'crashed' if crashed else 'closed'}")
        build_base(b, crashed)
        bases[crashed] = b
    server = S.start("fuzz_server", timeout=CASE_TIMEOUT, reader_name=READER)
    failed: list[tuple[int, str, list[str]]] = []
    outcomes: collections.Counter = collections.Counter()
    try:
        server.expect("ready", timeout=180)
        for i in range(n):
            rng = random.Random(seed * 1_000_003 + i)
            crashed = rng.random() < 0.5
            case = os.path.join(spawn_dir, f"case-{i}")
            shutil.copytree(bases[crashed], case)
            what = ("crashed " if crashed else "closed ") + mutate(case, rng)
            server.send(id=i, path=case)
            ev = server.expect("case", timeout=CASE_TIMEOUT + 30)
            assert ev["id"] == i
            for o in ev["ops"] or []:
                outcomes[(o["op"], "ok" if o["ok"] else o["type"])] += 1
            why = failures_of(ev)
            if why:
                failed.append((i, what, why))
            else:
                shutil.rmtree(case)
        server.send(op="exit")
    finally:
        server.stop()
    return failed, outcomes


@pytest.mark.timeout(3600)
def test_damaged_files_of_every_kind_never_crash_hang_or_raise_untyped_errors(tmp_path):
    seed = SEED
    print(f"fuzz seed {seed} (CHRONICLE_FUZZ_SEED={seed} replays it), {CASES} cases")
    failed, outcomes = run_cases(str(tmp_path), CASES, seed)
    print("outcomes (op, result): count")
    for k, v in sorted(outcomes.items()):
        print(f"  {k}: {v}")
    def bug(why: list[str]) -> str | None:
        sigs = {next((k for k in KNOWN_BUGS if k in w), None) for w in why}
        return None if None in sigs or len(sigs) != 1 else sigs.pop()

    known = [(i, what, why) for i, what, why in failed if bug(why)]
    new = [(i, what, why) for i, what, why in failed if not bug(why)]
    for i, what, why in known:
        print(f"known bug in case {i} (seed {seed}): {what}")
    report = "\n".join(f"case {i} (seed {seed}): {what}\n  " + "\n  ".join(why) for i, what, why in new)
    assert not new, f"{len(new)} of {CASES} cases failed:\n{report}"
    if known:
        pytest.xfail("; ".join(sorted({KNOWN_BUGS[bug(why)] for _i, _w, why in known})))


@pytest.mark.parametrize("seed,case", FIXED, ids=[f"seed{s}-case{c}" for s, c in FIXED])
def test_fuzz_cases_that_once_found_a_bug_now_pass(tmp_path, seed, case):
    """Each case that once failed, replayed alone (see FIXED)."""
    failed, what = run_single(str(tmp_path), seed, case)
    assert not failed, f"{what}: {failed}"


def run_single(d: str, seed: int, i: int):
    bases = {}
    for crashed in (False, True):
        b = os.path.join(d, f"base-{'crashed' if crashed else 'closed'}")
        build_base(b, crashed)
        bases[crashed] = b
    rng = random.Random(seed * 1_000_003 + i)
    crashed = rng.random() < 0.5
    case = os.path.join(d, f"case-{i}")
    shutil.copytree(bases[crashed], case)
    what = mutate(case, rng)
    server = S.start("fuzz_server", timeout=CASE_TIMEOUT, reader_name=READER)
    try:
        server.expect("ready", timeout=180)
        server.send(id=i, path=case)
        ev = server.expect("case", timeout=CASE_TIMEOUT + 30)
    finally:
        server.stop()
    return failures_of(ev), what
