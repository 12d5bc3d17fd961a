"""The view model: what the supervisor knows of its processes, as snapshot values.

Pure functions of the process table and the throughput meter; the loop adds their
result to the snapshot it read (`publish`), and `djap.dashboard` draws it.
"""

from __future__ import annotations

import dataclasses

from ..status.snapshot import Event, ProcessView, Snapshot
from ..status.throughput import ThroughputMeter
from .processes import Child, ProcessTable, Slot


def process_views(
    table: ProcessTable, meter: ThroughputMeter, now: float, stopping: bool
) -> tuple[ProcessView, ...]:
    """A row per slot, then one per recycled child still draining (named with a '~')."""
    views = [process_view(s.name, s, s.child, meter, now, stopping) for s in table.slots]
    for child in table.retiring:
        views.append(process_view(f"{child.slot.name}~", child.slot, child, meter, now, stopping))
    return tuple(views)


def process_view(
    name: str,
    slot: Slot,
    child: Child | None,
    meter: ThroughputMeter,
    now: float,
    stopping: bool,
) -> ProcessView:
    """One process row: an empty slot keeps its last counters on screen."""
    if child is None:
        if slot.finished:
            state = "finished"
        elif stopping:
            state = "stopped"
        else:
            state = "backoff"
        last = slot.last_row
        return ProcessView(
            name,
            slot.group.name,
            None,
            state,
            restarts=slot.restarts,
            done=last.jobs_done if last else 0,
            failed=last.jobs_failed if last else 0,
        )
    row = child.row
    if child.draining:
        state = "draining"
    elif row is None:
        state = "starting"
    else:
        state = row.state
    return ProcessView(
        name=name,
        group=slot.group.name,
        pid=child.pid,
        state=state,
        uptime=now - child.started,
        restarts=slot.restarts,
        cpu_percent=child.cpu,
        rss=child.rss,
        in_flight=row.in_flight if row else 0,
        done=row.jobs_done if row else 0,
        failed=row.jobs_failed if row else 0,
        jobs_per_s=meter.worker_rate(row.id) if row else 0.0,
    )


def view_title(node: str, burst: bool, stopping: bool) -> str:
    title = f"djap supervise · {node}"
    if burst:
        title += " · burst"
    if stopping:
        title += " · stopping"
    return title


def publish(
    snap: Snapshot,
    *,
    table: ProcessTable,
    meter: ThroughputMeter,
    events: tuple[Event, ...],
    title: str,
    now: float,
    stopping: bool,
) -> Snapshot:
    """The snapshot read from the database, with the supervisor's own knowledge added."""
    return dataclasses.replace(
        snap,
        processes=process_views(table, meter, now, stopping),
        throughput=meter.snapshot(now),
        events=events,
        title=title,
    )
