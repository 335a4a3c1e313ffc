"""In a real Chromium: an admin asks for rules suggested from the team's outcomes, follows the
run, ticks two suggestions, previews them and adds them; the rules are then ordinary rules in
the admin's list."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from scoring.models import ScoreRule
from tests.browser_pages import visitor
from tests.factories import UserFactory
from tests.test_rule_suggestions import seeded_history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_adds_suggested_rules_after_previewing_them(live_server, chromium):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    seeded_history(400)
    before = ScoreRule.objects.count()

    with visitor(chromium, live_server.url, "root") as admin:
        page = admin.open(reverse("admin:scoring_suggestion_changelist"))
        page.get_by_role("button", name="Suggérer des règles d’après les issues").click()
        admin.settle()
        expect(page.locator('[data-status="done"]')).to_be_visible(timeout=30_000)
        expect(page.locator('[data-figure="auc-suggested"] strong')).to_have_text(
            re.compile(r"^0,\d{3}$")
        )
        rows = page.locator("#suggestions tbody tr")
        first, second = rows.nth(0), rows.nth(1)
        names = [first.locator("label").inner_text(), second.locator("label").inner_text()]
        first.get_by_role("checkbox").check()
        second.get_by_role("checkbox").check()

        page.get_by_role("button", name="Prévisualiser les règles cochées").click()
        admin.settle()
        expect(page.locator('#suggestion-preview [data-figure="changed"]')).to_be_visible()
        assert ScoreRule.objects.count() == before

        page.get_by_role("button", name="Ajouter les règles cochées").click()
        admin.settle()
        expect(page.locator(".messagelist")).to_contain_text("2 règles ont été ajoutées")
        expect(first.locator("[data-applied]")).to_be_visible()

        added = ScoreRule.objects.exclude(name__in=[]).order_by("-pk")[:2]
        assert sorted(rule.name for rule in added) == sorted(names)
        page = admin.open(reverse("admin:scoring_scorerule_changelist"))
        rules = page.locator("#result_list")  # not the filter's links, named after event types
        for name in names:
            expect(rules.get_by_role("link", name=name, exact=True)).to_be_visible()
