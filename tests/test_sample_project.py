"""The sample project works as the README says: migrate, enqueue, drain (on SQLite)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SAMPLE = ROOT / "sample_project"


@pytest.mark.skipif(
    os.environ.get("DJAP_TEST_DB") == "postgres", reason="the sample runs on SQLite"
)
def test_sample_project_drains_its_jobs(tmp_path):
    db = tmp_path / "sample.sqlite3"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJAP_TEST", "DJANGO_SETTINGS"))
    }
    env.update(SAMPLE_SQLITE=str(db), DJANGO_SETTINGS_MODULE="mysite.settings")

    def run(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, *args],
            cwd=SAMPLE,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result

    run("manage.py", "migrate", "-v", "0")
    assert "enqueued" in run("manage.py", "enqueue_demo", "--images", "50").stdout
    run("-m", "djap", "work", "--burst", "--concurrency", "50", "--log-level", "ERROR")
    with sqlite3.connect(db) as conn:
        counts = dict(
            conn.execute(
                "SELECT name || ':' || status, count(*) FROM djap_job GROUP BY name, status"
            ).fetchall()
        )
    assert counts["GpuJob:done"] == 20
    assert counts["ImportLegacyOrder:failed"] == 8  # order ids divisible by 7, on purpose
    assert "ResizeImage:failed" not in counts
    # The album pipelines: 5 albums of 12 photos, each joined once and published.
    assert counts["PublishAlbum:done"] == 5
    assert counts["ResizeImage:done"] == 50 + 5 * 12
    with sqlite3.connect(db) as conn:
        pipelines = conn.execute("SELECT status, count(*) FROM djap_pipeline GROUP BY status")
        assert dict(pipelines.fetchall()) == {"done": 5}
