"""tests.settings with Django's own PostgreSQL connection pool (OPTIONS "pool")."""

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES

#: Smaller than the lanes asked for: the worker must use no more lanes than the pool has.
POOL_MAX_SIZE = 3

DATABASES["default"]["OPTIONS"] = {
    **DATABASES["default"].get("OPTIONS", {}),
    "pool": {"min_size": 1, "max_size": POOL_MAX_SIZE, "timeout": 10},
}
