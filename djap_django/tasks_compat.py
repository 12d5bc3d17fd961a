"""Django's Tasks API from wherever this Django has it.

Django 6 ships `django.tasks`; on Django 5.2 the `django-tasks` backport provides
the same classes under `django_tasks`. Everything djap needs is imported here
once, so the backend reads the same on both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Type checkers read Django 6's API (django-stubs describes it); the backport has
    # the same classes, so code typed against one runs on the other.
    from django.tasks import (
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued
    from django.utils.json import normalize_json

    SOURCE = "django.tasks"
else:
    try:
        from django.tasks import (
            DEFAULT_TASK_QUEUE_NAME,
            Task,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            task_backends,
        )
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TaskError
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued
        from django.utils.json import normalize_json

        SOURCE = "django.tasks"
    except ImportError:  # Django 5.2: the backport
        try:
            from django_tasks import DEFAULT_TASK_QUEUE_NAME, task_backends
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import (
                Task,
                TaskContext,
                TaskError,
                TaskResult,
                TaskResultStatus,
            )
            from django_tasks.exceptions import InvalidTaskError as InvalidTask
            from django_tasks.exceptions import TaskResultDoesNotExist
            from django_tasks.signals import task_enqueued
            from django_tasks.utils import normalize_json
        except ImportError as exc:  # pragma: no cover - depends on what is installed
            raise ImportError(
                "djap_django.backend needs Django's Tasks API: Django >= 6.0, or on Django 5.2 "
                "`pip install django-tasks` (the backport)"
            ) from exc

        SOURCE = "django_tasks"


__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "SOURCE",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
]
