"""What `djap supervise` was asked to run: the groups and the flags, as one value."""

from __future__ import annotations

from dataclasses import dataclass

from ..groups import GroupSpec


@dataclass
class SuperviseOptions:
    groups: list[GroupSpec]
    concurrency: int | None = None
    #: Database lanes per process (None: DJAP DB_LANES).
    lanes: int | None = None
    grace: float | None = None
    burst: bool = False
    max_memory: int | None = None
    node_name: str | None = None
    dashboard: bool = True
    settings: str | None = None
    pythonpath: str | None = None
    log_level: str = "INFO"
    #: Where workers' output goes while the live view owns the terminal.
    log_file: str | None = None
    alias: str | None = None
    #: Serve Prometheus metrics on this port (djap.metrics); None = off.
    metrics_port: int | None = None
