"""A worker the supervisor thought was exiting, that beats again, is left alone.

A row says `dead` when some rescuer judged its worker silent; a worker that lives
takes its row back at its next heartbeat. The supervisor, which had read `dead` and
set a kill timer (a worker that said goodbye gets STOP_MARGIN_S to exit), must
clear it then, or the recovered worker is SIGKILLed seconds later.
"""

from __future__ import annotations

import os
import signal
import time

import djap
from djap.supervisor import STOP_MARGIN_S, TICK_S
from djap_django.models import WorkerDBModel
from tests.conftest import wait_until
from tests.testapp.jobs import SleepFor


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_worker_that_takes_its_dead_row_back_is_not_killed(procs):
    djap.create_new(SleepFor.create(SleepFor.Inputs(seconds=3600)))  # it has work it holds
    sup = procs.start("supervise", "--procs", "1", "--no-dashboard")
    worker = wait_until(
        lambda: WorkerDBModel.objects.filter(supervisor_pid=sup.pid, in_flight=1).first(),
        60,
        "a worker running the job",
    )
    # Stopped, the worker cannot take its row back until the supervisor has read `dead`.
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        WorkerDBModel.objects.filter(pk=worker.pk).update(state="dead")
        wait_until(lambda: "its row says dead" in procs.log(sup), 30, "the supervisor reads it")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    wait_until(
        lambda: WorkerDBModel.objects.filter(pk=worker.pk, state="running").exists(),
        30,
        "the worker's row says running again",
    )
    marked = time.monotonic()
    # Past the kill timer the supervisor set when it read `dead`: the worker lives on.
    wait_until(lambda: time.monotonic() - marked > STOP_MARGIN_S + 4 * TICK_S, 60)
    assert alive(worker.pid), procs.log(sup)
    assert WorkerDBModel.objects.filter(pk=worker.pk, state="running").exists()
    assert "is running again; not killed" in procs.log(sup)
