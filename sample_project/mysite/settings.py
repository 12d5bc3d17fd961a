"""Settings for djap's sample project: SQLite by default, DATABASE_URL for PostgreSQL."""

import os
from pathlib import Path

from djap_django.dburl import SQLITE_QUEUE_OPTIONS, database_from_url

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "sample-project-not-secret"
DEBUG = True
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "mysite.urls"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djap_django",
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
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
STATIC_URL = "static/"

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SAMPLE_SQLITE", str(BASE_DIR / "db.sqlite3")),
            # WAL + IMMEDIATE transactions: the way to run a queue on SQLite.
            "OPTIONS": dict(SQLITE_QUEUE_OPTIONS),
        }
    }

# Every key is optional; see docs/settings.md.
DJAP = {
    "CONCURRENCY": 200,
}
