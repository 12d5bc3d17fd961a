# Partial indexes only: a new job is written to three indexes instead of five, and a
# claim or finish to two. New indexes are built before the old ones go, CONCURRENTLY on
# PostgreSQL (djap_django.migration_operations), so workers keep running meanwhile.

import django.db.models.deletion
from django.db import migrations, models

from djap_django.migration_operations import AddIndexWithoutLocking, RemoveIndexWithoutLocking


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('djap_django', '0005_lean_job_indexes'),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name='jobdbmodel',
            index=models.Index(condition=models.Q(('finished_at__isnull', False)), fields=['status', 'finished_at'], name='djap_job_finished'),
        ),
        AddIndexWithoutLocking(
            model_name='jobdbmodel',
            index=models.Index(condition=models.Q(('pipeline__isnull', False)), fields=['pipeline'], name='djap_job_pipeline'),
        ),
        RemoveIndexWithoutLocking(
            model_name='jobdbmodel',
            name='djap_job_status_finished',
        ),
        RemoveIndexWithoutLocking(
            model_name='jobdbmodel',
            name='djap_job_name',
        ),
        migrations.AlterField(
            model_name='jobdbmodel',
            name='pipeline',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='jobs', to='djap_django.pipelinedbmodel'),
        ),
    ]
