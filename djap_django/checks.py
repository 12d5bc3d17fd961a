"""System checks: a wrong DJAP setting stops startup with a message naming the key."""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core import checks

from .conf import DEFAULTS

_NUMBER = (int, float)
#: key -> (accepted types, smallest value or None, may be None)
_RULES: dict[str, tuple[tuple[type, ...], float | None, bool]] = {
    "DATABASE": ((str,), None, False),
    "CONCURRENCY": ((int,), 1, False),
    "MAX_ATTEMPTS": ((int,), 1, False),
    "TIMEOUT": (_NUMBER, 0.001, True),
    "RETRY_BACKOFF_BASE": (_NUMBER, 0, False),
    "RETRY_BACKOFF_MAX": (_NUMBER, 0, False),
    "HEARTBEAT_INTERVAL": (_NUMBER, 0.05, False),
    "STALE_AFTER": (_NUMBER, 0.1, False),
    "MAX_CRASHES": ((int,), 1, False),
    "POLL_INTERVAL": (_NUMBER, 0.001, False),
    "SQLITE_POLL_MIN": (_NUMBER, 0.0005, False),
    "SQLITE_POLL_MAX": (_NUMBER, 0.001, False),
    "COMPLETION_BATCH": ((int,), 1, False),
    "COMPLETION_FLUSH_INTERVAL": (_NUMBER, 0, False),
    "GRACE": (_NUMBER, 0, False),
    "BURST_RETRY_WAIT": (_NUMBER, 0, False),
    "PRUNE_WORKERS_AFTER": (_NUMBER, 0, False),
    "CANCEL_POLL_INTERVAL": (_NUMBER, 0.01, False),
    "SQLITE_BUSY_TIMEOUT": (_NUMBER, 0, False),
    "PRUNE_OLDER_THAN": (_NUMBER, 0, True),
    "PRUNE_STATUSES": ((list, tuple), None, False),
    "PRUNE_INTERVAL": (_NUMBER, 0.01, False),
}

#: Statuses PRUNE_STATUSES may name: finished jobs only.
_PRUNABLE = ("done", "failed", "cancelled")


def _check_together(user: dict[str, Any]) -> list[str]:
    """Values that are fine alone but impossible together (or inside a list)."""
    value = {key: user.get(key, default) for key, default in DEFAULTS.items()}
    problems = []
    if value["STALE_AFTER"] < 2 * value["HEARTBEAT_INTERVAL"]:
        problems.append(
            f"DJAP['STALE_AFTER'] ({value['STALE_AFTER']!r}) must be at least twice "
            f"DJAP['HEARTBEAT_INTERVAL'] ({value['HEARTBEAT_INTERVAL']!r}), or live workers "
            "look dead between two heartbeats and their jobs run twice"
        )
    if value["SQLITE_POLL_MIN"] > value["SQLITE_POLL_MAX"]:
        problems.append("DJAP['SQLITE_POLL_MIN'] must not be greater than DJAP['SQLITE_POLL_MAX']")
    if value["RETRY_BACKOFF_BASE"] > value["RETRY_BACKOFF_MAX"]:
        problems.append(
            "DJAP['RETRY_BACKOFF_BASE'] must not be greater than DJAP['RETRY_BACKOFF_MAX']"
        )
    statuses = value["PRUNE_STATUSES"]
    if isinstance(statuses, (list, tuple)):
        bad = [s for s in statuses if s not in _PRUNABLE]
        if bad or not statuses:
            problems.append(
                f"DJAP['PRUNE_STATUSES'] must list some of {', '.join(_PRUNABLE)} "
                f"(finished jobs only), not {list(statuses)!r}"
            )
    return problems


def _check_value(key: str, value: Any) -> str | None:
    types, minimum, nullable = _RULES.get(key, ((object,), None, True))
    if value is None:
        return None if nullable else f"DJAP[{key!r}] may not be None"
    if isinstance(value, bool) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        return f"DJAP[{key!r}] must be {names}, not {type(value).__name__} ({value!r})"
    if minimum is not None and value < minimum:
        return f"DJAP[{key!r}] must be at least {minimum}, not {value!r}"
    return None


@checks.register()
def check_djap_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    user = getattr(settings, "DJAP", None)
    if user is None:
        return errors
    if not isinstance(user, dict):
        return [checks.Error("settings.DJAP must be a dict", id="djap.E001")]
    for key, value in user.items():
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(DEFAULTS)}"
            errors.append(checks.Error(f"Unknown DJAP setting {key!r}", hint=hint, id="djap.E002"))
            continue
        problem = _check_value(key, value)
        if problem:
            errors.append(checks.Error(problem, id="djap.E003"))
    if not errors:
        errors += [checks.Error(p, id="djap.E005") for p in _check_together(user)]
    if not errors and "DATABASE" in user and user["DATABASE"] not in settings.DATABASES:
        errors.append(
            checks.Error(
                f"DJAP['DATABASE'] is {user['DATABASE']!r}, which is not in DATABASES",
                hint=f"Databases: {', '.join(settings.DATABASES)}",
                id="djap.E004",
            )
        )
    return errors
