# Jobs waiting for a future run_after leave the claim path: a `scheduled` flag, set on
# them here in short batches, keeps them out of the claim's indexes until the stager
# clears it. Claims get a per-name index, and `djap status` one for blocked pipeline
# steps. Online on PostgreSQL: the column comes with a constant default (no table
# rewrite), indexes are built and dropped CONCURRENTLY, and the rows move in batches of
# short transactions, so workers and enqueues go on throughout. The old ready index goes
# last, once the new ones serve.

from typing import Any

from django.db import migrations, models

from djap_django.migration_operations import AddIndexWithoutLocking, RemoveIndexWithoutLocking

#: Ids per UPDATE of the data move: each batch is one short transaction.
BATCH_IDS = 10_000


def flag_scheduled_rows(apps: Any, schema_editor: Any) -> None:
    """Set `scheduled` on waiting jobs whose run_after is in the future, by id range."""
    from django.utils import timezone

    connection = schema_editor.connection
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id), max(id) FROM djap_job WHERE status = 'new'")
        low, high = cursor.fetchone()
        if low is None:
            return
        flag = "true" if connection.vendor == "postgresql" else "1"
        for start in range(low, high + 1, BATCH_IDS):
            cursor.execute(
                f"UPDATE djap_job SET scheduled = {flag} "
                "WHERE id >= %s AND id < %s AND status = 'new' AND run_after > %s",
                [start, start + BATCH_IDS, now],
            )


def keep_rows(apps: Any, schema_editor: Any) -> None:
    """Backwards nothing moves: the rows are `new` throughout, and the column goes next."""


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY and batches of their own transactions

    dependencies = [
        ('djap_django', '0007_worker_connections'),
    ]

    operations = [
        migrations.AddField(
            model_name='jobdbmodel',
            name='scheduled',
            field=models.BooleanField(db_default=False, default=False),
        ),
        AddIndexWithoutLocking(
            model_name='jobdbmodel',
            index=models.Index(condition=models.Q(('scheduled', False), ('status', 'new')), fields=['-priority', 'id'], name='djap_job_due'),
        ),
        AddIndexWithoutLocking(
            model_name='jobdbmodel',
            index=models.Index(condition=models.Q(('scheduled', False), ('status', 'new')), fields=['name', '-priority', 'id'], name='djap_job_due_name'),
        ),
        AddIndexWithoutLocking(
            model_name='jobdbmodel',
            index=models.Index(condition=models.Q(('scheduled', True), ('status', 'new')), fields=['run_after'], name='djap_job_scheduled'),
        ),
        AddIndexWithoutLocking(
            model_name='jobdbmodel',
            index=models.Index(condition=models.Q(('status', 'not_ready')), fields=['pipeline'], name='djap_job_blocked'),
        ),
        migrations.RunPython(flag_scheduled_rows, keep_rows, elidable=True),
        RemoveIndexWithoutLocking(
            model_name='jobdbmodel',
            name='djap_job_ready',
        ),
    ]
