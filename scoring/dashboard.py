"""Scoring's dashboard figures: how scores are spread over the contacts now."""

from __future__ import annotations

from typing import Any

from django.db.models import Case, Count, F, IntegerField, Value, When

from contacts.models import Contact

BUCKET = 20
TOP = 200


def score_distribution() -> list[dict[str, Any]]:
    """Contacts per score band of 20 points, below 0 and from 200 up grouped at the ends; every
    band present, empty ones at 0."""
    band = Case(
        When(score__lt=0, then=Value(-1)),
        When(score__gte=TOP, then=Value(TOP // BUCKET)),
        default=F("score") / BUCKET,
        output_field=IntegerField(),
    )
    counts = dict(
        Contact.objects.order_by().annotate(band=band).values_list("band").annotate(n=Count("*"))
    )
    rows = [{"band": -1, "low": None, "high": -1, "count": counts.get(-1, 0)}]
    rows += [
        {"band": n, "low": n * BUCKET, "high": n * BUCKET + BUCKET - 1, "count": counts.get(n, 0)}
        for n in range(TOP // BUCKET)
    ]
    rows.append(
        {"band": TOP // BUCKET, "low": TOP, "high": None, "count": counts.get(TOP // BUCKET, 0)}
    )
    return rows
