"""The shipped "Email bounced" rule scores hard bounces only: a soft bounce (a full mailbox, a
server busy) says nothing about the person's interest. Only a rule still exactly as scoring
0014 shipped it changes; an edited one is the team's."""

from django.db import migrations


def hard_bounces_only(apps, schema_editor):
    ScoreRule = apps.get_model("scoring", "ScoreRule")
    ScoreRule.objects.filter(
        name="Email bounced", event_type="email_bounced", points=-15, max_times=1,
        property_name="", content_tag="", url_contains="", url_pattern="",
        count_at_least__isnull=True, fade_full_days__isnull=True,
    ).update(property_name="kind", property_operator="eq", property_value="hard")  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [("scoring", "0015_suggestion_fit")]

    operations = [migrations.RunPython(hard_bounces_only, migrations.RunPython.noop)]
