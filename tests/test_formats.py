"""One date format family per language across a contact's page (and the parts it loads), and
numbers grouped on list pages."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact
from nurturing import enrolment, scheduler
from scoring.decay import decay_apply
from tests.factories import ContactFactory
from tests.nurturing.helpers import email_step, sequence_with
from tests.utils import record

pytestmark = pytest.mark.django_db

FRENCH_MONTHS = (
    "janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre"
)
ENGLISH_MONTHS = r"Jan\.|Feb\.|March|April|May|June|July|Aug\.|Sept\.|Oct\.|Nov\.|Dec\."
NUMERIC_DATE = re.compile(r"\b\d{1,4}[/.-]\d{1,2}[/.-]\d{2,4}\b")
DATES = {
    "fr": re.compile(rf"\b\d{{1,2}} ({FRENCH_MONTHS}) \d{{4}}\b"),
    "en": re.compile(rf"\b({ENGLISH_MONTHS}) \d{{1,2}}, \d{{4}}\b"),
}


def visible(html: str) -> str:
    """The page as read: no tags, so no machine dates in attributes (datetime="…")."""
    return re.sub(r"<[^>]*>", " ", html)


def contact_page(client, contact: Contact, language: str) -> str:
    client.post(reverse("language-set"), {"language": language})
    return visible(
        "".join(
            client.get(reverse(name, args=[contact.pk])).content.decode()
            for name in ("contact-detail", "score-explanation", "nurturing-contact-enrollments")
        )
    )


def test_a_contact_page_shows_one_date_format_per_language(
    marketer_client, django_capture_on_commit_callbacks
):
    contact = ContactFactory(stage="lead", email="lou@exemple.fr")
    record(contact, "download", capture=django_capture_on_commit_callbacks)
    Contact.objects.filter(pk=contact.pk).update(
        last_activity_at=timezone.now() - timedelta(days=200)
    )
    decay_apply()  # a decay line: a date without time
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(sequence=sequence, contact_ids=[contact.pk])
    scheduler.enrollments_advance()  # an enrolment and an email: dates with times

    for language in ("fr", "en"):
        page = contact_page(marketer_client, contact, language)
        assert NUMERIC_DATE.findall(page) == [], language
        assert len(DATES[language].findall(page)) >= 6, language


def test_large_numbers_are_grouped_on_list_pages(marketer, sales_rep):
    Contact.objects.bulk_create(
        Contact(email=f"p{n}@exemple.fr", stage="sql", score=12345) for n in range(1234)
    )
    marketer_client, sales_client = Client(), Client()
    marketer_client.force_login(marketer)
    sales_client.force_login(sales_rep)

    contacts = marketer_client.get(reverse("contact-list")).content.decode()
    queue = sales_client.get(reverse("queue")).content.decode()

    assert (
        "1\xa0234 contacts" in contacts
        and '<td class="num" data-label="Score">12\xa0345</td>' in contacts
    )
    # The list's and the queue's cells carry their column name for the phone layout.
    assert "1\xa0234 SQL en attente" in queue
    assert '<td class="num" data-label="Score">12\xa0345</td>' in queue
