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
        from . import (
            checks,  # noqa: F401  (registers the system checks)
            inline,
            inline_runner,
        )

        # Enqueueing (jobs.py) turns inline mode on; running the jobs needs the pipelines,
        # which import jobs.py: the runner is handed over here instead of imported there.
        inline.set_runner(inline_runner.run)

        autodiscover_modules("jobs")
        autodiscover_modules("pipelines")
        if _uses_djap_tasks_backend():
            # Django tasks run on djap workers only if the worker defined them too.
            autodiscover_modules("tasks")


def _uses_djap_tasks_backend() -> bool:
    from django.conf import settings

    backends = getattr(settings, "TASKS", None) or {}
    return any(
        str(params.get("BACKEND", "")).startswith("djap_django.backend")
        for params in backends.values()
    )
