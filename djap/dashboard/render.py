"""The live view as a pure function: `render(snapshot)` returns rich renderables.

No queries, no clock: a test renders a hand-made snapshot with a fixed-size Console.
It is sized for an 80x24 terminal: long lists are cut to their most useful rows with
a "+N more".
"""

from __future__ import annotations

from typing import cast

from rich import box
from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from ..health import format_bytes
from ..status.snapshot import ALL_STATUSES, Snapshot
from .text import (
    STATUS_TITLES,
    format_count,
    format_duration,
    pipelines_line,
    progress_text,
    sparkline,
)

#: Rows each part may take, so the whole view fits in 24 lines.
MAX_QUEUE_ROWS = 4
MAX_PROCESS_ROWS = 6
MAX_FAILURES = 2
MAX_EVENTS = 3
STATE_STYLES = {
    "running": "green",
    "draining": "yellow",
    "starting": "cyan",
    "backoff": "red",
    "hung": "red",
    "finished": "dim",
    "stopped": "dim",
    "dead": "red",
}


def _header(snapshot: Snapshot) -> RenderableType:
    t = snapshot.throughput
    title = Text(no_wrap=True, overflow="ellipsis")
    title.append(snapshot.title, style="bold")
    if any(snapshot.pipelines.values()):
        # On the title line, so the view still fits 24 lines.
        title.append(f"  pipelines: {pipelines_line(snapshot)}", style="cyan")
    if t is None:
        totals = snapshot.totals()
        waiting = totals.get("new", 0) + totals.get("not_ready", 0)
        title.append(f"  waiting {waiting:,}  running {totals.get('in_progress', 0):,}")
        return title
    title.append(f"  up {format_duration(t.seconds)}")
    rates = Text(no_wrap=True, overflow="ellipsis")
    rates.append(f"{t.now:,.1f} jobs/s now", style="bold green")
    rates.append(f"  {t.average:,.1f} avg  {t.total:,} total  ")
    progress = progress_text(snapshot)
    if progress:
        rates.append(progress + "  ", style="bold")
    rates.append(sparkline(t.history, max(0, 78 - len(rates.plain))), style="green")
    return Group(title, rates)


def _table() -> Table:
    """The plain, compact table every section of the view uses."""
    return Table(
        box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False, collapse_padding=True
    )


def _queue_table(snapshot: Snapshot, max_rows: int) -> RenderableType:
    statuses = [s for s in ALL_STATUSES if any(s in c for c in snapshot.queue.values())]
    statuses = statuses or ["new", "in_progress", "done"]
    table = _table()
    table.add_column("queue", no_wrap=True, max_width=24, overflow="ellipsis")
    for s in statuses:
        table.add_column(STATUS_TITLES[s], justify="right", no_wrap=True)

    def weight(item: tuple[str, dict[str, int]]) -> tuple[int, int]:
        counts = item[1]
        active = counts.get("new", 0) + counts.get("in_progress", 0) + counts.get("not_ready", 0)
        return (-active, -sum(counts.values()))

    rows = sorted(snapshot.queue.items(), key=weight)
    for name, counts in rows[:max_rows]:
        cells = [
            _estimate_mark(snapshot, name, s) + format_count(counts[s]) if counts.get(s) else "·"
            for s in statuses
        ]
        table.add_row(name, *cells)
    if len(rows) > max_rows:
        rest: dict[str, int] = {}
        for _name, counts in rows[max_rows:]:
            for s, n in counts.items():
                rest[s] = rest.get(s, 0) + n
        table.add_row(
            f"+{len(rows) - max_rows} more",
            *[format_count(rest[s]) if rest.get(s) else "·" for s in statuses],
            style="dim",
        )
    if not rows:
        table.add_row("(no jobs)", *["·"] * len(statuses), style="dim")
    return table


def _estimate_mark(snapshot: Snapshot, name: str, status: str) -> str:
    """ "~" before an estimated count, ">=" before a lower bound (SQLite); "" when exact."""
    if (name, status) not in snapshot.estimated:
        return ""
    return ">=" if snapshot.estimates_are_lower_bounds else "~"


def _process_table(snapshot: Snapshot, max_rows: int) -> RenderableType:
    table = _table()
    for title, justify in (
        ("process", "left"),
        ("pid", "right"),
        ("state", "left"),
        ("up", "right"),
        ("rst", "right"),
        ("cpu%", "right"),
        ("rss", "right"),
        ("run", "right"),
        ("done", "right"),
        ("fail", "right"),
        ("j/s", "right"),
    ):
        table.add_column(title, justify=cast(JustifyMethod, justify), no_wrap=True)
    procs = snapshot.processes
    for p in procs[:max_rows]:
        table.add_row(
            Text(p.name, overflow="ellipsis"),
            str(p.pid) if p.pid else "-",
            Text(p.state, style=STATE_STYLES.get(p.state, "")),
            format_duration(p.uptime) if p.pid else "-",
            str(p.restarts),
            f"{p.cpu_percent:.0f}",
            format_bytes(p.rss) if p.rss else "-",
            str(p.in_flight),
            format_count(p.done),
            Text(format_count(p.failed), style="red" if p.failed else ""),
            f"{p.jobs_per_s:,.1f}",
        )
    if len(procs) > max_rows:
        table.add_row(f"+{len(procs) - max_rows} more", style="dim")
    return table


def _worker_table(snapshot: Snapshot) -> RenderableType:
    """Workers of every host, from the worker table (what `djap status` shows)."""
    table = _table()
    for title, justify in (
        ("host", "left"),
        ("pid", "right"),
        ("group", "left"),
        ("state", "left"),
        ("alive", "left"),
        ("beat", "right"),
        ("run", "right"),
        ("conn", "right"),
        ("done", "right"),
        ("fail", "right"),
    ):
        table.add_column(title, justify=cast(JustifyMethod, justify), no_wrap=True)
    for w in snapshot.workers:
        table.add_row(
            Text(w.host, overflow="ellipsis"),
            str(w.pid),
            w.group,
            Text(w.state, style=STATE_STYLES.get(w.state, "")),
            Text("yes", style="green") if w.alive else Text("no", style="red"),
            f"{w.heartbeat_age:.0f}s",
            str(w.in_flight),
            str(w.connections or "-"),
            format_count(w.jobs_done),
            format_count(w.jobs_failed),
        )
    if not snapshot.workers:
        table.add_row("(no workers)", style="dim")
    return table


def _failures(snapshot: Snapshot) -> list[RenderableType]:
    out: list[RenderableType] = []
    shown = snapshot.failures[:MAX_FAILURES]
    # The newest few are listed; the last line says how many more failed (the admin has all).
    more = snapshot.totals().get("failed", 0) - len(shown)
    for f in shown:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("failed ", style="red")
        if f is shown[-1] and more > 0:
            line.append(f"(+{more:,} more) ", style="dim")
        line.append(f"#{f.job_id} {f.name}: ", style="bold")
        line.append(f.error_line)
        out.append(line)
    return out


def _events(snapshot: Snapshot) -> list[RenderableType]:
    out: list[RenderableType] = []
    for e in snapshot.events[-MAX_EVENTS:]:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(e.at.strftime("%H:%M:%S "), style="dim")
        line.append(e.text, style="yellow")
        out.append(line)
    return out


def _stranded(snapshot: Snapshot) -> list[RenderableType]:
    if not snapshot.stranded:
        return []
    return [
        Text(
            "no live worker takes: " + ", ".join(snapshot.stranded),
            style="bold red",
            no_wrap=True,
            overflow="ellipsis",
        )
    ]


def render(snapshot: Snapshot, fit_screen: bool = True) -> RenderableType:
    """The whole view of one snapshot; pure, so a test renders it with Console(record=True).

    `fit_screen` cuts long lists so the live view fits 80x24; `djap status` prints all rows.
    """
    big = 10**9
    queue_rows = MAX_QUEUE_ROWS if fit_screen else big
    process_rows = MAX_PROCESS_ROWS if fit_screen else big
    parts: list[RenderableType] = [_header(snapshot), _queue_table(snapshot, queue_rows)]
    if snapshot.processes:
        parts.append(_process_table(snapshot, process_rows))
    else:
        parts.append(_worker_table(snapshot))
    parts += _stranded(snapshot) + _failures(snapshot) + _events(snapshot)
    return Group(*parts)
