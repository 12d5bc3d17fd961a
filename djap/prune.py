"""`djap prune`: delete finished jobs older than a cutoff, in batches, with a progress bar."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

from .errors import CliError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: str, option: str = "--older-than") -> float:
    """'7d' -> 604800.0; also s, m, h, w, or plain seconds."""
    match = _DURATION.match(text or "")
    if not match:
        raise CliError(f"{option}: {text!r} is not a duration like 7d, 12h, 30m, 90s or 2w")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_statuses(text: str | None) -> list[str]:
    """'done,failed' -> ['done', 'failed']; only finished statuses can be pruned."""
    from djap_django.maintenance import FINISHED

    if text is None:
        return list(FINISHED)
    statuses = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in statuses if s not in FINISHED]
    if bad or not statuses:
        raise CliError(
            f"--status: {', '.join(bad) or repr(text)} cannot be pruned; "
            f"choose from {', '.join(FINISHED)} (finished jobs only)"
        )
    return statuses


def prune_command(older_than: str, status: str | None, batch_size: int, quiet: bool) -> int:
    """Count what will go, then delete it batch by batch; prints one summary line."""
    from django.utils import timezone
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

    from djap_django import conf
    from djap_django.maintenance import prune_jobs
    from djap_django.models import JobDBModel, PipelineDBModel
    from djap_django.queue import open_queue

    seconds = parse_duration(older_than)
    statuses = parse_statuses(status)
    cutoff = timezone.now() - dt.timedelta(seconds=seconds)
    jobs = JobDBModel.objects.using(conf.database_alias())
    # What prune_jobs deletes: plain jobs one by one, pipelines only whole once ended.
    ended = (
        PipelineDBModel.objects.using(conf.database_alias())
        .filter(status__in=statuses, finished_at__lt=cutoff)
        .exclude(jobs__status__in=("not_ready", "new", "in_progress"))
    )
    total = (
        jobs.filter(status__in=statuses, finished_at__lt=cutoff, pipeline__isnull=True).count()
        + jobs.filter(pipeline__in=ended).count()
    )
    console = Console(stderr=True)

    async def run(progress: Progress | None, task: int | None) -> int:
        queue = open_queue()
        await queue.connect()
        try:
            return await prune_jobs(
                queue,
                seconds,
                statuses,
                batch_size=batch_size,
                on_batch=None
                if progress is None or task is None
                else lambda n: progress.advance(TaskID(task), n),
            )
        finally:
            await queue.close()

    if quiet or total == 0:
        deleted = asyncio.run(run(None, None))
    else:
        columns = (TextColumn("pruning"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("prune", total=total)
            deleted = asyncio.run(run(progress, task))
    print(
        f"deleted {deleted} jobs ({', '.join(statuses)}) that finished before "
        f"{cutoff:%Y-%m-%d %H:%M:%S} UTC"
    )
    return 0
