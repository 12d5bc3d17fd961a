from django.db import models


class Execution(models.Model):
    """One row per job execution: proves every job ran exactly once, and where."""

    key = models.IntegerField(db_index=True)
    pid = models.IntegerField()
    env = models.CharField(max_length=200, blank=True, default="")
