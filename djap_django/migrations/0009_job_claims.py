# The claim token: a counter each claim bumps. Adding a column with a constant default
# is a catalogue change on PostgreSQL 11+ (no table rewrite) and on SQLite, so workers
# keep running while it is applied; old workers simply never read or bump it.

from typing import Any

from django.db import migrations, models

#: How long the ALTER may wait for its lock (ms). Waiting longer would queue every claim
#: and finish behind it; failing instead lets the operator run `migrate` again.
LOCK_TIMEOUT_MS = 5000


def short_lock_wait(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")


class Migration(migrations.Migration):
    dependencies = [
        ("djap_django", "0008_scheduled_jobs"),
    ]

    operations = [
        migrations.RunPython(short_lock_wait, short_lock_wait, elidable=True),
        migrations.AddField(
            model_name="jobdbmodel",
            name="claims",
            field=models.IntegerField(db_default=0, default=0),
        ),
    ]
