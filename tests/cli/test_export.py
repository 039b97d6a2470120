"""``chronicle export``: real queues exported through the console script, read back with pyarrow."""
from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from chronicle_async import Queue, WriterConfig

from .console import chronicle

TICK = np.dtype([("ts", "<i8"), ("px", "<f8")])


@pytest.fixture
def queue(tmp_path):
    """A queue of 2000 messages over several segments: even seqs type 1 ticks, odd seqs type 2 text."""
    path = tmp_path / "q"
    written = []
    with Queue.open_publisher(path, WriterConfig(segment_size=1 << 16)) as w:
        for i in range(2000):
            if i % 2 == 0:
                payload = np.array([(i * 10, i / 4)], dtype=TICK).tobytes()
                type_id = 1
            else:
                payload = b"text %d" % i
                type_id = 2
            seq = w.append(type_id, payload)
            written.append((seq, type_id, payload))
    return path, written


def test_export_to_parquet_writes_every_message_with_seq_utc_timestamp_type_and_payload(queue, tmp_path):
    path, written = queue
    out = tmp_path / "all.parquet"
    p = chronicle("export", path, "-o", out)
    assert p.returncode == 0, p.stderr
    assert "2000 message(s)" in p.stdout
    t = pq.read_table(out)
    assert t.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert t.schema.field("payload").type == pa.binary()
    assert t.column("seq").to_pylist() == [s for s, _t, _p in written]
    assert t.column("type_id").to_pylist() == [ty for _s, ty, _p in written]
    assert t.column("payload").to_pylist() == [pl for _s, _t, pl in written]


def test_export_with_type_and_dtype_makes_the_dtype_fields_columns(queue, tmp_path):
    path, written = queue
    out = tmp_path / "ticks.parquet"
    summary = json.loads(chronicle("export", path, "--type", 1, "--dtype", "ts:<i8,px:<f8", "-o", out, "--json").stdout)
    assert summary["rows"] == 1000 and summary["columns"] == ["seq", "timestamp", "type_id", "ts", "px"]
    t = pq.read_table(out)
    ticks = [(s, np.frombuffer(pl, TICK)[0]) for s, ty, pl in written if ty == 1]
    assert t.column("seq").to_pylist() == [s for s, _r in ticks]
    assert t.column("ts").to_pylist() == [int(r["ts"]) for _s, r in ticks]
    assert t.column("px").to_pylist() == [float(r["px"]) for _s, r in ticks]


def test_export_a_seq_range_to_csv_includes_from_and_stops_before_until_with_hex_payloads(queue, tmp_path):
    path, written = queue
    out = tmp_path / "range.csv"
    p = chronicle("export", path, "--from", 100, "--until", 200, "-o", out)
    assert p.returncode == 0, p.stderr
    t = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types={"payload": pa.string()}))
    assert t.column("seq").to_pylist() == list(range(100, 200))
    assert t.column("payload").to_pylist() == [pl.hex() for s, _t, pl in written if 100 <= s <= 199]


def test_export_refuses_to_overwrite_an_existing_output_unless_forced(queue, tmp_path):
    path, _written = queue
    out = tmp_path / "keep.parquet"
    out.write_bytes(b"precious")
    p = chronicle("export", path, "-o", out)
    assert p.returncode == 1 and "FileExistsError" in p.stderr and "--force" in p.stderr
    assert out.read_bytes() == b"precious"
    assert chronicle("export", path, "-o", out, "--force").returncode == 0
    assert pq.read_table(out).num_rows == 2000


def test_export_failure_leaves_no_partial_output(queue, tmp_path):
    path, _written = queue
    out = tmp_path / "bad.parquet"
    p = chronicle("export", path, "--dtype", "ts:<i8,px:<f8", "-o", out)  # type 2 payloads do not fit the dtype
    assert p.returncode == 1 and "InvalidArgumentError" in p.stderr
    assert list(tmp_path.iterdir()) == [path]


def test_export_to_an_unknown_extension_is_a_usage_error_naming_both_formats(queue, tmp_path):
    path, _written = queue
    p = chronicle("export", path, "-o", tmp_path / "out.json")
    assert p.returncode == 2
    assert ".parquet" in p.stderr and ".csv" in p.stderr


def test_export_without_pyarrow_says_which_extra_to_install(queue, tmp_path):
    path, _written = queue
    shadow = tmp_path / "no-pyarrow" / "pyarrow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('pyarrow is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    p = chronicle("export", path, "-o", tmp_path / "x.parquet", env=env)
    assert p.returncode == 1
    assert "chronicle: ModuleNotFoundError:" in p.stderr and "pip install 'chronicle_async[export]'" in p.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_export_a_time_range_keeps_exactly_the_messages_stamped_inside_it(queue, tmp_path):
    path, _written = queue
    with Queue.open_subscriber(path, None, "earliest") as r:
        stamps = [(m.seq, m.timestamp_ns) for m in r]
    lo, hi = stamps[500][1], stamps[1499][1]
    iso = lambda ns: np.datetime_as_string(np.datetime64(ns, "ns")) + "Z"  # noqa: E731
    out = tmp_path / "window.parquet"
    p = chronicle("export", path, "--from", iso(lo), "--until", iso(hi), "-o", out)
    assert p.returncode == 0, p.stderr
    assert pq.read_table(out).column("seq").to_pylist() == [s for s, ts in stamps if lo <= ts < hi]
