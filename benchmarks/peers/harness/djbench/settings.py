"""Django settings shared by the Django peers (djap, django-tasks, django-q2, Celery's ORM job).

BENCH_DJ_APP = djap | tasks | q2 | celery ; BENCH_DJ_DB = pg | sqlite. Every peer gets the
same database settings: persistent connections (CONN_MAX_AGE=None), as a worker runs in
production, and on SQLite the WAL and IMMEDIATE transactions Django documents.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import common

APP = os.environ.get("BENCH_DJ_APP", "tasks")
DBKIND = os.environ.get("BENCH_DJ_DB", "pg")
SECRET_KEY = "bench-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "djbench"]

if DBKIND == "pg":
    _server = urlsplit(common.PG_URL)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": common.db_name(os.environ.get("BENCH_DJ_DBNAME", "dj")),
            "USER": _server.username or "postgres",
            "PASSWORD": _server.password or "",
            "HOST": _server.hostname or "127.0.0.1",
            "PORT": str(_server.port or 5432),
            "CONN_MAX_AGE": None,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("BENCH_DJ_SQLITE", str(common.WORK / "dj.sqlite3")),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

if APP == "djap":
    INSTALLED_APPS += ["djap_django"]
elif APP == "tasks":
    INSTALLED_APPS += ["django_tasks", "django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}}
elif APP == "q2":
    INSTALLED_APPS += ["django_q"]
    Q_CLUSTER = {
        "name": "bench",
        "orm": "default",
        "workers": int(os.environ.get("Q2_WORKERS", "2")),
        "bulk": int(os.environ.get("Q2_BULK", "1")),
        "poll": float(os.environ.get("Q2_POLL", "0.2")),
        "save_limit": 0,  # keep every success row so that they can be counted
        "timeout": 60,
        "retry": 120,
        "catch_up": False,
        "ack_failures": True,
        "max_attempts": 1,
        "log_level": "WARNING",
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"c": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["c"], "level": "WARNING"},
}
