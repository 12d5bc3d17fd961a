"""One snapshot of the queue and its workers: what `djap status` and the live view share.

The package has one module per job, each depending only on those above it here:

- `snapshot`: the values (`Snapshot` and its parts) and pure helpers on them;
- `queries`: the reads that fill them, one function per question;
- `reader`: how often the queries run (`take_snapshot`, `SnapshotReader`);
- `throughput`: jobs per second from the workers' counters (`ThroughputMeter`).

The commands that print a snapshot live in `djap.commands`; the view that draws it
in `djap.dashboard`. The names below are the public way in:
`from djap.status import take_snapshot, to_json`.
"""

from __future__ import annotations

from .queries import (
    FAILURES_SHOWN,
    RECENT_WORKERS_S,
    db_now,
    preflight,
    query_failures,
    query_pipelines,
    query_queue,
    query_runnable_names,
    query_workers,
)
from .reader import SnapshotReader, take_snapshot
from .snapshot import (
    ACTIVE_STATUSES,
    ALL_STATUSES,
    Event,
    Failure,
    ProcessView,
    Snapshot,
    Throughput,
    WorkerView,
    error_line,
    stranded_names,
    to_json,
)
from .throughput import ThroughputMeter

__all__ = [
    "ACTIVE_STATUSES",
    "ALL_STATUSES",
    "FAILURES_SHOWN",
    "RECENT_WORKERS_S",
    "Event",
    "Failure",
    "ProcessView",
    "Snapshot",
    "SnapshotReader",
    "Throughput",
    "ThroughputMeter",
    "WorkerView",
    "db_now",
    "error_line",
    "preflight",
    "query_failures",
    "query_pipelines",
    "query_queue",
    "query_runnable_names",
    "query_workers",
    "stranded_names",
    "take_snapshot",
    "to_json",
]
