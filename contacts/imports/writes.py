"""Writing one import batch: match rows to known contacts (by email or external id), update
what changed, create the rest, and record the leads they became.

The ORM throughout but for three statements, each measured with the ``import`` benchmark (20 %
of the rows known; variants interleaved in one sitting on the shared 2-core machine, 2026-12-06;
"ratio" is the import's time over a raw COPY of as many rows in the same run):

- New contacts go in by COPY (``_contacts_insert``). ``bulk_create`` made that step 2 to 3.5
  times slower (20,000 rows: 9.5-14.1 s against 3.8-7.1 s); ``contacts.bulk.bulk_copy``, which
  goes through model instances, 1.8 times (50,000 rows: 12.5 s against 7.0 s; ratio 5.2-5.8
  against 3.9).
- Changed contacts are written by ``contacts.bulk.bulk_update_fast`` (one ``UPDATE … FROM
  unnest`` a batch). Django's ``bulk_update`` (a CASE WHEN per row and field) took 30-52 s
  against 4.7-5.3 s at 100,000 rows: the import twice as slow (ratio 7.8-8.6 against 3.6-4.2).
- Known contacts are read on PostgreSQL by one LATERAL query (``KNOWN_CONTACTS_SQL``). The ORM's
  ``lower(email) = ANY(…)`` took 10.5-10.8 s against 2.4-3.0 s at 100,000 rows, about 15 % of
  the import.

Erased emails are read through the ORM (``__any``, one array parameter).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime
from decimal import Decimal
from itertools import compress
from typing import Any

from django.db import connection
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from contacts.bulk import bulk_update_fast, copy_value
from contacts.changes import contacts_changed
from contacts.imports import parsing
from contacts.imports.consent import consent_changes, opt_outs_win
from contacts.models import (
    Contact,
    ContactOutcome,
    ImportJob,
    ImportRowError,
    StageChange,
    Suppression,
)
from contacts.models.custom_fields import PREFIX as CUSTOM
from contacts.outcomes import outcomes_record
from contacts.reasons import coded
from contacts.stages import PlannedMove, stage_changes_record, stage_move_many

logger = logging.getLogger(__name__)

ImportGroups = dict[tuple[str, str], list[parsing.CleanRow]]


def row_error(job: ImportJob, row: parsing.CleanRow, message: str) -> ImportRowError:
    # The cells as mapped (ignored columns blank): a clean row keeps no copy of its raw text.
    cells = [row.fields.get(target, "") if target else "" for target in job.mapping]
    return ImportRowError(
        job=job,
        line_number=row.line_number,
        raw=parsing.raw_text(cells, job.delimiter)[:10_000],
        message=message[:500],
    )


# What the import reads of a known contact: plain values, no model instances (a batch finds
# thousands of them).
IMPORT_PROFILE = tuple(name for name in parsing.IMPORT_FIELDS if name != "email")
CONSENT_COLUMNS = ("do_not_email", "do_not_call", "consent", "consent_at", "consent_basis",
                   "consent_method", "legitimate_interest_notice_on", "open_tracking_consent_at",
                   "open_tracking_consent_source")  # fmt: skip

PROFILE_SET = frozenset(IMPORT_PROFILE)

KNOWN_COLUMNS = (
    "pk", "email", "stage", "source_id", "first_source_id", *IMPORT_PROFILE, *CONSENT_COLUMNS,
    "custom_fields",
)  # fmt: skip

KnownContact = dict[str, Any]


def batch_apply(job: ImportJob, batch: ImportGroups) -> tuple[Counter[str], list[ImportRowError]]:
    """Rows per outcome, and the rows refused. A new person is one created row (their later
    rows in the file are merged into it); rows of a known contact are merged if they changed
    it, else unchanged. A row whose email and external id name two different contacts is
    refused: merging them is a person's decision, not an import's."""
    emails = {value for kind, value in batch if kind == "email"}
    external_ids = {
        row.fields["external_id"]
        for rows in batch.values()
        for row in rows
        if "external_id" in row.fields
    }
    by_email, by_external_id = known_contacts(emails, external_ids)
    counts: Counter[str] = Counter()
    refused: list[ImportRowError] = []
    created: list[dict[str, str]] = []
    updated: dict[int, KnownContact] = {}
    become_leads: list[int] = []
    changed_fields: set[str] = set()
    # (contact id, or None and the row of a contact to create; result; date if the file gave it;
    # the won deal's amount and currency if it gave them)
    outcomes: list[tuple[int | None, int, str, datetime | None, Decimal | None, str]] = []
    now = timezone.now()
    suppressed = _suppressed(emails.difference(by_email))
    for (kind, value), rows in batch.items():
        if kind == "email" and value in suppressed:  # an erased person stays erased
            refused.extend(
                row_error(job, row, coded("import_erased", cut=True, email=value)) for row in rows
            )
            counts["rejected"] += len(rows)
            continue
        if len(rows) == 1:
            incoming = dict(rows[0].fields)
        else:
            incoming = {}
            for row in rows:
                parsing.merge_fields(incoming, row.fields, overwrite=job.overwrite)
            opt_outs_win(incoming, [row.fields for row in rows])
        outcome = (
            incoming.pop("outcome", None), incoming.pop("outcome_at", None),
            incoming.pop("outcome_amount", None), incoming.pop("outcome_currency", ""),
        )  # fmt: skip
        found_by_email = by_email.get(value) if kind == "email" else None
        found_by_id = by_external_id.get(incoming.get("external_id", ""))
        conflict = _identity_conflict(incoming, found_by_email, found_by_id)
        if conflict:
            refused.extend(row_error(job, row, conflict) for row in rows)
            counts["rejected"] += len(rows)
            continue
        contact = found_by_email or found_by_id
        if contact is None:
            person = _custom_folded(incoming)
            created.append(person)
            if outcome[0]:
                outcomes.append((None, id(person), *outcome))
            counts["created"] += 1
            counts["merged"] += len(rows) - 1
            continue
        if outcome[0]:
            outcomes.append((contact["pk"], 0, *outcome))
        changes = _contact_changes(contact, incoming, job)
        becomes_lead = contact["stage"] == Contact.Stage.SUSPECT and (
            "email" in changes or (job.rows_are_leads and _is_lead(contact | changes, job))
        )
        if becomes_lead:
            become_leads.append(contact["pk"])
        if changes:
            contact.update(changes)
            changed_fields |= set(changes)
            updated[contact["pk"]] = contact
        counts["merged" if changes or becomes_lead else "unchanged"] += len(rows)
    if updated:
        _update_imported(list(updated.values()), sorted(changed_fields), now)
    created_ids = _create_imported(job, created, now) if created else []
    created_set = frozenset(created_ids)
    if become_leads:
        _imported_leads(job, become_leads, at=now)
    if outcomes:
        # The row dicts of new contacts stand for them until their ids exist.
        by_id = {id(person): pk for pk, person in zip(created_ids, created, strict=True)}
        outcomes_record(
            outcomes=[
                (
                    pk if pk is not None else by_id[person],
                    result,
                    at or job.started_at or now,
                    amount,
                    currency,
                )
                for pk, person, result, at, amount, currency in outcomes
            ],  # fmt: skip
            source=ContactOutcome.Source.IMPORT,
            created=created_set,
        )
    # After the stage changes: a fit that changes a stage continues from the lead. The first
    # sources are written with the contacts (``_update_imported``, ``_contacts_insert``).
    contacts_changed(list(updated), changed_fields, first_sources=False)
    contacts_changed(created_ids, None, imported=True, first_sources=False)
    return counts, refused


def known_contacts(
    emails: set[str], external_ids: set[str]
) -> tuple[dict[str, KnownContact], dict[str, KnownContact]]:
    """The contacts with these (lower-cased) emails or external ids, locked in id order; one
    dict per contact, reached by either key.

    Locked FOR NO KEY UPDATE, as an UPDATE locks them: other writers wait, but not the foreign
    key checks of events and stage changes recorded meanwhile for these contacts."""
    by_email: dict[str, KnownContact] = {}
    by_external_id: dict[str, KnownContact] = {}
    for contact in _known_contact_rows(emails, external_ids):
        lowered = contact.pop("lowered")
        if lowered:
            by_email[lowered] = contact
        if contact["external_id"]:
            by_external_id[contact["external_id"]] = contact
    return by_email, by_external_id


# One index probe per email, forced by the LIMIT of a LATERAL join, which the ORM cannot
# write. Given a batch's thousand emails as one array (``lower(email) = ANY(…)``, what the ORM
# sends), PostgreSQL 15 answers with one bitmap scan of them all: 16 ms against 3.7 ms
# (EXPLAIN ANALYZE, 90,000 contacts).
KNOWN_CONTACTS_SQL = """
SELECT {columns}, lower({email}) AS lowered FROM {table}
WHERE {id} = ANY(ARRAY(
    SELECT found.{id} FROM unnest(%s::text[]) AS wanted(email)
    CROSS JOIN LATERAL (
        SELECT {id} FROM {table} WHERE lower({email}) = wanted.email LIMIT 1
    ) AS found
    UNION ALL
    SELECT {id} FROM {table} WHERE {external_id} = ANY(%s::text[])
))
ORDER BY {id}
FOR NO KEY UPDATE
"""


def _known_contact_rows(emails: set[str], external_ids: set[str]) -> list[KnownContact]:
    """The one place where PostgreSQL and the others differ in reading known contacts: the
    LATERAL query there (see the module's docstring), the same rows through the ORM elsewhere."""
    if connection.vendor != "postgresql":
        return list(
            Contact.objects.select_for_update(no_key=True)
            .annotate(lowered=Lower("email"))
            .filter(Q(lowered__any=emails) | Q(external_id__any=external_ids))
            .order_by("pk")
            .values(*KNOWN_COLUMNS, "lowered")
        )
    meta = Contact._meta
    quote = connection.ops.quote_name
    sql = KNOWN_CONTACTS_SQL.format(
        columns=", ".join(
            quote((meta.pk if name == "pk" else meta.get_field(name)).column)
            for name in KNOWN_COLUMNS
        ),
        table=quote(meta.db_table),
        id=quote(meta.pk.column),
        email=quote(meta.get_field("email").column),
        external_id=quote(meta.get_field("external_id").column),
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(emails), list(external_ids)])  # psycopg adapts the lists
        names = [*KNOWN_COLUMNS, "lowered"]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for contact in found:  # jsonb comes as text: Django's connection leaves it to the field
        if isinstance(contact["custom_fields"], str):
            contact["custom_fields"] = json.loads(contact["custom_fields"])
    return found


def _suppressed(emails: set[str]) -> set[str]:
    """The emails of erased people."""
    by_hash = {Suppression.hash(email): email for email in emails}
    if not by_hash:
        return set()
    found = Suppression.objects.filter(email_hash__any=by_hash.keys())
    return {by_hash[digest] for digest in found.values_list("email_hash", flat=True)}


def _identity_conflict(
    incoming: dict[str, str], by_email: KnownContact | None, by_id: KnownContact | None
) -> str:
    """Why the row cannot be merged, or "": its email and its external id belong to two
    contacts, or its external id belongs to a contact with another email."""
    email, external_id = incoming.get("email"), incoming.get("external_id")
    if by_email and by_id and by_email["pk"] != by_id["pk"]:
        return coded("import_two_contacts", cut=True, email=email, id=external_id)
    if email and by_id and not by_email and by_id["email"]:
        return coded(
            "import_external_id_elsewhere", cut=True, id=external_id, other=by_id["email"],
            email=email,
        )  # fmt: skip
    return ""


def _contact_changes(
    contact: KnownContact, incoming: dict[str, str], job: ImportJob
) -> dict[str, Any]:
    # The email found the contact (its case as stored is left alone), or the external id did and
    # the contact had no email yet.
    custom = {name: value for name, value in incoming.items() if name.startswith(CUSTOM)}
    profile = {name: value for name, value in incoming.items() if name in PROFILE_SET}
    current = {name: contact[name] for name in profile}
    parsing.merge_fields(current, profile, overwrite=job.overwrite)
    changes: dict[str, Any] = {
        name: value for name, value in current.items() if value != contact[name]
    }
    if custom:
        stored = contact["custom_fields"] or {}
        values = {f"{CUSTOM}{key}": value for key, value in stored.items()}
        parsing.merge_fields(values, custom, overwrite=job.overwrite)
        merged = _custom_folded(values).get("custom_fields", {})
        if merged != stored:
            changes["custom_fields"] = merged
    if incoming.get("email") and not contact["email"]:
        changes["email"] = incoming["email"]
    # A source named on the row (None: named, but unknown) wins over the file's.
    if "source_id" in incoming:
        source_id = incoming["source_id"]
        if source_id and (job.overwrite or not contact["source_id"]):
            changes["source_id"] = source_id
    elif job.source_id and not contact["source_id"]:
        changes["source_id"] = job.source_id
    if "source_id" in changes and changes["source_id"] == contact["source_id"]:
        del changes["source_id"]
    changes.update(consent_changes(contact, incoming, overwrite=job.overwrite))
    return changes


def _is_lead(fields: dict[str, Any], job: ImportJob) -> bool:
    """Whether an imported contact is a lead: it has an email, or the marketer said the file's
    rows are leads (a CRM's export) and it has an external id."""
    return bool(fields.get("email")) or (job.rows_are_leads and bool(fields.get("external_id")))


def _custom_folded(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields with the custom ones ("custom:<key>") gathered into ``custom_fields``."""
    if not any(name.startswith(CUSTOM) for name in fields):
        return fields
    folded: dict[str, Any] = {"custom_fields": {}}
    for name, value in fields.items():
        if name.startswith(CUSTOM):
            folded["custom_fields"][name.removeprefix(CUSTOM)] = value
        else:
            folded[name] = value
    return folded


def _update_imported(contacts: list[KnownContact], names: list[str], now: datetime) -> None:
    """Write the changed fields of known contacts. Only contacts that changed are given (each
    update of a contact row goes through all its indexes).

    When the batch changes sources, a contact with a source and no first source takes it as
    its first source in the same statement, as ``contacts_changed`` would do after it (a second
    write of each row: 2.9 s of a 30,000-row CRM export's 29 s, bench ``import``)."""
    if "source_id" in names:
        names = [*names, "first_source_id"]
        for contact in contacts:
            if contact["first_source_id"] is None and contact["source_id"] is not None:
                contact["first_source_id"] = contact["source_id"]
    objects = []
    for contact in contacts:
        obj = Contact(pk=contact["pk"], updated_at=now)
        for name in names:
            setattr(obj, name, contact[name])
        objects.append(obj)
    bulk_update_fast(objects, [*names, "updated_at"])


def _create_imported(job: ImportJob, people: list[dict[str, str]], now: datetime) -> list[int]:
    """New contacts with an email are leads from the start (no one else can have moved a row
    that did not exist), with the suspect → lead StageChange and event every lead has; those
    known by an external id only are suspects until an email comes, unless the marketer said
    the file's rows are leads (``ImportJob.rows_are_leads``)."""
    leads = [_is_lead(fields, job) for fields in people]
    ids = _contacts_insert(people, leads, source_id=job.source_id, now=now)
    _imported_leads(job, list(compress(ids, leads)), at=now, moved=True)
    return ids


def _new_contact(
    fields: dict[str, Any], *, lead: bool, source_id: int | None, now: datetime
) -> Contact:
    stage = Contact.Stage.LEAD if lead else Contact.Stage.SUSPECT
    fields = {"source_id": source_id, **fields}
    return Contact(
        **fields,
        first_source_id=fields["source_id"],  # first touch: the source it starts with
        stage=stage,
        stage_entered_at=now,
        created_at=now,
    )


def _contacts_insert(
    people: list[dict[str, Any]], leads: list[bool], *, source_id: int | None, now: datetime
) -> list[int]:
    """Insert new contacts; their ids, in order. On PostgreSQL by COPY straight from the
    imported values (see the module's docstring for why), every other column as a new contact
    has it, read once from a model instance so the two cannot drift apart; ``bulk_create``
    elsewhere."""
    if connection.vendor != "postgresql":
        contacts = [
            _new_contact(fields, lead=lead, source_id=source_id, now=now)
            for fields, lead in zip(people, leads, strict=True)
        ]
        Contact.objects.bulk_create(contacts)
        return [contact.pk for contact in contacts]
    meta = Contact._meta
    fields = meta.concrete_fields
    quote = connection.ops.quote_name
    templates = {}
    for lead in (True, False):
        template = _new_contact({}, lead=lead, source_id=source_id, now=now)
        templates[lead] = [copy_value(field)(template) for field in fields]
    position = {field.attname: index for index, field in enumerate(fields)}
    id_position, first_source = position[meta.pk.attname], position["first_source_id"]
    columns = ", ".join(quote(field.column) for field in fields)
    # Django's IntegrityError (a contact created meanwhile) for the batch's retry.
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, len(people)],
        )
        ids = [pk for (pk,) in cursor.fetchall()]
        # Table and column names come from the model; the values travel as COPY data.
        copy_sql = f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy:
            for pk, person, lead in zip(ids, people, leads, strict=True):
                row = list(templates[lead])
                row[id_position] = pk
                for name, value in person.items():
                    row[position[name]] = json.dumps(value) if name == "custom_fields" else value
                if "source_id" in person:  # a source named on the row, or None: unknown
                    row[first_source] = person["source_id"]
                copy.write_row(row)
    return ids


def _import_actor(job: ImportJob) -> tuple[str, str]:
    """(actor name, reason) of the stage changes an import makes."""
    reason = coded("imported_from", file=job.filename)
    actor_name = ""
    if job.created_by is not None:
        actor_name = job.created_by.get_full_name() or job.created_by.get_username()
    return actor_name, reason


def _imported_leads(
    job: ImportJob, contact_ids: list[int], *, at: datetime, moved: bool = False
) -> None:
    """Suspects the import gave an email are leads: the move (unless already made, ``moved``)
    and the StageChange and event every lead has."""
    if not contact_ids:
        return
    actor_name, reason = _import_actor(job)
    moves = [
        PlannedMove(
            pk, Contact.Stage.SUSPECT, Contact.Stage.LEAD, reason=reason, actor_name=actor_name
        )
        for pk in contact_ids
    ]
    if moved:
        stage_changes_record(at=at, moves=moves, cause=StageChange.Cause.IMPORT, objects=False)
    else:
        stage_move_many(moves=moves, cause=StageChange.Cause.IMPORT, at=at)
