"""The manager's pipeline (``/pipeline/``): the claimed open SQLs of their reps, by rep and by
how long ago they were claimed, with the value each is expected to bring.

Expected value of a lead: the rep's estimate (``DealEstimate``) when it is in the site's
currency; else the average won amount of the lead's source over the last 12 months (site's
currency); else nothing (the lead is counted, its value unknown). Estimates in another currency
are counted apart, never converted. A fixed handful of queries whatever the number of leads:
the leads are grouped in the database (partial index ``contact_claimed``)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Avg, Case, Count, IntegerField, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact, ContactOutcome, SalesRep, Team
from contacts.roles import SALES_MANAGER, role_required

# Age of a claim: (upper bound in days, label); the last bucket has no upper bound.
BUCKETS = (
    (1, _("Less than 1 day")),
    (3, _("1–3 days")),
    (7, _("3–7 days")),
    (None, _("More than 7 days")),
)
AVERAGE_OVER_DAYS = 365


@dataclass
class Cell:
    """Leads in one (rep, age) cell and what they are expected to bring."""

    leads: int = 0
    value: Decimal = Decimal(0)
    estimated: int = 0  # valued by the rep's estimate
    averaged: int = 0  # valued by their source's average won amount
    unknown: int = 0  # no estimate, no average: counted, worth nothing known
    other_currency: int = 0  # estimated in another currency (not summed)
    key: str = "total"  # the column: "bucket-<n>" or "total"
    label: Any = _("Total")

    def add(self, other: Cell) -> None:
        for name in ("leads", "value", "estimated", "averaged", "unknown", "other_currency"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def bucket_cells() -> list[Cell]:
    return [Cell(key=f"bucket-{i}", label=label) for i, (_days, label) in enumerate(BUCKETS)]


@dataclass
class RepRow:
    user_id: int
    name: str
    cells: list[Cell] = field(default_factory=bucket_cells)
    total: Cell = field(default_factory=Cell)


def team_of(user: Any) -> Team | None:
    rep = SalesRep.objects.filter(user_id=user.pk).select_related("team").first()
    return rep.team if rep is not None else None


def source_averages(now: datetime, currency: str) -> dict[int | None, Decimal]:
    """Average won amount per lead source over the last 12 months, in ``currency`` only."""
    rows = (
        ContactOutcome.objects.filter(
            result=ContactOutcome.Result.WON,
            at__gte=now - timedelta(days=AVERAGE_OVER_DAYS),
            amount__isnull=False,
            currency=currency,
        )
        .values_list("contact__source_id")
        .annotate(average=Avg("amount"))
        .order_by()
    )
    return {source_id: Decimal(average).quantize(Decimal("0.01")) for source_id, average in rows}


def pipeline(*, team: Team | None, now: datetime) -> dict[str, Any]:
    """Rows per rep (the team's reps, or every rep without a team), cells per age bucket, the
    totals per bucket and overall."""
    currency = settings.DEFAULT_CURRENCY
    claimed = Contact.objects.filter(stage=Contact.Stage.SQL, owner__isnull=False)
    if team is not None:
        claimed = claimed.filter(owner__sales_rep__team=team)
    since = Coalesce("claimed_at", "stage_entered_at")
    whens = [
        When(**{"since__gte": now - timedelta(days=days)}, then=Value(i))
        for i, (days, _label) in enumerate(BUCKETS)
        if days is not None
    ]
    in_currency = Q(deal_estimate__currency=currency)
    groups = (
        claimed.annotate(since=since)
        .annotate(bucket=Case(*whens, default=Value(len(BUCKETS) - 1), output_field=IntegerField()))
        .values_list("owner_id", "bucket", "source_id")
        .annotate(
            leads=Count("pk"),
            estimated=Count("deal_estimate", filter=in_currency),
            estimated_value=Sum("deal_estimate__amount", filter=in_currency),
            other_currency=Count("deal_estimate", filter=~in_currency),
        )
        .order_by()
    )
    averages = source_averages(now, currency)
    cells: dict[int, list[Cell]] = defaultdict(bucket_cells)
    for owner_id, bucket, source_id, leads, estimated, estimated_value, other in groups:
        cell = Cell(leads=leads, estimated=estimated, other_currency=other)
        cell.value = estimated_value or Decimal(0)
        rest = leads - estimated - other
        average = averages.get(source_id)
        if average is not None:
            cell.averaged, cell.value = rest, cell.value + rest * average
        else:
            cell.unknown = rest
        cells[owner_id][bucket].add(cell)
    members = SalesRep.objects.filter(team=team) if team is not None else SalesRep.objects.all()
    reps = get_user_model().objects.filter(
        Q(pk__in=set(cells)) | Q(pk__in=members.values("user_id"))
    )
    rows = []
    for user in reps.order_by("first_name", "last_name", "username"):
        row = RepRow(user_id=user.pk, name=user.get_full_name() or user.get_username())
        row.cells = cells.get(user.pk, row.cells)
        for cell in row.cells:
            row.total.add(cell)
        rows.append(row)
    columns = bucket_cells()
    total = Cell()
    for row in rows:
        for column, cell in zip(columns, row.cells, strict=True):
            column.add(cell)
        total.add(row.total)
    return {
        "rows": rows,
        "columns": columns,
        "total": total,
        "buckets": [label for _days, label in BUCKETS],
        "currency": currency,
        "team": team,
    }


@role_required(SALES_MANAGER)
def pipeline_view(request: HttpRequest) -> HttpResponse:
    """Sales managers and staff: their team's pipeline (every rep's for one without a team)."""
    figures = pipeline(team=team_of(request.user), now=timezone.now())
    return render(request, "contacts/pipeline.html", figures)
