"""The ORM job's table, the same shape as `djap bench --job orm`'s djap_bench_row."""

from __future__ import annotations

from django.db import models


class BenchRow(models.Model):
    i = models.IntegerField()
    note = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)
