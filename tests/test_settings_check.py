"""The DJAP system check: unknown keys, wrong types and impossible values name the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings
from django.test import override_settings

from djap_django.checks import check_djap_settings
from djap_django.conf import DEFAULTS
from tests.conftest import ROOT


def problems(**djap) -> list[str]:
    with override_settings(DJAP={**settings.DJAP, **djap}):
        return [f"{e.msg} {e.hint or ''}".strip() for e in check_djap_settings()]


def test_the_test_settings_and_every_default_pass():
    assert problems() == []
    with override_settings(DJAP=dict(DEFAULTS)):
        assert check_djap_settings() == []


def test_an_unknown_key_gets_a_did_you_mean():
    assert problems(PRUNE_OLDER_THEN=3600) == [
        "Unknown DJAP setting 'PRUNE_OLDER_THEN' Did you mean 'PRUNE_OLDER_THAN'?"
    ]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("CANCEL_POLL_INTERVAL", "1", "DJAP['CANCEL_POLL_INTERVAL'] must be int or float, not str"),
        ("MAX_ATTEMPTS", 0, "DJAP['MAX_ATTEMPTS'] must be at least 1, not 0"),
        ("MAX_ATTEMPTS", True, "DJAP['MAX_ATTEMPTS'] must be int, not bool"),
        ("SQLITE_BUSY_TIMEOUT", -1, "DJAP['SQLITE_BUSY_TIMEOUT'] must be at least 0"),
        ("PRUNE_OLDER_THAN", "7d", "DJAP['PRUNE_OLDER_THAN'] must be int or float, not str"),
        ("PRUNE_STATUSES", "done", "DJAP['PRUNE_STATUSES'] must be list or tuple, not str"),
        ("PRUNE_STATUSES", ["done", "new"], "DJAP['PRUNE_STATUSES'] must list some of"),
        ("PRUNE_STATUSES", [], "DJAP['PRUNE_STATUSES'] must list some of"),
        ("PRUNE_INTERVAL", 0, "DJAP['PRUNE_INTERVAL'] must be at least 0.01"),
        ("TIMEOUT", 0, "DJAP['TIMEOUT'] must be at least 0.001"),
        ("GRACE", None, "DJAP['GRACE'] may not be None"),
    ],
)
def test_wrong_types_and_impossible_values_name_the_key(key, value, expected):
    found = problems(**{key: value})
    assert len(found) == 1 and found[0].startswith(expected), found


def test_values_impossible_together_name_both_keys():
    (found,) = problems(HEARTBEAT_INTERVAL=10.0, STALE_AFTER=15.0)
    assert "DJAP['STALE_AFTER']" in found and "DJAP['HEARTBEAT_INTERVAL']" in found
    (found,) = problems(RETRY_BACKOFF_BASE=60.0, RETRY_BACKOFF_MAX=10.0)
    assert "RETRY_BACKOFF_BASE" in found and "RETRY_BACKOFF_MAX" in found
    (found,) = problems(SQLITE_POLL_MIN=1.0, SQLITE_POLL_MAX=0.1)
    assert "SQLITE_POLL_MIN" in found


def test_on_sqlite_stale_after_must_outlast_a_heartbeat_waiting_for_the_lock():
    from django.db import connection

    found = problems(STALE_AFTER=10.0, HEARTBEAT_INTERVAL=2.0, SQLITE_BUSY_TIMEOUT=30.0)
    if connection.vendor != "sqlite":
        assert found == [], "PostgreSQL has no busy timeout to outlast"
        return
    (found,) = found
    assert found.startswith("DJAP['STALE_AFTER'] (10.0) must be greater than")
    assert "SQLITE_BUSY_TIMEOUT" in found and "HEARTBEAT_INTERVAL" in found
    assert problems(STALE_AFTER=10.0, HEARTBEAT_INTERVAL=2.0, SQLITE_BUSY_TIMEOUT=7.0) == []


def test_djap_work_refuses_to_start_with_a_bad_setting(subprocess_env, tmp_path):
    (tmp_path / "bad_settings.py").write_text(
        "from tests.settings import *  # noqa\nDJAP = {**DJAP, 'MAX_ATEMPTS': 3}\n"
    )
    env = {
        **subprocess_env,
        "DJANGO_SETTINGS_MODULE": "bad_settings",
        "PYTHONPATH": f"{tmp_path}:{ROOT}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "djap", "work", "--burst"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "djap work: error: Unknown DJAP setting 'MAX_ATEMPTS' (Did you mean 'MAX_ATTEMPTS'?)"
    )


@pytest.mark.parametrize("doc", ["README.md", "docs/settings.md"])
def test_every_setting_is_documented_with_its_default(doc):
    text = (ROOT / doc).read_text()
    for key, default in DEFAULTS.items():
        shown = [f'"{key}": {default!r}', f"`{key}` | `{default!r}`"]
        assert any(s.replace("'", '"') in text for s in shown), (
            f"{doc} does not show {key} with its default {default!r}"
        )


def test_a_bad_setting_is_refused_where_it_is_first_read_too(settings):
    """A shell or a view runs no system checks: enqueue must not store a bad default."""
    from django.core.exceptions import ImproperlyConfigured

    import djap
    from djap_django.models import JobDBModel
    from tests.testapp.jobs import JobWithSleep

    settings.DJAP = {"TIMEOUT": -1}
    with pytest.raises(ImproperlyConfigured, match="TIMEOUT"):
        djap.create_new(JobWithSleep)
    assert JobDBModel.objects.count() == 0
    settings.DJAP = {"TIMEOUT": 5}
    assert djap.create_new(JobWithSleep).timeout == 5
