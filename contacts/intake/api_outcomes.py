"""The API's outcome endpoint: what became of a contact (won, with the deal's amount, or lost),
told by another system (a CRM, a shop). It records the known outcome that the reports read
(score against outcomes, revenue per source); it does not move the contact's stage.

Its routes join ``contacts.intake.api.api`` when this module is imported (``leadfunnel.urls``
does): ``api.py`` is at the structure test's length limit."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from django.http import HttpRequest
from ninja import Field, Schema
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from pydantic import field_validator

from contacts.currencies import CURRENCY_CODES
from contacts.intake.api import EARLIEST, ERRORS, LATEST, Problem, api, text
from contacts.models import Contact, ContactOutcome
from contacts.outcomes import outcome_record


class OutcomeIn(Schema):
    result: Literal["won", "lost"]
    at: datetime | None = Field(
        None, description="When it was won or lost (default now); a time without zone is UTC."
    )
    amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)] | None = Field(
        None,
        description='What the won deal brought, a number or a decimal string ("1234.50"); '
        "won only.",
    )
    currency: str | None = Field(
        None,
        description="ISO 4217 code of the amount (EUR, USD…); default: the site's "
        "(DEFAULT_CURRENCY). Amounts are never converted.",
        max_length=3,
    )
    product: text(200) = Field("", description="The product or plan sold; won only.")  # type: ignore[valid-type]

    @field_validator("currency")
    @classmethod
    def known_currency(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.upper() not in CURRENCY_CODES:
            raise ValueError("Not a currency code: use ISO 4217, e.g. EUR or USD.")
        return value.upper()

    @field_validator("at")
    @classmethod
    def aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if not EARLIEST <= value < LATEST:
            raise ValueError("at must be between 1970 and 2100.")
        return value


class OutcomeOut(Schema):
    contact_id: int
    result: str
    at: datetime
    amount: Decimal | None
    currency: str
    product: str
    source: str = Field(description="Who told it: sales, import, api, admin.")


@api.post("/contacts/{contact_id}/outcome",
          response={200: OutcomeOut, 404: Problem, **ERRORS},
          summary="Record a contact's outcome (won with its amount, or lost)")  # fmt: skip
def record_outcome(request: HttpRequest, contact_id: int, payload: OutcomeIn) -> ContactOutcome:
    """The latest outcome by date holds: one dated before the outcome already known changes
    nothing (the known one is returned). An `amount`, `currency` or `product` goes with
    `won` only."""
    contact = Contact.objects.filter(pk=contact_id).first()
    if contact is None:
        raise HttpError(404, "No contact has this id.")
    if payload.result != "won":
        wrong = [name for name in ("amount", "product") if getattr(payload, name)]
        if wrong:
            raise NinjaValidationError(
                [{"loc": ["body", "payload", name], "msg": "Only a won deal has an amount or "
                  "a product.", "type": "value_error"} for name in wrong]
            )  # fmt: skip
    return outcome_record(
        contact=contact,
        result=payload.result,
        source=ContactOutcome.Source.API,
        at=payload.at,
        amount=payload.amount,
        currency=payload.currency or "",
        product=payload.product,
    )
