"""Outcomes a rep records on a claimed contact: won (with what the deal brought), lost (with a
reason), referred back."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils.translation import gettext as _

from contacts.currencies import default_currency
from contacts.events import event_record
from contacts.models import (
    LOST_REASONS,
    Contact,
    ContactAudit,
    ContactOutcome,
    Event,
    StageChange,
)
from contacts.outcomes import outcome_record
from contacts.reasons import coded
from contacts.stages import StageMoveError, stage_move

logger = logging.getLogger(__name__)


class OutcomeRefused(Exception):
    """An outcome that cannot be recorded as asked; the message is for the rep."""


class Outcome:
    WON = StageChange.Outcome.WON
    LOST = StageChange.Outcome.LOST
    RECYCLED = StageChange.Outcome.RECYCLED


@transaction.atomic
def contact_outcome_record(
    *,
    contact: Contact,
    user: AbstractBaseUser,
    outcome: str,
    lost_reason: str = "",
    reason: str = "",
    amount: Decimal | None = None,
    currency: str = "",
    product: str = "",
) -> StageChange:
    """The rep's verdict on their SQL: won (→ client, with a purchase event; the deal's amount,
    currency and product if known), lost (a reason from the list, or "other" with words) or
    recycled to marketing (→ lead, with words). Lost and recycled leads leave the rep: if they
    come back as SQLs they wait in the queue. An amount goes with won only."""
    reason = reason.strip()
    if outcome != Outcome.WON:
        amount, product = None, ""
    if amount is not None and amount < 0:
        raise OutcomeRefused(_("An amount cannot be negative."))
    current = (
        Contact.objects.select_for_update(of=("self",)).select_related("owner").get(pk=contact.pk)
    )
    if current.stage != Contact.Stage.SQL:
        raise OutcomeRefused(
            _("%(contact)s is no longer an SQL (now: %(stage)s).")
            % {"contact": current.display_name, "stage": current.get_stage_display()}
        )
    if current.owner_id != user.pk and not getattr(user, "is_staff", False):
        raise OutcomeRefused(
            _("%(contact)s is not one of your leads.") % {"contact": current.display_name}
        )
    labels = dict(LOST_REASONS)
    if outcome == Outcome.WON:
        to, text = Contact.Stage.CLIENT, reason
    elif outcome == Outcome.LOST:
        if lost_reason not in labels:
            raise OutcomeRefused(_("Say why the lead was lost."))
        if lost_reason == "other" and not reason:
            raise OutcomeRefused(_("Describe the reason when you choose “Other”."))
        to = Contact.Stage.LEAD
        text = coded("lost", reason=lost_reason, words=reason)
    elif outcome == Outcome.RECYCLED:
        if not reason:
            raise OutcomeRefused(_("Say why the lead goes back to marketing."))
        to, text = Contact.Stage.LEAD, reason
    else:
        raise OutcomeRefused(_("Choose an outcome."))
    try:
        change = stage_move(
            contact=current, to=to, cause=StageChange.Cause.USER, actor=user, reason=text,
            outcome=outcome,
        )  # fmt: skip
    except StageMoveError as error:
        raise OutcomeRefused(str(error)) from error
    if outcome in (Outcome.WON, Outcome.LOST):
        outcome_record(
            contact=current, result=outcome, at=change.at, source=ContactOutcome.Source.SALES,
            stage_change=change, amount=amount, currency=currency, product=product,
        )  # fmt: skip
    if outcome == Outcome.WON:
        event_record(
            contact=current, type=Event.Type.PURCHASE, source="sales",
            properties={
                "recorded_by": user.get_username(), "stage_change_id": change.pk,
                **({"amount": str(amount), "currency": currency or default_currency()}
                   if amount is not None else {}),
                **({"product": product} if product else {}),
            },
            idempotency_key=f"won:{change.pk}",
        )  # fmt: skip
    else:
        Contact.objects.filter(pk=current.pk).update(owner=None, claimed_at=None)
    ContactAudit.objects.create(
        contact=current, action=ContactAudit.Action.OUTCOME, actor=user,
        owner=user if outcome == Outcome.WON else None,
        note=coded("outcome", outcome=outcome, why=text),
    )  # fmt: skip
    contact.refresh_from_db()
    return change
