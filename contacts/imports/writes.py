"""Writing one import batch: match rows to known contacts (by email or external id), update
what changed, create the rest, and record the leads they became."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from contacts.bulk import bulk_copy, copy_value
from contacts.imports import parsing
from contacts.lookups import array_param
from contacts.models import (
    Contact,
    ImportJob,
    ImportRowError,
    StageChange,
    Suppression,
)
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

KNOWN_COLUMNS = ("pk", "email", "stage", "source_id", *IMPORT_PROFILE)

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
    by_email, by_external_id = _known_contacts(emails, external_ids)
    counts: Counter[str] = Counter()
    refused: list[ImportRowError] = []
    created: list[dict[str, str]] = []
    updated: dict[int, KnownContact] = {}
    become_leads: list[int] = []
    changed_fields: set[str] = set()
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
            incoming = rows[0].fields
        else:
            incoming = {}
            for row in rows:
                parsing.merge_fields(incoming, row.fields, overwrite=job.overwrite)
        found_by_email = by_email.get(value) if kind == "email" else None
        found_by_id = by_external_id.get(incoming.get("external_id", ""))
        conflict = _identity_conflict(incoming, found_by_email, found_by_id)
        if conflict:
            refused.extend(row_error(job, row, conflict) for row in rows)
            counts["rejected"] += len(rows)
            continue
        contact = found_by_email or found_by_id
        if contact is None:
            created.append(incoming)
            counts["created"] += 1
            counts["merged"] += len(rows) - 1
            continue
        changes = _contact_changes(contact, incoming, job)
        if changes:
            if "email" in changes and contact["stage"] == Contact.Stage.SUSPECT:
                become_leads.append(contact["pk"])
            contact.update(changes)
            changed_fields |= set(changes)
            updated[contact["pk"]] = contact
        counts["merged" if changes else "unchanged"] += len(rows)
    if updated:
        _update_imported(list(updated.values()), sorted(changed_fields), now)
    if created:
        _create_imported(job, created, now)
    if become_leads:
        _imported_leads(job, become_leads, at=now)
    return counts, refused


def _known_contacts(
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


# One index probe per email, forced by the LIMIT: given the thousand emails as one array,
# the planner expects a thousand matches and scans the whole table instead (10-50 ms a batch,
# against 2 ms; a batch's emails are mostly new).
KNOWN_CONTACTS_SQL = """
SELECT {columns}, lower(email) AS lowered FROM contacts_contact
WHERE id = ANY(ARRAY(
    SELECT found.id FROM unnest(%s::text[]) AS wanted(email)
    CROSS JOIN LATERAL (
        SELECT id FROM contacts_contact WHERE lower(email) = wanted.email LIMIT 1
    ) AS found
    UNION ALL
    SELECT id FROM contacts_contact WHERE external_id = ANY(%s::text[])
))
ORDER BY id
FOR NO KEY UPDATE
"""


def _known_contact_rows(emails: set[str], external_ids: set[str]) -> list[KnownContact]:
    if connection.vendor != "postgresql":
        wanted = Q(lowered__any=emails) | Q(external_id__any=external_ids)
        return list(
            Contact.objects.select_for_update(no_key=True)
            .annotate(lowered=Lower("email"))
            .filter(wanted)
            .order_by("pk")
            .values(*KNOWN_COLUMNS, "lowered")
        )
    meta = Contact._meta
    quote = connection.ops.quote_name
    columns = ", ".join(
        quote(meta.get_field(name).column) if name != "pk" else quote(meta.pk.column)
        for name in KNOWN_COLUMNS
    )
    with connection.cursor() as cursor:
        cursor.execute(
            KNOWN_CONTACTS_SQL.format(columns=columns),
            [_text_array(emails), _text_array(external_ids)],
        )
        names = [*KNOWN_COLUMNS, "lowered"]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _suppressed(emails: set[str]) -> set[str]:
    """The emails of erased people: ``Suppression.suppressed`` with one array parameter instead
    of a placeholder per email."""
    by_hash = {Suppression.hash(email): email for email in emails}
    if not by_hash:
        return set()
    if connection.vendor != "postgresql":
        found = Suppression.objects.filter(email_hash__any=by_hash.keys())
        return {by_hash[digest] for digest in found.values_list("email_hash", flat=True)}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT email_hash FROM contacts_suppression WHERE email_hash = ANY(%s::text[])",
            [_text_array(by_hash)],
        )
        return {by_hash[digest] for (digest,) in cursor.fetchall()}


def _text_array(values: Iterable[str]) -> str:
    """A text[] parameter as one literal: psycopg adapts a list element by element, which costs
    a batch's thousand emails a few milliseconds more."""
    quoted = (value.replace("\\", "\\\\").replace('"', '\\"') for value in values)
    return "{" + ",".join(f'"{value}"' for value in quoted) + "}"


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
    profile = {name: value for name, value in incoming.items() if name != "email"}
    current = {name: contact[name] for name in profile}
    parsing.merge_fields(current, profile, overwrite=job.overwrite)
    changes: dict[str, Any] = {
        name: value for name, value in current.items() if value != contact[name]
    }
    if incoming.get("email") and not contact["email"]:
        changes["email"] = incoming["email"]
    if job.source_id and not contact["source_id"]:
        changes["source_id"] = job.source_id
    return changes


def _update_imported(contacts: list[KnownContact], names: list[str], now: datetime) -> None:
    """Write the changed fields of known contacts: on PostgreSQL one ``UPDATE … FROM unnest``,
    each column one array. Only contacts that changed are given (each update of a contact row
    goes through all its indexes)."""
    meta = Contact._meta
    fields = [meta.get_field(name) for name in names]
    if connection.vendor != "postgresql":
        objects = []
        for contact in contacts:
            obj = Contact(pk=contact["pk"])
            for field in fields:
                setattr(obj, field.attname, contact[field.attname])
            obj.updated_at = now
            objects.append(obj)
        Contact.objects.bulk_update(objects, [*(f.name for f in fields), "updated_at"])
        return
    quote = connection.ops.quote_name
    columns = [quote(field.column) for field in fields]
    assignments = ", ".join(f"{column} = v.{column}" for column in columns)
    arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
    # Column names come from the model; every value is a parameter.
    sql = (
        f"UPDATE contacts_contact AS c SET {assignments}, updated_at = %s "  # noqa: S608
        f"FROM unnest(%s::bigint[], {arrays}) AS v(id, {', '.join(columns)}) WHERE c.id = v.id"
    )
    params = [now, array_param([contact["pk"] for contact in contacts])]
    params += [[contact[field.attname] for contact in contacts] for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _create_imported(job: ImportJob, people: list[dict[str, str]], now: datetime) -> None:
    """New contacts with an email are leads from the start (no one else can have moved a row
    that did not exist), with the suspect → lead StageChange and event every lead has; those
    known by an external id only are suspects until an email comes."""
    if connection.vendor != "postgresql":
        contacts = [Contact(**fields, source_id=job.source_id) for fields in people]
        for contact in contacts:
            if contact.email:
                contact.stage, contact.stage_entered_at = Contact.Stage.LEAD, now
        bulk_copy(contacts)
        leads = [contact.pk for contact in contacts if contact.email]
        _imported_leads(job, leads, at=now, moved=True)
        return
    ids = _copy_contacts(people, source_id=job.source_id, now=now)
    leads = [pk for pk, fields in zip(ids, people, strict=True) if "email" in fields]
    _imported_leads(job, leads, at=now, moved=True)


def _copy_contacts(
    people: list[dict[str, str]], *, source_id: int | None, now: datetime
) -> list[int]:
    """COPY new contacts straight from the imported values (PostgreSQL): every other column
    as a new contact has it, read once from a model instance, so the two cannot drift apart."""
    meta = Contact._meta
    fields = meta.concrete_fields
    quote = connection.ops.quote_name
    templates = {}
    for stage in (Contact.Stage.LEAD, Contact.Stage.SUSPECT):
        template = Contact(stage=stage, stage_entered_at=now, created_at=now, source_id=source_id)
        templates[stage] = [copy_value(field)(template) for field in fields]
    position = {field.attname: index for index, field in enumerate(fields)}
    id_position = position[meta.pk.attname]
    columns = ", ".join(quote(field.column) for field in fields)
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('contacts_contact', 'id')) "
            "FROM generate_series(1, %s)",
            [len(people)],
        )
        ids = [pk for (pk,) in cursor.fetchall()]
        # Column names come from the model.
        with cursor.cursor.copy(f"COPY contacts_contact ({columns}) FROM STDIN") as copy:  # noqa: S608
            for pk, person in zip(ids, people, strict=True):
                row = list(
                    templates[Contact.Stage.LEAD if "email" in person else Contact.Stage.SUSPECT]
                )
                row[id_position] = pk
                for name, value in person.items():
                    row[position[name]] = value
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
