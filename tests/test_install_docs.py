"""What the install and deployment docs promise, checked against the code and the scripts."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from djap.supervisor import STOP_MARGIN_S
from djap_django.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
#: `scripts/test --help` prints a text; it must not take the seconds an install takes.
HELP_BUDGET_S = 5.0


def unit_settings(doc: str) -> dict[str, str]:
    """The [Service] keys of the systemd unit shown in a doc (an indented block)."""
    text = (ROOT / "docs" / doc).read_text()
    start = text.index("    [Service]")
    keys: dict[str, str] = {}
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("    ") or line.strip().startswith("["):
            break
        match = re.match(r"\s+(\w+)=(.*)", line)
        if match:
            keys[match.group(1)] = match.group(2)
    return keys


def test_the_two_systemd_units_stop_the_supervisor_the_same_safe_way():
    units = {doc: unit_settings(doc) for doc in ("supervisor.md", "operations.md")}
    for doc, keys in units.items():
        # mixed: SIGTERM reaches the supervisor alone, which drains its workers; SIGKILL
        # reaches every process only after TimeoutStopSec.
        assert keys.get("KillMode") == "mixed", doc
        assert keys.get("KillSignal") == "SIGTERM", doc
        assert float(keys["TimeoutStopSec"]) > DEFAULTS["GRACE"] + STOP_MARGIN_S, doc
    assert units["supervisor.md"]["TimeoutStopSec"] == units["operations.md"]["TimeoutStopSec"]


def test_scripts_test_help_prints_usage_without_installing_or_linting():
    started = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "scripts" / "test"), "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "scripts/test [--python" in result.stdout
    assert "==>" not in result.stdout + result.stderr  # no venv, no install, no ruff
    assert time.monotonic() - started < HELP_BUDGET_S


def test_the_install_docs_name_the_wheel_that_the_build_writes():
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version
    wheel = f"djap-{version.group(1)}-py3-none-any.whl"
    for doc in (ROOT / "README.md", ROOT / "docs" / "getting-started.md"):
        assert wheel in doc.read_text(), f"{doc.name} should name {wheel}"
