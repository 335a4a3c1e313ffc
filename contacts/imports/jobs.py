"""The import job: created from an uploaded file, run by a worker in batches, swept when its
task never ran."""

from __future__ import annotations

import csv
import gc
import logging
from collections.abc import Iterator
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from python_calamine import CalamineError

from contacts import broker
from contacts.imports import files, parsing
from contacts.imports.sources import rows_sources_resolve
from contacts.imports.writes import ImportGroups, batch_apply, row_error
from contacts.models import (
    CustomField,
    ImportJob,
    ImportPlaceholder,
    ImportRowError,
    LeadSource,
)
from contacts.models.custom_fields import PREFIX as CUSTOM
from contacts.reasons import coded

logger = logging.getLogger(__name__)

IMPORT_BATCH_SIZE = 1000

# A whole file runs in one task; 20 MB of CSV is about 150,000 rows, a few minutes of work.
IMPORT_SOFT_TIME_LIMIT = 30 * 60

IMPORT_TIME_LIMIT = IMPORT_SOFT_TIME_LIMIT + 60

IMPORT_QUEUE_GRACE_SECONDS = 60


class ImportFailed(Exception):
    """The file could not be imported; the message is for the marketer."""


@transaction.atomic
def import_job_create(
    *,
    upload: UploadedFile,
    detected: parsing.Detected,
    source: LeadSource | None,
    overwrite: bool,
    actor: AbstractBaseUser | None,
) -> ImportJob:
    """Store an uploaded CSV with what was detected in it and a proposed column mapping."""
    job = ImportJob(
        filename=(upload.name or "import.csv")[:255],
        created_by=actor,
        source=source,
        overwrite=overwrite,
        encoding=detected.encoding,
        delimiter=detected.delimiter,
        columns=detected.columns,
        mapping=parsing.propose_mapping(detected.columns, list(CustomField.objects.active())),
        file_format=detected.file_format,
        sheet=detected.sheet,
    )
    job.file.save(job.filename, upload, save=False)
    job.save()
    return job


@transaction.atomic
def import_job_start(
    *,
    job: ImportJob,
    mapping: list[str],
    create_sources: bool = False,
    rows_are_leads: bool = False,
) -> bool:
    """Confirm the mapping and queue the import; False if it was already started (two tabs).
    ``create_sources``: create the lead sources the source column names and none matches (the
    caller checked the marketer may); ``rows_are_leads``: rows with an external id and no email
    are leads, not anonymous suspects."""
    now = timezone.now()
    started = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.MAPPING).update(
        status=ImportJob.Status.QUEUED,
        mapping=mapping,
        queued_at=now,
        create_sources=create_sources,
        rows_are_leads=rows_are_leads,
    )
    if started:
        job.status, job.mapping, job.queued_at = ImportJob.Status.QUEUED, mapping, now
        job.create_sources, job.rows_are_leads = create_sources, rows_are_leads
        transaction.on_commit(lambda: _send_import(job.pk))
    return bool(started)


def _send_import(job_id: int) -> None:
    broker.send("contacts.tasks.import_contacts_task", job_id)


def contacts_import(*, job: ImportJob) -> bool:
    """Run a queued import; False when another worker claimed it first (a double delivery).

    Not atomic as a whole: each batch commits with its counts, so the progress bar moves and a
    crash loses at most the batch in flight. Importing a file again is harmless (rows already
    imported count as unchanged), which is the way out of a failed run.
    """
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return False
    status, error = ImportJob.Status.DONE, ""
    try:
        _import_file(job)
    except ImportFailed as failure:
        status, error = ImportJob.Status.FAILED, str(failure)
    except Exception:
        logger.exception("Import %s failed", job.pk)
        status = ImportJob.Status.FAILED
        error = coded("import_unexpected")
    ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.RUNNING).update(
        status=status, error=error, finished_at=timezone.now()
    )
    return True


def _import_file(job: ImportJob) -> None:
    # No cyclic garbage collection while the file is read, and none of the rows read after:
    # they all live until the end of the import, and each full collection walked them again (3
    # collections, 1.3 s of a 30,000-row CRM export's 4 s of Python, bench ``import``). What
    # the batches leave behind is still collected; everything is handed back at the end.
    collecting = gc.isenabled()
    gc.disable()
    try:
        groups, errors = _read_job_file(job)
        gc.freeze()  # the rows read, and everything older, are left alone from here on
        if collecting:
            gc.enable()
        _import_groups(job, groups, errors)
    finally:
        gc.unfreeze()
        if collecting:
            gc.enable()


def _import_groups(job: ImportJob, groups: ImportGroups, errors: list[ImportRowError]) -> None:
    if "source" in job.mapping:
        rows_sources_resolve(job=job, rows=(row for rows in groups.values() for row in rows))
    rows_total = len(errors) + sum(len(rows) for rows in groups.values())
    with transaction.atomic():
        ImportRowError.objects.bulk_create(errors, batch_size=IMPORT_BATCH_SIZE)
        ImportJob.objects.filter(pk=job.pk).update(
            rows_total=rows_total, rows_done=len(errors), rejected_count=len(errors)
        )
    keys = list(groups)
    for start in range(0, len(keys), IMPORT_BATCH_SIZE):
        _import_batch(job, {key: groups[key] for key in keys[start : start + IMPORT_BATCH_SIZE]})


def _read_job_file(job: ImportJob) -> tuple[ImportGroups, list[ImportRowError]]:
    """Valid rows grouped by person (lower-cased email, else external id; file order kept),
    and the refused ones.

    The whole file is read first so that a duplicate in any later batch merges into its first
    row; the upload form caps the size, and only the clean rows are kept (a CSV is decoded as
    it is read), so this stays a few dozen MB at most."""
    groups: ImportGroups = {}
    errors: list[ImportRowError] = []
    with_external_id: set[tuple[str, str]] = set()
    with job.file.open("rb") as stored:
        _read_rows(job, files.job_file_rows(job, stored), groups, errors, with_external_id)
    return _join_external_ids(job, groups, errors, with_external_id), errors


def _read_rows(
    job: ImportJob,
    rows: Iterator[parsing.Row],
    groups: ImportGroups,
    errors: list[ImportRowError],
    with_external_id: set[tuple[str, str]],
) -> None:
    placeholders = ImportPlaceholder.values()
    keys = [target.removeprefix(CUSTOM) for target in job.mapping if target.startswith(CUSTOM)]
    custom = {field.key: field for field in CustomField.objects.filter(key__in=keys)}
    try:
        for row in rows:
            try:
                clean = parsing.clean_row(
                    row, job.mapping, job.delimiter, custom, placeholders=placeholders
                )
            except parsing.RowRefused as refusal:
                errors.append(
                    ImportRowError(
                        job=job,
                        line_number=row.line_number,
                        raw=parsing.raw_text(row.cells, job.delimiter)[:10_000],
                        message=refusal.reason[:500],
                    )
                )
                continue
            groups.setdefault(clean.key, []).append(clean)
            if "external_id" in clean.fields:
                with_external_id.add(clean.key)
    except (UnicodeDecodeError, LookupError) as error:  # a CSV's bytes, decoded as read
        raise ImportFailed(coded("import_unreadable")) from error
    except (csv.Error, CalamineError) as error:
        raise ImportFailed(coded("import_not_csv", cut=True, error=str(error))) from error


def _join_external_ids(
    job: ImportJob,
    groups: ImportGroups,
    errors: list[ImportRowError],
    with_external_id: set[tuple[str, str]],
) -> ImportGroups:
    """Rows without email join the person whose row gives their external id with an email. An
    external id given with two different emails is refused on the later rows: which person it
    is cannot be guessed. ``with_external_id``: the groups with an external id on some row."""
    if not with_external_id:
        return groups
    owner: dict[str, tuple[str, str]] = {}
    given_on: dict[str, int] = {}
    for key, rows in list(groups.items()):
        if key[0] != "email" or key not in with_external_id:
            continue
        kept = []
        for row in rows:
            external_id = row.fields.get("external_id")
            if external_id and owner.setdefault(external_id, key) != key:
                message = coded(
                    "import_external_id_taken", cut=True, id=external_id,
                    line=given_on[external_id],
                )  # fmt: skip
                errors.append(row_error(job, row, message))
                continue
            if external_id:
                given_on.setdefault(external_id, row.line_number)
            kept.append(row)
        if kept:
            groups[key] = kept
        else:
            del groups[key]
    for external_id, key in owner.items():
        rows = groups.pop(("external_id", external_id), None)
        if rows and key in groups:
            groups[key] = sorted([*groups[key], *rows], key=lambda row: row.line_number)
        elif rows:
            groups[("external_id", external_id)] = rows
    return groups


def _import_batch(job: ImportJob, batch: ImportGroups) -> None:
    # A contact created meanwhile by someone else (a form, another import) breaks the unique
    # email constraint: the batch rolls back and is read again, finding that contact this time.
    for attempt in range(3):
        try:
            # A durable commit per batch (synchronous_commit stays on): in the import benchmark
            # the time outside reading and writing, the commits among it, was no higher than with
            # it off (100,000 rows: 5.6-6.1 s against 5.7-8.0 s), not worth risking contacts.
            with transaction.atomic():
                counts, refused = batch_apply(job, batch)
                ImportRowError.objects.bulk_create(refused)
                ImportJob.objects.filter(pk=job.pk).update(
                    rows_done=F("rows_done") + sum(counts.values()),
                    created_count=F("created_count") + counts["created"],
                    merged_count=F("merged_count") + counts["merged"],
                    unchanged_count=F("unchanged_count") + counts["unchanged"],
                    rejected_count=F("rejected_count") + counts["rejected"],
                )
            return
        except IntegrityError:
            if attempt == 2:
                raise


def imports_sweep() -> tuple[int, int]:
    """Send again the imports whose message was lost (broker down when queued), and mark failed
    those whose worker died: past the task's hard time limit, nothing can still be running them.
    Returns (sent, failed)."""
    now = timezone.now()
    waiting = list(
        ImportJob.objects.filter(
            status=ImportJob.Status.QUEUED,
            queued_at__lte=now - timedelta(seconds=IMPORT_QUEUE_GRACE_SECONDS),
        ).values_list("pk", flat=True)
    )
    for job_id in waiting:  # the claim makes a second delivery harmless
        _send_import(job_id)
    failed = ImportJob.objects.filter(
        status=ImportJob.Status.RUNNING,
        started_at__lte=now - timedelta(seconds=IMPORT_TIME_LIMIT + 60),
    ).update(
        status=ImportJob.Status.FAILED,
        finished_at=now,
        error=coded("import_interrupted"),
    )
    return len(waiting), failed
