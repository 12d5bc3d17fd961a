"""Before starting: will the processes' database connections fit in the server?"""

from __future__ import annotations

import logging
import sys

from .options import SuperviseOptions

logger = logging.getLogger("djap.supervisor")


def planned_connections(options: SuperviseOptions) -> tuple[int, str]:
    """Connections the supervised processes may open at most, and how that adds up."""
    from djap_django import conf
    from djap_django.budget import worker_budget

    alias = options.alias or conf.database_alias()
    procs = sum(g.procs for g in options.groups)
    concurrency = options.concurrency or conf.get("CONCURRENCY")
    budget = worker_budget(alias, options.lanes or conf.get("DB_LANES"), concurrency)
    return procs * budget.total, f"{procs} x {budget.describe()}"


def warn_if_over_connection_budget(options: SuperviseOptions) -> None:
    """Say so before starting more connections than the server allows (PostgreSQL)."""
    from djap_django import conf
    from djap_django.budget import over_budget_warning, server_room

    planned, how = planned_connections(options)
    room = server_room(options.alias or conf.database_alias())
    warning = over_budget_warning(planned, room, "its workers", how)
    if warning:
        print(f"djap supervise: warning: {warning}", file=sys.stderr)
    else:
        logger.info("connections: %s", how)
