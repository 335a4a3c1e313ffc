import django.db.models.deletion
from django.db import migrations, models


def drop_orphans(apps, schema_editor):
    """Queue rows whose event was deleted around the ORM while there was no constraint: the
    constraint could not be added over them (a one-time clean-up; none can appear after)."""
    Event = apps.get_model("contacts", "Event")
    PendingEvent = apps.get_model("contacts", "PendingEvent")
    PendingEvent.objects.exclude(event_id__in=Event.objects.values("pk")).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("contacts", "0017_contact_search_model"),
    ]

    operations = [
        migrations.RunPython(drop_orphans, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="pendingevent",
            name="event",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.CASCADE,
                primary_key=True,
                related_name="pending",
                serialize=False,
                to="contacts.event",
                verbose_name="event",
            ),
        ),
    ]
