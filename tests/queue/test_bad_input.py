"""Every bad input gives a typed error (a ChronicleError) that names the file or argument and a fix,
and leaves the queue usable."""
from __future__ import annotations

import json
import math
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import pytest

import chronicle_async as ca
from chronicle_async import Queue, WriterConfig
from chronicle_async.hot import layout as L

TINY = WriterConfig(segment_size=16 * 1024)
REPO = pathlib.Path(__file__).resolve().parents[2]
FIX_HINTS = (
    "restore", "delete", "upgrade", "choose", "pass ", "split", "stop", "use ", "check", "run as",
    "has a writer", "create", "move", "pick", "close", "must",
)
IS_ROOT = os.geteuid() == 0


def assert_helpful(err: BaseException, cls: type, *names: object) -> None:
    """A typed ChronicleError whose message names each of ``names`` and suggests a fix."""
    assert isinstance(err, ca.ChronicleError), f"{type(err).__name__} is not a ChronicleError: {err}"
    assert isinstance(err, cls), f"expected {cls.__name__}, got {type(err).__name__}: {err}"
    msg = str(err)
    for n in names:
        assert str(n) in msg, f"message does not name {n!r}: {msg}"
    assert any(h in msg.lower() for h in FIX_HINTS), f"message suggests no fix: {msg}"


def make_queue(d, messages=(b"one", b"two")) -> None:
    with Queue.open_publisher(d, TINY) as w:
        for p in messages:
            w.append(1, p)


def listing(d) -> list[str]:
    return sorted(os.listdir(d))


def patch(path, offset: int, fmt: str, value) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


def read_all(d) -> list[tuple[int, bytes]]:
    with Queue.open_subscriber(d, start="earliest") as r:
        return [(m.seq, bytes(m.payload)) for m in r]


# -- where the queue is ------------------------------------------------------------------------


def test_subscriber_on_a_missing_folder_raises_queue_not_found(tmp_path):
    d = tmp_path / "nowhere"
    for name in (None, "named"):
        with pytest.raises(ca.QueueNotFoundError) as ei:
            Queue.open_subscriber(d, name)
        assert isinstance(ei.value, FileNotFoundError)
        assert_helpful(ei.value, ca.QueueNotFoundError, d)
    assert not d.exists(), "a subscriber must not create anything"


def test_subscriber_on_an_empty_folder_raises_queue_not_found(queue_dir):
    for name in (None, "named"):
        with pytest.raises(ca.QueueNotFoundError) as ei:
            Queue.open_subscriber(queue_dir, name)
        assert isinstance(ei.value, FileNotFoundError)
        assert_helpful(ei.value, ca.QueueNotFoundError, queue_dir, L.CONTROL_FILE_NAME)
    assert listing(queue_dir) == []
    make_queue(queue_dir)  # and a publisher can still create the queue there
    assert read_all(queue_dir) == [(0, b"one"), (1, b"two")]


@pytest.mark.parametrize("opener", ["publisher", "subscriber"])
def test_a_regular_file_is_not_a_queue(tmp_path, opener):
    f = tmp_path / "plain.txt"
    f.write_bytes(b"not a queue")
    with pytest.raises(ca.NotAQueueError) as ei:
        if opener == "publisher":
            Queue.open_publisher(f, TINY)
        else:
            Queue.open_subscriber(f)
    assert_helpful(ei.value, ca.NotAQueueError, f)
    assert f.read_bytes() == b"not a queue"


def test_a_folder_of_other_things_is_not_a_queue_for_the_publisher(queue_dir):
    (queue_dir / "notes.txt").write_text("mine")
    (queue_dir / "sub").mkdir()
    before = listing(queue_dir)
    with pytest.raises(ca.NotAQueueError) as ei:
        Queue.open_publisher(queue_dir, TINY)
    assert_helpful(ei.value, ca.NotAQueueError, queue_dir, "notes.txt")
    assert listing(queue_dir) == before, "nothing may be created in a foreign folder"
    with pytest.raises(ca.QueueNotFoundError):
        Queue.open_subscriber(queue_dir)


# -- damaged control files ---------------------------------------------------------------------


def _both_openers_raise(d, cls, *names):
    for open_ in (lambda: Queue.open_publisher(d, TINY), lambda: Queue.open_subscriber(d), lambda: Queue.open_subscriber(d, "n")):
        with pytest.raises(cls) as ei:
            open_()
        assert_helpful(ei.value, cls, *names)


@pytest.mark.parametrize("size", [0, 4, 100, L.CONTROL_FILE_LENGTH - 1])
def test_a_truncated_control_file_is_a_corrupt_queue(queue_dir, size):
    make_queue(queue_dir)
    ctl = queue_dir / L.CONTROL_FILE_NAME
    os.truncate(ctl, size)
    _both_openers_raise(queue_dir, ca.CorruptQueueError, ctl)
    # the failed publisher released the writer lock: the error stays the same, never WriterLockedError
    with pytest.raises(ca.CorruptQueueError):
        Queue.open_publisher(queue_dir, TINY)


def test_a_control_file_with_garbage_magic_is_a_corrupt_queue(queue_dir):
    make_queue(queue_dir)
    ctl = queue_dir / L.CONTROL_FILE_NAME
    patch(ctl, L.CTL_MAGIC_OFFSET, "<I", 0xDEADBEEF)
    _both_openers_raise(queue_dir, ca.CorruptQueueError, ctl, "magic")


def test_a_control_file_from_a_future_version_is_unsupported(queue_dir):
    make_queue(queue_dir)
    ctl = queue_dir / L.CONTROL_FILE_NAME
    patch(ctl, L.CTL_VERSION_OFFSET, "<I", L.CONTROL_VERSION + 1)
    _both_openers_raise(queue_dir, ca.UnsupportedVersionError, queue_dir, L.CONTROL_VERSION + 1, "upgrade")
    patch(ctl, L.CTL_VERSION_OFFSET, "<I", L.CONTROL_VERSION)  # restoring the word makes it usable again
    assert read_all(queue_dir) == [(0, b"one"), (1, b"two")]


@pytest.mark.parametrize("field,fmt,value", [("version", "<I", 0), ("segment_size", "<q", 1000)])
def test_a_control_file_with_an_impossible_identity_is_a_corrupt_queue(queue_dir, field, fmt, value):
    make_queue(queue_dir)
    ctl = queue_dir / L.CONTROL_FILE_NAME
    off = {"version": L.CTL_VERSION_OFFSET, "segment_size": L.CTL_SEGMENT_SIZE_OFFSET}[field]
    patch(ctl, off, fmt, value)
    _both_openers_raise(queue_dir, ca.CorruptQueueError, ctl)


@pytest.mark.parametrize("case", ["control.cq is a folder", "writer.lock is a folder", "readers is a file", "reader file is a folder"])
def test_queue_files_of_the_wrong_kind_are_typed_errors(queue_dir, case):
    make_queue(queue_dir)
    if case == "control.cq is a folder":
        bad = queue_dir / L.CONTROL_FILE_NAME
        os.unlink(bad)
        bad.mkdir()
        opener = lambda: Queue.open_subscriber(queue_dir)  # noqa: E731
    elif case == "writer.lock is a folder":
        bad = queue_dir / L.WRITER_LOCK_NAME
        os.unlink(bad)
        bad.mkdir()
        opener = lambda: Queue.open_publisher(queue_dir, TINY)  # noqa: E731
    elif case == "readers is a file":
        bad = queue_dir / L.READERS_DIR_NAME
        shutil.rmtree(bad, ignore_errors=True)
        bad.write_bytes(b"")
        opener = lambda: Queue.open_subscriber(queue_dir, "n")  # noqa: E731
    else:
        bad = queue_dir / L.READERS_DIR_NAME / ("n" + L.READER_FILE_SUFFIX)
        bad.mkdir(parents=True)
        opener = lambda: Queue.open_subscriber(queue_dir, "n")  # noqa: E731
    with pytest.raises(ca.ChronicleError) as ei:
        opener()
    assert str(bad) in str(ei.value)


# -- damaged segment files ---------------------------------------------------------------------


def test_a_truncated_segment_is_a_corrupt_segment(queue_dir):
    make_queue(queue_dir)
    seg = queue_dir / L.segment_file_name(0)
    os.truncate(seg, 4096)
    for open_ in (lambda: Queue.open_subscriber(queue_dir), lambda: Queue.open_publisher(queue_dir, TINY)):
        with pytest.raises(ca.CorruptSegmentError) as ei:
            open_()
        assert isinstance(ei.value, ca.CorruptQueueError)
        assert_helpful(ei.value, ca.CorruptSegmentError, seg, "4096")


def test_a_segment_with_a_wrong_id_is_a_corrupt_segment(queue_dir):
    make_queue(queue_dir)
    seg = queue_dir / L.segment_file_name(0)
    patch(seg, L.SEG_ID_OFFSET, "<q", 5)
    with pytest.raises(ca.CorruptSegmentError) as ei:
        Queue.open_subscriber(queue_dir)
    assert_helpful(ei.value, ca.CorruptSegmentError, seg, "id=5")


def test_a_later_segment_with_a_wrong_id_is_reported_when_the_reader_reaches_it(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append(0, b"in 0")
        w.roll()
        w.append(0, b"in 1")
    seg1 = queue_dir / L.segment_file_name(1)
    patch(seg1, L.SEG_ID_OFFSET, "<q", 9)
    with Queue.open_subscriber(queue_dir) as r:
        assert bytes(r.next().payload) == b"in 0"
        with pytest.raises(ca.CorruptSegmentError) as ei:
            r.next()
        assert_helpful(ei.value, ca.CorruptSegmentError, seg1)


def test_a_segment_of_another_queue_is_a_corrupt_segment(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_queue(a)
    make_queue(b, [b"other"])
    shutil.copyfile(b / L.segment_file_name(0), a / L.segment_file_name(0))
    with pytest.raises(ca.CorruptSegmentError) as ei:
        Queue.open_subscriber(a)
    assert_helpful(ei.value, ca.CorruptSegmentError, a / L.segment_file_name(0), "queue=")


def test_a_segment_from_a_future_version_is_unsupported(queue_dir):
    make_queue(queue_dir)
    seg = queue_dir / L.segment_file_name(0)
    patch(seg, L.SEG_VERSION_OFFSET, "<I", L.SEGMENT_VERSION + 1)
    with pytest.raises(ca.UnsupportedVersionError) as ei:
        Queue.open_subscriber(queue_dir)
    assert_helpful(ei.value, ca.UnsupportedVersionError, seg, "upgrade")


def test_a_queue_whose_segments_were_all_deleted_is_reported(queue_dir):
    make_queue(queue_dir)
    os.unlink(queue_dir / L.segment_file_name(0))
    with pytest.raises(ca.CorruptSegmentError) as ei:
        Queue.open_subscriber(queue_dir)
    assert str(queue_dir) in str(ei.value)


# -- payload size ------------------------------------------------------------------------------


def test_a_payload_larger_than_max_payload_is_rejected_and_the_writer_goes_on(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(0, b"before")
        for big in (b"x" * (w.max_payload + 1), np.zeros(w.max_payload + 64, np.uint8), bytearray(1 << 20)):
            with pytest.raises(ca.PayloadTooLargeError) as ei:
                w.append(0, big)
            assert isinstance(ei.value, ValueError)
            assert_helpful(ei.value, ca.PayloadTooLargeError, queue_dir, w.max_payload, "segment_size")
        assert w.segment_id == 0, "a rejected payload must not roll the segment"
        assert w.append(0, b"x" * w.max_payload) == 1  # the limit itself is fine
        assert w.append(0, b"after") == 2
        assert [(m.seq, len(m.payload)) for m in r] == [(0, 6), (1, w.max_payload), (2, 5)]


def test_a_batch_with_a_too_large_message_appends_nothing_and_says_so(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        with pytest.raises(ca.PayloadTooLargeError) as ei:
            w.append_batch(0, [b"a", b"b", b"x" * (w.max_payload + 1), b"d"])
        assert str(w.max_payload) in str(ei.value) and "message 2" in str(ei.value)
        assert ei.value.appended == 0 and "nothing of the batch was appended" in str(ei.value)
        assert [bytes(m.payload) for m in r] == []
        assert w.append(0, b"next") == 0


# -- wrong arguments to append ----------------------------------------------------------------


BAD_APPENDS = [
    pytest.param((0, 123), ca.ArgumentTypeError, "payload", id="payload=123"),
    pytest.param((0, "text"), ca.ArgumentTypeError, "payload", id="payload=str"),
    pytest.param((0, [1, 2, 3]), ca.ArgumentTypeError, "payload", id="payload=list"),
    pytest.param((0, None), ca.ArgumentTypeError, "payload", id="payload=None"),
    pytest.param((0, np.arange(10, dtype=np.uint8)[::2]), ca.InvalidArgumentError, "contiguous", id="payload=strided"),
    pytest.param(("x", b"p"), ca.ArgumentTypeError, "type_id", id="type_id=str"),
    pytest.param((None, b"p"), ca.ArgumentTypeError, "type_id", id="type_id=None"),
    pytest.param((1.5, b"p"), ca.ArgumentTypeError, "type_id", id="type_id=float"),
    pytest.param((True, b"p"), ca.ArgumentTypeError, "type_id", id="type_id=True"),
    pytest.param((-1, b"p"), (ca.ArgumentTypeError, ca.InvalidArgumentError), "type_id", id="type_id=-1"),
    pytest.param((2**31, b"p"), (ca.ArgumentTypeError, ca.InvalidArgumentError), "type_id", id="type_id=2**31"),
    pytest.param((0, b"p", "now"), ca.ArgumentTypeError, "timestamp_ns", id="timestamp=str"),
    pytest.param((0, b"p", 1.5), ca.ArgumentTypeError, "timestamp_ns", id="timestamp=float"),
    pytest.param((0, b"p", 2**63), (ca.ArgumentTypeError, ca.InvalidArgumentError), "timestamp_ns", id="timestamp=2**63"),
    pytest.param((0, b"p", -(2**63) - 1), (ca.ArgumentTypeError, ca.InvalidArgumentError), "timestamp_ns", id="timestamp=-2**63-1"),
    pytest.param((0, b"p", True), ca.ArgumentTypeError, "timestamp_ns", id="timestamp=True"),
    pytest.param((0, b"x" * 2000, "now"), ca.ArgumentTypeError, "timestamp_ns", id="timestamp=str,payload=2000"),
]


@pytest.mark.parametrize("args,cls,word", BAD_APPENDS)
def test_a_bad_append_argument_is_a_typed_error_and_commits_nothing(queue_dir, args, cls, word):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        w.append(0, b"first")
        with pytest.raises(cls) as ei:
            w.append(*args)
        assert isinstance(ei.value, ca.ChronicleError) and isinstance(ei.value, (TypeError, ValueError))
        assert word in str(ei.value)
        assert w.next_seq == 1
        assert w.append(0, b"ok") == 1
        assert [(m.seq, bytes(m.payload)) for m in r] == [(0, b"first"), (1, b"ok")]
        assert r.next() is None
    assert read_all(queue_dir) == [(0, b"first"), (1, b"ok")]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param((-1, b"x" * 1000), id="type_id=-1,bytes(1000)"),
        pytest.param((0, b"x" * 5000, "now"), id="timestamp=str,bytes(5000)"),
        pytest.param((-1, bytearray(b"x" * 100)), id="type_id=-1,bytearray(100)"),
        pytest.param(("x", np.full(50, 0x41, np.uint8)), id="type_id=str,ndarray(50)"),
        pytest.param((0, memoryview(b"y" * 300), 1.5), id="timestamp=float,memoryview(300)"),
    ],
)
def test_a_rejected_append_leaves_nothing_a_reader_can_see(queue_dir, args):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        with pytest.raises(ca.ChronicleError):
            w.append(*args)
        assert w.append(0, b"ok") == 0
        got = [(m.seq, bytes(m.payload)) for m in r]
        assert got == [(0, b"ok")]
        assert r.next() is None


# -- wrong arguments to append_batch -----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,cls",
    [
        pytest.param(dict(payloads=123), ca.ArgumentTypeError, id="payloads=123"),
        pytest.param(dict(payloads=b"abc"), ca.ArgumentTypeError, id="payloads=bytes"),
        pytest.param(dict(payloads="abc"), ca.ArgumentTypeError, id="payloads=str"),
        pytest.param(dict(payloads=[b"a", 5]), ca.ArgumentTypeError, id="payloads=[bytes,int]"),
        pytest.param(dict(payloads=np.arange(5)), ca.InvalidArgumentError, id="payloads=1-D array"),
        pytest.param(dict(payloads=np.zeros((2, 2, 2))), ca.InvalidArgumentError, id="payloads=3-D array"),
        pytest.param(dict(payloads=[b"a", b"b"], type_ids=-1), ca.InvalidArgumentError, id="type_ids=-1"),
        pytest.param(dict(payloads=[b"a", b"b"], type_ids=[-3, 0]), ca.InvalidArgumentError, id="type_ids=[-3,0]"),
    ],
)
def test_a_bad_append_batch_argument_is_a_typed_error_and_appends_nothing(queue_dir, kwargs, cls):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        payloads = kwargs.pop("payloads")
        with pytest.raises(cls):
            w.append_batch(payloads=payloads, **kwargs)
        assert w.next_seq == 0
        assert w.append(0, b"ok") == 0
        assert [(m.seq, bytes(m.payload)) for m in r] == [(0, b"ok")]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(type_ids="x"), id="type_ids=str"),
        pytest.param(dict(timestamps_ns="now"), id="timestamps_ns=str"),
        pytest.param(dict(type_ids=[1, 2, 3]), id="type_ids=wrong length"),
        pytest.param(dict(timestamps_ns=[1, 2, 3]), id="timestamps_ns=wrong length"),
    ],
)
def test_bad_append_batch_type_ids_or_timestamps_are_typed_errors(queue_dir, kwargs):
    with Queue.open_publisher(queue_dir, TINY) as w:
        with pytest.raises(ca.ChronicleError) as ei:
            w.append_batch(payloads=[b"a", b"b"], **kwargs)
        assert any(k in str(ei.value) for k in kwargs)
        assert w.next_seq == 0


@pytest.mark.parametrize("tid", [2**40, 2**32 + 5, 2**31, 1.5, [0, 2**40]])
def test_append_batch_rejects_type_ids_that_do_not_fit_instead_of_wrapping_them(queue_dir, tid):
    with Queue.open_publisher(queue_dir, TINY) as w, Queue.open_subscriber(queue_dir) as r:
        with pytest.raises((ca.ArgumentTypeError, ca.InvalidArgumentError)) as ei:
            w.append_batch(tid, [b"a", b"b"])
        assert "type_ids" in str(ei.value)
        assert [m.type_id for m in r] == [], "nothing may be stored under a wrapped type id"
        assert w.next_seq == 0


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,cls,word",
    [
        (dict(segment_size=1000), ca.InvalidArgumentError, "segment_size"),
        (dict(segment_size=16 * 1024 + 1), ca.InvalidArgumentError, "segment_size"),
        (dict(segment_size=L.MAX_SEGMENT_SIZE * 2), ca.InvalidArgumentError, "segment_size"),
        (dict(segment_size="16k"), ca.ArgumentTypeError, "segment_size"),
        (dict(segment_size=16384.0), ca.ArgumentTypeError, "segment_size"),
        (dict(segment_size=True), ca.ArgumentTypeError, "segment_size"),
        (dict(durability="bogus"), ca.InvalidArgumentError, "durability"),
        (dict(heartbeat_interval=0), ca.InvalidArgumentError, "heartbeat_interval"),
        (dict(heartbeat_interval=-1.0), ca.InvalidArgumentError, "heartbeat_interval"),
        (dict(flush_interval="fast"), ca.ArgumentTypeError, "flush_interval"),
        (dict(retention_check_interval=None), ca.ArgumentTypeError, "retention_check_interval"),
        (dict(max_bytes=0), ca.InvalidArgumentError, "max_bytes"),
        (dict(max_segments=1.5), ca.ArgumentTypeError, "max_segments"),
        (dict(prefault="yes"), ca.ArgumentTypeError, "prefault"),
    ],
)
def test_bad_writer_config_values_are_typed_errors_naming_the_field(kwargs, cls, word):
    with pytest.raises(cls) as ei:
        WriterConfig(**kwargs)
    assert_helpful(ei.value, cls, word)


def test_durability_accepts_its_string_values():
    assert WriterConfig(durability="sync").durability is ca.Durability.SYNC


@pytest.mark.parametrize("field", ["heartbeat_interval", "flush_interval", "retention_check_interval"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_durations_are_rejected(field, value):
    with pytest.raises(ca.InvalidArgumentError):
        WriterConfig(**{field: value})


def test_a_config_that_is_not_a_writer_config_is_rejected_before_touching_the_disk(tmp_path):
    d = tmp_path / "q"
    with pytest.raises(ca.ArgumentTypeError) as ei:
        Queue.open_publisher(d, {"segment_size": 16384})
    assert "WriterConfig" in str(ei.value) and "dict" in str(ei.value)
    assert not d.exists()
    with Queue.open_publisher(d, TINY) as w:  # nothing half-made blocks a correct open
        assert w.append(0, b"x") == 0


# -- wrong arguments to readers ----------------------------------------------------------------


@pytest.fixture
def q(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append(0, b"m0")
        w.append(0, b"m1")
        yield w, queue_dir


@pytest.mark.parametrize(
    "name,cls",
    [
        ("a/b", ca.InvalidArgumentError),
        ("../escape", ca.InvalidArgumentError),
        ("", ca.InvalidArgumentError),
        (".hidden", ca.InvalidArgumentError),
        ("x" * 129, ca.InvalidArgumentError),
        ("sp ace", ca.InvalidArgumentError),
        (5, ca.ArgumentTypeError),
        (b"bytes", ca.ArgumentTypeError),
    ],
)
def test_a_bad_reader_name_is_rejected_and_creates_no_file(q, name, cls):
    _w, d = q
    with pytest.raises(cls) as ei:
        Queue.open_subscriber(d, name)
    assert "name" in str(ei.value)
    rdir = d / L.READERS_DIR_NAME
    assert not rdir.exists() or os.listdir(rdir) == []
    assert not (d.parent / "escape.pos").exists()


def test_good_reader_names_are_accepted(q):
    _w, d = q
    for name in ("svc", "svc-1_a.b", "x" * 128):
        with Queue.open_subscriber(d, name) as r:
            assert r.name == name


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(start="nowhere"), "start"),
        (dict(start=5), "start"),
        (dict(start=None), "start"),
        (dict(wait_strategy="sleepy"), "wait_strategy"),
        (dict(spin_time=-1), "spin_time"),
        (dict(spin_time="long"), "spin_time"),
    ],
)
def test_bad_subscriber_options_are_invalid_arguments(q, kwargs, word):
    _w, d = q
    with pytest.raises(ca.InvalidArgumentError) as ei:
        Queue.open_subscriber(d, **kwargs)
    assert word in str(ei.value)


@pytest.mark.parametrize("timeout", [-1, -0.001, "soon", math.nan, True])
def test_a_bad_wait_timeout_is_an_invalid_argument(q, timeout):
    w, d = q
    with Queue.open_subscriber(d, start="latest") as r:
        with pytest.raises(ca.InvalidArgumentError) as ei:
            r.wait(timeout)
        assert "timeout" in str(ei.value)
        w.append(0, b"m2")
        assert r.next().seq == 2


@pytest.mark.parametrize("timeout", [-1, "soon"])
def test_a_bad_wait_timeout_is_rejected_even_when_data_is_available(q, timeout):
    _w, d = q
    with Queue.open_subscriber(d) as r:
        with pytest.raises(ca.InvalidArgumentError):
            r.wait(timeout)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda r: r.seek("a"), id="seek('a')"),
        pytest.param(lambda r: r.seek(1.5), id="seek(1.5)"),
        pytest.param(lambda r: r.seek(None), id="seek(None)"),
        pytest.param(lambda r: r.seek_timestamp("now"), id="seek_timestamp('now')"),
        pytest.param(lambda r: r.seek_timestamp(1.5e18), id="seek_timestamp(float)"),
    ],
)
def test_a_bad_seek_argument_is_a_type_error_and_keeps_the_position(q, call):
    _w, d = q
    with Queue.open_subscriber(d) as r:
        assert r.next().seq == 0
        with pytest.raises(ca.ArgumentTypeError) as ei:
            call(r)
        assert "seek" in str(ei.value)
        assert r.next().seq == 1


@pytest.mark.parametrize("ttl", [0, -1, "1s", math.nan, None])
def test_a_bad_ttl_is_an_invalid_argument(q, ttl):
    _w, d = q
    with Queue.open_subscriber(d) as r:
        for call in (r.writer_status, r.detect_disconnect):
            with pytest.raises(ca.InvalidArgumentError) as ei:
                call(ttl)
            assert "ttl" in str(ei.value)


@pytest.mark.parametrize("path", [None, 123, 1.5, ["q"]])
@pytest.mark.parametrize("opener", ["publisher", "subscriber"])
def test_a_path_of_the_wrong_type_is_an_argument_type_error(path, opener):
    with pytest.raises(ca.ArgumentTypeError) as ei:
        if opener == "publisher":
            Queue.open_publisher(path, TINY)
        else:
            Queue.open_subscriber(path)
    assert "path" in str(ei.value)


def test_an_empty_path_is_an_invalid_argument():
    for open_ in (lambda: Queue.open_publisher("", TINY), lambda: Queue.open_subscriber("")):
        with pytest.raises(ca.InvalidArgumentError) as ei:
            open_()
        assert "path" in str(ei.value)


def test_a_bytes_or_pathlike_path_names_the_same_queue_as_a_str(tmp_path):
    d = tmp_path / "q"
    with Queue.open_publisher(os.fsencode(d), TINY) as w:
        assert w.path == str(d)
        w.append(0, b"via bytes")
    with Queue.open_subscriber(os.fsencode(d)) as r1, Queue.open_subscriber(d) as r2:
        assert bytes(r1.next().payload) == bytes(r2.next().payload) == b"via bytes"
        assert r1.path == r2.path == str(d)


# -- permissions -------------------------------------------------------------------------------

_AS_OTHER_USER = r"""
import json, sys
result = {}
try:
    import chronicle_async as ca
except BaseException as e:
    print(json.dumps({"import": f"{type(e).__name__}: {e}"}))
    sys.exit(0)
action, path = sys.argv[1], sys.argv[2]
try:
    if action == "publish":
        with ca.Queue.open_publisher(path, ca.WriterConfig(segment_size=16384)) as w:
            w.append(0, b"x")
        result["ok"] = True
    elif action == "subscribe-named":
        ca.Queue.open_subscriber(path, "named").close()
        result["ok"] = True
    elif action == "read":
        with ca.Queue.open_subscriber(path) as r:
            result["messages"] = [bytes(m.payload).decode() for m in r]
            result["wait"] = r.wait(0.02)
        result["ok"] = True
    elif action == "import":
        result["ok"] = True
except BaseException as e:
    result = {"error": type(e).__name__, "message": str(e), "chronicle": isinstance(e, ca.ChronicleError),
              "permission": isinstance(e, PermissionError)}
print(json.dumps(result))
"""

NOBODY = 65534


def _nobody_launcher() -> tuple[list[str], dict] | str:
    """How to run this interpreter as ``nobody``: (command prefix, Popen kwargs), or why it cannot."""
    attempts = []
    if shutil.which("setpriv"):
        attempts.append(([shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"], {}))
    attempts.append(([], dict(user=NOBODY, group=NOBODY, extra_groups=[])))
    why = []
    for prefix, kwargs in attempts:
        try:
            p = subprocess.run(prefix + [sys.executable, "-c", "import os; print(os.geteuid())"], capture_output=True,
                               text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}, **kwargs)
        except OSError as e:
            why.append(f"{prefix[:1] or 'subprocess(user=)'}: {e}")
            continue
        if p.returncode == 0 and p.stdout.strip() == str(NOBODY):
            return prefix, kwargs
        why.append(f"{prefix[:1] or 'subprocess(user=)'}: rc={p.returncode} {p.stderr.strip()[-200:]}")
    return "; ".join(why)


@pytest.fixture(scope="module")
def nobody_launcher():
    if not IS_ROOT:
        pytest.skip("needs root to switch to an unprivileged user (as non-root, permission bits already apply)")
    how = _nobody_launcher()
    if isinstance(how, str):
        pytest.skip(f"running as root, and this interpreter cannot be started as uid {NOBODY}: {how}")
    return how


@pytest.fixture
def as_nobody(nobody_launcher):
    """Run a small script as the unprivileged user ``nobody`` (root ignores permission bits)."""
    prefix, kwargs = nobody_launcher
    cache = tempfile.mkdtemp(prefix="chronicle-nobody-cache-")
    os.chown(cache, NOBODY, NOBODY)

    def run(action: str, path, *, writable_cache: bool = True) -> dict:
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONPATH": str(REPO)}
        if writable_cache:
            env["NUMBA_CACHE_DIR"] = cache
        p = subprocess.run(prefix + [sys.executable, "-c", _AS_OTHER_USER, action, str(path)],
                           env=env, capture_output=True, text=True, timeout=120, **kwargs)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])

    yield run
    shutil.rmtree(cache, ignore_errors=True)


def test_creating_a_queue_in_a_folder_without_write_permission_is_a_permission_error(as_nobody, root_owned_dir):
    target = root_owned_dir / "q"
    res = as_nobody("publish", target)
    assert res.get("error") == "QueuePermissionError", res
    assert res["chronicle"] and res["permission"]
    assert str(target) in res["message"] and "permission" in res["message"].lower()
    assert not target.exists()


def test_writing_to_a_queue_owned_by_another_user_is_a_permission_error(as_nobody, root_owned_dir):
    target = root_owned_dir / "q"
    make_queue(target)
    os.chmod(target, 0o755)
    res = as_nobody("publish", target)
    assert res.get("error") == "QueuePermissionError", res
    assert str(target) in res["message"]
    res = as_nobody("subscribe-named", target)
    assert res.get("error") == "QueuePermissionError", res
    assert str(target) in res["message"]
    assert read_all(target) == [(0, b"one"), (1, b"two")], "the queue is untouched"


def test_an_anonymous_reader_can_read_a_queue_it_may_not_write(as_nobody, root_owned_dir):
    target = root_owned_dir / "q"
    make_queue(target)
    res = as_nobody("read", target)
    assert res == {"messages": ["one", "two"], "wait": False, "ok": True}


def test_importing_as_a_user_without_a_writable_cache_folder_works(as_nobody, root_owned_dir):
    res = as_nobody("import", root_owned_dir, writable_cache=False)
    assert res == {"ok": True}, res


# -- locks -------------------------------------------------------------------------------------


def test_a_second_writer_in_the_same_process_is_locked_out(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append(0, b"a")
        for _ in range(2):
            with pytest.raises(ca.WriterLockedError) as ei:
                Queue.open_publisher(queue_dir, TINY)
            assert ei.value.pid == os.getpid()
            assert_helpful(ei.value, ca.WriterLockedError, queue_dir, f"pid {os.getpid()}", L.WRITER_LOCK_NAME)
        assert w.append(0, b"b") == 1  # the first writer is unaffected
    with Queue.open_publisher(queue_dir, TINY) as w:  # and once it closed, the lock is free
        assert w.next_seq == 2


_CHILD = r"""
import sys
import chronicle_async as ca
kind, path = sys.argv[1], sys.argv[2]
if kind == "writer":
    h = ca.Queue.open_publisher(path, ca.WriterConfig(segment_size=16384))
    h.append(0, b"from child")
else:
    h = ca.Queue.open_subscriber(path, "shared")
    h.next()
    h.commit()
print("ready", flush=True)
sys.stdin.read()
h.close()
"""


def _spawn(kind: str, path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-c", _CHILD, kind, str(path)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        raise AssertionError(f"child failed: {line!r} {p.stderr.read()}")
    return p


def _finish(p: subprocess.Popen) -> None:
    p.stdin.close()
    p.wait(timeout=20)
    p.stdout.close()
    p.stderr.close()
    assert p.returncode == 0


def test_a_writer_in_another_process_locks_out_this_one_and_is_named(queue_dir):
    p = _spawn("writer", queue_dir)
    try:
        with pytest.raises(ca.WriterLockedError) as ei:
            Queue.open_publisher(queue_dir, TINY)
        assert ei.value.pid == p.pid
        assert_helpful(ei.value, ca.WriterLockedError, queue_dir, f"pid {p.pid}")
    finally:
        _finish(p)
    with Queue.open_publisher(queue_dir, TINY) as w:
        assert w.append(0, b"parent") == 1
    assert read_all(queue_dir) == [(0, b"from child"), (1, b"parent")]


def test_a_reader_name_open_in_another_process_is_locked(q):
    w, d = q
    p = _spawn("reader", d)
    try:
        with pytest.raises(ca.ReaderLockedError) as ei:
            Queue.open_subscriber(d, "shared")
        assert ei.value.pid == p.pid
        assert_helpful(ei.value, ca.ReaderLockedError, "shared", d, f"pid {p.pid}")
        with Queue.open_subscriber(d, "other") as r:  # other names are free
            assert r.next().seq == 0
    finally:
        _finish(p)
    with Queue.open_subscriber(d, "shared") as r:  # the child's commit is kept
        assert r.next().seq == 1


def test_a_second_reader_with_the_same_name_is_locked_out_in_process(q):
    _w, d = q
    with Queue.open_subscriber(d, "dup") as first:
        with pytest.raises(ca.ReaderLockedError) as ei:
            Queue.open_subscriber(d, "dup")
        assert ei.value.pid == os.getpid()
        assert_helpful(ei.value, ca.ReaderLockedError, "dup", d)
        assert first.next().seq == 0  # the first reader is unaffected
        first.commit()
    with Queue.open_subscriber(d, "dup") as again:
        assert again.next().seq == 1


# -- damaged reader files ----------------------------------------------------------------------


def _reader_file(d, name="pos") -> pathlib.Path:
    with Queue.open_subscriber(d, name) as r:
        r.next()
        r.commit()
    return d / L.READERS_DIR_NAME / (name + L.READER_FILE_SUFFIX)


@pytest.mark.parametrize("size", [0 + 1, 64, L.READER_FILE_LENGTH - 1, L.READER_FILE_LENGTH + 1])
def test_a_reader_file_of_the_wrong_size_is_a_corrupt_queue_and_deleting_it_resets_the_reader(q, size):
    _w, d = q
    path = _reader_file(d)
    os.truncate(path, size)
    with pytest.raises(ca.CorruptQueueError) as ei:
        Queue.open_subscriber(d, "pos")
    assert_helpful(ei.value, ca.CorruptQueueError, path, "delete")
    with pytest.raises(ca.CorruptQueueError):  # the failed open released the name: same error again
        Queue.open_subscriber(d, "pos")
    os.unlink(path)
    with Queue.open_subscriber(d, "pos") as r:
        assert r.next().seq == 0


def test_a_reader_file_with_bad_magic_is_a_corrupt_queue(q):
    _w, d = q
    path = _reader_file(d)
    patch(path, L.RDR_MAGIC_OFFSET, "<I", 0x12345678)
    with pytest.raises(ca.CorruptQueueError) as ei:
        Queue.open_subscriber(d, "pos")
    assert_helpful(ei.value, ca.CorruptQueueError, path)


def test_a_reader_file_holding_an_impossible_offset_is_a_corrupt_queue(q):
    _w, d = q
    path = _reader_file(d)
    data = bytearray(path.read_bytes())
    bases = [L.READER_SLOT0_OFFSET + i * L.READER_SLOT_LENGTH for i in range(2)]
    base = next(b for b in bases if struct.unpack_from("<q", data, b + L.SLOT_GENERATION_OFFSET)[0] > 0)  # the committed slot
    struct.pack_into("<q", data, base + L.SLOT_OFFSET_OFFSET, 100)  # not record-aligned
    struct.pack_into("<I", data, base + L.SLOT_CHECKSUM_OFFSET, zlib.crc32(bytes(data[base : base + L.SLOT_CHECKSUM_OFFSET])))
    path.write_bytes(bytes(data))
    with pytest.raises(ca.CorruptQueueError) as ei:
        Queue.open_subscriber(d, "pos")
    assert_helpful(ei.value, ca.CorruptQueueError, path, "100")


def test_a_reader_file_whose_slots_fail_their_checksums_starts_from_the_earliest_data(q):
    _w, d = q
    path = _reader_file(d)
    for i in range(2):
        patch(path, L.READER_SLOT0_OFFSET + i * L.READER_SLOT_LENGTH + L.SLOT_NEXT_SEQ_OFFSET, "<q", 77)
    with Queue.open_subscriber(d, "pos") as r:
        assert r.next().seq == 0


def test_a_reader_file_from_a_future_version_is_unsupported(q):
    _w, d = q
    path = _reader_file(d)
    patch(path, L.RDR_VERSION_OFFSET, "<I", L.READER_VERSION + 1)
    with pytest.raises(ca.UnsupportedVersionError) as ei:
        Queue.open_subscriber(d, "pos")
    assert_helpful(ei.value, ca.UnsupportedVersionError, path, "upgrade")


# -- damaged records ---------------------------------------------------------------------------


def test_a_committed_record_that_overruns_its_segment_is_a_corrupt_segment(q):
    w, d = q
    with Queue.open_subscriber(d) as r:
        assert [m.seq for m in r] == [0, 1]
        tail = L.SEGMENT_DATA_OFFSET + 2 * L.record_length(2)
        n = TINY.segment_size  # can never fit
        with open(d / L.segment_file_name(0), "r+b") as f:
            f.seek(tail)
            f.write(struct.pack(L.RECORD_HEADER_FORMAT, n + 1, 0, 2, 0, n, 0))
        with pytest.raises(ca.CorruptSegmentError) as ei:
            r.next()
        assert_helpful(ei.value, ca.CorruptSegmentError, d / L.segment_file_name(0), f"offset {tail}")


def test_a_committed_record_whose_length_disagrees_with_its_commit_word_is_a_corrupt_segment(q):
    w, d = q
    with Queue.open_subscriber(d) as r:
        r.next()
        patch(d / L.segment_file_name(0), L.SEGMENT_DATA_OFFSET + L.record_length(2) + L.REC_LENGTH_OFFSET, "<I", 7)
        with pytest.raises(ca.CorruptSegmentError):
            r.next()


def test_a_tail_record_failing_its_checksum_is_covered_and_readers_go_on(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(3):
            w.append(0, b"msg%d" % i)
    tail_payload = L.SEGMENT_DATA_OFFSET + 2 * L.record_length(4) + L.RECORD_HEADER_LENGTH
    patch(queue_dir / L.segment_file_name(0), tail_payload, "<B", ord("X"))  # bit rot in the last record
    with Queue.open_publisher(queue_dir, TINY) as w:
        assert w.next_seq == 3  # the damaged record is dropped; its seq is never given again
        assert w.recovery.skipped_seq == 2
        w.append(0, b"new")
    assert read_all(queue_dir) == [(0, b"msg0"), (1, b"msg1"), (3, b"new")]


def test_a_reader_committed_past_a_covered_tail_record_still_receives_new_messages(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(3):
            w.append(0, b"msg%d" % i)
    with Queue.open_subscriber(queue_dir, "r") as r:
        assert [m.seq for m in r] == [0, 1, 2]
        r.commit()
    tail_payload = L.SEGMENT_DATA_OFFSET + 2 * L.record_length(4) + L.RECORD_HEADER_LENGTH
    patch(queue_dir / L.segment_file_name(0), tail_payload, "<B", ord("X"))
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append(0, b"new")
        with Queue.open_subscriber(queue_dir, "r") as r:
            r.wait(0.2)
            assert [bytes(m.payload) for m in r] == [b"new"]


def test_segments_left_by_a_creator_that_died_before_control_file_are_adopted(queue_dir):
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(40):
            w.append(0, b"%03d" % i + b"." * 1000)
        assert w.segment_id >= 2
    os.unlink(queue_dir / L.CONTROL_FILE_NAME)
    assert not Queue.exists(queue_dir)
    with Queue.open_publisher(queue_dir, WriterConfig(segment_size=64 * 1024)) as w:
        assert w.segment_size == TINY.segment_size  # taken from the segments, not the new config
        assert w.next_seq == 40
        w.append(0, b"new")
    got = read_all(queue_dir)
    assert [s for s, _ in got] == list(range(41))
    assert got[7][1].startswith(b"007") and got[-1][1] == b"new"
