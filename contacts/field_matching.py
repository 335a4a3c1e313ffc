"""How a rule compares a contact's field with its value, the same wherever rules read fields
(assignment rules in ``contacts.sales.routing``, fit rules in ``scoring.fit_engine``). Pure."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def folded(value: Any) -> str:
    """Text compared whatever its case and the spaces around and within it."""
    if value is None:
        return ""
    return " ".join(str(value).split()).casefold()


def number_between(value: Any, low: Decimal | None, high: Decimal | None) -> bool:
    """Whether ``value`` is a number within [low, high] (a missing bound is open); a blank, a
    yes/no or a text is no number."""
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, float):
        value = Decimal(str(value))
    if not isinstance(value, int | Decimal):
        return False
    if low is not None and value < low:
        return False
    return high is None or value <= high
