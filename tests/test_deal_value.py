"""What a won deal brought: the outcome form (amount required for won, typed in the rep's
locale, each outcome with its own fields), the service that stores it, the API that tells it,
and the rep's expected amount on an open deal."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.urls import reverse

from contacts.intake.capture import api_key_create
from contacts.models import Contact, ContactAudit, ContactOutcome, DealEstimate, Event
from contacts.sales.claims import contact_claim
from contacts.sales.outcomes import contact_outcome_record
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def my_lead(sales_rep):
    lead = ContactFactory(first_name="Élodie", last_name="Fournier", stage=Contact.Stage.SQL)
    contact_claim(contact_id=lead.pk, user=sales_rep)
    lead.refresh_from_db()
    return lead


def record(client, lead, **data):
    return client.post(reverse("queue-lead", args=[lead.pk]), data)


# --- The outcome form -------------------------------------------------------------------------


def test_won_without_an_amount_is_refused_with_the_error_on_the_amount(sales_client, my_lead):
    response = record(sales_client, my_lead, outcome="won")

    assert response.status_code == 400
    assert response.context["form"].errors["amount"] == ["Saisissez le montant gagné (0 si rien)."]
    assert 'id="id_amount"' in response.content.decode()
    assert Contact.objects.get(pk=my_lead.pk).stage == Contact.Stage.SQL


@pytest.mark.parametrize(
    ("_case", "typed", "stored"),
    [
        ("French, space between thousands", "1 234,50", Decimal("1234.50")),
        ("French, no-break space", "12\u00a0000", Decimal("12000")),
        ("French, narrow no-break space", "2\u202f500,5", Decimal("2500.50")),
        ("plain", "990", Decimal("990")),
    ],
)
def test_a_french_amount_is_read_as_written(sales_client, my_lead, _case, typed, stored):
    response = record(sales_client, my_lead, outcome="won", amount=typed, currency="EUR",
                      product="Offre Pro annuelle")  # fmt: skip

    assert response.status_code == 302
    outcome = ContactOutcome.objects.get(contact=my_lead)
    assert (outcome.result, outcome.amount, outcome.currency, outcome.product) == (
        "won", stored, "EUR", "Offre Pro annuelle",
    )  # fmt: skip


def test_an_english_amount_with_a_comma_between_thousands(client, sales_rep, my_lead, settings):
    client.force_login(sales_rep)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"

    response = record(client, my_lead, outcome="won", amount="1,234.50", currency="USD")

    assert response.status_code == 302
    assert ContactOutcome.objects.get(contact=my_lead).amount == Decimal("1234.50")


@pytest.mark.parametrize(
    ("_case", "amount", "currency", "field"),
    [("negative", "-5", "EUR", "amount"), ("not a number", "beaucoup", "EUR", "amount"),
     ("unknown currency", "100", "XYZ", "currency")],
)  # fmt: skip
def test_a_bad_amount_or_currency_is_a_field_error(sales_client, my_lead, _case, amount,
                                                    currency, field):  # fmt: skip
    response = record(sales_client, my_lead, outcome="won", amount=amount, currency=currency)

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not ContactOutcome.objects.filter(contact=my_lead).exists()


def test_an_amount_sent_with_lost_is_ignored(sales_client, my_lead):
    response = record(sales_client, my_lead, outcome="lost", lost_reason="budget", amount="-3")

    assert response.status_code == 302
    outcome = ContactOutcome.objects.get(contact=my_lead)
    assert (outcome.result, outcome.amount, outcome.product) == ("lost", None, "")


def test_each_radio_has_its_own_label_and_each_field_its_label(sales_client, my_lead):
    html = sales_client.get(reverse("queue-lead", args=[my_lead.pk])).content.decode()

    for value, words in (("won", "Gagné\u00a0: devient client"), ("lost", "Perdu"),
                         ("recycled", "Retour au marketing (recyclage)")):  # fmt: skip
        radio_id = f"id_outcome_{['won', 'lost', 'recycled'].index(value)}"
        assert f'value="{value}"' in html
        assert f'<label class="choice" for="{radio_id}"><input type="radio"' in html
        assert f'id="{radio_id}"' in html and words in html
    for name in ("amount", "currency", "product", "lost_reason", "reason"):
        assert f'<label for="id_{name}">' in html
    # The site's currency is picked, and the amount is typed as a decimal on a phone.
    assert '<option value="EUR" selected>EUR</option>' in html
    assert 'inputmode="decimal"' in html


# --- The service ------------------------------------------------------------------------------


def test_the_service_stores_amount_currency_and_product_and_tells_the_purchase(sales_rep, my_lead):
    contact_outcome_record(
        contact=my_lead, user=sales_rep, outcome="won", amount=Decimal("4800.00"),
        currency="CHF", product="Plan Équipe",
    )  # fmt: skip

    outcome = ContactOutcome.objects.get(contact=my_lead)
    assert (outcome.amount, outcome.currency, outcome.product) == (
        Decimal("4800.00"), "CHF", "Plan Équipe",
    )  # fmt: skip
    purchase = my_lead.events.get(type=Event.Type.PURCHASE)
    assert purchase.properties["amount"] == "4800.00" and purchase.properties["currency"] == "CHF"


def test_without_a_currency_the_site_currency_holds(sales_rep, my_lead, settings):
    settings.DEFAULT_CURRENCY = "EUR"
    contact_outcome_record(contact=my_lead, user=sales_rep, outcome="won", amount=Decimal(10))

    assert ContactOutcome.objects.get(contact=my_lead).currency == "EUR"


def test_the_database_refuses_a_negative_amount_or_an_amount_on_a_lost_deal(my_lead):
    from django.db import transaction
    from django.utils import timezone

    for result, amount in (("won", Decimal(-1)), ("lost", Decimal(5))):
        with pytest.raises(IntegrityError), transaction.atomic():
            ContactOutcome.objects.create(
                contact=my_lead, result=result, at=timezone.now(), source="admin", amount=amount
            )


# --- The API ----------------------------------------------------------------------------------


@pytest.fixture
def key():
    return api_key_create(name="CRM")[1]


def api_post(client, path, body, key):
    return client.post(
        f"/api/v1/{path}", data=json.dumps(body), content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip


def test_the_api_records_a_won_deal_with_its_amount(client, key):
    lead = ContactFactory(stage=Contact.Stage.SQL)

    response = api_post(client, f"contacts/{lead.pk}/outcome",
                        {"result": "won", "amount": "15000.00", "currency": "usd",
                         "product": "Enterprise", "at": "2026-03-02T10:00:00+01:00"}, key)  # fmt: skip

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["result"], body["amount"], body["currency"], body["source"]) == (
        "won", "15000.00", "USD", "api",
    )  # fmt: skip
    outcome = ContactOutcome.objects.get(contact=lead)
    assert (outcome.amount, outcome.currency, outcome.product) == (
        Decimal("15000.00"), "USD", "Enterprise",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("_case", "body", "field"),
    [
        ("negative", {"result": "won", "amount": -10}, "amount"),
        ("unknown currency", {"result": "won", "amount": 10, "currency": "EUROS"}, "currency"),
        ("made-up code", {"result": "won", "amount": 10, "currency": "XYZ"}, "currency"),
        ("amount with lost", {"result": "lost", "amount": 10}, "amount"),
    ],
)
def test_the_api_answers_400_with_the_field_at_fault(client, key, _case, body, field):
    lead = ContactFactory(stage=Contact.Stage.SQL)

    response = api_post(client, f"contacts/{lead.pk}/outcome", body, key)

    assert response.status_code == 400
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]
    assert not ContactOutcome.objects.filter(contact=lead).exists()


def test_the_api_outcome_of_an_unknown_contact_is_a_404(client, key):
    assert api_post(client, "contacts/999999/outcome", {"result": "lost"}, key).status_code == 404


def test_a_lost_outcome_replacing_a_won_one_clears_the_amount(client, key):
    lead = ContactFactory(stage=Contact.Stage.CLIENT)
    api_post(client, f"contacts/{lead.pk}/outcome", {"result": "won", "amount": 50,
             "at": "2026-03-01T10:00:00Z"}, key)  # fmt: skip

    api_post(client, f"contacts/{lead.pk}/outcome", {"result": "lost",
             "at": "2026-03-05T10:00:00Z"}, key)  # fmt: skip

    outcome = ContactOutcome.objects.get(contact=lead)
    assert (outcome.result, outcome.amount) == ("lost", None)


# --- The rep's expected amount ----------------------------------------------------------------


def test_the_rep_sets_and_clears_the_expected_amount_of_their_lead(sales_client, my_lead):
    url = reverse("queue-lead-estimate", args=[my_lead.pk])

    response = sales_client.post(url, {"expected_amount": "8 000", "expected_currency": "EUR"})

    assert response.status_code == 302
    assert DealEstimate.objects.get(contact=my_lead).amount == Decimal(8000)
    page = sales_client.get(reverse("queue-lead", args=[my_lead.pk])).content.decode()
    assert "8\u00a0000,00 EUR" in page or "8 000,00 EUR" in page
    assert ContactAudit.objects.filter(contact=my_lead, action="estimated").count() == 1

    sales_client.post(url, {"expected_amount": "", "expected_currency": "EUR"})
    assert not DealEstimate.objects.filter(contact=my_lead).exists()


def test_a_negative_expected_amount_is_a_field_error(sales_client, my_lead):
    response = sales_client.post(
        reverse("queue-lead-estimate", args=[my_lead.pk]),
        {"expected_amount": "-1", "expected_currency": "EUR"},
    )

    assert response.status_code == 400
    assert "expected_amount" in response.context["estimate_form"].errors


def test_another_rep_cannot_estimate_my_lead(client, other_rep, my_lead):
    client.force_login(other_rep)

    response = client.post(reverse("queue-lead-estimate", args=[my_lead.pk]),
                           {"expected_amount": "10", "expected_currency": "EUR"})  # fmt: skip

    assert response.status_code == 404
    assert not DealEstimate.objects.exists()


# --- The demo ---------------------------------------------------------------------------------


def test_the_demo_shows_revenue_per_source_and_estimated_open_deals(settings, client):
    import io

    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("demo", stdout=io.StringIO(), contacts=300, events=6000)

    won = ContactOutcome.objects.filter(result="won")
    assert won.exists() and not won.filter(amount=None).exists()
    assert not ContactOutcome.objects.filter(result="lost").exclude(amount=None).exists()
    assert DealEstimate.objects.filter(contact__stage="sql").exists()
    from django.contrib.auth.models import User

    client.force_login(User.objects.get(username="claire"))  # the demo's marketer
    html = client.get(reverse("dashboard-sources") + "?from=2020-01-01").content.decode()
    total = html[html.index('<tr data-source="Total">') :]
    revenue = total[total.index('data-figure="revenue"') :].split(">", 1)[1].split("<", 1)[0]
    assert revenue != "—"


def test_an_admin_records_a_won_deal_with_its_amount(admin_client):
    contact = ContactFactory()
    data = {"contact": contact.pk, "result": "won", "at_0": "2026-11-02", "at_1": "10:30:00",
            "amount": "2500.00", "currency": "GBP", "product": "Pro"}  # fmt: skip

    response = admin_client.post(reverse("admin:contacts_contactoutcome_add"), data)

    assert response.status_code == 302
    outcome = ContactOutcome.objects.get(contact=contact)
    assert (outcome.amount, outcome.currency, outcome.source) == (Decimal(2500), "GBP", "admin")


def test_the_admin_refuses_an_amount_on_a_lost_deal(admin_client):
    contact = ContactFactory()
    data = {"contact": contact.pk, "result": "lost", "at_0": "2026-11-02", "at_1": "10:30:00",
            "amount": "100"}  # fmt: skip

    response = admin_client.post(reverse("admin:contacts_contactoutcome_add"), data)

    assert response.status_code == 200
    assert "Seule une affaire gagnée a un montant." in response.content.decode()
    assert not ContactOutcome.objects.filter(contact=contact).exists()
