"""Set Django up for a CLI command, the way django-admin does (--settings, --pythonpath)."""

from __future__ import annotations

import os
import re
import sys

from .errors import CliError

_MANAGE_PY_SETTINGS = re.compile(
    r"""setdefault\(\s*["']DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']"""
)


def settings_from_manage_py(folder: str = ".") -> str | None:
    """The settings module a project's manage.py names, as `python manage.py` would use."""
    path = os.path.join(folder, "manage.py")
    try:
        with open(path, encoding="utf-8") as f:
            match = _MANAGE_PY_SETTINGS.search(f.read())
    except OSError:
        return None
    return match.group(1) if match else None


def setup_django(
    settings: str | None = None, pythonpath: str | None = None, *, check_tables: bool = True
) -> None:
    """Configure Django from --settings or DJANGO_SETTINGS_MODULE; errors name the fix.

    With `check_tables`, also make sure djap's tables can be read, so a forgotten
    `migrate` or a database that is down is one line, not a traceback.
    """
    if pythonpath:
        sys.path.insert(0, os.path.abspath(pythonpath))
    # Like `python manage.py`: the project in the current directory is importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or settings_from_manage_py()
    if module:
        os.environ["DJANGO_SETTINGS_MODULE"] = module
    else:
        raise CliError(
            "no Django settings: pass --settings mysite.settings, set DJANGO_SETTINGS_MODULE, "
            "or run from the folder that holds manage.py"
        )
    import django
    from django.core import checks

    try:
        django.setup()
    except ModuleNotFoundError as exc:
        raise CliError(
            f"cannot import {exc.name!r} while loading settings {module!r}: "
            "run from your project folder or pass --pythonpath"
        ) from None
    errors = [m for m in checks.run_checks(tags=None) if m.is_serious()]
    djap_errors = [m for m in errors if str(m.id).startswith("djap.")]
    if djap_errors:
        raise CliError(
            "; ".join(f"{m.msg}" + (f" ({m.hint})" if m.hint else "") for m in djap_errors)
        )
    if check_tables:
        check_database()


def check_database(alias: str | None = None) -> None:
    """Fail with one line naming the fix when djap's tables cannot be read."""
    from djap_django.preflight import database_problem

    problem = database_problem(alias)
    if problem:
        raise CliError(problem)
