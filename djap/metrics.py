"""Prometheus metrics for `djap supervise --metrics-port`: what the queue did and holds.

Optional: `pip install "djap[metrics]"` (prometheus_client). Metrics are computed
when Prometheus scrapes, from what the database already has:

- `djap_jobs_finished_total{name,status}` and the two histograms come from job rows
  finished since the server started: each scrape reads the rows finished since the
  last one (by `finished_at`, with a short look-back so that a batch committed late
  is not missed, and ids remembered so none is counted twice). Pickup latency is
  `started_at - max(created_at, run_after)`; run time is `finished_at - started_at`.
- `djap_queue_jobs{name,status}` is the current depth (not_ready, new, in_progress),
  from the supervisor's snapshot when it has one, else one GROUP BY.
- `djap_worker_restarts_total{group,reason}` is counted by the supervisor, which calls
  `record_restart` each time it replaces a process.

Wiring (the supervisor):

    server = start_metrics_server(9100, snapshot_fn=lambda: latest_snapshot)
    server.record_restart("default", "crashed")   # on every restart
    server.stop()                                 # at exit
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

logger = logging.getLogger("djap.metrics")

#: Seconds a scrape looks back before the newest finished_at it saw: completions are
#: written in batches whose finished_at can be a little older than their commit.
LOOKBACK_S = 10.0
#: Rows read per scrape at most; a backlog is read over the next scrapes.
MAX_ROWS_PER_SCRAPE = 50_000
#: Histogram buckets, seconds: from a hot queue's milliseconds to a slow job's minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
RUNTIME_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
#: Statuses that make up the queue's depth.
DEPTH_STATUSES = ("not_ready", "new", "in_progress")


def _require_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        from .errors import CliError

        raise CliError(
            '--metrics-port needs prometheus_client: pip install "djap[metrics]"'
        ) from None
    return prometheus_client


class Metrics:
    """The metric objects, and `refresh()`, which brings them up to date from the DB."""

    def __init__(
        self,
        snapshot_fn: Callable[[], Any] | None = None,
        alias: str | None = None,
        since: dt.datetime | None = None,
    ) -> None:
        prom = _require_prometheus()
        from django.utils import timezone

        self.snapshot_fn = snapshot_fn
        self.alias = alias
        self.registry = prom.CollectorRegistry()
        self.finished = prom.Counter(
            "djap_jobs_finished",
            "Jobs that finished, by job name and final status (done or failed).",
            ["name", "status"],
            registry=self.registry,
        )
        self.pickup = prom.Histogram(
            "djap_job_pickup_latency_seconds",
            "From a job being due (created, or its run_after) to a worker starting it.",
            ["name"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.runtime = prom.Histogram(
            "djap_job_run_seconds",
            "From a worker starting a job's last attempt to it finishing.",
            ["name"],
            buckets=RUNTIME_BUCKETS,
            registry=self.registry,
        )
        self.depth = prom.Gauge(
            "djap_queue_jobs",
            "Jobs waiting or running, by job name and status.",
            ["name", "status"],
            registry=self.registry,
        )
        self.workers_alive = prom.Gauge(
            "djap_workers_alive",
            "Worker processes with a fresh heartbeat, on every host.",
            registry=self.registry,
        )
        self.restarts = prom.Counter(
            "djap_worker_restarts",
            "Worker processes the supervisor replaced, by group and reason.",
            ["group", "reason"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._watermark = since or timezone.now()
        #: ids of rows finished within LOOKBACK_S of the watermark: already counted.
        self._recent: dict[int, dt.datetime] = {}

    def record_restart(self, group: str, reason: str = "crashed") -> None:
        """Count one restart; the supervisor calls this each time it replaces a process."""
        self.restarts.labels(group=group, reason=reason).inc()

    # -- refresh ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read what changed since the last scrape; safe to call from any thread."""
        with self._lock:
            try:
                self._refresh_finished()
                self._refresh_depth()
            finally:
                from django.db import connections

                # The scrape thread should not hold a connection between scrapes.
                connections.close_all()

    def _alias(self) -> str:
        from djap_django import conf

        return self.alias or conf.database_alias()

    def _refresh_finished(self) -> None:
        from djap_django.models import JobDBModel

        since = self._watermark - dt.timedelta(seconds=LOOKBACK_S)
        rows = (
            JobDBModel.objects.using(self._alias())
            .filter(status__in=("done", "failed"), finished_at__gte=since)
            .order_by("finished_at", "id")
            .values_list(
                "id", "name", "status", "created_at", "run_after", "started_at", "finished_at"
            )
        )[:MAX_ROWS_PER_SCRAPE]
        self.observe(rows)

    def observe(self, rows: Iterable[tuple]) -> int:
        """Count finished rows (id, name, status, created, run_after, started, finished)."""
        counted = 0
        for job_id, name, status, created, run_after, started, finished in rows:
            if job_id in self._recent:
                continue
            self._recent[job_id] = finished
            counted += 1
            self.finished.labels(name=name, status=status).inc()
            if started is not None:
                due = max(created, run_after) if run_after is not None else created
                self.pickup.labels(name=name).observe(max(0.0, (started - due).total_seconds()))
                self.runtime.labels(name=name).observe(
                    max(0.0, (finished - started).total_seconds())
                )
            if finished > self._watermark:
                self._watermark = finished
        horizon = self._watermark - dt.timedelta(seconds=LOOKBACK_S)
        self._recent = {i: t for i, t in self._recent.items() if t >= horizon}
        return counted

    def _refresh_depth(self) -> None:
        snapshot = self.snapshot_fn() if self.snapshot_fn is not None else None
        if snapshot is not None:
            queue = snapshot.queue
            alive = sum(1 for w in getattr(snapshot, "workers", ()) if w.alive)
        else:
            queue, alive = self._query_depth()
        self.depth.clear()
        for name, by_status in queue.items():
            for status in DEPTH_STATUSES:
                self.depth.labels(name=name, status=status).set(by_status.get(status, 0))
        self.workers_alive.set(alive)

    def _query_depth(self) -> tuple[dict[str, dict[str, int]], int]:
        from django.utils import timezone

        from djap_django import conf
        from djap_django.models import WorkerDBModel

        from .status.queries import query_queue

        alias = self._alias()
        stale = timezone.now() - dt.timedelta(seconds=conf.get("STALE_AFTER"))
        alive = (
            WorkerDBModel.objects.using(alias)
            .filter(state__in=("running", "draining"), last_heartbeat__gte=stale)
            .count()
        )
        return query_queue(alias, DEPTH_STATUSES), alive

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format, refreshed first."""
        prom = _require_prometheus()
        self.refresh()
        return prom.generate_latest(self.registry)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        logger.debug("metrics: " + format, *args)


class MetricsServer:
    """A Metrics and the HTTP server that serves it from a daemon thread."""

    def __init__(self, metrics: Metrics, server: WSGIServer) -> None:
        self.metrics = metrics
        self.server = server
        self.port = server.server_port
        self.thread = threading.Thread(
            target=server.serve_forever, name="djap-metrics", daemon=True
        )

    def record_restart(self, group: str, reason: str = "crashed") -> None:
        self.metrics.record_restart(group, reason)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics_server(
    port: int,
    snapshot_fn: Callable[[], Any] | None = None,
    addr: str = "0.0.0.0",
    alias: str | None = None,
) -> MetricsServer:
    """Serve /metrics on `port` (0 picks a free one); Django must be set up.

    `snapshot_fn` returns the supervisor's latest `djap.status.Snapshot` (or None):
    its queue counts and workers are reused, so a scrape adds no GROUP BY of its own.
    """
    metrics = Metrics(snapshot_fn=snapshot_fn, alias=alias)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found; metrics are at /metrics\n"]
        try:
            body = metrics.exposition()
        except Exception as exc:  # a database hiccup must not kill the server thread
            logger.warning("metrics scrape failed: %s", exc)
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"metrics unavailable: {exc}\n".encode()]
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
        return [body]

    try:
        server = make_server(addr, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        from .errors import CliError

        raise CliError(f"--metrics-port {port}: cannot listen on {addr}:{port}: {exc}") from None
    running = MetricsServer(metrics, server)
    running.thread.start()
    logger.info("metrics at http://%s:%s/metrics", addr, running.port)
    return running
