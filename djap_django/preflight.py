"""Before a worker starts: can djap's tables be read? A one-line answer that names the fix."""

from __future__ import annotations


def database_problem(alias: str | None = None) -> str | None:
    """None when djap's tables can be read, else what is wrong and how to fix it."""
    from django.db import DatabaseError, ProgrammingError

    from . import conf
    from .models import WorkerDBModel

    alias = alias or conf.database_alias()
    try:
        WorkerDBModel.objects.using(alias).exists()
    except DatabaseError as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        # SQLite says "no such table"; PostgreSQL raises ProgrammingError (undefined table),
        # while a missing database or a refused connection is an OperationalError.
        if "no such table" in text or isinstance(exc, ProgrammingError):
            return (
                f"djap's tables are missing in database {alias!r} ({first}): "
                "run `python manage.py migrate`"
            )
        return (
            f"cannot use database {alias!r} ({first}): check DATABASES in your settings "
            "and that the database server is up"
        )
    return None
