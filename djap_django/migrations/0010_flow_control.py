# Flow control: unique jobs (a unique_key column and a partial unique index over the jobs
# that have not ended, built CONCURRENTLY on PostgreSQL) and the periodic schedules table.
# The column is nullable without a default, so adding it rewrites no rows.

from django.db import migrations, models

from djap_django.migration_operations import AddConstraintWithoutLocking


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ('djap_django', '0009_job_claims'),
    ]

    operations = [
        migrations.CreateModel(
            name='PeriodicScheduleDBModel',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200, unique=True)),
                ('schedule', models.CharField(max_length=200)),
                ('next_run_at', models.DateTimeField()),
                ('last_run_at', models.DateTimeField(blank=True, null=True)),
                ('last_job_id', models.BigIntegerField(blank=True, null=True)),
            ],
            options={
                'verbose_name': 'periodic schedule',
                'db_table': 'djap_periodic',
            },
        ),
        migrations.AddField(
            model_name='jobdbmodel',
            name='unique_key',
            field=models.CharField(blank=True, max_length=200, null=True),
        ),
        AddConstraintWithoutLocking(
            model_name='jobdbmodel',
            constraint=models.UniqueConstraint(condition=models.Q(('unique_key__isnull', False), models.Q(('status__in', ('done', 'failed', 'cancelled')), _negated=True)), fields=('name', 'unique_key'), name='djap_job_unique'),
        ),
    ]
