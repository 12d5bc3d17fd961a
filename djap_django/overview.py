"""The admin's queue overview: counts per job name and status, and an hour of throughput.

Counts come from djap_django.counts (each status through its partial index, capped, an
estimate past the cap that the page marks); throughput is a per-minute aggregate of the
last hour. The chart is a plain
inline SVG string: no JavaScript, nothing to load.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Count
from django.db.models.functions import TruncMinute
from django.utils import timezone
from django.utils.html import escape

from . import conf
from .counts import job_counts
from .models import JobDBModel, WorkerDBModel

#: The columns of the counts table, in a job's life order.
STATUSES = [s.value for s in JobDBModel.Status]
#: Minutes of throughput the chart shows.
CHART_MINUTES = 60


@dataclass
class Overview:
    """What the overview page shows; built by `snapshot()`, rendered by the template."""

    #: job name -> status -> count
    counts: dict[str, dict[str, int]]
    #: per minute, oldest first: (minute start, done, failed)
    throughput: list[tuple[dt.datetime, int, int]]
    workers_alive: int = 0
    workers_total: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    #: (name, status) pairs whose count is an estimate (djap_django.counts).
    estimated: set[tuple[str, str]] = field(default_factory=set)
    #: The estimates are lower bounds (SQLite) rather than estimates around the truth.
    lower_bounds: bool = False

    @property
    def rows(self) -> list[tuple[str, list[int], int]]:
        """(name, counts in STATUSES order, total) per job name, for the table."""
        return [
            (name, [by_status.get(s, 0) for s in STATUSES], sum(by_status.values()))
            for name, by_status in sorted(self.counts.items())
        ]

    @property
    def marked_rows(self) -> list[tuple[str, list[tuple[int, str]], int]]:
        """`rows` with a mark per count: "" exact, "~" estimated, ">=" a lower bound."""
        mark = ">=" if self.lower_bounds else "~"
        return [
            (
                name,
                [
                    (n, mark if (name, s) in self.estimated else "")
                    for n, s in zip(counts, STATUSES, strict=True)
                ],
                total,
            )
            for name, counts, total in self.rows
        ]

    @property
    def finished_last_hour(self) -> tuple[int, int]:
        return sum(d for _, d, _ in self.throughput), sum(f for _, _, f in self.throughput)


def snapshot(now: dt.datetime | None = None) -> Overview:
    """Read the overview from the queue's database in three aggregate queries."""
    alias = conf.database_alias()
    now = now or timezone.now()
    jobs = JobDBModel.objects.using(alias)

    # Each status through its partial index, at most counts.CAP rows of it: the page
    # costs milliseconds beside millions of jobs; past the cap a count is an estimate.
    found = job_counts(alias)
    counts = found.counts
    totals: dict[str, int] = {}
    for by_status in counts.values():
        for status, n in by_status.items():
            totals[status] = totals.get(status, 0) + n

    end = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    start = end - dt.timedelta(minutes=CHART_MINUTES)
    per_minute: dict[dt.datetime, list[int]] = {
        start + dt.timedelta(minutes=i): [0, 0] for i in range(CHART_MINUTES)
    }
    finished = (
        jobs.filter(status__in=["done", "failed"], finished_at__gte=start)
        .annotate(minute=TruncMinute("finished_at"))
        .values("minute", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for counted in finished:
        bucket = per_minute.get(counted["minute"])
        if bucket is not None:
            bucket[0 if counted["status"] == "done" else 1] += counted["n"]
    throughput = [(minute, d, f) for minute, (d, f) in sorted(per_minute.items())]

    stale = now - dt.timedelta(seconds=conf.get("STALE_AFTER"))
    workers = WorkerDBModel.objects.using(alias)
    alive = workers.filter(state__in=["running", "draining"], last_heartbeat__gte=stale).count()
    return Overview(
        counts=counts,
        throughput=throughput,
        workers_alive=alive,
        workers_total=workers.count(),
        totals=totals,
        estimated=set(found.estimated),
        lower_bounds=found.lower_bounds,
    )


def throughput_svg(
    throughput: list[tuple[dt.datetime, int, int]], width: int = 600, height: int = 120
) -> str:
    """Stacked bars, a minute each: done (green) under failed (red); hover shows counts."""
    n = max(1, len(throughput))
    peak = max([d + f for _, d, f in throughput] + [1])
    bar_w = width / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="djap-throughput" role="img" '
        f'width="{width}" height="{height + 16}" viewBox="0 0 {width} {height + 16}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f8"/>',
    ]
    for i, (minute, done, failed) in enumerate(throughput):
        x = i * bar_w
        label = escape(f"{_hhmm(minute)}: {done} done, {failed} failed")
        done_h = height * done / peak
        failed_h = height * failed / peak
        parts.append(f"<g><title>{label}</title>")
        if done:
            parts.append(
                f'<rect class="done" x="{x:.1f}" y="{height - done_h:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{done_h:.1f}" fill="#3c9d5d"/>'
            )
        if failed:
            parts.append(
                f'<rect class="failed" x="{x:.1f}" y="{height - done_h - failed_h:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{failed_h:.1f}" fill="#c0392b"/>'
            )
        parts.append("</g>")
    if throughput:
        first, last = _hhmm(throughput[0][0]), _hhmm(throughput[-1][0])
        parts.append(
            f'<text x="0" y="{height + 12}" font-size="11">{first}</text>'
            f'<text x="{width}" y="{height + 12}" font-size="11" text-anchor="end">'
            f"{last}, peak {peak}/min</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _hhmm(moment: dt.datetime) -> str:
    """A minute in the site's time zone, as the rest of the admin shows times."""
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    return f"{moment:%H:%M}"
