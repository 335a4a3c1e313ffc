"""Every contact a rep has won or lost gets its known outcome: the latest such move in its
stage history (a disqualified SQL counts as lost: it did not buy)."""

from django.db import migrations

BATCH = 2000
RESULTS = {"won": "won", "lost": "lost", "disqualified": "lost"}


def outcomes_from_stage_history(apps, schema_editor):
    StageChange = apps.get_model("contacts", "StageChange")
    ContactOutcome = apps.get_model("contacts", "ContactOutcome")
    latest = {}
    changes = (
        StageChange.objects.filter(outcome__in=list(RESULTS))
        .order_by("contact_id", "at", "id")
        .values_list("contact_id", "id", "outcome", "at")
    )
    for contact_id, change_id, outcome, at in changes.iterator(chunk_size=BATCH):
        latest[contact_id] = (change_id, RESULTS[outcome], at)
    known = set(ContactOutcome.objects.values_list("contact_id", flat=True))
    ContactOutcome.objects.bulk_create(
        [
            ContactOutcome(
                contact_id=contact_id, result=result, at=at, source="sales",
                stage_change_id=change_id, recorded_at=at,
            )  # fmt: skip
            for contact_id, (change_id, result, at) in latest.items()
            if contact_id not in known
        ],
        batch_size=BATCH,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0018_contact_outcome"),
    ]

    operations = [
        migrations.RunPython(outcomes_from_stage_history, migrations.RunPython.noop),
    ]
