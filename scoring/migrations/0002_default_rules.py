"""The classic defaults: what most teams start from, all editable in admin."""

from django.db import migrations

RULES = [
    # name, event type, points, extra conditions and caps
    ("Download", "download", 1, {}),
    ("Newsletter signup", "newsletter_subscribe", 5, {"max_times": 1}),
    ("Email opened", "email_open", 2, {"max_points": 10, "cap_period": "week"}),
    ("Email clicked", "email_click", 10, {"max_points": 30, "cap_period": "week"}),
    ("Pricing page", "page_view", 15, {"url_contains": "/pricing", "max_points": 15, "cap_period": "day"}),
    ("Demo request", "demo_request", 20, {}),
    ("Careers page", "page_view", -5, {"url_contains": "/careers", "max_points": 5, "cap_period": "month"}),
    ("Newsletter unsubscribe", "newsletter_unsubscribe", -5, {}),
]
THRESHOLDS = [
    {"stage": "mql", "min_score": 20, "exit_below": 10, "demote": True},
    {"stage": "hmql", "content_tag": "high-intent", "exit_below": 10, "demote": True},
    {"stage": "sql", "min_score": 60, "event_types": "demo_request"},
    {"stage": "ambassador", "event_types": "referral,review"},
]


def create_defaults(apps, schema_editor):
    ScoreRule = apps.get_model("scoring", "ScoreRule")
    DecayRule = apps.get_model("scoring", "DecayRule")
    Threshold = apps.get_model("scoring", "Threshold")
    for priority, (name, event_type, points, extra) in enumerate(RULES, start=1):
        ScoreRule.objects.get_or_create(
            name=name,
            defaults={"event_type": event_type, "points": points, "priority": priority * 10, **extra},
        )
    DecayRule.objects.get_or_create(
        name="90 days without activity", defaults={"inactive_days": 90, "points": -10}
    )
    for threshold in THRESHOLDS:
        Threshold.objects.get_or_create(stage=threshold["stage"], defaults=threshold)


class Migration(migrations.Migration):
    dependencies = [("scoring", "0001_initial")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
