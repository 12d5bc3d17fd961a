"""tests.settings with DATABASES['default'] through PgBouncer in transaction mode.

The test bed (tests/pgbouncer.py) starts PgBouncer in front of the test server and
passes its port; 'direct' is the same database without it, for LISTEN/NOTIFY.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, DJAP

DATABASES["direct"] = dict(DATABASES["default"])
DATABASES["default"] = {
    **DATABASES["default"],
    "HOST": "127.0.0.1",
    "PORT": os.environ["DJAP_TEST_PGBOUNCER_PORT"],
    # Django's advice for transaction pooling: no server-side cursors.
    "DISABLE_SERVER_SIDE_CURSORS": True,
}
DJAP = {
    **DJAP,
    "TRANSACTION_POOLER": True,
    "LISTEN_DATABASE": os.environ.get("DJAP_TEST_LISTEN_DATABASE") or None,
}
