"""Prometheus metrics of queues, named readers and a control plane, read at scrape time.

``QueueCollector`` is a ``prometheus_client`` custom collector: each scrape reads the
queues read-only (``inspect_queue``: no lock, nothing written) and the control plane's
counters; nothing polls in the background. ``serve_metrics`` starts the HTTP endpoint
(``ControlPlane.serve_metrics`` and ``chronicle monitor --prometheus PORT`` use it).
Needs the ``metrics`` extra: ``pip install 'chronicle_async[metrics]'``.

Metrics (labels ``queue``, the queue folder's name, and ``path``; readers add ``reader``):

- ``chronicle_queue_messages_total``: the writer's next seq (messages ever appended); ``rate()`` of it is msgs/s.
- ``chronicle_writer_alive``: 1 while the writer holds its lock and beats, else 0; ``chronicle_writer_epoch``.
- ``chronicle_queue_segments`` / ``chronicle_queue_bytes_on_disk``: segment files and their allocated bytes.
- ``chronicle_reader_lag_messages`` / ``chronicle_reader_lag_bytes`` / ``chronicle_reader_live``: per named reader
  (lag from its committed position; a reader that never committed has no lag sample).
- ``chronicle_writer_rolls_total{how="prepared"|"inline"}`` / ``chronicle_writer_rolls_recycled_total``: the rolls of
  the writers a control plane manages.
- ``chronicle_control_segments_prepared_total`` / ``..._offers_stale_total`` / ``..._requests_dropped_total``:
  the control plane's prealloc worker.
- ``chronicle_scrape_errors_total``: queues that could not be read in this scrape (with ``queue``, ``path``).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .._errors import ChronicleError
from ..queue.info import QueueInfo, inspect_queue, list_queues

if TYPE_CHECKING:
    from ..queue.writer import QueueWriter
    from .prealloc import Prealloc

INSTALL_HINT = "pip install 'chronicle_async[metrics]'"


def require_prometheus_client() -> Any:
    """The ``prometheus_client`` module, or ``ModuleNotFoundError`` naming the extra to install."""
    try:
        import prometheus_client
    except ImportError as e:
        raise ModuleNotFoundError(
            f"Prometheus metrics need the prometheus_client package, which is not installed: {INSTALL_HINT}",
            name="prometheus_client",
        ) from e
    return prometheus_client


class QueueCollector:
    """A custom collector: the queues under ``roots``, the queues of ``writers()`` and ``prealloc``'s counts.

    ``roots``: bus roots (every sub-folder holding a queue) or queue folders. ``writers``: returns
    the writers whose roll counts to export (a control plane's managed writers). ``prealloc``:
    returns the control plane's prealloc worker, or None. ``ttl``: heartbeat age (s) above which a
    writer is not alive.
    """

    def __init__(self, roots: Iterable[str | os.PathLike[str]] = (), *,
                 writers: Callable[[], Iterable["QueueWriter"]] = tuple,
                 prealloc: Callable[[], "Prealloc | None"] = lambda: None, ttl: float = 1.0):
        require_prometheus_client()
        self._roots = [os.path.abspath(os.fspath(r)) for r in roots]
        self._writers = writers
        self._prealloc = prealloc
        self._ttl = float(ttl)

    def _queue_paths(self) -> list[str]:
        from ..hot import layout as L

        paths: list[str] = []
        for root in self._roots:
            if os.path.isfile(os.path.join(root, L.CONTROL_FILE_NAME)):
                paths.append(root)
            elif os.path.isdir(root):
                paths += [q.path for q in list_queues(root, self._ttl)]
        paths += [w.path for w in self._writers()]
        return list(dict.fromkeys(paths))  # once each, in order

    def collect(self) -> Iterator[Any]:
        """Read every queue now and yield the metric families (called by the registry on each scrape)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        q_labels = ["queue", "path"]
        r_labels = ["queue", "path", "reader"]
        messages = CounterMetricFamily("chronicle_queue_messages", "Messages appended to the queue (the writer's next seq)", labels=q_labels)
        alive = GaugeMetricFamily("chronicle_writer_alive", "1 while the writer holds its lock and its heartbeat is fresh", labels=q_labels)
        epoch = GaugeMetricFamily("chronicle_writer_epoch", "The writer session number (grows at each new writer)", labels=q_labels)
        segments = GaugeMetricFamily("chronicle_queue_segments", "Segment files on disk", labels=q_labels)
        disk = GaugeMetricFamily("chronicle_queue_bytes_on_disk", "Bytes allocated on disk by the segment files", labels=q_labels)
        lag_m = GaugeMetricFamily("chronicle_reader_lag_messages", "Messages between a named reader's committed position and the writer", labels=r_labels)
        lag_b = GaugeMetricFamily("chronicle_reader_lag_bytes", "Bytes between a named reader's committed position and the writer", labels=r_labels)
        live = GaugeMetricFamily("chronicle_reader_live", "1 while a named reader holds its position file's lock", labels=r_labels)
        errors = CounterMetricFamily("chronicle_scrape_errors", "Queues that could not be read in this scrape", labels=q_labels)
        for path in self._queue_paths():
            name = os.path.basename(path)
            try:
                info = inspect_queue(path, self._ttl, messages=False)
            except (ChronicleError, OSError):
                errors.add_metric([name, path], 1)
                continue
            self._add_queue(info, name, (messages, alive, epoch, segments, disk), (lag_m, lag_b, live))
        yield from (messages, alive, epoch, segments, disk, lag_m, lag_b, live, errors)
        yield from self._control()

    @staticmethod
    def _add_queue(info: QueueInfo, name: str, per_queue: tuple[Any, ...], per_reader: tuple[Any, ...]) -> None:
        messages, alive, epoch, segments, disk = per_queue
        lag_m, lag_b, live = per_reader
        labels = [name, info.path]
        messages.add_metric(labels, info.next_seq)
        alive.add_metric(labels, 1 if info.writer.alive else 0)
        epoch.add_metric(labels, info.writer.epoch)
        segments.add_metric(labels, info.segments.count)
        disk.add_metric(labels, info.segments.bytes_on_disk)
        for r in info.readers or ():
            rl = [name, info.path, r.name]
            live.add_metric(rl, 1 if r.live else 0)
            if r.committed:
                lag_m.add_metric(rl, r.lag_messages)
                lag_b.add_metric(rl, r.lag_bytes)

    def _control(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        writers = list(self._writers())
        if writers:
            rolls = CounterMetricFamily("chronicle_writer_rolls", "Segment rolls of a managed writer, by how the next segment was found",
                                        labels=["queue", "path", "how"])
            recycled = CounterMetricFamily("chronicle_writer_rolls_recycled", "Rolls onto a retired segment recycled in place",
                                           labels=["queue", "path"])
            for w in writers:
                c, name = w.roll_counts, os.path.basename(w.path)
                rolls.add_metric([name, w.path, "prepared"], c.prepared)
                rolls.add_metric([name, w.path, "inline"], c.inline)
                recycled.add_metric([name, w.path], c.recycled)
            yield rolls
            yield recycled
        pre = self._prealloc()
        if pre is not None:
            for metric, doc, value in (
                ("chronicle_control_segments_prepared", "Segments the control plane prepared and offered", pre.prepared),
                ("chronicle_control_offers_stale", "Prepared segments the writer had already passed", pre.stale),
                ("chronicle_control_requests_dropped", "Prepare requests dropped on a full queue (the writer rolled inline)", pre.dropped),
            ):
                yield CounterMetricFamily(metric, doc, value=value)


class MetricsServer:
    """A running ``/metrics`` HTTP endpoint (a daemon thread); ``close()`` stops it. A context manager."""

    def __init__(self, collector: QueueCollector, port: int, addr: str = "127.0.0.1"):
        prom = require_prometheus_client()
        self.registry = prom.CollectorRegistry(auto_describe=False)
        self.registry.register(collector)  # type: ignore[arg-type]
        started = prom.start_http_server(port, addr=addr, registry=self.registry)
        self._httpd, self._thread = started if isinstance(started, tuple) else (None, None)
        #: The port it listens on (the one the system chose when ``port`` was 0).
        self.port = self._httpd.server_address[1] if self._httpd is not None else port
        self.addr = addr

    @property
    def url(self) -> str:
        """``http://ADDR:PORT/metrics``."""
        return f"http://{self.addr}:{self.port}/metrics"

    def close(self) -> None:
        """Stop listening (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> "MetricsServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(roots: Iterable[str | os.PathLike[str]], port: int, addr: str = "127.0.0.1", *,
                  ttl: float = 1.0) -> MetricsServer:
    """Serve the metrics of the queues under ``roots`` (bus roots or queue folders) on ``http://addr:port/metrics``.

    ``port`` 0 lets the system choose (read ``.port``). Raises ``ModuleNotFoundError`` naming
    ``pip install 'chronicle_async[metrics]'`` without prometheus_client, ``OSError`` when the port is taken.
    """
    return MetricsServer(QueueCollector(roots, ttl=ttl), port, addr)
