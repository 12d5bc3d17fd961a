"""The view's words and numbers: pure functions of values, shared by the live view and log lines."""

from __future__ import annotations

from ..status.snapshot import ALL_STATUSES, Snapshot

SPARK = "▁▂▃▄▅▆▇█"
#: Short column titles for job statuses.
STATUS_TITLES = {
    "not_ready": "blocked",
    "new": "waiting",
    "in_progress": "running",
    "done": "done",
    "failed": "failed",
    "cancelled": "cancel",
}


def sparkline(values: tuple[float, ...] | list[float], width: int = 30) -> str:
    """A one-line bar chart of the last `width` values, scaled to their maximum."""
    values = list(values)[-width:]
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(
        SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in values
    )


def format_duration(seconds: float) -> str:
    """65 -> '1m05s', 3700 -> '1h01m'."""
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def format_count(n: int) -> str:
    """Counts that fit a narrow column: 12345 -> '12.3k'."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def jobs_left(snapshot: Snapshot) -> int:
    """Jobs not yet finished: waiting, scheduled behind a pipeline step, or running."""
    totals = snapshot.totals()
    return sum(totals.get(s, 0) for s in ("new", "not_ready", "in_progress"))


def progress_text(snapshot: Snapshot) -> str:
    """'1,247 left, empty in ~4s' at the current rate; '' when nothing is left."""
    left = jobs_left(snapshot)
    if not left:
        return ""
    t = snapshot.throughput
    if t is None or t.now <= 0:
        return f"{left:,} left"
    return f"{left:,} left, empty in ~{format_duration(left / t.now)}"


def pipelines_line(snapshot: Snapshot) -> str:
    """'2 running, 5 done' from the snapshot's pipeline counts, in lifecycle order."""
    order = ("running", "done", "failed", "cancelled")
    return ", ".join(f"{snapshot.pipelines[s]:,} {s}" for s in order if snapshot.pipelines.get(s))


def summary_line(snapshot: Snapshot) -> str:
    """The periodic line printed instead of the live view (no TTY, or --no-dashboard)."""
    totals = snapshot.totals()
    alive = (
        sum(1 for p in snapshot.processes if p.state == "running")
        if snapshot.processes
        else sum(1 for w in snapshot.workers if w.alive)
    )
    parts = [f"{alive} procs running"]
    parts += [f"{STATUS_TITLES[s]} {totals[s]}" for s in ALL_STATUSES if totals.get(s)]
    if snapshot.throughput is not None:
        t = snapshot.throughput
        parts.append(f"{t.now:.1f} jobs/s now, {t.average:.1f} avg, {t.total} total")
        progress = progress_text(snapshot)
        if progress:
            parts.append(progress)
    if any(snapshot.pipelines.values()):
        parts.append("pipelines " + pipelines_line(snapshot))
    if snapshot.stranded:
        parts.append("no live worker takes " + ",".join(snapshot.stranded))
    return "summary: " + "; ".join(parts)
