"""SQLite queries match the partial indexes whichever Django version rendered them."""

from __future__ import annotations

import sqlite3

import pytest

from djap_django.index_terms import NOT_SCHEDULED, SCHEDULED

# How Django 5.2 and Django 6 write Q(scheduled=False) / Q(scheduled=True) on SQLite.
RENDERINGS = [('NOT "scheduled"', '"scheduled"'), ('"scheduled" = 0', '"scheduled" = 1')]


@pytest.mark.parametrize(("not_scheduled", "scheduled"), RENDERINGS)
def test_the_sqlite_terms_use_both_renderings_of_the_partial_indexes(not_scheduled, scheduled):
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE djap_job (id integer PRIMARY KEY, name text, status text, "
        "scheduled bool, priority int, run_after text)"
    )
    db.execute(
        'CREATE INDEX djap_job_due ON djap_job ("priority" DESC, "id") '
        f"WHERE ({not_scheduled} AND \"status\" = 'new')"
    )
    db.execute(
        'CREATE INDEX djap_job_scheduled ON djap_job ("run_after") '
        f"WHERE ({scheduled} AND \"status\" = 'new')"
    )
    due = db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM djap_job INDEXED BY djap_job_due "
        f"WHERE status = 'new' AND {NOT_SCHEDULED['sqlite']} ORDER BY priority DESC, id LIMIT 5"
    ).fetchall()
    later = db.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM djap_job INDEXED BY djap_job_scheduled "
        f"WHERE {SCHEDULED['sqlite']} AND status = 'new' AND run_after <= '2026'"
    ).fetchall()
    assert "djap_job_due" in due[0][3]
    assert "djap_job_scheduled" in later[0][3]
