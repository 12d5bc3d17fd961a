#!/usr/bin/env python
"""manage.py for the Django peers' workers (db_worker, qcluster)."""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djbench.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
