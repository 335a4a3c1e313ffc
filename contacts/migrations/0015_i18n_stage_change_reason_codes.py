"""Stage changes written before reasons were codes: the texts the application wrote itself (in
French or English) become the codes ``contacts.reasons`` translates for each reader. Words a
person typed, and anything not recognised, stay as they are (and are shown as they are)."""

import json
import re

from django.db import migrations

FIXED = {
    "Créé avec une adresse e-mail": "created_with_email",
    "Created with an email address": "created_with_email",
    "Adresse e-mail ajoutée": "email_added",
    "Email address added": "email_added",
    "Déplacé dans l’administration": "moved_in_admin",
    "Moved in admin": "moved_in_admin",
}
EVENT_TYPES = {
    "page_view", "form_submit", "download", "newsletter_subscribe", "newsletter_unsubscribe",
    "email_open", "email_click", "demo_request", "trial_started", "purchase", "referral",
    "review", "custom",
}  # fmt: skip
REASONS = [
    (re.compile(r"^(?:Importé depuis|Imported from) (?P<file>.+)$"), "imported_from"),
    (re.compile(r"^score (?P<score>-?\d+) ≥ (?P<min>-?\d+)$"), "score_reached"),
    (re.compile(r"^score (?P<score>-?\d+) < (?P<exit>-?\d+)$"), "score_below"),
    (re.compile(r"^“(?P<tag>.+)” content$"), "qualifying_content"),
]
THRESHOLD = re.compile(r"^(?:Threshold|Seuil) (?P<stage>MQL|HMQL|SQL|AMBASSADOR): (?P<rest>.+)$")
SEQUENCE = re.compile(r"^(?:Sequence “(?P<en>.+)”|Séquence « (?P<fr>.+) »)$")


def coded(code, **params):
    if not params:
        return code
    return code + json.dumps(params, ensure_ascii=False, separators=(",", ":"))


def reason_code(text):
    if text in FIXED:
        return FIXED[text]
    if text in EVENT_TYPES:
        return coded("qualifying_event", type=text)
    for pattern, code in REASONS:
        found = pattern.match(text)
        if found:
            params = found.groupdict()
            for name in ("score", "min", "exit"):
                if name in params:
                    params[name] = int(params[name])
            return coded(code, **params)
    return None


def actor_code(text):
    found = THRESHOLD.match(text)
    if found:
        score, events, tag = None, [], ""
        for part in found["rest"].split(" or "):
            if part.startswith("score ≥ ") and part[8:].lstrip("-").isdigit():
                score = int(part[8:])
            elif part.startswith("“") and part.endswith("” content"):
                tag = part[1:-9]
            else:
                events.append(part)
        stage = found["stage"].lower()
        return coded("threshold", stage=stage, score=score, events=events, tag=tag)
    found = SEQUENCE.match(text)
    if found:
        return coded("sequence", sequence=found["en"] or found["fr"])
    return None


def to_codes(apps, schema_editor):
    StageChange = apps.get_model("contacts", "StageChange")
    # One UPDATE per distinct text: a few hundred at most (score pairs, file names).
    for field, convert in (("reason", reason_code), ("actor_name", actor_code)):
        values = (
            StageChange.objects.exclude(**{field: ""})
            .order_by()
            .values_list(field, flat=True)
            .distinct()
        )
        for text in list(values.iterator()):
            code = convert(text)
            if code is not None and code != text:
                StageChange.objects.filter(**{field: text}).update(**{field: code})


class Migration(migrations.Migration):
    dependencies = [
        ("contacts", "0014_redis_anonymous_views"),
    ]

    operations = [
        migrations.RunPython(to_codes, migrations.RunPython.noop, elidable=True),
    ]
