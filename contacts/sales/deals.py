"""What a deal is worth: the amount field of the sales forms (typed in the reader's locale), the
rep's estimate of an open deal (``deal_estimate_set``), and its form on the lead page."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.formats import get_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.currencies import CURRENCY_CODES, currency_choices, default_currency
from contacts.models import Contact, ContactAudit, DealEstimate
from contacts.reasons import coded

# Spaces people and locales put between thousands: "1 234,50", "1 234,50" (NBSP, narrow NBSP).
SPACES = re.compile(r"[\s\u00a0\u202f]+")
MAX_AMOUNT = Decimal("999999999999.99")


class AmountField(forms.DecimalField):
    """A sum of money as the reader writes it: localized ("1 234,50" in French, "1,234.50" in
    English), spaces between thousands allowed whatever the locale, never negative."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("min_value", Decimal(0))
        kwargs.setdefault("max_value", MAX_AMOUNT)
        kwargs.setdefault("localize", True)
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("inputmode", "decimal")
        self.widget.attrs.setdefault("autocomplete", "off")

    def to_python(self, value: Any) -> Decimal | None:
        if isinstance(value, str):
            value = SPACES.sub("", value)
            thousands = get_format("THOUSAND_SEPARATOR")
            if thousands and thousands != get_format("DECIMAL_SEPARATOR"):
                # "1,234.50" in English: a separator before groups of three digits only, so
                # "1,5" is not read as 15.
                grouping = rf"(?<=\d){re.escape(thousands)}(?=\d{{3}}(?:\D|$))"
                value = re.sub(grouping, "", value)
        return super().to_python(value)


def currency_field(**kwargs: Any) -> forms.ChoiceField:
    return forms.ChoiceField(
        label=gettext_lazy("Currency"),
        choices=currency_choices,
        initial=default_currency,
        **kwargs,
    )


class DealEstimateForm(forms.Form):
    expected_amount = AmountField(label=gettext_lazy("Expected amount"), required=False)
    expected_currency = currency_field(required=False)


class EstimateRefused(Exception):
    """An estimate that cannot be set as asked; the message is for the rep."""


@transaction.atomic
def deal_estimate_set(
    *, contact: Contact, user: AbstractBaseUser, amount: Decimal | None, currency: str = ""
) -> DealEstimate | None:
    """The rep's estimate of what their open deal will bring (``None``: no estimate any more),
    audited. Only the lead's owner (or staff) estimates, and only while it is an SQL."""
    current = Contact.objects.select_for_update(of=("self",)).get(pk=contact.pk)
    if current.stage != Contact.Stage.SQL or (
        current.owner_id != user.pk and not getattr(user, "is_staff", False)
    ):
        raise EstimateRefused(
            _("%(contact)s is not one of your open leads.") % {"contact": current.display_name}
        )
    currency = (currency or default_currency()).upper()
    if currency not in CURRENCY_CODES:
        raise EstimateRefused(_("Choose a currency from the list."))
    if amount is None:
        DealEstimate.objects.filter(contact=current).delete()
        estimate = None
    else:
        if amount < 0:
            raise EstimateRefused(_("An amount cannot be negative."))
        estimate, _created = DealEstimate.objects.update_or_create(
            contact=current,
            defaults={
                "amount": amount, "currency": currency, "updated_by": user,
                "updated_at": timezone.now(),
            },
        )  # fmt: skip
    ContactAudit.objects.create(
        contact=current,
        action=ContactAudit.Action.ESTIMATED,
        actor=user,
        note=coded("estimate", amount="" if amount is None else str(amount), currency=currency),
    )
    return estimate
