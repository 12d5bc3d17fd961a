"""djap: Django Async Job Pipelines.

`from djap import BaseJob, create_new, ...` works before Django is set up: the
names below are imported from djap_django on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BaseJob": "djap_django.jobs",
    "create_new": "djap_django.jobs",
    "acreate_new": "djap_django.jobs",
    "bulk_create_new": "djap_django.jobs",
    "abulk_create_new": "djap_django.jobs",
    "Pipeline": "djap_django.pipelines",
    "Join": "djap_django.pipelines",
    "retry_job": "djap_django.pipelines",
    "aretry_job": "djap_django.pipelines",
    "cancel_pipeline": "djap_django.pipelines",
    "acancel_pipeline": "djap_django.pipelines",
    "run_num_jobs": "djap_django.worker",
    "Retry": "djap_django.exceptions",
    "Snooze": "djap_django.exceptions",
    "cancel": "djap_django.control",
    "inline": "djap_django.inline",
    "acancel": "djap_django.control",
}

__all__ = [
    "BaseJob",
    "Join",
    "Pipeline",
    "Retry",
    "Snooze",
    "abulk_create_new",
    "acancel_pipeline",
    "acancel",
    "acreate_new",
    "aretry_job",
    "bulk_create_new",
    "cancel_pipeline",
    "cancel",
    "create_new",
    "inline",
    "retry_job",
    "run_num_jobs",
]

if TYPE_CHECKING:
    from djap_django.control import acancel, cancel
    from djap_django.exceptions import Retry, Snooze
    from djap_django.inline import inline
    from djap_django.jobs import (
        BaseJob,
        abulk_create_new,
        acreate_new,
        bulk_create_new,
        create_new,
    )
    from djap_django.pipelines import (
        Join,
        Pipeline,
        acancel_pipeline,
        aretry_job,
        cancel_pipeline,
        retry_job,
    )
    from djap_django.worker import run_num_jobs


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'djap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
