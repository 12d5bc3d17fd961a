"""The rules a DJAP setting must follow, in one place.

Both readers of the settings use them: conf.get (the first read in any process,
so a shell or a view refuses a bad dict too) and the system check in checks.py
(`manage.py check`, startup). This module imports neither, so both can import it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

_NUMBER = (int, float)
#: key -> (accepted types, smallest value or None, may be None)
RULES: dict[str, tuple[tuple[type, ...], float | None, bool]] = {
    "DATABASE": ((str,), None, False),
    "CONCURRENCY": ((int,), 1, False),
    "DB_LANES": ((int,), 1, False),
    "MAX_ATTEMPTS": ((int,), 1, False),
    "TIMEOUT": (_NUMBER, 0.001, True),
    "TRANSACTION_POOLER": ((bool,), None, False),
    "LISTEN_DATABASE": ((str,), None, True),
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
    "STAGE_INTERVAL": (_NUMBER, 0.01, False),
    "STAGE_BATCH": ((int,), 1, False),
    "INLINE": ((bool,), None, False),
    "PERIODIC_INTERVAL": (_NUMBER, 0.05, False),
}

#: Statuses PRUNE_STATUSES may name: finished jobs only.
_PRUNABLE = ("done", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the DJAP dict; `id` is the system check's (djap.E00N)."""

    msg: str
    id: str
    hint: str | None = None

    def __str__(self) -> str:
        return self.msg + (f" ({self.hint})" if self.hint else "")


def problems(user: Any, defaults: Mapping[str, Any], databases: Iterable[str]) -> list[Problem]:
    """Everything wrong with the DJAP dict `user` (None: not set), most basic first.

    `databases` is settings.DATABASES (or just its aliases: then no check looks at
    which database the queue is on).
    """
    if user is None:
        return []
    if not isinstance(user, dict):
        return [Problem("settings.DJAP must be a dict", "djap.E001")]
    found: list[Problem] = []
    for key, value in user.items():
        if key not in defaults:
            close = difflib.get_close_matches(str(key), defaults, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(defaults)}"
            found.append(Problem(f"Unknown DJAP setting {key!r}", "djap.E002", hint))
            continue
        problem = _check_value(key, value)
        if problem:
            found.append(Problem(problem, "djap.E003"))
    if not found:
        found += [Problem(p, "djap.E005") for p in _check_together(user, defaults)]
    if not found and isinstance(databases, Mapping):
        found += [Problem(p, "djap.E006") for p in _check_sqlite_timing(user, defaults, databases)]
    databases = list(databases)
    for key in ("DATABASE", "LISTEN_DATABASE"):
        if not found and user.get(key) is not None and user[key] not in databases:
            found.append(
                Problem(
                    f"DJAP[{key!r}] is {user[key]!r}, which is not in DATABASES",
                    "djap.E004",
                    f"Databases: {', '.join(databases)}",
                )
            )
    return found


def _check_together(user: dict[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """Values that are fine alone but impossible together (or inside a list)."""
    value = {key: user.get(key, default) for key, default in defaults.items()}
    found = []
    if value["STALE_AFTER"] < 2 * value["HEARTBEAT_INTERVAL"]:
        found.append(
            f"DJAP['STALE_AFTER'] ({value['STALE_AFTER']!r}) must be at least twice "
            f"DJAP['HEARTBEAT_INTERVAL'] ({value['HEARTBEAT_INTERVAL']!r}), or live workers "
            "look dead between two heartbeats and their jobs run twice"
        )
    if value["SQLITE_POLL_MIN"] > value["SQLITE_POLL_MAX"]:
        found.append("DJAP['SQLITE_POLL_MIN'] must not be greater than DJAP['SQLITE_POLL_MAX']")
    if value["RETRY_BACKOFF_BASE"] > value["RETRY_BACKOFF_MAX"]:
        found.append(
            "DJAP['RETRY_BACKOFF_BASE'] must not be greater than DJAP['RETRY_BACKOFF_MAX']"
        )
    statuses = value["PRUNE_STATUSES"]
    if isinstance(statuses, (list, tuple)):
        bad = [s for s in statuses if s not in _PRUNABLE]
        if bad or not statuses:
            found.append(
                f"DJAP['PRUNE_STATUSES'] must list some of {', '.join(_PRUNABLE)} "
                f"(finished jobs only), not {list(statuses)!r}"
            )
    return found


def _check_sqlite_timing(
    user: dict[str, Any], defaults: Mapping[str, Any], databases: Mapping[str, Any]
) -> list[str]:
    """On SQLite a heartbeat may wait SQLITE_BUSY_TIMEOUT for the write lock.

    A worker that waits that long, one HEARTBEAT_INTERVAL after its last beat, must
    still not look dead: otherwise the first worker through the lock rescues the
    others, whose jobs are still running, and every one of them runs twice.
    """
    value = {key: user.get(key, default) for key, default in defaults.items()}
    database = databases.get(value["DATABASE"]) or {}
    if "sqlite" not in str(database.get("ENGINE", "")):
        return []
    stale, busy, beat = (
        value["STALE_AFTER"],
        value["SQLITE_BUSY_TIMEOUT"],
        value["HEARTBEAT_INTERVAL"],
    )
    if stale > busy + beat:
        return []
    return [
        f"DJAP['STALE_AFTER'] ({stale!r}) must be greater than DJAP['SQLITE_BUSY_TIMEOUT'] "
        f"({busy!r}) plus DJAP['HEARTBEAT_INTERVAL'] ({beat!r}) on SQLite: a heartbeat "
        "waiting for the lock would make a live worker look dead and its jobs run twice; "
        f"lower SQLITE_BUSY_TIMEOUT (e.g. {max(0.0, stale - 2 * beat):g}) or raise STALE_AFTER"
    ]


def _check_value(key: str, value: Any) -> str | None:
    types, minimum, nullable = RULES.get(key, ((object,), None, True))
    if value is None:
        return None if nullable else f"DJAP[{key!r}] may not be None"
    if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
        names = " or ".join(t.__name__ for t in types)
        return f"DJAP[{key!r}] must be {names}, not {type(value).__name__} ({value!r})"
    if minimum is not None and cast(float, value) < minimum:
        return f"DJAP[{key!r}] must be at least {minimum}, not {value!r}"
    return None
