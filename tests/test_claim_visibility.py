"""A claim is committed when it returns, whatever else shares the claim connection.

Found by `djap bench`: a rescue ran BEGIN ... COMMIT on the connection the claim loop
uses, a claim slipped in between, and its rows stayed uncommitted while the jobs ran;
their completions then matched nothing and the rows stayed in_progress for good.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from django.db import connection

import djap
from djap_django.models import JobDBModel, WorkerDBModel
from djap_django.queue import WorkerInfo, open_queue
from tests.testapp.jobs import JobWithSleep

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the claim connection is PostgreSQL's"
)


async def test_claims_beside_a_rescue_are_visible_to_other_connections_at_once():
    from asgiref.sync import sync_to_async

    from djap_django.queue.postgres import connection_params

    await sync_to_async(djap.bulk_create_new)([JobWithSleep.create() for _ in range(200)])
    params = await sync_to_async(lambda: connection_params(connection))()
    queue = open_queue()
    await queue.connect()
    other = await psycopg.AsyncConnection.connect(**params, autocommit=True)
    try:
        me = await queue.worker_register(WorkerInfo(host="t", pid=1))
        dead = await queue.worker_register(WorkerInfo(host="t", pid=2))
        for n in range(20):
            # The dead worker holds a few jobs, so each rescue has work to do.
            await queue.jobs_claim(dead, 3, None, [])
            rescue = asyncio.create_task(queue.jobs_rescue_worker(dead, 100))
            for _ in range(n % 4):  # let the rescue get a statement or two ahead
                await asyncio.sleep(0)
            claimed = await queue.jobs_claim(me, 5, None, [])
            ids = [c.id for c in claimed]
            cur = await other.execute(
                "SELECT count(*) FROM djap_job WHERE id = ANY(%s) AND status = 'in_progress' "
                "AND worker_id = %s",
                (ids, me),
            )
            assert (await cur.fetchone())[0] == len(ids)
            await rescue
            await queue.worker_heartbeat(dead, done=0, failed=0, in_flight=0, state="running")
    finally:
        await other.close()
        await queue.close()
    assert await JobDBModel.objects.filter(status="in_progress", worker_id=me).acount() == 100
    assert await WorkerDBModel.objects.filter(pk=dead, state="running").aexists()
