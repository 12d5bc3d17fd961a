"""Turn a DATABASE_URL into a Django DATABASES entry (postgres://... or sqlite:///path)."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit


def database_from_url(url: str) -> dict[str, Any]:
    """`postgresql://user:pw@host:5432/name` or `sqlite:///abs/path.sqlite3`."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    if parts.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parts.path)}
    raise ValueError(f"unsupported database URL scheme {parts.scheme!r} in {url!r}")


#: SQLite options for a job queue: WAL lets readers run beside the writer, and
#: IMMEDIATE transactions take the write lock up front instead of failing mid-way.
SQLITE_QUEUE_OPTIONS: dict[str, Any] = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
