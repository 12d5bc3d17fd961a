"""Fixtures: a committed test database (SQLite file or PostgreSQL) and real worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _committed_db(transactional_db: None) -> Iterator[None]:
    """Every test commits for real: workers read the database over their own connections."""
    yield
    # Async tests query through asgiref's sync thread: close that thread's connection too,
    # or it keeps the test database open and it cannot be dropped.
    asyncio.run(sync_to_async(connections.close_all)())


def wait_until(condition: Callable[[], object], timeout: float = 30.0, message: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
        time.sleep(0.05)


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for a djap process that opens this test's database."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DJAP_TEST_DB=os.environ.get("DJAP_TEST_DB", "sqlite"),
        DJAP_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
    )
    return env


class Procs:
    """Real djap processes started by a test; all of them are killed at teardown."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env, self.logdir, self.procs = env, logdir, []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = self.logdir / f"proc-{len(self.procs)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "djap", *args],
            env={**self.env, **(env or {})},
            cwd=ROOT,
            stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc.log_path = log  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def run(
        self, *args: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "djap", *args],
            env={**self.env, **(env or {})},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @staticmethod
    def log(proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def procs(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Procs]:
    p = Procs(subprocess_env, tmp_path)
    yield p
    p.stop_all()


# djap's pytest plugin (the `djap_inline` fixture), also when the installed package
# predates its pytest11 entry point; defined here it simply shadows the plugin's.
from djap_django.testing import djap_inline  # noqa: E402, F401
