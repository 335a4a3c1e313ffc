"""Pages show labels in the reader's language, never the codes the database keeps: channels,
event types, stages, who moved a contact."""

import re
from datetime import date

import pytest
from django.urls import reverse

from contacts.models import EventDailyCount
from contacts.pipeline import events_process
from contacts.stages import stage_move
from scoring.models import ScoreRule
from tests.factories import ContactFactory, EventFactory

pytestmark = pytest.mark.django_db

FEBRUARY = "?from=2026-02-01&to=2026-02-28"


def in_language(client, language: str, url: str, method: str = "get", data=None) -> str:
    client.post(reverse("language-set"), {"language": language})
    response = getattr(client, method)(url, data) if data else client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_touchpoint_channels_have_labels(marketer_client):
    for source, count in (("beacon", 1234), ("billing", 3), ("email", 2), ("crm-sync", 1)):
        EventDailyCount.objects.create(
            day=date(2026, 2, 3), type="page_view", source=source, count=count
        )
    url = reverse("dashboard-touchpoints") + FEBRUARY

    french = in_language(marketer_client, "fr", url)
    english = in_language(marketer_client, "en", url)

    channels = r'data-channel="[^"]*"><th scope="row">(.*?)</th>'
    assert re.findall(channels, french) == ["Site web (suivi)", "Facturation", "E-mail", "crm-sync"]
    assert re.findall(channels, english) == ["Website (tracking)", "Billing", "Email", "crm-sync"]
    assert 'data-channel="beacon"' in english  # the code stays for scripts, out of sight


def test_a_system_move_says_system_once(marketer_client):
    contact = ContactFactory(stage="lead")
    stage_move(contact=contact, to="mql", cause="system")
    url = reverse("contact-detail", args=[contact.pk])

    french = in_language(marketer_client, "fr", url)
    english = in_language(marketer_client, "en", url)

    assert 'data-testid="moved-by">Système</td>' in french
    assert 'data-testid="moved-by">System</td>' in english
    assert "System · System" not in english and "Système · Système" not in french


def test_the_rule_preview_names_stages_with_their_labels_and_the_readers_typography(
    admin_client,
):
    lead = ContactFactory(stage="lead", first_name="Océane", last_name="Petit")
    events_process(event_ids=[EventFactory(contact=lead, type="download", pending=True).pk])
    download = ScoreRule.objects.get(name="Download")
    data = {"name": "Download", "event_type": "download", "points": "25", "priority": "10",
            "active": "on", "cap_period": "", "_rule_id": download.pk}  # fmt: skip
    url = reverse("admin:scoring_scorerule_preview")

    french = in_language(admin_client, "fr", url, "post", data)
    english = in_language(admin_client, "en", url, "post", data)

    assert "1 contact would change stage" in english
    assert "Lead → MQL: 1" in english and "Lead → MQL\xa0: 1" in french
    assert "stage :" not in english and "LEAD" not in english and "LEAD" not in french
    assert "<td>MQL</td>" in english  # the stage after, by its label
