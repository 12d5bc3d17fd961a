"""Job classes by name. A row's `name` is looked up here and nowhere else.

A worker never imports a module because a row asked it to: names resolve only
to classes that the project's own code defined (usually in `<app>/jobs.py`).
"""

from __future__ import annotations

from typing import Any

from .exceptions import DuplicateJobNameError

#: BaseJob subclasses by class name. Typed loosely on purpose: jobs.py (BaseJob) imports
#: this module to register each class, so this one cannot import jobs.py back.
_jobs: dict[str, type[Any]] = {}


def register(job_cls: type[Any]) -> None:
    name = job_cls.__name__
    existing = _jobs.get(name)
    if existing is not None and existing.__module__ != job_cls.__module__:
        raise DuplicateJobNameError(
            f"Two jobs are named {name!r}: {existing.__module__}.{existing.__qualname__} and "
            f"{job_cls.__module__}.{job_cls.__qualname__}. A job's name is its class name; "
            "rename one of them."
        )
    # Same module again (a reload, or a test module imported twice): the newest wins.
    _jobs[name] = job_cls


def get(name: str) -> type[Any] | None:
    return _jobs.get(name)


def is_registered(job_cls: type[Any]) -> bool:
    """True if `job_cls` is the class its name resolves to (not shadowed, not abstract)."""
    return _jobs.get(job_cls.__name__) is job_cls


def names() -> list[str]:
    return sorted(_jobs)


def unknown_names(wanted: list[str] | None) -> list[str]:
    """The names in `wanted` that no registered job has (for warnings)."""
    return [n for n in wanted or [] if n not in _jobs]
