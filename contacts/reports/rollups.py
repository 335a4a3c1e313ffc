"""The dashboard's rollups: events per day, type and channel (``EventDailyCount``) and the stage
stays (``StageStay``), added batch by batch by an ordinary event handler and rebuilt from the
events and the stage history on demand (``manage.py rollup_rebuild``).

The handler is the last of ``LEADFUNNEL_EVENT_HANDLERS`` on purpose: the daily rows are shared
between workers (a day, a type) and stay locked until the batch commits, so they are taken as
late as possible.

Raw SQL kept here, with names from the models: the counts' upsert adds to the stored count on
conflict (``count = count + EXCLUDED.count``), which ``bulk_create(update_conflicts=True)``
cannot express (it can only overwrite); the stays are an ``INSERT … SELECT`` with a window
function over the stage history (the rebuild turns millions of changes into stays in the
database; the ORM would bring every row through Python).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from datetime import date, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Subquery
from django.db.models.functions import TruncDate
from django.utils import timezone

from contacts.models import Contact, Event, EventDailyCount, EventRow, StageChange, StageStay
from contacts.outcomes import outcomes_follow_sources
from contacts.pipeline import EventBatch
from contacts.reports.dashboard import stage_rank_sql


def on_event(batch: EventBatch) -> None:
    """LEADFUNNEL_EVENT_HANDLERS entry, last: count the batch into the rollups. Called in the
    transaction that takes the events off the queue, so each event counts exactly once even
    when its task is delivered twice."""
    rollups_add(batch.events)


def on_contacts_changed(*, contact_ids: Collection[int], fields: Collection[str] | None) -> None:
    """LEADFUNNEL_CONTACT_HANDLERS entry: contacts whose source changed (a form, an edit, the
    API, an import) carry it to their stays, so the sources panel counts them under their
    source as it is now. A new contact has no stays yet: they will read its source."""
    if fields is None or not {"source", "source_id"} & set(fields):
        return
    stays_follow_sources(list(contact_ids))
    outcomes_follow_sources(contact_ids)


# Contacts per statement: an import tells a hundred thousand at once.
CHUNK = 5000


def stays_follow_sources(contact_ids: Sequence[int]) -> None:
    """Copy the contacts' source and first source to their stays (only the stays that differ)."""
    for start in range(0, len(contact_ids), CHUNK):
        contact = Contact.objects.filter(pk=OuterRef("contact_id"))
        now = contact.values("source_id")[:1]
        first = contact.values("first_source_id")[:1]
        StageStay.objects.filter(contact_id__any=set(contact_ids[start : start + CHUNK])).exclude(
            Exists(contact.filter(source_id=OuterRef("source_id"),
                                  first_source_id=OuterRef("first_source_id")))
        ).update(source_id=Subquery(now), first_source_id=Subquery(first))  # fmt: skip


def rollups_add(events: Sequence[EventRow]) -> None:
    """Count a batch of processed events into the daily rollup (one upsert per batch) and add
    the stays their ``stage_changed`` events record."""
    _event_counts_add(events)
    changes = [
        e.properties["stage_change_id"]
        for e in events
        if e.type == Event.Type.STAGE_CHANGED and isinstance(e.properties, dict)
        and e.properties.get("stage_change_id")
    ]  # fmt: skip
    if changes:
        _stays_add(changes)


def _local_day(moment: datetime) -> date:
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


def _event_counts_add(events: Sequence[EventRow]) -> None:
    counts = Counter((_local_day(e.occurred_at), e.type, e.source or "") for e in events)
    if not counts:
        return
    # Sorted keys: two workers upserting overlapping days lock rows in the same order.
    rows = sorted(counts.items())
    quote = connection.ops.quote_name
    table = quote(EventDailyCount._meta.db_table)
    day, kind, source, count = (
        quote(EventDailyCount._meta.get_field(name).column)
        for name in ("day", "type", "source", "count")
    )
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    params: list[Any] = []
    for (when, what, where), n in rows:
        params += [connection.ops.adapt_datefield_value(when), what, where, n]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({day}, {kind}, {source}, {count}) VALUES {values} "  # noqa: S608
            f"ON CONFLICT ({day}, {kind}, {source}) "
            f"DO UPDATE SET {count} = {table}.{count} + EXCLUDED.{count}",
            params,
        )


# Each stage change as the stay it ended: since the contact's previous change (or its creation)
# until this one. Read from the stage history itself, so the order in which workers process the
# events does not matter. A first arrival is the contact's first move up into a stage (from a
# lower one): a demotion (MQL back to lead) and a second promotion are not new arrivals.
STAYS_SQL = """
INSERT INTO {stays}
    (stage_change_id, source_id, first_source_id, contact_id, stage, entered_at, left_at,
     next_stage, first_arrival)
SELECT h.id, k.source_id, k.first_source_id, h.contact_id, h.from_stage,
       COALESCE(h.previous_at, k.created_at),
       h.at, h.to_stage, (h.up AND h.arrival = 1)
FROM (
    SELECT s.id, s.contact_id, s.from_stage, s.to_stage, s.at,
           LAG(s.at) OVER (PARTITION BY s.contact_id ORDER BY s.at, s.id) AS previous_at,
           {up} AS up,
           ROW_NUMBER() OVER (PARTITION BY s.contact_id, s.to_stage, {up}
                              ORDER BY s.at, s.id) AS arrival
    FROM {changes_table} s {{contacts}}
) h
JOIN {contacts_table} k ON k.id = h.contact_id
WHERE {{changes}}
"""


def _stays_sql(*, contacts: str, changes: str) -> str:
    """STAYS_SQL with the tables' names from the models (their columns are Django's defaults)."""
    quote = connection.ops.quote_name
    return STAYS_SQL.format(
        stays=quote(StageStay._meta.db_table),
        changes_table=quote(StageChange._meta.db_table),
        contacts_table=quote(Contact._meta.db_table),
        up=f"{stage_rank_sql('s.to_stage')} > {stage_rank_sql('s.from_stage')}",
    ).format(contacts=contacts, changes=changes)


def _stays_add(change_ids: Sequence[int]) -> None:
    marks = ", ".join(["%s"] * len(change_ids))
    changes_table = connection.ops.quote_name(StageChange._meta.db_table)
    # Only placeholders are interpolated; the ids travel as parameters.
    within = f"WHERE s.contact_id IN (SELECT contact_id FROM {changes_table} WHERE id IN ({marks}))"  # noqa: S608
    sql = _stays_sql(
        contacts=within,
        changes=f"h.id IN ({marks}) ON CONFLICT (stage_change_id) DO NOTHING",
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*change_ids, *change_ids])


@transaction.atomic
def rollups_rebuild() -> tuple[int, int]:
    """Recompute the daily event counts and the stage stays from the processed events and the
    stage history (reconciliation after a restore, a bulk load or a bug). Returns the number
    of rows of each."""
    counts_table = connection.ops.quote_name(EventDailyCount._meta.db_table)
    stays_table = connection.ops.quote_name(StageStay._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Workers adding batches wait for the rebuild, and the rebuild's reads start after
            # every batch already counted has committed: nothing is counted twice or lost.
            cursor.execute(f"LOCK TABLE {counts_table}, {stays_table} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"DELETE FROM {counts_table}")  # noqa: S608
        cursor.execute(f"DELETE FROM {stays_table}")  # noqa: S608
        counts = (
            Event.objects.filter(pending__isnull=True)
            .annotate(local_day=TruncDate("occurred_at", tzinfo=timezone.get_default_timezone()))
            .values("local_day", "type", "source")
            .annotate(n=Count("id"))
            .values_list("local_day", "type", "source", "n")
            .order_by()
        )
        sql, params = counts.query.sql_with_params()
        cursor.execute(
            f"INSERT INTO {counts_table} (day, type, source, count) {sql}",  # noqa: S608
            params,
        )
        cursor.execute(_stays_sql(contacts="", changes="true"))
    return EventDailyCount.objects.count(), StageStay.objects.count()
