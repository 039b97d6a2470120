"""Export a range of a queue's messages to Parquet or CSV through pyarrow, in bounded batches.

:func:`export_queue` reads with an anonymous reader (never commits), keeps at most one batch
in memory, writes to a temporary file beside the output and renames it into place only when
everything was written, so a failure leaves no partial output. Columns: ``seq``, ``timestamp``
(``timestamp[ns, UTC]``), ``type_id`` and ``payload`` (binary; hex text in CSV), or, with a
numpy structured ``dtype``, that dtype's fields instead of ``payload``.
"""
from __future__ import annotations

import ast
import errno
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._errors import InvalidArgumentError

FORMATS = (".parquet", ".csv")
INSTALL_HINT = "pip install 'chronicle_async[export]'"
_BATCH_ROWS = 65536
_BATCH_BYTES = 32 << 20

#: ``progress(messages_written, bytes_of_payload_written)``, called after each batch.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_queue` wrote: ``rows`` messages, ``first_seq``..``last_seq``, into ``out``."""

    out: str
    format: str
    rows: int
    first_seq: int | None
    last_seq: int | None
    payload_bytes: int
    columns: list[str]


def output_format(out: str) -> str | None:
    """``"parquet"`` or ``"csv"`` from the output file name, or None if it ends otherwise."""
    for ext in FORMATS:
        if out.lower().endswith(ext):
            return ext[1:]
    return None


def parse_dtype(spec: str) -> np.dtype:
    """A numpy structured dtype from ``"name:type,name:type"`` or any form ``np.dtype`` accepts
    (``"<i8,<f8"``, ``"[('ts', '<i8'), ('px', '<f8')]"``). Raises InvalidArgumentError."""
    try:
        text = spec.strip()
        if ":" in text and not text.startswith(("[", "{")):
            fields = [part.split(":", 1) for part in text.split(",")]
            dt = np.dtype([(name.strip(), kind.strip()) for name, kind in fields])
        elif text.startswith(("[", "{")):
            dt = np.dtype(ast.literal_eval(text))
        else:
            dt = np.dtype(text)
    except (ValueError, TypeError, SyntaxError) as e:
        raise InvalidArgumentError(
            f"--dtype {spec!r} is not a numpy dtype ({e}); write it as 'ts:<i8,px:<f8' or \"[('ts','<i8')]\""
        ) from None
    if dt.names is None:
        dt = np.dtype([("value", dt)])
    return dt


def load_pyarrow() -> Any:
    """The pyarrow module; ModuleNotFoundError naming the extra to install if it cannot be imported."""
    try:
        import pyarrow
    except ImportError:
        raise ModuleNotFoundError(f"exporting needs pyarrow, which is not installed: {INSTALL_HINT}") from None
    return pyarrow


class _Batch:
    """Rows gathered from the reader until a batch is full."""

    def __init__(self) -> None:
        self.seq: list[int] = []
        self.ts: list[int] = []
        self.type_id: list[int] = []
        self.payload: list[bytes] = []
        self.nbytes = 0

    def add(self, seq: int, ts: int, type_id: int, payload: bytes) -> None:
        self.seq.append(seq)
        self.ts.append(ts)
        self.type_id.append(type_id)
        self.payload.append(payload)
        self.nbytes += len(payload)

    def full(self) -> bool:
        return len(self.seq) >= _BATCH_ROWS or self.nbytes >= _BATCH_BYTES

    def to_arrow(self, pa: Any, dtype: np.dtype | None, hex_payload: bool) -> Any:
        cols = {
            "seq": pa.array(self.seq, pa.int64()),
            "timestamp": pa.array(self.ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "type_id": pa.array(self.type_id, pa.int32()),
        }
        if dtype is None:
            cols["payload"] = (pa.array([p.hex() for p in self.payload], pa.string()) if hex_payload
                               else pa.array(self.payload, pa.binary()))
        else:
            bad = next((i for i, p in enumerate(self.payload) if len(p) != dtype.itemsize), None)
            if bad is not None:
                raise InvalidArgumentError(
                    f"message seq {self.seq[bad]} has {len(self.payload[bad])} payload bytes, --dtype {dtype} needs "
                    f"{dtype.itemsize}: pick the right dtype, or filter its type with --type"
                )
            arr = np.frombuffer(b"".join(self.payload), dtype=dtype)
            for name in dtype.names or ():
                cols[name] = pa.array(arr[name])
        return pa.RecordBatch.from_pydict(cols)


def _writer(pa: Any, fmt: str, path: str, schema: Any) -> Any:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(path, schema)
    import pyarrow.csv as pc

    return pc.CSVWriter(path, schema)


def export_queue(path: str | os.PathLike, out: str, *, start_seq: int | None = None, start_ns: int | None = None,
                 until_seq: int | None = None, until_ns: int | None = None, types: list[int] | None = None,
                 dtype: np.dtype | None = None, force: bool = False,
                 progress: Progress | None = None) -> ExportSummary:
    """Write the messages of the queue at ``path`` now on disk, from ``start_*`` (included) up to
    ``until_*`` (excluded, like ``chronicle tail --until`` and ``range``), of ``types`` (all if None),
    to ``out`` (``.parquet`` or ``.csv``).

    Refuses an existing ``out`` unless ``force`` (FileExistsError); raises ModuleNotFoundError naming
    the extra to install if pyarrow is missing, QueueNotFoundError if there is no queue.
    """
    from .queue import Queue

    fmt = output_format(out)
    if fmt is None:
        raise InvalidArgumentError(f"{out}: the output must end in .parquet or .csv")
    pa = load_pyarrow()
    if os.path.exists(out) and not force:
        raise FileExistsError(errno.EEXIST, f"{out} exists: pass --force to overwrite it", out)
    wanted = set(types) if types else None
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.tmp-{os.getpid()}")
    writer = None
    rows = nbytes = 0
    first = last = None
    columns: list[str] = []
    try:
        with Queue.open_subscriber(path, None, "earliest") as reader:
            if start_seq is not None:
                reader.seek(start_seq)
            elif start_ns is not None:
                reader.seek_timestamp(start_ns)
            batch = _Batch()
            while True:
                msg = reader.next()
                done = (msg is None or (until_seq is not None and msg.seq >= until_seq)
                        or (until_ns is not None and msg.timestamp_ns >= until_ns))
                if not done and (wanted is None or msg.type_id in wanted):
                    batch.add(msg.seq, msg.timestamp_ns, msg.type_id, bytes(msg.payload))
                if batch.seq and (done or batch.full()):
                    rb = batch.to_arrow(pa, dtype, hex_payload=fmt == "csv")
                    if writer is None:
                        writer = _writer(pa, fmt, tmp, rb.schema)
                        columns = rb.schema.names
                    writer.write_batch(rb)
                    first = batch.seq[0] if first is None else first
                    last = batch.seq[-1]
                    rows += len(batch.seq)
                    nbytes += batch.nbytes
                    batch = _Batch()
                    if progress:
                        progress(rows, nbytes)
                if done:
                    break
        if writer is None:  # nothing in range: still a valid, empty file with the columns
            rb = _Batch().to_arrow(pa, dtype, hex_payload=fmt == "csv")
            writer = _writer(pa, fmt, tmp, rb.schema)
            columns = rb.schema.names
        writer.close()
        writer = None
        os.replace(tmp, out)
    except BaseException:
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the original error matters, not this one
                pass
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return ExportSummary(out, fmt, rows, first, last, nbytes, columns)
