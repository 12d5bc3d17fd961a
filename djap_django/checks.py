"""System checks: a wrong DJAP setting stops startup with a message naming the key.

The rules themselves are in validation.py, shared with conf.get's first read.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from . import validation
from .conf import DEFAULTS


@checks.register()
def check_djap_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    found = validation.problems(getattr(settings, "DJAP", None), DEFAULTS, settings.DATABASES)
    return [checks.Error(p.msg, hint=p.hint, id=p.id) for p in found]
