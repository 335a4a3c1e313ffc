"""Erasing a person also erases what reps wrote about them: the words of notes, calls and
emails (the activities stay counted), and their open next steps."""

from datetime import timedelta

import pytest
from django.utils import timezone

from contacts.models import Activity, FollowUp
from contacts.privacy import contact_erase
from contacts.sales.activities import activity_log
from contacts.sales.claims import contact_claim
from contacts.sales.follow_ups import follow_up_create
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_erasing_a_lead_clears_the_reps_words_about_them_and_their_next_steps():
    rep = UserFactory(username="hugo", roles=["sales"])
    lead = ContactFactory(first_name="Élodie", last_name="Fournier", stage="sql")
    contact_claim(contact_id=lead.pk, user=rep)
    activity_log(contact=lead, user=rep, kind="note", body="Élodie part en congé maternité")
    activity_log(
        contact=lead, user=rep, kind="call", call_outcome="reached", body="Rappeler Élodie"
    )
    follow_up_create(
        owner=rep, contact=lead, title="Rappeler Élodie Fournier",
        due_at=timezone.now() + timedelta(days=1),
    )  # fmt: skip

    assert contact_erase(contact=lead, actor=None)

    activities = Activity.objects.filter(contact=lead)
    assert sorted(activities.values_list("kind", flat=True)) == ["call", "note"]
    assert set(activities.values_list("body", flat=True)) == {""}
    assert activities.get(kind="call").call_outcome == "reached"  # still counted as a reached call
    assert not FollowUp.objects.filter(contact=lead).exists()
