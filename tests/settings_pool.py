"""tests.settings with Django's own PostgreSQL connection pool (OPTIONS "pool")."""

import copy

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES as _BASE_DATABASES

#: Smaller than the lanes asked for: the worker must use no more lanes than the pool has.
POOL_MAX_SIZE = 3

# A copy: the test process imports this module for POOL_MAX_SIZE, and changing the base
# settings' own dict would put every later test of the run on the pool.
DATABASES = copy.deepcopy(_BASE_DATABASES)
DATABASES["default"]["OPTIONS"] = {
    **DATABASES["default"].get("OPTIONS", {}),
    "pool": {"min_size": 1, "max_size": POOL_MAX_SIZE, "timeout": 10},
}
