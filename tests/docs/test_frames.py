"""chronicle_async.frames: queue ranges into numpy structured arrays and pandas DataFrames."""
from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
import threading
import time

import numpy as np
import pytest

from chronicle_async import (
    ArgumentTypeError,
    CorruptSegmentError,
    InvalidArgumentError,
    NotAQueueError,
    Queue,
    QueueNotFoundError,
    WriterConfig,
)
from chronicle_async import frames as fr
from chronicle_async.hot import layout as L

TICK = np.dtype([("instrument", "i4"), ("price", "f8"), ("qty", "i4"), ("sent_ns", "i8")])
TINY = WriterConfig(segment_size=16 * 1024)  # ~250 ticks a segment: every test crosses rolls
T0 = 1_714_550_400_000_000_000  # 2024-05-01T08:00:00Z in ns


def ticks(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ticks and their increasing, irregular timestamps (a few share one)."""
    rng = np.random.default_rng(seed)
    a = np.zeros(n, TICK)
    a["instrument"] = rng.integers(0, 5, n)
    a["price"] = 100 + rng.standard_normal(n).cumsum() * 0.01
    a["qty"] = rng.integers(1, 500, n)
    gaps = rng.exponential(2_000, n).astype(np.int64)
    gaps[rng.random(n) < 0.05] = 0
    ts = T0 + np.cumsum(gaps)
    a["sent_ns"] = ts - rng.integers(1_000, 50_000, n)
    return a, ts


def write(queue_dir, a, ts, type_ids=7, config=TINY) -> None:
    with Queue.open_publisher(queue_dir, config) as w:
        w.append_batch(type_ids, a, ts)


def segments(d) -> list[int]:
    return sorted(i for i in (L.parse_segment_file_name(n) for n in os.listdir(d)) if i is not None)


def tree(d) -> dict[str, tuple[int, int]]:
    """Every file below ``d`` with its size and mtime."""
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.stat(p)
            out[os.path.relpath(p, d)] = (st.st_size, st.st_mtime_ns)
    return out


def assert_ticks(r: np.ndarray, a: np.ndarray, ts: np.ndarray, seqs: np.ndarray, type_id: int = 7) -> None:
    assert r["seq"].tolist() == seqs.tolist()
    np.testing.assert_array_equal(r["timestamp_ns"], ts[seqs])
    assert (r["type_id"] == type_id).all()
    for name in TICK.names:
        np.testing.assert_array_equal(r[name], a[name][seqs])


# -- round trips ------------------------------------------------------------------------------


def test_round_trip_of_a_structured_dtype_across_segment_rolls(queue_dir):
    a, ts = ticks(5_000)
    write(queue_dir, a, ts)
    assert len(segments(queue_dir)) > 10
    r = fr.read_array(queue_dir, dtype=TICK)
    assert r.dtype.names == ("seq", "timestamp_ns", "type_id", *TICK.names)
    assert r.dtype["seq"] == np.int64 and r.dtype["timestamp_ns"] == np.int64 and r.dtype["type_id"] == np.int32
    assert_ticks(r, a, ts, np.arange(5_000))


def test_results_grow_and_chunk_without_losing_a_message(queue_dir, monkeypatch):
    monkeypatch.setattr(fr, "_FIRST_CAPACITY", 3)
    monkeypatch.setattr(fr, "_PREALLOC_BYTES", 100)
    monkeypatch.setattr(fr, "_CHUNK", 17)
    a, ts = ticks(2_000)
    write(queue_dir, a, ts)
    r = fr.read_array(queue_dir, ts[100], None, by="time", dtype=TICK)
    first = int(np.searchsorted(ts, ts[100]))
    assert_ticks(r, a, ts, np.arange(first, 2_000))
    raw = fr.read_array(queue_dir, 10, 1_500)
    assert raw["seq"].tolist() == list(range(10, 1_500))
    assert raw["payload"][0] == a[10].tobytes()


def test_payload_bytes_without_a_dtype(queue_dir):
    bodies = [b"", b"a", b"tail zeros\x00\x00", bytes(range(256)) * 8, b"x" * 63, b"y" * 64]
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i, b in enumerate(bodies * 30):
            w.append(i % 3, b, T0 + i)
    r = fr.read_array(queue_dir)
    assert r.dtype.names == ("seq", "timestamp_ns", "type_id", "payload")
    assert r["payload"].dtype == object
    assert r["payload"].tolist() == bodies * 30
    assert all(type(p) is bytes for p in r["payload"])
    assert r["type_id"].tolist() == [i % 3 for i in range(len(bodies) * 30)]
    assert r["timestamp_ns"].tolist() == [T0 + i for i in range(len(bodies) * 30)]


def test_a_plain_dtype_gives_one_value_field(queue_dir):
    rows = np.arange(40, dtype=np.float32).reshape(10, 4)
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append_batch(2, rows, T0)
    r = fr.read_array(queue_dir, dtype=("f4", (4,)))
    assert r.dtype.names == ("seq", "timestamp_ns", "type_id", "value")
    np.testing.assert_array_equal(r["value"], rows)
    scalar = fr.read_array(queue_dir, dtype=np.dtype("S16"))
    assert scalar["value"][3] == rows[3].tobytes()


# -- ranges and filters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "stop", "want"),
    [
        (None, None, range(3_000)),
        (0, 1, range(1)),
        (250, 1_750, range(250, 1_750)),
        (2_990, None, range(2_990, 3_000)),
        (None, 13, range(13)),
        (2_999, 5_000, range(2_999, 3_000)),
        (3_000, None, range(0)),
        (10_000, 20_000, range(0)),
        (700, 700, range(0)),
        (900, 100, range(0)),
    ],
)
def test_seq_ranges_are_half_open(queue_dir, start, stop, want):
    a, ts = ticks(3_000)
    write(queue_dir, a, ts)
    r = fr.read_array(queue_dir, start, stop, dtype=TICK)
    assert_ticks(r, a, ts, np.arange(want.start, want.stop, dtype=np.int64))


def test_limit_caps_the_count(queue_dir):
    a, ts = ticks(1_000)
    write(queue_dir, a, ts)
    assert fr.read_array(queue_dir, 100, limit=25, dtype=TICK)["seq"].tolist() == list(range(100, 125))
    assert fr.read_array(queue_dir, limit=0, dtype=TICK).shape == (0,)
    assert len(fr.read_array(queue_dir, limit=10**9, dtype=TICK)) == 1_000


def test_time_ranges_take_every_form_of_time(queue_dir):
    a, ts = ticks(3_000)
    write(queue_dir, a, ts)
    lo, hi = int(ts[500]), int(ts[2_400])
    want = np.flatnonzero((ts >= lo) & (ts < hi))
    pd = pytest.importorskip("pandas")
    lo_dt = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=lo // 1_000)
    # pandas, numpy and ISO strings keep nanoseconds; datetime keeps microseconds.
    forms = [
        (lo, hi),
        (np.datetime64(lo, "ns"), np.datetime64(hi, "ns")),
        (pd.Timestamp(lo, unit="ns", tz="UTC"), pd.Timestamp(hi, unit="ns")),  # naive means UTC
        (str(np.datetime64(lo, "ns")), str(np.datetime64(hi, "ns")) + "Z"),
        (pd.Timestamp(lo, unit="ns", tz="UTC").tz_convert("America/New_York").isoformat(), hi),
    ]
    for start, stop in forms:
        r = fr.read_array(queue_dir, start, stop, by="time", dtype=TICK)
        assert_ticks(r, a, ts, want)
    r = fr.read_array(queue_dir, lo_dt, lo_dt.replace(tzinfo=None) + dt.timedelta(milliseconds=1), by="time", dtype=TICK)
    us = lo // 1_000 * 1_000
    assert_ticks(r, a, ts, np.flatnonzero((ts >= us) & (ts < us + 1_000_000)))


def test_time_ranges_at_the_edges(queue_dir):
    a, ts = ticks(1_000)
    write(queue_dir, a, ts)
    assert len(fr.read_array(queue_dir, None, int(ts[0]), by="time", dtype=TICK)) == 0
    assert len(fr.read_array(queue_dir, int(ts[-1]) + 1, None, by="time", dtype=TICK)) == 0
    assert len(fr.read_array(queue_dir, "2024-05-01", "2024-05-01T08:00:00", by="time", dtype=TICK)) == 0
    assert len(fr.read_array(queue_dir, "2024-05-01", "2024-05-02", by="time", dtype=TICK)) == 1_000
    r = fr.read_array(queue_dir, int(ts[-1]), None, by="time", dtype=TICK)
    assert r["seq"].tolist() == np.flatnonzero(ts == ts[-1]).tolist()
    assert r["seq"][-1] == 999


def test_type_filter_selects_one_layout_among_others(queue_dir):
    a, ts = ticks(600)
    with Queue.open_publisher(queue_dir, TINY) as w:
        for i in range(600):
            w.append(1, a[i : i + 1].tobytes(), int(ts[i]))
            if i % 3 == 0:
                w.append(2, b"heartbeat", int(ts[i]))  # another size: would fail the dtype
    r = fr.read_array(queue_dir, dtype=TICK, type_ids=1)
    assert len(r) == 600 and (r["type_id"] == 1).all()
    for name in TICK.names:
        np.testing.assert_array_equal(r[name], a[name])
    hb = fr.read_array(queue_dir, type_ids=[2])
    assert hb["payload"].tolist() == [b"heartbeat"] * 200
    assert len(fr.read_array(queue_dir, type_ids=(1, 2))) == 800
    assert len(fr.read_array(queue_dir, type_ids=[3])) == 0
    assert len(fr.read_array(queue_dir, type_ids=[])) == 0
    assert len(fr.read_array(queue_dir, dtype=TICK, type_ids=[1], limit=5)) == 5
    seqs = fr.read_array(queue_dir, 100, 200, type_ids=2)["seq"]
    assert len(seqs) and seqs.min() >= 100 and seqs.max() < 200


def test_an_empty_queue_gives_empty_results_with_the_columns(queue_dir):
    Queue.open_publisher(queue_dir, TINY).close()
    r = fr.read_array(queue_dir, dtype=TICK)
    assert r.shape == (0,) and r.dtype.names == ("seq", "timestamp_ns", "type_id", *TICK.names)
    assert fr.read_array(queue_dir).dtype.names == ("seq", "timestamp_ns", "type_id", "payload")
    assert len(fr.read_array(queue_dir, 0, 10, dtype=TICK)) == 0
    assert len(fr.read_array(queue_dir, T0, None, by="time")) == 0
    pytest.importorskip("pandas")
    df = fr.read_dataframe(queue_dir, dtype=TICK)
    assert df.empty and list(df.columns) == ["time", "timestamp_ns", "type_id", *TICK.names]


def test_reading_starts_at_the_oldest_segment_still_kept(queue_dir):
    a, ts = ticks(3_000)
    write(queue_dir, a, ts)
    ids = segments(queue_dir)
    for sid in ids[:3]:
        os.unlink(os.path.join(queue_dir, L.segment_file_name(sid)))
    r = fr.read_array(queue_dir, dtype=TICK)
    assert r["seq"][0] > 0 and r["seq"][-1] == 2_999
    assert_ticks(r, a, ts, np.arange(r["seq"][0], 3_000))
    assert_ticks(fr.read_array(queue_dir, 0, 2_000, dtype=TICK), a, ts, np.arange(r["seq"][0], 2_000))


# -- errors -----------------------------------------------------------------------------------


def test_a_wrong_sized_payload_is_an_error_naming_its_seq(queue_dir):
    a, ts = ticks(500)
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append_batch(7, a[:321], ts[:321])
        w.append(7, b"short", T0)
        w.append_batch(7, a[321:], ts[321:])
    with pytest.raises(InvalidArgumentError, match=r"seq 321\b.*5-byte.*24 bytes"):
        fr.read_array(queue_dir, dtype=TICK)
    assert len(fr.read_array(queue_dir, 0, 321, dtype=TICK)) == 321  # the range before it is fine
    assert len(fr.read_array(queue_dir, 322, dtype=TICK)) == 179


def test_typed_errors_for_bad_arguments(queue_dir, tmp_path):
    a, ts = ticks(10)
    write(queue_dir, a, ts)
    with pytest.raises(QueueNotFoundError):
        fr.read_array(tmp_path / "nowhere", dtype=TICK)
    with pytest.raises(QueueNotFoundError):
        fr.read_array(tmp_path)  # a folder, but no queue in it
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotAQueueError):
        fr.read_array(tmp_path / "file")
    with pytest.raises(ArgumentTypeError):
        fr.read_array(queue_dir, dtype="not a dtype")
    with pytest.raises(ArgumentTypeError):
        fr.read_array(queue_dir, dtype=[("o", object)])
    with pytest.raises(InvalidArgumentError, match="seq"):
        fr.read_array(queue_dir, dtype=[("seq", "i8"), ("x", "f8"), ("y", "i8")])
    with pytest.raises(InvalidArgumentError, match="by"):
        fr.read_array(queue_dir, by="timestamp")
    with pytest.raises(ArgumentTypeError, match="by='time'"):
        fr.read_array(queue_dir, "2024-05-01")
    with pytest.raises(ArgumentTypeError):
        fr.read_array(queue_dir, 1.5)
    with pytest.raises(InvalidArgumentError):
        fr.read_array(queue_dir, -1)
    with pytest.raises(InvalidArgumentError, match="ISO"):
        fr.read_array(queue_dir, "yesterday", by="time")
    with pytest.raises(ArgumentTypeError):
        fr.read_array(queue_dir, 1.5, by="time")
    with pytest.raises(InvalidArgumentError):
        fr.read_array(queue_dir, np.datetime64("NaT"), by="time")
    with pytest.raises(ArgumentTypeError):
        fr.read_array(queue_dir, type_ids="7")
    with pytest.raises(InvalidArgumentError):
        fr.read_array(queue_dir, type_ids=[-3])
    with pytest.raises(InvalidArgumentError):
        fr.read_array(queue_dir, limit=-1)
    with pytest.raises(ArgumentTypeError):
        fr.read_array(queue_dir, limit=2.0)


def test_a_malformed_record_is_a_corrupt_segment_error(queue_dir):
    a, ts = ticks(100)
    write(queue_dir, a, ts)
    rec = L.record_length(TICK.itemsize)
    with open(os.path.join(queue_dir, L.segment_file_name(0)), "r+b") as f:
        f.seek(L.SEGMENT_DATA_OFFSET + 5 * rec + L.REC_LENGTH_OFFSET)
        f.write((9999).to_bytes(4, "little"))
    with pytest.raises(CorruptSegmentError, match="offset"):
        fr.read_array(queue_dir, dtype=TICK)


# -- an anonymous reader beside a live writer -------------------------------------------------


def test_reading_creates_no_file_takes_only_shared_segment_locks_and_commits_nothing(queue_dir, monkeypatch):
    a, ts = ticks(1_000)
    write(queue_dir, a, ts)
    with Queue.open_subscriber(queue_dir, "named", "earliest") as named:  # a named reader's file exists
        for _ in range(10):
            named.next()
        named.commit()
    before = tree(queue_dir)
    pos = (queue_dir / "readers" / "named.pos").read_bytes()
    calls = []

    from chronicle_async.queue.ofd import FLOCK, F_OFD_SETLK

    def spy(name, real):
        def f(*args, **kw):
            kind = FLOCK.unpack(args[2])[0] if name == "fcntl" and args[1] == F_OFD_SETLK else None
            calls.append((name, kind))
            return real(*args, **kw)
        return f

    for name in ("fcntl", "flock", "lockf"):
        monkeypatch.setattr(fcntl, name, spy(name, getattr(fcntl, name)))
    fr.read_array(queue_dir, dtype=TICK)
    fr.read_array(queue_dir, 5, 50)
    fr.read_array(queue_dir, ts[3], ts[900], by="time", dtype=TICK)
    # only the shared segment use lock every reader holds on the segment it maps (docs/format.md,
    # "Locks"): never the writer's or a reader's exclusive lock
    assert calls and {c for c in calls} == {("fcntl", fcntl.F_RDLCK)}
    assert tree(queue_dir) == before
    assert (queue_dir / "readers" / "named.pos").read_bytes() == pos
    with Queue.open_subscriber(queue_dir, "named") as named:  # its committed position is untouched
        assert named.next().seq == 10


def test_reads_while_a_writer_appends(queue_dir):
    a, ts = ticks(20_000)
    w = Queue.open_publisher(queue_dir, TINY)
    stop = threading.Event()
    written = [0]

    def append():
        i = 0
        while i < len(a) and not stop.is_set():
            k = min(len(a), i + 37)
            w.append_batch(7, a[i:k], ts[i:k])
            i = written[0] = k
            time.sleep(0.0002)  # a paced feed, so reads overlap it

    t = threading.Thread(target=append)
    t.start()
    try:
        lengths = []
        deadline = time.monotonic() + 20
        while t.is_alive() and time.monotonic() < deadline:
            r = fr.read_array(queue_dir, dtype=TICK)
            assert_ticks(r, a, ts, np.arange(len(r)))  # a whole prefix, never a torn record
            lengths.append(len(r))
        t.join(20)
        assert not t.is_alive()
        assert lengths == sorted(lengths)
        assert any(0 < k < len(a) for k in lengths), lengths  # some read overlapped the appends
        assert_ticks(fr.read_array(queue_dir, dtype=TICK), a, ts, np.arange(len(a)))
    finally:
        stop.set()
        t.join()
        w.close()


# -- pandas, async, plots, progress -----------------------------------------------------------


def test_read_dataframe_columns_dtypes_and_index(queue_dir):
    pd = pytest.importorskip("pandas")
    a, ts = ticks(2_000)
    write(queue_dir, a, ts)
    df = fr.read_dataframe(queue_dir, 100, 1_100, dtype=TICK)
    assert list(df.columns) == ["time", "timestamp_ns", "type_id", *TICK.names]
    assert df.index.name == "seq" and df.index.dtype == np.int64
    assert df.index.tolist() == list(range(100, 1_100))
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert df["timestamp_ns"].dtype == np.int64 and df["type_id"].dtype == np.int32
    assert [df[n].dtype for n in TICK.names] == [TICK[n] for n in TICK.names]
    np.testing.assert_array_equal(df["time"].dt.tz_convert(None).to_numpy().view(np.int64), ts[100:1_100])
    assert df["time"].iloc[0] == pd.Timestamp(int(ts[100]), unit="ns", tz="UTC")
    np.testing.assert_array_equal(df["price"].to_numpy(), a["price"][100:1_100])
    by_time = fr.read_dataframe(queue_dir, df["time"].iloc[10], df["time"].iloc[20], by="time", dtype=TICK)
    assert by_time.index.tolist() == np.flatnonzero((ts >= ts[110]) & (ts < ts[120])).tolist()
    raw = fr.read_dataframe(queue_dir, 0, 3)
    assert list(raw.columns) == ["time", "timestamp_ns", "type_id", "payload"]
    assert raw["payload"].tolist() == [a[i].tobytes() for i in range(3)]


def test_read_dataframe_flattens_sub_arrays_and_nested_fields(queue_dir):
    pytest.importorskip("pandas")
    book = np.dtype([("bid", "f8", (3,)), ("top", [("px", "f8"), ("qty", "i4")])])
    rows = np.zeros(5, book)
    rows["bid"] = np.arange(15).reshape(5, 3)
    rows["top"]["qty"] = np.arange(5)
    with Queue.open_publisher(queue_dir, TINY) as w:
        w.append_batch(1, rows, T0)
    df = fr.read_dataframe(queue_dir, dtype=book)
    assert list(df.columns) == ["time", "timestamp_ns", "type_id", "bid_0", "bid_1", "bid_2", "top.px", "top.qty"]
    assert df["bid_2"].tolist() == [2.0, 5.0, 8.0, 11.0, 14.0] and df["top.qty"].tolist() == [0, 1, 2, 3, 4]


async def test_async_variants_run_in_a_thread_and_leave_the_loop_free(queue_dir):
    pytest.importorskip("pandas")
    a, ts = ticks(3_000)
    write(queue_dir, a, ts)
    ticks_seen = 0

    async def heartbeat():
        nonlocal ticks_seen
        while True:
            ticks_seen += 1
            await asyncio.sleep(0)

    hb = asyncio.create_task(heartbeat())
    try:
        r = await asyncio.wait_for(fr.read_array_async(queue_dir, 10, 2_010, dtype=TICK), 30)
        assert_ticks(r, a, ts, np.arange(10, 2_010))
        r = await asyncio.wait_for(fr.read_array_async(queue_dir, int(ts[5]), by="time", dtype=TICK, type_ids=7), 30)
        assert r["seq"][0] == np.searchsorted(ts, ts[5]) and r["seq"][-1] == 2_999
        with pytest.raises(QueueNotFoundError):
            await fr.read_array_async(queue_dir / "missing")
        df = await asyncio.wait_for(fr.read_dataframe_async(queue_dir, dtype=TICK), 30)
        assert len(df) == 3_000 and df.index.name == "seq"
    finally:
        hb.cancel()
    assert ticks_seen > 0


def test_plots_return_axes(queue_dir):
    pytest.importorskip("pandas")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, ts = ticks(2_000)
    write(queue_dir, a, ts)
    df = fr.read_dataframe(queue_dir, dtype=TICK)
    df["latency_ns"] = df["timestamp_ns"] - df["sent_ns"]
    ax = fr.plot_interarrival(df)
    assert ax.get_xscale() == "log" and len(ax.patches) > 0 and "of 0 not shown" in ax.get_title()
    ax2 = fr.plot_latency(df, "latency_ns")
    assert len(ax2.patches) > 0 and ax2.get_xlabel() == "latency (µs)"
    assert max(p.get_x() + p.get_width() for p in ax2.patches) <= 51  # µs, not ns
    _fig, (left, right) = plt.subplots(1, 2)
    assert fr.plot_interarrival(fr.read_array(queue_dir, dtype=TICK), ax=left) is left
    assert fr.plot_latency(df.assign(lat=pd_timedelta(df)), "lat", ax=right) is right
    with pytest.raises(InvalidArgumentError, match="no column"):
        fr.plot_latency(df, "nope")
    plt.close("all")


def pd_timedelta(df):
    import pandas as pd

    return pd.to_timedelta(df["latency_ns"], unit="ns")


def test_progress_goes_to_stderr_only_when_asked(queue_dir, monkeypatch, capsys):
    a, ts = ticks(500)
    write(queue_dir, a, ts)
    monkeypatch.setattr(fr, "_PROGRESS_AFTER_S", 0.0)
    fr.read_array(queue_dir, dtype=TICK, progress=False)
    assert capsys.readouterr().err == ""
    fr.read_array(queue_dir, dtype=TICK, progress=True)
    err = capsys.readouterr().err
    assert "read_array: 500" in err and err.endswith("\n")


def test_fixed_size_reads_run_without_python_per_message(queue_dir):
    """A loose floor (the jitted scan does tens of millions a second; a Python loop under one)."""
    n = 400_000
    d16 = np.dtype([("a", "i8"), ("b", "f8")])
    rows = np.zeros(n, d16)
    rows["a"] = np.arange(n)
    write(queue_dir, rows, T0 + np.arange(n), 1, WriterConfig(segment_size=8 << 20))
    fr.read_array(queue_dir, dtype=d16)  # compile / load the kernel, fault the pages in
    best = min(_timed(lambda: fr.read_array(queue_dir, dtype=d16)) for _ in range(3))
    assert n / best > 2e6, f"{n / best / 1e6:.1f} M msgs/s"


def _timed(f) -> float:
    t = time.perf_counter()
    r = f()
    assert len(r) > 0
    return time.perf_counter() - t
