"""The ORM job's body, for every Django peer: one insert, one query of QUERY_S on the server.

The same two statements as `djap bench --job orm` (djap_django/benchjobs.py, orm_body):
`BenchRow.objects.create(...)`, then the new row read back with `pg_sleep(QUERY_S)` in its
SELECT, so that the query holds its connection on the server as a real query would.
"""

from __future__ import annotations

from django.db import models
from django.db.models.expressions import RawSQL

import common
from djbench.models import BenchRow


def slow_query(pk: int, seconds: float) -> models.QuerySet:
    return (
        BenchRow.objects.filter(pk=pk)
        .annotate(slept=RawSQL("pg_sleep(%s)::text", (seconds,), output_field=models.TextField()))
        .values_list("i", "note", "slept")
    )


def orm_body(i: int, seconds: float = common.QUERY_S) -> None:
    row = BenchRow.objects.create(i=i, note=f"bench {i}")
    if len(list(slow_query(row.pk, seconds))) != 1:
        raise RuntimeError("the row just inserted was not found")


async def aorm_body(i: int, seconds: float = common.QUERY_S) -> None:
    """`orm_body` through Django's async ORM (acreate, async for)."""
    row = await BenchRow.objects.acreate(i=i, note=f"bench {i}")
    if len([r async for r in slow_query(row.pk, seconds)]) != 1:
        raise RuntimeError("the row just inserted was not found")
