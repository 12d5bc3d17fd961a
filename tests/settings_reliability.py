"""tests.settings with the knobs the reliability tests turn, read from the environment."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DJAP

DJAP = {
    **DJAP,
    # DJAP_TEST_BUSY_TIMEOUT (tests.settings) tiny: SQLite lock contention then shows up
    # as "database is locked" errors.
    # Huge: on PostgreSQL only the NOTIFY can then deliver a cancel.
    "CANCEL_POLL_INTERVAL": float(os.environ.get("DJAP_TEST_CANCEL_POLL", "0.5")),
}
