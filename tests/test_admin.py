"""The admin, through Django's test Client: staff with permissions, staff without, non-staff."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import djap
from djap_django.admin import is_alive
from djap_django.models import JobDBModel, PipelineDBModel, WorkerDBModel
from djap_django.overview import snapshot, throughput_svg
from tests.testapp.jobs import JobWithInputsAndOutputs, JobWithSleep

JOBS = reverse("admin:djap_django_jobdbmodel_changelist")
OVERVIEW = reverse("admin:djap_django_queueoverview_changelist")


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client_() -> Client:
    return client_for(User.objects.create_superuser("root", "root@example.com", "pw"))


@pytest.fixture
def viewer_client() -> Client:
    """Staff with view permissions only: may look, may not act."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="djap_django", codename__startswith="view_"
        )
    )
    return client_for(user)


def failed_job(
    error: str = "Traceback (most recent call last):\n  boom <b>\nValueError: x",
) -> JobDBModel:
    return JobDBModel.objects.create(
        name="FailingJob", status="failed", error=error, attempts=1, finished_at=timezone.now()
    )


def test_changelist_filters_and_search(admin_client_):
    plain = djap.create_new(JobWithSleep)
    bad = failed_job()
    response = admin_client_.get(JOBS)
    assert response.status_code == 200
    assert f"/{plain.pk}/change/" in response.content.decode()
    # Filters: by status and by name.
    body = admin_client_.get(JOBS, {"status__exact": "failed"}).content.decode()
    assert f"/{bad.pk}/change/" in body and f"/{plain.pk}/change/" not in body
    body = admin_client_.get(JOBS, {"name": "JobWithSleep"}).content.decode()
    assert f"/{plain.pk}/change/" in body and f"/{bad.pk}/change/" not in body
    # Date filters exist for created and finished.
    body = admin_client_.get(JOBS).content.decode()
    assert "created_at__gte" in body and "finished_at__gte" in body
    # Search: by id, by name, by error text.
    body = admin_client_.get(JOBS, {"q": str(bad.pk)}).content.decode()
    assert f"/{bad.pk}/change/" in body and f"/{plain.pk}/change/" not in body
    body = admin_client_.get(JOBS, {"q": "ValueError"}).content.decode()
    assert f"/{bad.pk}/change/" in body and f"/{plain.pk}/change/" not in body


def test_job_page_shows_pretty_json_and_a_preformatted_traceback(admin_client_):
    row = djap.create_new(JobWithInputsAndOutputs.create({"id": 7}))
    JobDBModel.objects.filter(pk=row.pk).update(outputs={"id": 14, "note": "héllo"})
    body = admin_client_.get(reverse("admin:djap_django_jobdbmodel_change", args=[row.pk]))
    body = body.content.decode()
    assert '<pre class="djap-json">{\n  &quot;id&quot;: 7\n}</pre>' in body
    assert "&quot;note&quot;: &quot;héllo&quot;" in body
    bad = failed_job()
    body = admin_client_.get(reverse("admin:djap_django_jobdbmodel_change", args=[bad.pk]))
    body = body.content.decode()
    # Preformatted, and the job's own text escaped, never rendered as HTML.
    assert (
        '<pre class="djap-traceback">Traceback (most recent call last):\n  boom &lt;b&gt;' in body
    )


def test_retry_and_cancel_actions(admin_client_):
    bad = failed_job()
    waiting = djap.create_new(JobWithSleep)
    done = JobDBModel.objects.create(name="JobWithSleep", status="done")
    response = admin_client_.post(
        JOBS, {"action": "retry", "_selected_action": [bad.pk, done.pk]}, follow=True
    )
    assert response.status_code == 200
    bad.refresh_from_db()
    assert (bad.status, bad.attempts, bad.finished_at) == ("new", 0, None)
    done.refresh_from_db()
    assert done.status == "done"
    assert "only failed or cancelled" in response.content.decode()

    admin_client_.post(JOBS, {"action": "cancel", "_selected_action": [waiting.pk]})
    waiting.refresh_from_db()
    assert waiting.status == "cancelled" and waiting.finished_at is not None
    # A cancelled job can be retried, and then runs.
    admin_client_.post(JOBS, {"action": "retry", "_selected_action": [waiting.pk]})
    waiting.refresh_from_db()
    assert waiting.status == "new"


def test_cancel_stops_running_jobs_and_leaves_finished_ones(admin_client_):
    running = JobDBModel.objects.create(name="JobWithSleep", status="in_progress")
    done = JobDBModel.objects.create(name="JobWithSleep", status="done")
    response = admin_client_.post(
        JOBS, {"action": "cancel", "_selected_action": [running.pk, done.pk]}, follow=True
    )
    running.refresh_from_db()
    done.refresh_from_db()
    assert (running.status, done.status) == ("cancelled", "done")
    assert "finished jobs cannot be cancelled" in response.content.decode()


def test_view_only_staff_sees_but_cannot_act(viewer_client):
    bad = failed_job()
    response = viewer_client.get(JOBS)
    assert response.status_code == 200
    assert 'value="retry"' not in response.content.decode()
    viewer_client.post(JOBS, {"action": "retry", "_selected_action": [bad.pk]})
    bad.refresh_from_db()
    assert bad.status == "failed"
    assert viewer_client.get(OVERVIEW).status_code == 200


def test_staff_without_permissions_is_refused():
    client = client_for(User.objects.create_user("staff", password="pw", is_staff=True))
    assert client.get(JOBS).status_code == 403
    assert client.get(OVERVIEW).status_code == 403


def test_non_staff_are_sent_to_the_login_page():
    user = User.objects.create_user("someone", password="pw")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="djap_django"))
    client = client_for(user)
    for url in (JOBS, OVERVIEW, reverse("admin:djap_django_workerdbmodel_changelist")):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
    anonymous = Client().get(OVERVIEW)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]


def test_no_one_adds_or_edits_rows_by_hand(admin_client_):
    assert admin_client_.get(reverse("admin:djap_django_jobdbmodel_add")).status_code == 403
    row = djap.create_new(JobWithSleep)
    url = reverse("admin:djap_django_jobdbmodel_change", args=[row.pk])
    admin_client_.post(url, {"name": "Hacked", "status": "done"})
    row.refresh_from_db()
    assert (row.name, row.status) == ("JobWithSleep", "new")


def test_pipeline_page_lists_its_jobs_in_step_order(admin_client_):
    pipeline = PipelineDBModel.objects.create(name="Etl")
    # Created out of order on purpose.
    JobDBModel.objects.create(
        name="StepThree", status="not_ready", pipeline=pipeline, pipeline_step=2
    )
    JobDBModel.objects.create(name="StepOne", status="done", pipeline=pipeline, pipeline_step=0)
    JobDBModel.objects.create(
        name="StepTwo", status="in_progress", pipeline=pipeline, pipeline_step=1
    )
    url = reverse("admin:djap_django_pipelinedbmodel_change", args=[pipeline.pk])
    body = admin_client_.get(url).content.decode()
    positions = [body.index(name) for name in ("StepOne", "StepTwo", "StepThree")]
    assert positions == sorted(positions)
    assert "in_progress" in body and "not_ready" in body


def test_workers_are_read_only_and_show_alive(admin_client_):
    now = timezone.now()
    live = WorkerDBModel.objects.create(host="a", pid=1, started_at=now, last_heartbeat=now)
    stale = now - dt.timedelta(hours=1)
    dead = WorkerDBModel.objects.create(host="b", pid=2, started_at=stale, last_heartbeat=stale)
    assert is_alive(live) and not is_alive(dead)
    body = admin_client_.get(reverse("admin:djap_django_workerdbmodel_changelist"))
    body = body.content.decode()
    assert body.count('alt="True"') == 1 and body.count('alt="False"') == 1
    url = reverse("admin:djap_django_workerdbmodel_change", args=[live.pk])
    response = admin_client_.post(url, {"host": "changed", "pid": 9})
    live.refresh_from_db()
    assert live.host == "a" and response.status_code == 403


def test_overview_is_linked_from_the_index_and_counts(admin_client_):
    index = admin_client_.get(reverse("admin:index")).content.decode()
    assert OVERVIEW in index
    for _ in range(3):
        djap.create_new(JobWithSleep)
    failed_job()
    now = timezone.now()
    JobDBModel.objects.create(name="JobWithSleep", status="done", finished_at=now)
    response = admin_client_.get(OVERVIEW)
    assert response.status_code == 200
    body = response.content.decode()
    content = body.split('class="djap-overview"')[1]
    assert 'class="djap-throughput"' in content and "<script" not in content
    snap = snapshot()
    assert snap.counts == {"JobWithSleep": {"new": 3, "done": 1}, "FailingJob": {"failed": 1}}
    assert snap.finished_last_hour == (1, 1)
    assert '<strong id="djap-done-last-hour">1</strong>' in body


def test_throughput_chart_scales_bars_to_the_busiest_minute():
    start = timezone.now().replace(second=0, microsecond=0)
    minutes = [
        (start + dt.timedelta(minutes=i), d, f)
        for i, (d, f) in enumerate([(0, 0), (10, 0), (5, 5)])
    ]
    svg = throughput_svg(minutes, width=300, height=100)
    assert svg.count('class="done"') == 2 and svg.count('class="failed"') == 1
    # The 10-job minute is full height; the 5+5 minute stacks to full height too.
    assert 'y="0.0" width="99.0" height="100.0" fill="#3c9d5d"' in svg
    assert 'height="50.0" fill="#c0392b"' in svg
    assert "peak 10/min" in svg


def test_retry_action_on_a_failed_step_resumes_its_pipeline(admin_client_, monkeypatch):
    import asyncio

    from tests.testapp.jobs import CountChars, FailWhenTold
    from tests.testapp.pipelines import FailInTheMiddle

    monkeypatch.setattr(FailWhenTold, "failing", True)
    pipeline = FailInTheMiddle.trigger(CountChars.Inputs(text="abcd"))
    asyncio.run(djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=2))
    pipeline.refresh_from_db()
    assert pipeline.status == "failed"
    middle = pipeline.jobs.get(name="FailWhenTold")

    monkeypatch.setattr(FailWhenTold, "failing", False)
    admin_client_.post(JOBS, {"action": "retry", "_selected_action": [middle.pk]})
    pipeline.refresh_from_db()
    assert pipeline.status == "running"
    asyncio.run(djap.run_num_jobs(max_num_workers=4, timeout=30, num_jobs=2))
    pipeline.refresh_from_db()
    assert pipeline.status == "done"


def test_periodic_schedules_show_last_and_next_run(admin_client_):
    from djap_django.models import PeriodicScheduleDBModel

    job = djap.create_new(JobWithSleep)
    now = timezone.now()
    PeriodicScheduleDBModel.objects.create(
        name="JobWithSleep",
        schedule="every 60s",
        next_run_at=now + dt.timedelta(seconds=60),
        last_run_at=now,
        last_job_id=job.pk,
    )
    body = admin_client_.get(reverse("admin:djap_django_periodicscheduledbmodel_changelist"))
    text = body.content.decode()
    assert body.status_code == 200 and "every 60s" in text
    assert reverse("admin:djap_django_jobdbmodel_change", args=[job.pk]) in text
