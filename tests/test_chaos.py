"""The fault-injection soak (scripts/chaos) in a short form: a few thousand jobs, every fault.

It runs only in the PostgreSQL half of the suite, on a throwaway cluster of its own (the
soak restarts PostgreSQL). Deselect it with `-m "not slow"` for a quick local run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the soak runs on PostgreSQL (it restarts it)"
    ),
]


@pytest.fixture
def cluster():
    # Under /tmp, not tmp_path: initdb runs as the postgres user, which cannot enter
    # pytest's private folders when the suite runs as root.
    pg_dir = Path(tempfile.mkdtemp(prefix="djap-chaos-pg."))
    started = subprocess.run(
        [str(ROOT / "scripts/pg-throwaway"), "start", str(pg_dir)], capture_output=True, text=True
    )
    if started.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"no throwaway PostgreSQL for the soak: {started.stderr}")
        pytest.skip(f"no PostgreSQL server binaries for a throwaway cluster: {started.stderr}")
    yield started.stdout.strip(), pg_dir
    subprocess.run([str(ROOT / "scripts/pg-throwaway"), "stop", str(pg_dir)], check=False)


def test_chaos_short_every_job_accounted_for(cluster, tmp_path):
    url, pg_dir = cluster
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/chaos.py"),
            *("--url", url, "--pg-dir", str(pg_dir)),
            *("--jobs", "2000", "--pipelines", "10", "--seed", "12"),
            *("--kill-every", "8", "--stop-every", "9", "--prune-every", "3"),
            *("--timeout", "300", "--log", str(tmp_path / "supervisor.log")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out + (tmp_path / "supervisor.log").read_text()[-5000:]
    assert "unexplained" in out and "every second run explained" in out
    for fault in ("SIGKILLs", "PostgreSQL restarts", "prune passes"):
        line = next(line for line in out.splitlines() if line.strip().startswith(fault))
        assert int(line.split()[-1]) >= 1, f"the soak injected no {fault}:\n{out}"
