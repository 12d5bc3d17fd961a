"""The side-by-side harness (benchmarks/peers/run.py) works: its arguments, and one tiny run.

The real comparison takes most of an hour and never runs here; this runs djap through
the harness in its smoke mode with this interpreter (`--no-venvs`), on the test database's
kind, and checks what it wrote: nothing about speed, only that every piece ran and that
the harness's own exactly-once check saw every job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "peers" / "run.py"
#: The smoke run's whole budget (seconds): a few worker start-ups.
SMOKE_TIMEOUT_S = 120


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, str(RUN), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_help_lists_every_peer_and_the_jobs():
    out = run("--help")
    assert out.returncode == 0, out.stderr
    for name in ("djap-pg", "raw-psycopg3", "celery-noresults", "django-tasks-pg", "--smoke"):
        assert name in out.stdout


def test_an_unknown_peer_is_refused_with_a_suggestion():
    out = run("--peers", "djap,pgqeuer")
    assert out.returncode == 2
    assert "unknown peer 'pgqeuer'; did you mean 'pgqueuer'?" in out.stderr
    assert out.stderr.count("\n") == 1


def test_a_smoke_run_of_djap_through_the_harness(tmp_path: Path):
    if os.environ.get("DJAP_TEST_DB") == "postgres":
        url = os.environ["DJAP_TEST_DATABASE_URL"]
        prefix = f"peers_{uuid.uuid4().hex[:8]}_"
        args = ["--peers", "djap-pg", "--database-url", url, "--db-prefix", prefix]
        expected = {"djap-pg"}
    else:
        args = ["--peers", "djap-sqlite"]
        expected = {"djap-sqlite"}
    out = run(
        "--smoke",
        "--no-venvs",
        "--no-plot",
        "--job",
        "noop",
        "--phases",
        "enqueue,drain1",
        "--out",
        str(tmp_path),
        *args,
        timeout=SMOKE_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["peer"] for r in records} == expected
    for r in records:
        assert r["drain1"]["verify"]["exactly_once"], r
        assert r["drain1"]["timed_out"] is False
        assert r["enqueue_rate"] > 0
    report = (tmp_path / "report.md").read_text()
    assert "## Job: noop" in report
    assert all(f"| {peer} |" in report for peer in expected)
    if os.environ.get("DJAP_TEST_DB") == "postgres":
        psycopg = pytest.importorskip("psycopg")
        with psycopg.connect(url, autocommit=True) as conn:
            left = conn.execute(
                "select count(*) from pg_database where starts_with(datname, %s)", (prefix,)
            ).fetchone()[0]
        assert left == 0, "the harness left benchmark databases on the server"
