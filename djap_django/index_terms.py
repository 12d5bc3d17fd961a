"""The `scheduled` terms of the partial indexes, as SQL that matches them on every Django.

SQLite uses a partial index only for a query whose WHERE repeats each of the index's own
terms, and Django renders a boolean condition differently by version: 5.2 writes
`NOT "scheduled"` and `"scheduled"`, 6.x writes `"scheduled" = 0` and `"scheduled" = 1`.
A database keeps the form of the Django that migrated it, so SQLite queries name both
forms (they mean the same). PostgreSQL proves either form itself and has no `bool = int`.
"""

from __future__ import annotations

#: A job on the claim path (djap_job_due, djap_job_due_name), per database vendor.
NOT_SCHEDULED = {"postgresql": "NOT scheduled", "sqlite": "NOT scheduled AND scheduled = 0"}
#: A job waiting for its run_after (djap_job_scheduled), per database vendor.
SCHEDULED = {"postgresql": "scheduled", "sqlite": "scheduled AND scheduled = 1"}
