"""In a real Chromium: the import's mapping step lists the lead sources no source matches,
and the marketer (allowed to add sources) ticks the box to create them; the CRM's rows without
email are proposed as leads. At phone width the list fits the screen."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from playwright.sync_api import expect

from contacts.imports.jobs import contacts_import
from contacts.models import Contact, ImportJob, ImportPlaceholder, LeadSource
from contacts.models.imports import DEFAULT_PLACEHOLDERS
from tests.browser_pages import PHONE, visitor
from tests.factories import LeadSourceFactory, UserFactory
from tests.test_import_meaning import CRM_EXPORT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_unknown_sources_are_listed_and_created_on_confirmation(
    live_server, chromium, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path
    # A transactional test may run after another one emptied the tables the migrations filled.
    ImportPlaceholder.objects.bulk_create(
        [ImportPlaceholder(value=value) for value in DEFAULT_PLACEHOLDERS], ignore_conflicts=True
    )
    claire = UserFactory(username="claire", roles=["marketing"])
    claire.user_permissions.add(Permission.objects.get(codename="add_leadsource"))
    LeadSourceFactory(name="Google", slug="google")
    csv_file = tmp_path / "crm-export.csv"
    csv_file.write_bytes(CRM_EXPORT)

    with visitor(chromium, live_server.url, "claire", viewport=PHONE) as marketer:
        page = marketer.open(reverse("contact-import"))
        page.locator("input[type=file]").set_input_files(str(csv_file))
        page.locator("form:has(input[type=file]) button[type=submit]").click()
        marketer.settle()

        unknown = page.locator("#unknown-sources")
        expect(unknown).to_contain_text("Olark Chat")
        expect(unknown).to_contain_text("Direct Traffic")
        expect(unknown).not_to_contain_text("Select")
        expect(page.locator("#id_rows_are_leads")).to_be_checked()
        create = page.locator("#id_create_sources")
        expect(create).not_to_be_checked()
        page.locator("label", has=create).click()  # the label ticks it
        expect(create).to_be_checked()
        # The list and its box fit the phone's width (the mapping table scrolls on its own).
        fits = "box => box.scrollWidth <= box.clientWidth && box.getBoundingClientRect().right <= innerWidth"
        assert unknown.evaluate(fits)
        page.locator("form:has(#id_create_sources) button.primary").click()
        marketer.settle()

    job = ImportJob.objects.get()
    if job.status == ImportJob.Status.QUEUED:  # no worker in tests: run the task's service
        contacts_import(job=job)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE, job.error
    assert set(LeadSource.objects.values_list("name", flat=True)) == {
        "Google", "Olark Chat", "Direct Traffic"
    }  # fmt: skip
    assert Contact.objects.filter(stage="lead").count() == 5
    assert Contact.objects.get(external_id="7927b2df-8bba").source.name == "Olark Chat"
