"""Settings for djap's own test suite.

DJAP_TEST_DB=sqlite (default) or postgres; for postgres, DJAP_TEST_DATABASE_URL.
Worker subprocesses started by the tests get DJAP_TEST_DB_NAME so they open the
test database pytest-django created, not the base one.
"""

import os
import tempfile

from djap_django.dburl import SQLITE_QUEUE_OPTIONS, database_from_url

SECRET_KEY = "djap-tests-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "djap_django",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DB_KIND = os.environ.get("DJAP_TEST_DB", "sqlite")
TEST_DB_NAME = os.environ.get("DJAP_TEST_DB_NAME")

if DB_KIND == "postgres":
    url = os.environ.get("DJAP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    DATABASES = {"default": database_from_url(url)}
    # One test database per pytest process: several suites may share one server.
    DATABASES["default"]["TEST"] = {"NAME": f"djap_test_{os.getpid()}"}
    if TEST_DB_NAME:
        DATABASES["default"]["NAME"] = TEST_DB_NAME
else:
    sqlite_path = os.environ.get(
        "DJAP_TEST_SQLITE", os.path.join(tempfile.gettempdir(), f"djap-test-{os.getpid()}.sqlite3")
    )
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": TEST_DB_NAME or sqlite_path,
            "OPTIONS": dict(SQLITE_QUEUE_OPTIONS),
            # A file, not memory: worker processes must open the same database.
            "TEST": {"NAME": sqlite_path},
        }
    }

_HEARTBEAT = float(os.environ.get("DJAP_TEST_HEARTBEAT", "0.5"))
_STALE_AFTER = float(os.environ.get("DJAP_TEST_STALE_AFTER", "5"))
DJAP = {
    "HEARTBEAT_INTERVAL": _HEARTBEAT,
    "STALE_AFTER": _STALE_AFTER,
    "POLL_INTERVAL": 0.2,
    # A heartbeat waiting for SQLite's lock must not make a live worker look dead.
    "SQLITE_BUSY_TIMEOUT": float(
        os.environ.get("DJAP_TEST_BUSY_TIMEOUT", max(0.05, (_STALE_AFTER - _HEARTBEAT) / 2))
    ),
}

# Django's Tasks API served by djap (django.tasks on Django 6, the backport on 5.2).
TASKS = {
    "default": {
        "BACKEND": "djap_django.backend.DjapBackend",
        "QUEUES": ["default", "emails"],
    },
    # A second alias: its queue's jobs get three attempts.
    "retrying": {
        "BACKEND": "djap_django.backend.DjapBackend",
        "QUEUES": ["retries"],
        "OPTIONS": {"MAX_ATTEMPTS": 3},
    },
    # Sync tasks that hang: run on a database lane, never holding the exit past --grace.
    "hanging": {
        "BACKEND": "djap_django.backend.DjapBackend",
        "QUEUES": ["hanging"],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"djap": {"handlers": ["stderr"], "level": "INFO"}},
}
