"""A rule's conditions in SQL (``matching_events``, used by the rescore and by live scoring's
read of the events a count needs), and the numeric, count and recency parts of it, the one
place PostgreSQL and SQLite differ.

What counts as a number is ``engine.as_number``: a JSON number, or a string holding a plain
decimal (``engine.PLAIN_NUMBER``); anything else (text, booleans, null, a missing key) gives
NULL here and never matches. PostgreSQL compares exact numerics, as the engine does; SQLite
compares doubles, which order the same for bounds of at most 15 digits (the admin's limit).
"""

from __future__ import annotations

import json
from datetime import tzinfo
from decimal import Decimal
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BigIntegerField,
    BooleanField,
    F,
    Func,
    IntegerField,
    Q,
    QuerySet,
    TextField,
    ValueRange,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, TruncDate
from django.db.models.sql.compiler import SQLCompiler

from contacts.models import Event
from scoring import engine

COMPARE = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class NumberHolds(Func):
    """The rule's numeric condition on ``properties[key]``, as ``engine.Rule.number_holds``."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, rule: engine.Rule) -> None:
        super().__init__(F("properties"))
        self.key = rule.property_name
        self.operator = rule.property_operator
        self.low: Decimal | None = rule.property_number
        self.high: Decimal | None = rule.property_number_max

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        props, props_params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            # CASE, not AND: PostgreSQL may evaluate an AND's operands in any order.
            value = (
                f"(CASE WHEN jsonb_typeof({props} -> %s) = 'number' OR "
                f"(jsonb_typeof({props} -> %s) = 'string' AND ({props} ->> %s) ~ %s) "
                f"THEN ({props} ->> %s)::numeric END)"
            )
            key = self.key
            params = [*props_params, key, *props_params, key, *props_params, key,
                      engine.PLAIN_NUMBER, *props_params, key]  # fmt: skip
            bound = "%s::numeric"
        else:
            key = "$." + json.dumps(self.key)  # a quoted key: "0" is a key, not an index
            value = (
                f"CAST(CASE WHEN json_type({props}, %s) IN ('integer', 'real') "
                f"THEN json_extract({props}, %s) "
                f"WHEN json_type({props}, %s) = 'text' AND json_extract({props}, %s) REGEXP %s "
                f"THEN json_extract({props}, %s) END AS REAL)"
            )
            params = [*props_params, key, *props_params, key, *props_params, key,
                      *props_params, key, engine.PLAIN_NUMBER, *props_params, key]  # fmt: skip
            bound = "CAST(%s AS REAL)"
        if self.operator == "between":
            sql = f"{value} BETWEEN {bound} AND {bound}"
            return sql, [*params, str(self.low), str(self.high)]
        return f"{value} {COMPARE[self.operator]} {bound}", [*params, str(self.low)]


class EpochMicros(Func):
    """A moment as whole microseconds since 1970, exact: a count's window (D days PRECEDING)
    needs a number to range over on both databases."""

    output_field = BigIntegerField()

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        moment, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            return f"(EXTRACT(EPOCH FROM {moment}) * 1000000)::bigint", params
        # Stored as "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC.
        sql = f"(unixepoch({moment}) * 1000000 + CAST(substr({moment}, 21, 6) AS INTEGER))"
        return sql, [*params, *params]


class CountWindow(ValueRange):
    """RANGE BETWEEN the count's span PRECEDING AND CURRENT ROW, over ``EpochMicros``: same-
    moment events are peers, inside. Django refuses an offset RANGE on PostgreSQL, which has
    had it since version 11; the bounds are written as for ROWS, which reads the same."""

    def __init__(self, rule: engine.Rule) -> None:
        super().__init__(start=-count_span(rule), end=0)

    def window_frame_start_end(
        self, connection: BaseDatabaseWrapper, start: int | None, end: int | None
    ) -> tuple[str, str]:
        return connection.ops.window_frame_rows_start_end(start, end)


class DayNumber(Func):
    """The site-time-zone day of a moment, counted from 1 January 1970, as
    ``engine.day_number``: a fading rule's ages are differences of these."""

    output_field = IntegerField()

    def __init__(self, moment: str, tz: tzinfo) -> None:
        super().__init__(TruncDate(moment, tzinfo=tz))

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        day, params = compiler.compile(self.source_expressions[0])
        if connection.vendor == "postgresql":
            return f"({day} - DATE '1970-01-01')", params
        # A date's Julian day is exact (n.5): no rounding on the way.
        return f"CAST(julianday({day}) - 2440587.5 AS INTEGER)", params


def faded_sql(
    rule: engine.Rule, points: tuple[str, list[Any]], day: str, as_of_day: int
) -> tuple[str, list[Any]]:
    """``engine.faded_points`` in SQL: ``points`` (an integer SQL expression and its params)
    as worth on ``as_of_day`` for an event of ``day`` (a column). Integer division truncates
    toward zero on both databases, as the engine does."""
    full, zero = rule.fade_full_days or 0, rule.fade_zero_days or 0
    points_sql, points_params = points
    age = f"(%s - {day})"
    sql = (
        f"CASE WHEN {age} <= %s THEN {points_sql} WHEN {age} >= %s THEN 0 "
        f"ELSE ({points_sql}) * (%s - {age}) / %s END"
    )
    params = [as_of_day, full, *points_params, as_of_day, zero, *points_params,
              zero, as_of_day, zero - full]  # fmt: skip
    return sql, params


def count_span(rule: engine.Rule) -> int:
    """The count's window in microseconds, for ``EpochMicros``."""
    return (rule.count_within_days or 0) * 86_400_000_000


def matching_events(rule: engine.Rule) -> QuerySet[Event]:
    """The events a rule applies to, as engine.Rule.matches decides it, in SQL (machine signals
    included: ``lines_sql`` tells them apart)."""
    matched = Event.objects.filter(type=rule.event_type)
    if rule.url_contains:
        matched = matched.filter(properties__url__icontains=rule.url_contains)
    if rule.url_pattern:
        matched = matched.filter(properties__url__iregex=rule.url_pattern)
    equals = rule.property_value if rule.property_operator == "eq" else ""
    for key, value in (
        ("content_tag", rule.content_tag),
        ("form", rule.form),
        (rule.property_name, equals),
    ):
        if key and value:
            # Compared as text, as the engine does: 5 and "5" are the same property value.
            as_text = Cast(KeyTextTransform(key, "properties"), output_field=TextField())
            matched = matched.alias(**{f"_{key}_text": as_text}).filter(**{f"_{key}_text": value})
    if rule.property_name and rule.property_operator != "eq":
        operator, high = rule.property_operator, rule.property_number_max
        complete = rule.property_number is not None and (
            operator in COMPARE or (operator == "between" and high is not None)
        )
        # A bound or the operator unknown (the admin refuses it): nothing, as in the engine.
        matched = matched.filter(NumberHolds(rule) if complete else Q(pk__isnull=True))
    if rule.starts_at:
        matched = matched.filter(occurred_at__gte=rule.starts_at)
    if rule.ends_at:
        matched = matched.filter(occurred_at__lt=rule.ends_at)
    # No ORDER BY: the window numbers the rows in its own order, Event's default one is a sort
    # of every matching event for nothing.
    return matched.order_by()
