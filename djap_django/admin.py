"""The Django admin for djap: jobs, pipelines, workers and a queue overview page.

Everything goes through Django's permissions: viewing needs `view`, the retry and
cancel actions need `change`, and nobody adds or edits a row by hand (rows are
written by code and by workers; a hand edit could break a worker's guarantees).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import conf, overview
from .exceptions import DjapError
from .models import (
    JobDBModel,
    PeriodicScheduleDBModel,
    PipelineDBModel,
    QueueOverview,
    WorkerDBModel,
)
from .pipelines import cancel_pipeline, retry_job

Status = JobDBModel.Status


def pretty_json(value: Any) -> str:
    """JSON a person can read: indented, keys in order, non-ASCII kept as is."""
    if value is None:
        return "-"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="djap-json">{}</pre>', text)


def is_alive(worker: WorkerDBModel, now: dt.datetime | None = None) -> bool:
    """Running or draining, with a heartbeat newer than DJAP STALE_AFTER."""
    now = now or timezone.now()
    fresh = now - worker.last_heartbeat <= dt.timedelta(seconds=conf.get("STALE_AFTER"))
    return worker.state in ("running", "draining") and fresh


class ReadOnlyRowsMixin:
    """Rows are written by code and workers only; the admin shows and acts on them."""

    #: Set by the ModelAdmin this is mixed into.
    model: type[Model]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f.name for f in self.model._meta.fields]
        return fields + list(getattr(self, "readonly_extra", ()))


# -- jobs ------------------------------------------------------------------------------


def retry_jobs(rows: QuerySet[JobDBModel]) -> tuple[int, list[str]]:
    """Put failed or cancelled jobs back to `new`; returns (retried, why others were not)."""
    retried, problems = 0, []
    for row in rows.order_by("id"):
        if row.status not in (Status.FAILED, Status.CANCELLED):
            problems.append(f"job {row.pk} is {row.status}; only failed or cancelled jobs retry")
            continue
        # retry_job resumes the job's pipeline (and handles plain jobs too).
        try:
            retry_job(row.pk)
        except DjapError as exc:
            problems.append(str(exc))
            continue
        retried += 1
    return retried, problems


def cancel_jobs(rows: QuerySet[JobDBModel]) -> tuple[int, list[str]]:
    """Cancel waiting or running jobs; returns (cancelled, why others were not)."""
    from . import control

    cancelled, problems = 0, []
    for row in rows.order_by("id"):
        if row.pipeline_id is not None:
            problems.append(
                f"job {row.pk} is a step of pipeline {row.pipeline_id}; cancel the pipeline"
            )
            continue
        # control.cancel guards on the row's status, so a job finishing meanwhile is safe;
        # a running job is stopped by its worker within about a second.
        if control.cancel(row.pk):
            cancelled += 1
        else:
            problems.append(f"job {row.pk} is {row.status}; finished jobs cannot be cancelled")
    return cancelled, problems


def _report(admin_obj: Any, request: HttpRequest, verb: str, n: int, problems: list[str]) -> None:
    if n:
        admin_obj.message_user(request, f"{verb} {n} job{'s' if n != 1 else ''}.")
    for problem in problems[:20]:
        admin_obj.message_user(request, problem, level=messages.WARNING)
    if len(problems) > 20:
        admin_obj.message_user(request, f"... and {len(problems) - 20} more", messages.WARNING)


@admin.register(JobDBModel)
class JobAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "status",
        "attempts",
        "priority",
        "created_at",
        "started_at",
        "finished_at",
        "pipeline_link",
    ]
    list_filter = ["status", "name", "created_at", "finished_at"]
    search_fields = ["name", "error"]
    list_select_related = ["pipeline"]
    ordering = ["-id"]
    # COUNT(*) over a queue table of millions is slow; "show all" still works.
    show_full_result_count = False
    list_per_page = 50
    actions = ["retry", "cancel"]
    readonly_extra = ["inputs_pretty", "outputs_pretty", "error_pre", "errors_pretty"]
    fieldsets = [
        (None, {"fields": ["name", "status", "pipeline", "pipeline_step"]}),
        ("Data", {"fields": ["inputs_pretty", "outputs_pretty"]}),
        ("Error", {"fields": ["error_pre", "errors_pretty"]}),
        (
            "Schedule",
            {
                "fields": [
                    "priority",
                    "run_after",
                    "attempts",
                    "max_attempts",
                    "crashes",
                    "timeout",
                    "worker",
                    "created_at",
                    "started_at",
                    "finished_at",
                ]
            },
        ),
    ]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Name and error as usual; a number also finds the job with that id."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            results |= queryset.filter(pk=int(term))
        return results, may_have_duplicates

    @admin.display(description="pipeline", ordering="pipeline_id")
    def pipeline_link(self, obj: JobDBModel) -> str:
        if obj.pipeline_id is None:
            return "-"
        url = reverse("admin:djap_django_pipelinedbmodel_change", args=[obj.pipeline_id])
        name = obj.pipeline.name if obj.pipeline is not None else "?"
        return format_html('<a href="{}">{} #{}</a>', url, name, obj.pipeline_id)

    @admin.display(description="inputs")
    def inputs_pretty(self, obj: JobDBModel) -> str:
        return pretty_json(obj.inputs)

    @admin.display(description="outputs")
    def outputs_pretty(self, obj: JobDBModel) -> str:
        return pretty_json(obj.outputs)

    @admin.display(description="error (traceback)")
    def error_pre(self, obj: JobDBModel) -> str:
        if not obj.error:
            return "-"
        return format_html('<pre class="djap-traceback">{}</pre>', obj.error)

    @admin.display(description="earlier errors")
    def errors_pretty(self, obj: JobDBModel) -> str:
        return pretty_json(getattr(obj, "errors", None) or None)

    @admin.action(description="Retry selected failed or cancelled jobs", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        n, problems = retry_jobs(queryset)
        _report(self, request, "Retried", n, problems)

    @admin.action(description="Cancel selected jobs (waiting or running)", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        n, problems = cancel_jobs(queryset)
        _report(self, request, "Cancelled", n, problems)


# -- pipelines ---------------------------------------------------------------------------


class PipelineJobInline(admin.TabularInline):
    """A pipeline's jobs in step order; each links to its own page."""

    model = JobDBModel
    fk_name = "pipeline"
    fields = ("pipeline_step", "name", "status", "attempts", "started_at", "finished_at")
    readonly_fields = fields
    ordering = ["pipeline_step", "id"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PipelineDBModel)
class PipelineAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = ["id", "name", "status", "created_at", "finished_at"]
    list_filter = ["status", "name", "created_at"]
    search_fields = ["name"]
    ordering = ["-id"]
    show_full_result_count = False
    inlines = [PipelineJobInline]
    actions = ["cancel_pipelines"]

    @admin.action(
        description="Cancel the waiting steps of selected pipelines", permissions=["change"]
    )
    def cancel_pipelines(self, request: HttpRequest, queryset: QuerySet) -> None:
        steps = sum(cancel_pipeline(p.pk) for p in queryset.order_by("id"))
        self.message_user(request, f"Cancelled {steps} waiting steps.")


# -- workers -----------------------------------------------------------------------------


@admin.register(WorkerDBModel)
class WorkerAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "host",
        "pid",
        "group",
        "state",
        "alive",
        "last_heartbeat",
        "in_flight",
        "jobs_done",
        "jobs_failed",
        "started_at",
    ]
    list_filter = ["state", "group", "host"]
    search_fields = ["host", "=pid"]
    ordering = ["-last_heartbeat"]
    readonly_extra = ["alive"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(boolean=True, description="alive")
    def alive(self, obj: WorkerDBModel) -> bool:
        return is_alive(obj)


# -- periodic schedules ------------------------------------------------------------------


@admin.register(PeriodicScheduleDBModel)
class PeriodicScheduleAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    """Each periodic job's last and next run; the rows are kept by the workers."""

    list_display = ["name", "schedule", "last_run_at", "next_run_at", "last_job"]
    search_fields = ["name"]
    ordering = ["next_run_at"]
    readonly_extra = ["last_job"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="last job")
    def last_job(self, obj: PeriodicScheduleDBModel) -> str:
        if obj.last_job_id is None:
            return "-"
        url = reverse("admin:djap_django_jobdbmodel_change", args=[obj.last_job_id])
        return format_html('<a href="{}">{}</a>', url, obj.last_job_id)


# -- the queue overview ------------------------------------------------------------------


@admin.register(QueueOverview)
class QueueOverviewAdmin(admin.ModelAdmin):
    """Listed on the admin index like a model; its page is the overview, not a list."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and (
                user.has_perm("djap_django.view_queueoverview")
                or user.has_perm("djap_django.view_jobdbmodel")
            )
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        from django.core.exceptions import PermissionDenied

        if not self.has_view_permission(request):
            raise PermissionDenied
        snap = overview.snapshot()
        done, failed = snap.finished_last_hour
        context = {
            **self.admin_site.each_context(request),
            "title": "Queue overview",
            "opts": self.model._meta,
            "overview": snap,
            "statuses": overview.STATUSES,
            "chart": overview.throughput_svg(snap.throughput),
            "done_last_hour": done,
            "failed_last_hour": failed,
            "jobs_url": reverse("admin:djap_django_jobdbmodel_changelist"),
            "workers_url": reverse("admin:djap_django_workerdbmodel_changelist"),
        }
        return TemplateResponse(request, "admin/djap_django/queue_overview.html", context)
