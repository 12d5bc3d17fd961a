"""The dashboard renders a snapshot value: every part, in an 80x24 terminal, no processes."""

from __future__ import annotations

import datetime as dt
import io

from rich.console import Console

from djap.dashboard import render, sparkline, summary_line
from djap.status import (
    Event,
    Failure,
    ProcessView,
    Snapshot,
    Throughput,
    WorkerView,
    error_line,
    stranded_names,
)

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def worker(pid: int, **kw) -> WorkerView:
    base = dict(
        id=pid,
        host="web-1",
        pid=pid,
        group="default",
        state="running",
        alive=True,
        started_at=T0,
        last_heartbeat=T0,
        heartbeat_age=1.0,
        jobs_done=10,
        jobs_failed=1,
        in_flight=2,
    )
    base.update(kw)
    return WorkerView(**base)


def a_snapshot() -> Snapshot:
    return Snapshot(
        taken_at=T0,
        queue={
            "ResizeImage": {"new": 1200, "in_progress": 40, "done": 56000},
            "GpuJob": {"new": 7, "in_progress": 1, "done": 90, "failed": 2},
            "SendEmail": {"done": 300},
        },
        workers=(worker(101), worker(102, group="gpu", include=["GpuJob"])),
        failures=(
            Failure(
                77,
                "GpuJob",
                T0,
                error_line("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA OOM"),
            ),
        ),
        processes=(
            ProcessView(
                "default/0", "default", 101, "running", 75.0, 0, 12.5, 80 << 20, 40, 5000, 3, 123.4
            ),
            ProcessView("default/1", "default", None, "backoff", restarts=3),
            ProcessView("gpu/0", "gpu", 103, "draining", 3700.0, 1, 99.0, 900 << 20, 1, 90, 2, 1.5),
        ),
        throughput=Throughput(
            now=321.5, average=250.25, total=56390, seconds=125, history=(0, 10, 50, 300, 321.5)
        ),
        events=(
            Event(T0, "default/1 pid 104 killed by SIGKILL; put back 3 jobs; restart in 4s"),
            Event(T0, "gpu/0 pid 99 recycled (memory: RSS 900M over --max-memory 512M)"),
        ),
        title="djap supervise · web-1",
        pipelines={"running": 3, "done": 12, "failed": 1, "cancelled": 0},
    )


def rendered(snapshot: Snapshot, width: int = 80) -> str:
    console = Console(record=True, width=width, height=24, color_system=None, file=io.StringIO())
    console.print(render(snapshot))
    return console.export_text()


def test_the_dashboard_shows_every_part_in_80_columns_and_24_lines():
    text = rendered(a_snapshot())
    lines = text.rstrip("\n").splitlines()
    assert len(lines) <= 24, text
    assert max(len(line) for line in lines) <= 80, text
    # Throughput now, over the run, and the sparkline.
    assert "321.5 jobs/s" in text and "250.2" in text and "56,390" in text
    assert sparkline((0, 10, 50, 300, 321.5)) in text
    # Progress: jobs left and the time to empty at the current rate (1,248 / 321.5 j/s).
    assert "1,248 left, empty in ~3s" in text
    # Queue depth per job name and status.
    for part in ("ResizeImage", "GpuJob", "SendEmail", "waiting", "running", "done", "failed"):
        assert part in text
    assert "1200" in text and "56.0k" in text
    # A row per process: name, pid, state, uptime, restarts, CPU, RSS, in flight, done, j/s.
    row = next(line for line in lines if line.startswith("default/0"))
    for cell in ("101", "running", "1m15s", "12", "80M", "40", "5000", "123.4"):
        assert cell in row, row
    gpu = next(line for line in lines if line.startswith("gpu/0"))
    assert "draining" in gpu and "1h01m" in gpu and "900M" in gpu
    assert "backoff" in next(line for line in lines if line.startswith("default/1"))
    # Recent failures with their error line; restarts and why.
    assert "failed (+1 more) #77 GpuJob: RuntimeError: CUDA OOM" in text
    assert "killed by SIGKILL; put back 3 jobs" in text
    assert "recycled (memory" in text
    # Pipelines by status.
    assert "pipelines: 3 running, 12 done, 1 failed" in text


def test_without_processes_it_shows_every_hosts_workers():
    snapshot = a_snapshot()
    import dataclasses

    snapshot = dataclasses.replace(snapshot, processes=(), throughput=None)
    text = rendered(snapshot)
    assert "web-1" in text and "101" in text and "gpu" in text and "alive" in text


def test_summary_line_and_stranded_names():
    snapshot = a_snapshot()
    line = summary_line(snapshot)
    assert "1 procs running" in line and "waiting 1207" in line and "321.5 jobs/s" in line
    assert "pipelines 3 running, 12 done, 1 failed" in line
    assert "1,248 left, empty in ~3s" in line
    gpu_only = worker(1, include=["GpuJob"])
    dead = worker(2, alive=False)
    assert stranded_names(["GpuJob", "ResizeImage"], [gpu_only, dead]) == ("ResizeImage",)
    assert stranded_names(["GpuJob"], [worker(3, exclude=["GpuJob"])]) == ("GpuJob",)


def test_error_line_is_the_exception_not_the_header():
    assert error_line("attempt 1 of 1 failed\nTraceback (most recent call last):\nX\nKeyError: 'a'")
    assert error_line(
        "attempt 1 of 1 failed\nTraceback (most recent call last):\nKeyError: 'a'"
    ) == ("KeyError: 'a'")
    assert error_line("No registered job is named 'Gone'.") == "No registered job is named 'Gone'."
    assert error_line("") == ""


def test_a_big_snapshot_still_fits_24_lines_and_status_prints_every_row():
    import dataclasses

    base = a_snapshot()
    many = dataclasses.replace(
        base,
        queue={f"Job{i:02d}": {"new": i, "done": 100 * i} for i in range(30)},
        processes=tuple(
            ProcessView(f"default/{i}", "default", 1000 + i, "running") for i in range(16)
        ),
        failures=base.failures * 5,
        events=base.events * 5,
        stranded=("GpuJob",),
    )
    text = rendered(many)
    assert len(text.rstrip("\n").splitlines()) <= 24, text
    assert "+26 more" in text and "+10 more" in text
    assert "no live worker takes: GpuJob" in text
    console = Console(record=True, width=80, color_system=None, file=io.StringIO())
    console.print(render(many, fit_screen=False))
    full = console.export_text()
    assert all(f"Job{i:02d}" in full for i in range(30))
    assert "default/15" in full
