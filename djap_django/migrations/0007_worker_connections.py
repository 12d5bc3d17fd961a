# Each worker row says how many database connections its process opens at most (djap
# status shows it). A column with a database default: adding it is instant on
# PostgreSQL 11+, and workers of the previous release keep inserting rows meanwhile.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('djap_django', '0006_partial_job_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='workerdbmodel',
            name='connections',
            field=models.IntegerField(db_default=0, default=0),
        ),
    ]
