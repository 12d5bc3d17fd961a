"""How often the snapshot's queries run: every count once, or cheaply snapshot after snapshot.

`take_snapshot` answers `djap status`; a `SnapshotReader` feeds the live view and the
supervisor, which ask twice a second and must not scan a big job table that often.
"""

from __future__ import annotations

import datetime as dt
import time

from .queries import (
    db_now,
    query_counts,
    query_failures,
    query_pipelines,
    query_runnable_names,
    query_workers,
)
from .snapshot import ACTIVE_STATUSES, Failure, Snapshot, stranded_names


def take_snapshot(alias: str | None = None) -> Snapshot:
    """Read everything a status table shows, counting every job now."""
    from djap_django import conf

    alias = alias or conf.database_alias()
    return SnapshotReader(alias, conf.get("STALE_AFTER")).read(0.0, force_counts=True)


class SnapshotReader:
    """Takes snapshot after snapshot (the live view), keeping the counting cheap.

    The worker rows are read every time: they are few, and the supervisor judges
    heartbeats from them. Counting reads at most a capped number of rows per status
    (djap_django.counts) instead of the whole table; still,
    counts are refreshed only as often as keeps them under 1/`budget` of the time, and
    counts of finished jobs at most every `full_every_s` seconds. In between, the last
    counts are shown.
    """

    def __init__(
        self,
        alias: str,
        stale_after: float,
        *,
        budget: float = 20.0,
        min_interval_s: float = 0.5,
        full_every_s: float = 1.0,
    ) -> None:
        self.alias, self.stale_after, self.budget = alias, stale_after, budget
        self.min_interval_s, self.full_every_s = min_interval_s, full_every_s
        self._next_active = self._next_full = 0.0
        self._finished: dict[str, dict[str, int]] = {}
        self._active: dict[str, dict[str, int]] = {}
        self._failures: tuple[Failure, ...] = ()
        self._runnable: list[str] = []
        self._pipelines: dict[str, int] = {}
        #: status -> the (name, status) pairs whose last count was an estimate.
        self._estimated: dict[str, set[tuple[str, str]]] = {}
        self._lower_bounds = False

    def read(self, now: float, force_counts: bool = False) -> Snapshot:
        """A snapshot at monotonic time `now`; `force_counts` recounts everything."""
        taken_at = db_now(self.alias)
        workers = query_workers(self.alias, taken_at, self.stale_after)
        if force_counts or now >= self._next_full:
            started = time.perf_counter()
            found = query_counts(self.alias)
            counts = found.counts
            self._estimated = {
                status: {pair for pair in found.estimated if pair[1] == status}
                for status in {s for _, s in found.estimated}
            }
            self._lower_bounds = found.lower_bounds
            self._pipelines = query_pipelines(self.alias)
            self._finished = {
                name: {s: n for s, n in c.items() if s not in ACTIVE_STATUSES}
                for name, c in counts.items()
            }
            self._active = {
                name: {s: n for s, n in c.items() if s in ACTIVE_STATUSES}
                for name, c in counts.items()
            }
            cost = time.perf_counter() - started
            self._next_full = now + max(self.full_every_s, cost * self.budget)
            self._refresh_small(now, taken_at, cost)
        elif now >= self._next_active:
            started = time.perf_counter()
            found = query_counts(self.alias, ACTIVE_STATUSES)
            self._active = found.counts
            for status in ACTIVE_STATUSES:
                self._estimated[status] = {p for p in found.estimated if p[1] == status}
            self._refresh_small(now, taken_at, time.perf_counter() - started)
        queue: dict[str, dict[str, int]] = {}
        for name in sorted(set(self._active) | set(self._finished)):
            merged = {**self._finished.get(name, {}), **self._active.get(name, {})}
            if any(merged.values()):
                queue[name] = merged
        return Snapshot(
            taken_at=taken_at,
            queue=queue,
            workers=tuple(workers),
            failures=self._failures,
            stranded=stranded_names(self._runnable, workers),
            pipelines=self._pipelines,
            estimated=tuple(sorted(set().union(*self._estimated.values()))),
            estimates_are_lower_bounds=self._lower_bounds,
        )

    def _refresh_small(self, now: float, taken_at: dt.datetime, cost: float) -> None:
        started = time.perf_counter()
        self._failures = tuple(query_failures(self.alias))
        self._runnable = query_runnable_names(self.alias, taken_at)
        cost += time.perf_counter() - started
        self._next_active = now + max(self.min_interval_s, cost * self.budget)
