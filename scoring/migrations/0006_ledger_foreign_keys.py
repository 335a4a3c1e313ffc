"""The ledger's references are checked by the database again (0005 had dropped the checks).

Lines left behind while they were not checked are first treated as the ORM would have: a line
whose contact or event is gone goes (CASCADE), a line whose rule is gone keeps its points
without the rule (SET NULL).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Exists, OuterRef


def orphans_resolve(apps, schema_editor):
    ScoreEntry = apps.get_model("scoring", "ScoreEntry")
    Contact = apps.get_model("contacts", "Contact")
    Event = apps.get_model("contacts", "Event")
    ScoreRule = apps.get_model("scoring", "ScoreRule")
    ScoreEntry.objects.exclude(Exists(Contact.objects.filter(pk=OuterRef("contact_id")))).delete()
    ScoreEntry.objects.filter(event_id__isnull=False).exclude(
        Exists(Event.objects.filter(pk=OuterRef("event_id")))
    ).delete()
    ScoreEntry.objects.filter(rule_id__isnull=False).exclude(
        Exists(ScoreRule.objects.filter(pk=OuterRef("rule_id")))
    ).update(rule_id=None)


class Migration(migrations.Migration):

    dependencies = [
        ('scoring', '0005_ledger_without_database_checks'),
    ]

    operations = [
        migrations.RunPython(orphans_resolve, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='scoreentry',
            name='contact',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='score_entries', to='contacts.contact', verbose_name='contact'),
        ),
        migrations.AlterField(
            model_name='scoreentry',
            name='event',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, to='contacts.event', verbose_name='event'),
        ),
        migrations.AlterField(
            model_name='scoreentry',
            name='rule',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, to='scoring.scorerule', verbose_name='rule'),
        ),
    ]
