"""Job counts per name and status that stay cheap on a table of millions of rows.

`djap status`, the live view, the metrics endpoint and the admin overview all
show how many jobs of each name are in each status. A GROUP BY over the table
costs in proportion to it (seconds for millions of rows), so here each status is
read through its own partial index and at most CAP rows of it are counted: exact
whenever a status has no more rows than that, which is every status of a healthy
queue but its backlog and its history. Past CAP the count is an estimate and
says so (`JobCounts.estimated`): on PostgreSQL the planner's row estimate for that
status, shared out among the names in proportion to the rows counted; on SQLite,
which keeps no statistics, the rows counted so far (a lower bound, shown as such).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .index_terms import NOT_SCHEDULED, SCHEDULED

#: Rows counted exactly per part of a status; past this the part is estimated.
CAP = 5_000

#: Each status as the parts that a partial index serves, with the index's own terms
#: (SQLite uses a partial index only for a query that repeats its WHERE terms).
_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "not_ready": (("djap_job_blocked", "status = 'not_ready'"),),
    "new": (
        ("djap_job_due_name", "{not_scheduled} AND status = 'new'"),
        ("djap_job_scheduled", "{scheduled} AND status = 'new'"),
    ),
    "in_progress": (("djap_job_running", "status = 'in_progress'"),),
    "done": (("djap_job_finished", "status = 'done' AND finished_at IS NOT NULL"),),
    "failed": (("djap_job_finished", "status = 'failed' AND finished_at IS NOT NULL"),),
    "cancelled": (("djap_job_finished", "status = 'cancelled' AND finished_at IS NOT NULL"),),
}
STATUSES = tuple(_PARTS)


@dataclass(frozen=True)
class JobCounts:
    """{name: {status: count}}, and the (name, status) pairs whose count is an estimate."""

    counts: dict[str, dict[str, int]]
    estimated: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    #: True where an estimate is a lower bound (SQLite), not a guess around the truth.
    lower_bounds: bool = False


def job_counts(alias: str, statuses: tuple[str, ...] = STATUSES) -> JobCounts:
    """Count jobs per name in `statuses`, reading at most CAP rows of each part."""
    from django.db import connections

    connection = connections[alias]
    postgres = connection.vendor == "postgresql"
    counts: dict[str, dict[str, int]] = {}
    estimated: set[tuple[str, str]] = set()
    with connection.cursor() as cursor:
        for status in statuses:
            for index, terms in _PARTS[status]:
                where = terms.format(
                    not_scheduled=NOT_SCHEDULED[connection.vendor],
                    scheduled=SCHEDULED[connection.vendor],
                )
                hint = "" if postgres else f" INDEXED BY {index}"
                cursor.execute(
                    f"SELECT name, count(*) FROM (SELECT name FROM djap_job{hint}"
                    f" WHERE {where} LIMIT {CAP + 1}) AS part GROUP BY name"
                )
                seen = dict(cursor.fetchall())
                total = sum(seen.values())
                if total > CAP:
                    if postgres:
                        guess = max(total, _planner_rows(cursor, where))
                        seen = {n: round(c * guess / total) for n, c in seen.items()}
                    estimated.update((name, status) for name in seen)
                for name, n in seen.items():
                    by_status = counts.setdefault(name, {})
                    by_status[status] = by_status.get(status, 0) + n
    return JobCounts(dict(sorted(counts.items())), frozenset(estimated), lower_bounds=not postgres)


def _planner_rows(cursor: Any, where: str) -> int:
    """PostgreSQL's estimate of the rows matching `where` (from its statistics)."""
    cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM djap_job WHERE {where}")
    plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        import json

        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def due_names(alias: str) -> list[str]:
    """The names that have jobs waiting and due: a skip scan of djap_job_due_name.

    One index descent per distinct name, however many jobs each has waiting.
    """
    from django.db import connections

    connection = connections[alias]
    hint = "" if connection.vendor == "postgresql" else " INDEXED BY djap_job_due_name"
    due = f"{NOT_SCHEDULED[connection.vendor]} AND status = 'new'"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH RECURSIVE n(name) AS (
                    SELECT (SELECT min(name) FROM djap_job{hint} WHERE {due})
                    UNION ALL
                    SELECT (SELECT min(name) FROM djap_job{hint} WHERE {due} AND name > n.name)
                    FROM n WHERE n.name IS NOT NULL)
                SELECT name FROM n WHERE name IS NOT NULL"""
        )
        return [r[0] for r in cursor.fetchall()]
