"""A real PgBouncer in transaction mode in front of the test server, for tests.

Found on PATH (Debian: `apt-get install pgbouncer`). In CI a missing PgBouncer is
installed with apt-get, and a PgBouncer that still cannot start fails the test;
elsewhere it skips loudly, saying what did not run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Seconds PgBouncer gets to accept connections.
START_TIMEOUT_S = 30.0
CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PgBouncer is needed in CI: {reason}")
    message = f"PgBouncer tests did NOT run: {reason}"
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)


def _find() -> str | None:
    debian = Path("/usr/sbin/pgbouncer")
    return shutil.which("pgbouncer") or (str(debian) if debian.exists() else None)


def _binary() -> str | None:
    """PgBouncer's binary; in CI (as root) installed from Debian's packages if missing."""
    found = _find()
    if found is None and os.environ.get("CI") and os.geteuid() == 0:
        install = ["apt-get", "install", "-y", "pgbouncer"]
        for step in (install, ["apt-get", "update"], install):
            if subprocess.run(step, capture_output=True, timeout=600).returncode == 0 and _find():
                break
        found = _find()
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_pgbouncer(settings_dict: dict) -> Iterator[int]:
    """Start PgBouncer in front of the server of `settings_dict`; yields its port."""
    exe = _binary()
    if exe is None:
        _unavailable("no pgbouncer binary (apt-get install pgbouncer)")
    # Not under pytest's tmp_path: as root, PgBouncer runs as postgres, who must reach it.
    workdir = Path(tempfile.mkdtemp(prefix="djap-pgbouncer-"))
    port = _free_port()
    (workdir / "userlist.txt").write_text(f'"{settings_dict.get("USER") or "postgres"}" ""\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        CONFIG.format(
            host=settings_dict.get("HOST") or "127.0.0.1",
            port=settings_dict.get("PORT") or 5432,
            listen_port=port,
            dir=workdir,
        )
    )
    cmd = [exe, str(ini)]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root.
        shutil.chown(workdir, "postgres")
        for f in workdir.iterdir():
            shutil.chown(f, "postgres")
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (workdir / "pgbouncer.log").read_text()
                    if (workdir / "pgbouncer.log").exists()
                    else ""
                )
                err = proc.stderr.read().decode() if proc.poll() is not None else ""
                _unavailable(f"pgbouncer did not start: {(err + log).strip()[-300:]}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
