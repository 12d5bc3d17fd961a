"""Set Django up for a CLI command, the way django-admin does (--settings, --pythonpath)."""

from __future__ import annotations

import os
import sys

from .errors import CliError


def setup_django(settings: str | None = None, pythonpath: str | None = None) -> None:
    """Configure Django from --settings or DJANGO_SETTINGS_MODULE; errors name the fix."""
    if pythonpath:
        sys.path.insert(0, os.path.abspath(pythonpath))
    # Like `python manage.py`: the project in the current directory is importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        raise CliError(
            "no Django settings: pass --settings mysite.settings or set DJANGO_SETTINGS_MODULE"
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
