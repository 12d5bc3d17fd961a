"""`djap show`, `djap retry`, `djap cancel`: one job at a time, from the shell.

The admin does the same with a mouse; these are for the operator who reads a
failure in `djap status` or a log line and wants its traceback, or wants it run
again, without opening a Python shell. Each command reports every id it was given,
what it did on stdout and what it could not do on stderr, and exits 1 if any of
them could not be done, naming why.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table


def job_as_dict(row: Any) -> dict[str, Any]:
    """Everything an operator asks about one job, as JSON-ready values."""

    def when(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": row.pk,
        "name": row.name,
        "status": row.status,
        "attempts": row.attempts,
        "max_attempts": row.max_attempts,
        "crashes": row.crashes,
        "priority": row.priority,
        "timeout": row.timeout,
        "created_at": when(row.created_at),
        "run_after": when(row.run_after),
        "started_at": when(row.started_at),
        "finished_at": when(row.finished_at),
        "worker_id": row.worker_id,
        "pipeline_id": row.pipeline_id,
        "pipeline_step": row.pipeline_step,
        "inputs": row.inputs,
        "outputs": row.outputs,
        "errors": row.errors or [],
        "error": row.error,
    }


def show_command(job_ids: list[int], as_json: bool) -> int:
    from djap_django import conf
    from djap_django.models import JobDBModel

    rows = JobDBModel.objects.using(conf.database_alias()).in_bulk(job_ids)
    missing = [i for i in job_ids if i not in rows]
    found = [job_as_dict(rows[i]) for i in job_ids if i in rows]
    if as_json:
        print(json.dumps(found[0] if len(job_ids) == 1 and found else found, indent=2))
    else:
        console = Console()
        for job in found:
            _print_job(console, job)
    for job_id in missing:
        Console(stderr=True).print(f"djap show: no job with id {job_id}", highlight=False)
    return 1 if missing else 0


def _print_job(console: Console, job: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    attempts = f"{job['attempts']} of {job['max_attempts']}"
    if job["crashes"]:
        attempts += f" ({job['crashes']} ended by a dead worker)"
    table.add_row("job", f"{job['id']} {job['name']}")
    table.add_row("status", job["status"])
    table.add_row("attempts", attempts)
    for key in ("created_at", "run_after", "started_at", "finished_at"):
        if job[key]:
            table.add_row(key.replace("_", " "), job[key])
    if job["worker_id"]:
        table.add_row("worker", str(job["worker_id"]))
    if job["pipeline_id"]:
        table.add_row("pipeline", f"{job['pipeline_id']}, step {job['pipeline_step']}")
    table.add_row("inputs", json.dumps(job["inputs"]))
    if job["outputs"] is not None:
        table.add_row("outputs", json.dumps(job["outputs"]))
    console.print(table, highlight=False)
    for entry in job["errors"][:-1] if job["error"] else job["errors"]:
        first_line = (entry.get("error") or "").strip().splitlines()[-1:] or [""]
        console.print(
            f"attempt {entry.get('attempt')} failed at {entry.get('at')}: {first_line[0]}",
            highlight=False,
        )
    if job["error"]:
        console.print(f"[bold]last error[/bold] (attempt {job['attempts']}):")
        console.print(Syntax(job["error"].rstrip(), "pytb", word_wrap=True))
    console.print()


def retry_command(job_ids: list[int], failed: bool, name: str | None, limit: int) -> int:
    from djap_django import conf
    from djap_django.exceptions import JobNotRetryableError
    from djap_django.models import JobDBModel
    from djap_django.pipelines import retry_job

    if failed:
        rows = JobDBModel.objects.using(conf.database_alias()).filter(status="failed")
        if name:
            rows = rows.filter(name=name)
        job_ids = job_ids + list(rows.order_by("id").values_list("id", flat=True)[:limit])
        if not job_ids:
            print("no failed jobs" + (f" named {name}" if name else ""))
            return 0
    problems = 0
    for job_id in job_ids:
        try:
            row = retry_job(job_id)
        except JobNotRetryableError as exc:
            problems += 1
            print(f"djap retry: {exc}", file=sys.stderr)
            continue
        print(f"job {row.pk} ({row.name}) is {row.status} again")
    return 1 if problems else 0


def cancel_command(job_ids: list[int]) -> int:
    from djap_django.control import cancel
    from djap_django.models import JobDBModel

    problems = 0
    for job_id in job_ids:
        try:
            cancelled = cancel(job_id)
        except JobDBModel.DoesNotExist:
            problems += 1
            print(f"djap cancel: no job with id {job_id}", file=sys.stderr)
            continue
        if cancelled:
            print(f"job {job_id} cancelled")
        else:
            problems += 1
            print(
                f"djap cancel: job {job_id} had already finished; nothing to cancel",
                file=sys.stderr,
            )
    return 1 if problems else 0
