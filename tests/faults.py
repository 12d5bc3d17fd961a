"""Faults the database itself injects: triggers that refuse some writes to djap_job.

Real refusals from the real database (a PL/pgSQL or SQLite trigger raising), so the
code under test sees exactly the errors a constraint, a NUL byte or a bad trigger of
a project's own would give it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection

REFUSAL = "refused by the test trigger"


@contextlib.contextmanager
def refuse_finishing(job_ids: list[int], statuses: tuple[str, ...] = ("done",)) -> Iterator[None]:
    """While inside, the database refuses to move these jobs to any of `statuses`."""
    ids = ",".join(str(int(i)) for i in job_ids)
    wanted = ",".join(f"'{s}'" for s in statuses)
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(
                f"""CREATE OR REPLACE FUNCTION djap_test_refuse() RETURNS trigger AS $$
                    BEGIN
                      IF NEW.id IN ({ids}) AND NEW.status IN ({wanted}) THEN
                        RAISE EXCEPTION '{REFUSAL}';
                      END IF;
                      RETURN NEW;
                    END $$ LANGUAGE plpgsql"""
            )
            cur.execute(
                "CREATE TRIGGER djap_test_refuse BEFORE UPDATE ON djap_job "
                "FOR EACH ROW EXECUTE FUNCTION djap_test_refuse()"
            )
        else:
            cur.execute(
                f"""CREATE TRIGGER djap_test_refuse BEFORE UPDATE ON djap_job
                    WHEN NEW.id IN ({ids}) AND NEW.status IN ({wanted})
                    BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"""
            )
    try:
        yield
    finally:
        allow_again()


def allow_again() -> None:
    """Drop the refusing trigger (idempotent)."""
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("DROP TRIGGER IF EXISTS djap_test_refuse ON djap_job")
            cur.execute("DROP FUNCTION IF EXISTS djap_test_refuse()")
        else:
            cur.execute("DROP TRIGGER IF EXISTS djap_test_refuse")
