"""The app config: find every app's jobs.py and pipelines.py at startup, as admin.py is."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class DjapConfig(AppConfig):
    name = "djap_django"
    label = "djap_django"
    verbose_name = "djap job queue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        autodiscover_modules("jobs")
        autodiscover_modules("pipelines")
