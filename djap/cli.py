"""The `djap` command: what an operator runs. Each command sets Django up itself."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer depends on click itself
    import click.exceptions as click_exceptions  # type: ignore[import-not-found, no-redef]

from .django_setup import setup_django
from .errors import CliError

app = typer.Typer(
    name="djap",
    help="djap: Django Async Job Pipelines. Run workers, supervise them, watch the queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SettingsOpt = Annotated[
    str | None,
    typer.Option("--settings", help="Django settings module (else DJANGO_SETTINGS_MODULE)."),
]
PythonPathOpt = Annotated[
    str | None, typer.Option("--pythonpath", help="A folder to add to sys.path first.")
]


@app.callback()
def _root() -> None:
    """djap: Django Async Job Pipelines."""


def parse_names(text: str | None) -> list[str] | None:
    """'A, B' -> ['A', 'B']; None stays None (no filter)."""
    if text is None:
        return None
    return [n.strip() for n in text.split(",") if n.strip()]


@app.command()
def work(
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="asyncio tasks in flight (DJAP CONCURRENCY).")
    ] = None,
    lanes: Annotated[
        int | None,
        typer.Option(min=1, help="Database lanes: ORM threads and connections (DJAP DB_LANES)."),
    ] = None,
    include: Annotated[
        str | None, typer.Option(help="Only these job names, comma-separated.")
    ] = None,
    exclude: Annotated[
        str | None, typer.Option(help="Never these job names, comma-separated.")
    ] = None,
    burst: Annotated[bool, typer.Option(help="Exit 0 once no runnable job is left.")] = False,
    num_jobs: Annotated[int | None, typer.Option(min=1, help="Exit after this many jobs.")] = None,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Stop claiming after S seconds, then exit.")
    ] = None,
    grace: Annotated[
        float | None, typer.Option(min=0, help="Seconds running jobs get after SIGTERM.")
    ] = None,
    group: Annotated[str, typer.Option(help="Group name shown in djap status.")] = "default",
    node_name: Annotated[
        str | None, typer.Option(help="Host name to report (default: this machine's).")
    ] = None,
    supervisor_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
    settings: SettingsOpt = None,
    pythonpath: PythonPathOpt = None,
) -> None:
    """Run one worker process: claim jobs and run them on an asyncio pool."""
    setup_django(settings, pythonpath)
    from djap_django.runner import run_worker_process
    from djap_django.worker import WorkerOptions

    options = WorkerOptions(
        concurrency=concurrency,
        lanes=lanes,
        include=parse_names(include),
        exclude=parse_names(exclude) or [],
        burst=burst,
        num_jobs=num_jobs,
        timeout=timeout,
        grace=grace,
        group=group,
        host=node_name,
        supervisor_pid=supervisor_pid,
    )
    raise typer.Exit(run_worker_process(options, log_level))


@app.command()
def bench(
    jobs: Annotated[int, typer.Option(min=1, help="Jobs to enqueue and drain.")] = 10_000,
    procs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="asyncio tasks per process.")] = 100,
    lanes: Annotated[
        int | None,
        typer.Option(min=1, help="Database lanes: ORM threads and connections (DJAP DB_LANES)."),
    ] = None,
    job: Annotated[
        str,
        typer.Option(
            help="noop; sleep (asyncio.sleep each); orm (async ORM: one insert, one query); "
            "orm-sync (the same as def run)."
        ),
    ] = "noop",
    sleep: Annotated[float, typer.Option(min=0, help="Seconds each sleep job sleeps.")] = 1.0,
    query_ms: Annotated[
        float, typer.Option(min=0, help="orm jobs: milliseconds their query takes on the server.")
    ] = 5.0,
    ceiling_threads: Annotated[
        int, typer.Option(min=1, help="orm jobs: threads (connections) of the no-queue ceiling.")
    ] = 20,
    ceiling_seconds: Annotated[
        float, typer.Option(min=0.5, help="orm jobs: seconds each ceiling is measured.")
    ] = 5.0,
    latency_jobs: Annotated[
        int, typer.Option(min=0, help="Single enqueues into idle workers for latency.")
    ] = 50,
    timeout: Annotated[float, typer.Option(min=1, help="Give up the drain after S s.")] = 600.0,
    backlog_scheduled: Annotated[
        int, typer.Option(min=0, help="First write N bench rows scheduled for tomorrow.")
    ] = 0,
    backlog_other: Annotated[
        int, typer.Option(min=0, help="First write N waiting rows of a name no worker takes.")
    ] = 0,
    filter_: Annotated[
        str,
        typer.Option(
            "--filter", help="Workers take the bench's jobs by include, or by exclude of the other."
        ),
    ] = "include",
    due_in: Annotated[
        float | None,
        typer.Option(
            min=0, help="Jobs fall due S s after enqueue, all in one second; report lateness."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    settings: SettingsOpt = None,
    pythonpath: PythonPathOpt = None,
) -> None:
    """Benchmark the queue on the configured database with djap's own jobs, then clean up."""
    setup_django(settings, pythonpath)
    from . import bench as bench_mod

    options = bench_mod.BenchOptions(
        jobs=jobs,
        procs=procs,
        concurrency=concurrency,
        lanes=lanes,
        job=job,
        sleep_s=sleep,
        query_s=query_ms / 1000,
        ceiling_threads=ceiling_threads,
        ceiling_s=ceiling_seconds,
        latency_jobs=latency_jobs,
        timeout_s=timeout,
        settings=settings,
        pythonpath=pythonpath,
        backlog_scheduled=backlog_scheduled,
        backlog_other=backlog_other,
        filter=filter_,
        due_in_s=due_in,
    )
    result = bench_mod.run_bench(options, show_progress=True)
    if json_out:
        import json

        print(json.dumps(result))
    else:
        from rich.console import Console

        Console().print(bench_mod.render(result))
    raise typer.Exit(0 if result["all_ran_once"] else 1)


@app.command()
def supervise(
    procs: Annotated[
        int | None,
        typer.Option(min=0, help="General worker processes (default: one per CPU)."),
    ] = None,
    gpu_procs: Annotated[
        str | None,
        typer.Option(help="N:Name[,Name...]: N processes for these jobs, CUDA_VISIBLE_DEVICES=i."),
    ] = None,
    pool: Annotated[
        list[str] | None,
        typer.Option(help="N:Name[,Name...]: a dedicated group (repeatable)."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="asyncio tasks in flight per process.")
    ] = None,
    lanes: Annotated[
        int | None,
        typer.Option(min=1, help="Database lanes: ORM threads and connections (DJAP DB_LANES)."),
    ] = None,
    exclude: Annotated[
        str | None, typer.Option(help="Job names the general processes never run.")
    ] = None,
    max_memory: Annotated[
        str | None, typer.Option(help="Recycle a process above this RSS, e.g. 512MB.")
    ] = None,
    grace: Annotated[
        float | None, typer.Option(min=0, help="Seconds running jobs get after SIGTERM.")
    ] = None,
    burst: Annotated[
        bool, typer.Option(help="Exit 0 once no group has runnable jobs left.")
    ] = False,
    dashboard: Annotated[
        bool, typer.Option(help="The live view (on a terminal); else log lines.")
    ] = True,
    node_name: Annotated[
        str | None, typer.Option(help="Host name to report (default: this machine's).")
    ] = None,
    log_file: Annotated[
        str | None, typer.Option(help="Where worker output goes under the live view.")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve Prometheus metrics on this port."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING...")] = "INFO",
    settings: SettingsOpt = None,
    pythonpath: PythonPathOpt = None,
) -> None:
    """Run and watch many worker processes: restarts, rescue, a live dashboard."""
    import os

    from .groups import check_names, plan_groups
    from .health import parse_size

    try:
        groups = plan_groups(
            os.cpu_count() or 1 if procs is None else procs,
            gpu_procs,
            pool,
            parse_names(exclude) or [],
        )
        limit = parse_size(max_memory) if max_memory else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    setup_django(settings, pythonpath)
    from djap_django import registry

    from .commands.supervise import supervise_command
    from .supervisor.options import SuperviseOptions

    try:
        check_names(groups, registry.names())
    except ValueError as exc:
        raise CliError(str(exc)) from None
    options = SuperviseOptions(
        groups=groups,
        concurrency=concurrency,
        lanes=lanes,
        grace=grace,
        burst=burst,
        max_memory=limit,
        node_name=node_name,
        dashboard=dashboard,
        settings=settings,
        pythonpath=pythonpath,
        log_level=log_level,
        log_file=log_file,
        metrics_port=metrics_port,
    )
    raise typer.Exit(supervise_command(options))


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="The snapshot as JSON.")] = False,
    watch: Annotated[bool, typer.Option(help="Refresh until Ctrl-C.")] = False,
    check: Annotated[
        bool, typer.Option(help="Exit 1 when runnable jobs wait that no live worker takes.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 1.0,
    settings: SettingsOpt = None,
    pythonpath: PythonPathOpt = None,
) -> None:
    """The queue and every host's workers, once (tables or --json), or --watch."""
    setup_django(settings, pythonpath)
    from .commands.status import status_command

    raise typer.Exit(status_command(as_json=json_out, watch=watch, check=check, interval=interval))


@app.command()
def prune(
    older_than: Annotated[
        str, typer.Option(help="Delete jobs that finished longer ago than this: 7d, 12h, 30m.")
    ],
    status: Annotated[
        str | None,
        typer.Option(help="Only these statuses, comma-separated (default done,failed,cancelled)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per DELETE statement.")] = 1000,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    settings: SettingsOpt = None,
    pythonpath: PythonPathOpt = None,
) -> None:
    """Delete finished jobs in short batches that never hold the job table for long."""
    from .prune import parse_duration, parse_statuses, prune_command

    # Bad input is reported before Django starts.
    parse_duration(older_than)
    parse_statuses(status)
    setup_django(settings, pythonpath)
    raise typer.Exit(prune_command(older_than, status, batch_size, quiet))


JobIdsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="JOB_ID", help="Job ids, as djap status lists them.", show_default=False
    ),
]


def parse_job_ids(values: list[str] | None, needed_to: str | None = None) -> list[int]:
    """['12', '13'] -> [12, 13]; anything else is a one-line error naming it.

    With `needed_to` ("show"), no ids at all is an error too.
    """
    ids = []
    for value in values or []:
        if not value.strip().isdigit():
            raise CliError(f"{value!r} is not a job id (a whole number, as in djap status)")
        ids.append(int(value))
    if needed_to and not ids:
        raise CliError(f"give the ids of the jobs to {needed_to}")
    return ids


@app.command()
def show(
    job_ids: JobIdsArg = None,
    json_out: Annotated[bool, typer.Option("--json", help="The job(s) as JSON.")] = False,
    settings: SettingsOpt = None,
    pythonpath: PythonPathOpt = None,
) -> None:
    """A job's status, attempts, inputs, outputs and the traceback of its failures."""
    ids = parse_job_ids(job_ids, needed_to="show")
    setup_django(settings, pythonpath)
    from .job_commands import show_command

    raise typer.Exit(show_command(ids, json_out))


@app.command()
def retry(
    job_ids: JobIdsArg = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed job (oldest first).")
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="With --failed: only the jobs of this name.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="With --failed: at most this many.")] = 1000,
    settings: SettingsOpt = None,
    pythonpath: PythonPathOpt = None,
) -> None:
    """Run failed or cancelled jobs again; a pipeline's failed step resumes its pipeline."""
    ids = parse_job_ids(job_ids)
    if name is not None and not failed:
        raise CliError("--name goes with --failed (retry the failed jobs of that name)")
    if not ids and not failed:
        raise CliError("give job ids to retry, or --failed")
    setup_django(settings, pythonpath)
    from .job_commands import retry_command

    raise typer.Exit(retry_command(ids, failed, name, limit))


@app.command()
def cancel(
    job_ids: JobIdsArg = None,
    settings: SettingsOpt = None,
    pythonpath: PythonPathOpt = None,
) -> None:
    """Cancel jobs: at once while they wait, within about a second while they run."""
    ids = parse_job_ids(job_ids, needed_to="cancel")
    setup_django(settings, pythonpath)
    from .job_commands import cancel_command

    raise typer.Exit(cancel_command(ids))


def _command_path(argv: list[str] | None) -> str:
    """'djap prune' for `djap prune ...`: errors name the command, as click's own do."""
    args = sys.argv[1:] if argv is None else argv
    commands = {c.name or getattr(c.callback, "__name__", "") for c in app.registered_commands}
    first = next((a for a in args if not a.startswith("-")), None)
    return f"djap {first}" if first in commands else "djap"


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors are one line on stderr and exit code 2, never a traceback."""
    try:
        code = app(args=argv, prog_name="djap", standalone_mode=False)
    except click_exceptions.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "djap"
        print(f"{command}: error: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except CliError as exc:
        print(f"{_command_path(argv)}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    # typer's own classes: the click copy inside newer typer has no Exit/Abort of its own, and
    # naming a missing attribute here would hide the real error behind an AttributeError.
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("djap: aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
