"""Django's Tasks API served by djap: `@task` functions run on djap workers.

    TASKS = {"default": {"BACKEND": "djap_django.backend.DjapBackend"}}

Design:

- A task is enqueued as one djap job row named `task:<queue_name>`, so a worker
  includes or excludes a queue exactly as it does a job name
  (`djap work --include task:emails`). Each queue name gets its own small
  registered job class of that name; all of them run tasks the same way.
- The row's inputs are JSON: the task's module path, its args and kwargs, and the
  backend alias. A worker never imports that path: it looks it up in a registry
  that holds only the tasks this process defined (the `@task` decorator validates
  every task with its backend, and validation registers it). djap imports each
  installed app's `tasks.py` at startup, as it does `jobs.py`, so a worker knows
  the same tasks the web process does.
- The result id is the job row's id. Status, return value and errors are read back
  from the row; the return value is stored in the row's outputs.
- Enqueue is `create_new`: it joins the caller's open transaction.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any, ClassVar

from asgiref.sync import sync_to_async

from .exceptions import DjapError
from .jobs import BaseJob, create_new
from .tasks_compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)

logger = logging.getLogger("djap.tasks")

#: A task's job row is named this plus its queue name.
JOB_NAME_PREFIX = "task:"
#: Added to a failing task's exception as a note, so the row's traceback says which
#: exception class it was (Django's TaskError wants the class path).
EXCEPTION_NOTE = "djap-task-exception: "
#: Keys a backend's OPTIONS may hold: the job options of its queues' jobs.
OPTION_KEYS = {"MAX_ATTEMPTS": "max_attempts", "TIMEOUT": "timeout"}

#: Every task this process defined, by module path. Only these can run.
_tasks: dict[str, Task] = {}
#: The job class of each queue name.
_queue_jobs: dict[str, type[TaskJob]] = {}


class TaskCancelled(DjapError):
    """The task's job was cancelled before it ran (the admin, or `cancel()`)."""


def job_name(queue_name: str) -> str:
    """The djap job name a task on `queue_name` is stored under."""
    return f"{JOB_NAME_PREFIX}{queue_name}"


def registered_task(module_path: str) -> Task:
    """The task defined under `module_path` in this process, or a DjapError saying why not."""
    task = _tasks.get(module_path)
    if task is None:
        raise DjapError(
            f"No task {module_path!r} is defined in this process. djap runs only tasks whose "
            "module was imported at startup: put it in an installed app's tasks.py, or import "
            f"its module there. Defined tasks: {', '.join(sorted(_tasks)) or 'none'}"
        )
    return task


class TaskJob(BaseJob):
    """Runs one Django task; a subclass per queue name carries that queue's job name."""

    abstract = True

    @dataclasses.dataclass
    class Inputs:
        task: str
        args: list
        kwargs: dict
        backend: str = "default"

    @dataclasses.dataclass
    class Outputs:
        return_value: Any = None

    queue_name: ClassVar[str] = ""

    async def run(self) -> None:
        task = registered_task(self.inputs.task)
        args, kwargs = list(self.inputs.args), dict(self.inputs.kwargs)
        if task.takes_context:
            args.insert(0, TaskContext(task_result=self._running_result(task)))
        try:
            if inspect.iscoroutinefunction(task.func):
                value = await task.func(*args, **kwargs)
            else:
                # Thread-sensitive: in a worker, that is this job's own database lane
                # (djap_django.lanes), which tidies its connection after the job; never the
                # loop's default executor, whose stuck threads would hold the exit.
                value = await sync_to_async(task.func, thread_sensitive=True)(*args, **kwargs)
            value = normalize_json(value)
        except Exception as exc:
            kind = type(exc)
            exc.add_note(f"{EXCEPTION_NOTE}{kind.__module__}.{kind.__qualname__}")
            raise
        self.outputs = self.Outputs(return_value=value)

    def _running_result(self, task: Task) -> TaskResult:
        """What a `takes_context` task sees of itself while it runs."""
        return TaskResult(
            task=task.using(queue_name=type(self).queue_name, backend=self.inputs.backend),
            id=str(self.id),
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=self.inputs.args,
            kwargs=self.inputs.kwargs,
            backend=self.inputs.backend,
            errors=[],
            worker_ids=["djap"] * max(1, self.attempt),
        )


def queue_job(queue_name: str, options: dict[str, Any] | None = None) -> type[TaskJob]:
    """The registered job class for `queue_name`, made on first use."""
    job_cls = _queue_jobs.get(queue_name)
    if job_cls is None:
        name = job_name(queue_name)
        attrs: dict[str, Any] = {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"Runs Django tasks enqueued on queue {queue_name!r}.",
            "abstract": False,
            "queue_name": queue_name,
        }
        for key, attr in OPTION_KEYS.items():
            if options and key in options:
                attrs[attr] = options[key]
        # Defining the class registers it under its name, like any BaseJob.
        job_cls = type(name, (TaskJob,), attrs)
        _queue_jobs[queue_name] = job_cls
    return job_cls


_STATUS = {
    "not_ready": TaskResultStatus.READY,
    "new": TaskResultStatus.READY,
    "in_progress": TaskResultStatus.RUNNING,
    "done": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
    "cancelled": TaskResultStatus.FAILED,
}


def exception_class_path(error: str) -> str:
    """The exception class a stored error names (see EXCEPTION_NOTE), or djap's own."""
    for line in reversed(error.splitlines()):
        if line.startswith(EXCEPTION_NOTE):
            return line[len(EXCEPTION_NOTE) :].strip()
    if "(timeout)" in error:
        return "builtins.TimeoutError"
    return f"{DjapError.__module__}.{DjapError.__qualname__}"


class DjapBackend(BaseTaskBackend):
    """A Tasks API backend whose tasks are djap jobs: durable, retried, rescued."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        for queue_name in self.queues:
            queue_job(queue_name, self.options)

    def validate_task(self, task: Task) -> None:
        """Check the task, then remember it: only tasks defined in code may run."""
        super().validate_task(task)
        _tasks[task.module_path] = task
        queue_job(task.queue_name, self.options)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Write the task's job row, in the caller's transaction if one is open."""
        self.validate_task(task)
        try:
            args, kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        except (TypeError, ValueError) as exc:
            raise InvalidTask(
                f"{task.module_path}: arguments must be JSON values (str, int, float, bool, "
                f"None, list, dict): {exc}"
            ) from None
        job_cls = queue_job(task.queue_name, self.options)
        inputs = job_cls.Inputs(task=task.module_path, args=args, kwargs=kwargs, backend=self.alias)
        row = create_new(job_cls.create(inputs, priority=task.priority, run_after=task.run_after))
        logger.debug(
            "enqueued task %s as job %s %s",
            task.module_path,
            row.pk,
            row.name,
            extra={"job_id": row.pk, "job_name": row.name},
        )
        result = self._result(task, row)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's current state, read from its job row."""
        from . import conf
        from .models import JobDBModel

        try:
            pk = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(
                f"{result_id!r} is not a djap task result id (ids are job row ids)"
            ) from None
        row = (
            JobDBModel.objects.using(conf.database_alias())
            .filter(pk=pk, name__startswith=JOB_NAME_PREFIX)
            .first()
        )
        inputs = row.inputs if row is not None and isinstance(row.inputs, dict) else {}
        if row is None or inputs.get("backend", "default") != self.alias:
            raise TaskResultDoesNotExist(f"no task result {result_id!r} in backend {self.alias!r}")
        try:
            task = registered_task(inputs.get("task", ""))
        except DjapError as exc:
            raise TaskResultDoesNotExist(str(exc)) from None
        task = task.using(
            priority=row.priority,
            queue_name=row.name[len(JOB_NAME_PREFIX) :],
            run_after=row.run_after,
            backend=self.alias,
        )
        return self._result(task, row)

    def check(self, **kwargs: Any) -> list:
        from django.apps import apps
        from django.core import checks

        errors = []
        if not apps.is_installed("djap_django"):
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] uses DjapBackend but djap_django is not in "
                    "INSTALLED_APPS; add it.",
                    id="djap.E101",
                )
            )
        for key in sorted(set(self.options) - set(OPTION_KEYS)):
            errors.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS'] has an unknown key {key!r}; "
                    f"DjapBackend accepts {', '.join(sorted(OPTION_KEYS))}.",
                    id="djap.E102",
                )
            )
        return errors

    def _result(self, task: Task, row: Any) -> TaskResult:
        status = _STATUS[row.status]
        # One TaskError per failed attempt where the row keeps its history, else the last.
        texts = [e.get("error", "") for e in (getattr(row, "errors", None) or [])]
        texts = [t for t in texts if isinstance(t, str) and t] or ([row.error] if row.error else [])
        errors = [
            TaskError(exception_class_path=exception_class_path(text), traceback=text)
            for text in texts
        ]
        if not errors and row.status == "cancelled":
            path = f"{TaskCancelled.__module__}.{TaskCancelled.__qualname__}"
            errors.append(TaskError(exception_class_path=path, traceback="cancelled"))
        inputs = row.inputs or {}
        result: TaskResult[Any, Any] = TaskResult(
            task=task,
            id=str(row.pk),
            status=status,
            enqueued_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            last_attempted_at=row.started_at,
            args=inputs.get("args", []),
            kwargs=inputs.get("kwargs", {}),
            backend=self.alias,
            errors=errors,
            # djap keeps the attempt count, not which worker ran each attempt.
            worker_ids=["djap"] * row.attempts,
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", (row.outputs or {}).get("return_value"))
        return result
