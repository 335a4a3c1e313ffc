"""Recording what became of a contact (won or lost), whoever knows it: the sales queue, an
import, the API, an admin. One row per contact; the score-vs-outcome report reads them.

Policy: the latest outcome by date holds. An outcome dated before the one already known (an
old "Converted" column imported after the rep's verdict) changes nothing; one dated the same
or later replaces it, so a rep who wins back a lost lead, or a corrected import, is believed.

A won outcome may carry what the deal brought (amount, ISO 4217 currency, product or plan); a
lost one carries none, and replacing a won outcome by a lost one clears it."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from contacts.bulk import bulk_copy
from contacts.currencies import CURRENCY_CODES, default_currency
from contacts.models import Contact, ContactOutcome, StageChange
from contacts.webhooks.outbox import webhooks_outcome_recorded, webhooks_outcomes_recorded

Result = ContactOutcome.Result
Source = ContactOutcome.Source


@transaction.atomic
def outcome_record(
    *,
    contact: Contact,
    result: str,
    source: str,
    at: datetime | None = None,
    stage_change: StageChange | None = None,
    amount: Decimal | None = None,
    currency: str = "",
    product: str = "",
) -> ContactOutcome:
    """Record that ``contact`` was won or lost at ``at`` (now if not given), told by ``source``,
    with the won deal's ``amount`` in ``currency`` (the site's if not given) and ``product``;
    returns the contact's known outcome afterwards (the older one if this one predates it)."""
    currency = deal_check(result=result, amount=amount, currency=currency)
    if result not in Result.values:
        raise ValueError(f"unknown outcome {result!r}: one of {Result.values}")
    if source not in Source.values:
        raise ValueError(f"unknown outcome source {source!r}: one of {Source.values}")
    if at is not None and timezone.is_naive(at):
        raise ValueError("an outcome's date must be aware (it has no time zone)")
    at = at or timezone.now()
    known = ContactOutcome.objects.select_for_update().filter(contact=contact).first()
    if known is not None and known.at > at:
        return known
    outcome, _created = ContactOutcome.objects.update_or_create(
        contact=contact,
        defaults={
            "result": result,
            "at": at,
            "source": source,
            "stage_change": stage_change,
            "recorded_at": timezone.now(),
            "amount": amount if result == Result.WON else None,
            "currency": currency,
            "product": product.strip()[:200] if result == Result.WON else "",
        },
    )
    outcomes_follow_sources([contact.pk])
    webhooks_outcome_recorded(outcome)
    return outcome


# Contacts per statement: an import tells a hundred thousand at once.
SOURCE_CHUNK = 5000


def outcomes_follow_sources(contact_ids: Collection[int]) -> None:
    """Copy the contacts' source and first source to their outcomes (the sources panel's
    revenue reads them there): after an outcome is written, and when a contact's source
    changes (``contacts.reports.rollups.on_contacts_changed``)."""
    ids = list(contact_ids)
    for start in range(0, len(ids), SOURCE_CHUNK):
        contact = Contact.objects.filter(pk=OuterRef("contact_id"))
        ContactOutcome.objects.filter(contact_id__in=ids[start : start + SOURCE_CHUNK]).update(
            lead_source_id=Subquery(contact.values("source_id")[:1]),
            first_lead_source_id=Subquery(contact.values("first_source_id")[:1]),
        )


def deal_check(*, result: str, amount: Decimal | None, currency: str) -> str:
    """The deal's currency (the site's when none is given); refuses (ValueError: callers check
    their input first) an amount that is negative or given with another outcome than won."""
    currency = (currency or default_currency()).upper()
    if currency not in CURRENCY_CODES:
        raise ValueError(f"unknown currency {currency!r}: an ISO 4217 code")
    if amount is not None:
        if result != Result.WON:
            raise ValueError("only a won deal has an amount")
        if amount < 0:
            raise ValueError("a deal's amount cannot be negative")
    return currency


# How a stage change's outcome reads as a known outcome: a disqualified SQL did not buy.
RESULT_OF_STAGE_OUTCOME = {
    StageChange.Outcome.WON: Result.WON,
    StageChange.Outcome.LOST: Result.LOST,
    StageChange.Outcome.DISQUALIFIED: Result.LOST,
}


def outcomes_from_stage_changes(changes: Iterable[StageChange]) -> list[ContactOutcome]:
    """The known outcomes (unsaved) that saved stage changes give, the latest per contact: for
    bulk loads (the demo) that write the stage history without the sales service."""
    latest: dict[int, StageChange] = {}
    for change in sorted(changes, key=lambda change: (change.at, change.pk)):
        if change.outcome in RESULT_OF_STAGE_OUTCOME:
            latest[change.contact_id] = change
    return [
        ContactOutcome(
            contact_id=contact_id,
            result=RESULT_OF_STAGE_OUTCOME[change.outcome],
            at=change.at,
            source=Source.SALES,
            stage_change=change,
            recorded_at=change.at,
        )  # fmt: skip
        for contact_id, change in latest.items()
    ]


@transaction.atomic
def outcomes_record(
    *,
    outcomes: Iterable[tuple[int, str, datetime] | tuple[int, str, datetime, Decimal | None, str]],
    source: str,
    created: Collection[int] = frozenset(),
) -> int:
    """``outcome_record`` for many contacts at once (an import's batch), by the same policy:
    (contact id, result, aware date[, amount, currency]) each, the amount kept for won only;
    an outcome older than the one known changes
    nothing, and neither does one that says what is known already, under the date known (a
    file imported again records nothing new). ``created``: contacts the caller created in its
    transaction, which no one can have given an outcome yet (not looked up). Returns how many
    outcomes were written."""
    latest: dict[int, tuple[str, datetime, Decimal | None, str]] = {}
    results = frozenset(Result.values)
    for contact_id, result, at, *deal in outcomes:
        amount, currency = (deal[0], deal[1]) if deal else (None, "")
        amount = amount if result == Result.WON else None
        currency = deal_check(result=result, amount=amount, currency=currency)
        if result not in results:
            raise ValueError(f"unknown outcome {result!r}: one of {Result.values}")
        if timezone.is_naive(at):
            raise ValueError("an outcome's date must be aware (it has no time zone)")
        if contact_id not in latest or latest[contact_id][1] <= at:
            latest[contact_id] = (result, at, amount, currency)
    if source not in Source.values:
        raise ValueError(f"unknown outcome source {source!r}: one of {Source.values}")
    known = {
        outcome.contact_id: outcome
        for outcome in ContactOutcome.objects.select_for_update()
        .filter(contact_id__in=[pk for pk in latest if pk not in created])
        .order_by("contact_id")
    }
    now = timezone.now()
    new, replaced = [], []
    for contact_id, (result, at, amount, currency) in latest.items():
        current = known.get(contact_id)
        if current is not None and (current.at > at or current.result == result):
            continue
        outcome = ContactOutcome(
            contact_id=contact_id, result=result, at=at, source=source, recorded_at=now,
            amount=amount, currency=currency,
        )  # fmt: skip
        (new if current is None else replaced).append(outcome)
    # COPY for the contacts without an outcome yet (most of a first import: bulk_create took
    # 1.1 s of the 6.5 s a 10,000-row CRM export took, bench ``import`` at scale 0.1); one
    # recorded meanwhile by someone else breaks the primary key and the import's batch retries.
    bulk_copy(new)
    ContactOutcome.objects.bulk_create(
        replaced,
        update_conflicts=True,
        unique_fields=["contact"],
        # A different verdict (the only kind replaced) says nothing of the deal's amount.
        update_fields=[
            "result",
            "at",
            "source",
            "stage_change",
            "recorded_at",
            "amount",
            "currency",
            "product",
        ],
    )
    outcomes_follow_sources([outcome.contact_id for outcome in (*new, *replaced)])
    webhooks_outcomes_recorded([*new, *replaced])
    return len(new) + len(replaced)
