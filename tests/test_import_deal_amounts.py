"""An imported won/lost column may come with the deal's amount ("Montant", "Amount") and
currency ("Devise"): kept for won rows, read as files write them, a bad one refused per row."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contacts.imports.meaning import BadValue, money
from contacts.models import ContactOutcome, ImportRowError
from tests.test_import_meaning import mapping_page, media, start, upload  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("_case", "written", "amount"),
    [("French", "1 234,50", "1234.50"), ("French, no-break space", "12\u00a0000", "12000.00"),
     ("plain", "990", "990.00"), ("English", "1,234.50", "1234.50"),
     ("German", "1.234,50", "1234.50"), ("euro sign", "1 200 €", "1200.00"),
     ("French decimals", "99,9", "99.90"), ("English thousands", "1,234,567", "1234567.00")],
)  # fmt: skip
def test_amounts_are_read_as_files_write_them(_case, written, amount):
    assert money(written) == Decimal(amount)


@pytest.mark.parametrize("written", ["-5", "beaucoup", "", "1e400"])
def test_an_unreadable_amount_is_refused(written):
    with pytest.raises(BadValue):
        money(written)


def test_a_won_column_with_an_amount_and_a_currency_records_the_deal(
    marketer_client, django_capture_on_commit_callbacks
):
    content = (
        "Email;Converti;Montant;Devise\r\n"
        "a@example.fr;Gagné;4 800,00;EUR\r\n"
        "b@example.fr;Won;1200;usd\r\n"
        "c@example.fr;Perdu;300;EUR\r\n"
        "d@example.fr;Gagné;beaucoup;EUR\r\n"
    ).encode()
    job = upload(marketer_client, content)
    _page, data = mapping_page(marketer_client, job)
    assert [data[f"column_{i}"] for i in range(4)] == [
        "email", "outcome", "outcome_amount", "outcome_currency",
    ]  # fmt: skip

    start(marketer_client, job, django_capture_on_commit_callbacks, data)

    deals = {
        o.contact.email: (o.result, o.amount, o.currency)
        for o in ContactOutcome.objects.select_related("contact")
    }
    assert deals == {
        "a@example.fr": ("won", Decimal("4800.00"), "EUR"),
        "b@example.fr": ("won", Decimal("1200.00"), "USD"),
        "c@example.fr": ("lost", None, "EUR"),  # a lost deal has no amount
    }
    assert ImportRowError.objects.filter(job=job).count() == 1
