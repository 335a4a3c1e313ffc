"""A lead source per row: a column's values matched to the known lead sources (names, slugs and
the aliases an admin keeps in the lead source's page), whatever their case and accents.

Values no source matches are listed in the mapping step; they become new sources only when
the marketer ticks the box there (and may add lead sources). Otherwise their rows keep no
source, and the import's report lists the values and counts the rows: never silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils.text import slugify

from contacts.imports import files, parsing
from contacts.models import (
    ImportJob,
    ImportPlaceholder,
    LeadSource,
    lead_sources_by_key,
    source_key,
)

# The mapping step lists this many unknown values at most (the most frequent first).
UNKNOWN_SHOWN = 50


@dataclass(frozen=True)
class UnknownSource:
    value: str  # as first written in the file
    rows: int


def unknown_sources(job: ImportJob, column: int) -> list[UnknownSource]:
    """The values of ``column`` that no lead source matches, most frequent first."""
    with job.file.open("rb") as stored:
        raw = stored.read()
    try:
        rows = files.job_rows(job, raw)
    except UnicodeDecodeError:
        return []  # the import refuses the file and says why; nothing to list here
    placeholders = ImportPlaceholder.values()
    known = lead_sources_by_key()
    spelling: dict[str, str] = {}
    counts: Counter[str] = Counter()
    for row in rows:
        if column >= len(row.cells):
            continue
        value = row.cells[column].strip()
        if not value or value.casefold() in placeholders:
            continue
        key = source_key(value)
        if key and key not in known:
            spelling.setdefault(key, value)
            counts[key] += 1
    return [UnknownSource(spelling[key], rows) for key, rows in counts.most_common()]


@transaction.atomic
def lead_sources_create(*, names: list[str]) -> dict[str, int]:
    """New lead sources (channel "other", the admin completes them) named as the file writes
    them; their ids by ``source_key``. A name taken meanwhile gives the existing source."""
    created: dict[str, int] = {}
    slugs = set(LeadSource.objects.values_list("slug", flat=True))
    for name in names:
        base = slugify(name)[:100] or "source"
        slug, number = base, 2
        while slug in slugs:
            slug, number = f"{base}-{number}", number + 1
        source, _created = LeadSource.objects.get_or_create(name=name, defaults={"slug": slug})
        slugs.add(source.slug)
        created[source_key(name)] = source.pk
    return created


def rows_sources_resolve(*, job: ImportJob, rows: Iterable[parsing.CleanRow]) -> None:
    """Replace each row's source value by its lead source's id (``source_id``), creating the
    unknown ones if the marketer asked to; an unknown value left unknown gives ``source_id``
    None (the row keeps no source: not even the file's, which is for rows that name none).
    Saves on the job the unknown values and how many rows they left without a source."""
    rows = [row for row in rows if "source" in row.fields]
    if not rows:
        return
    known = lead_sources_by_key()
    keys = {value: source_key(value) for value in {row.fields["source"] for row in rows}}
    spelling: dict[str, str] = {}
    for row in rows:
        key = keys[row.fields["source"]]
        if key not in known:
            spelling.setdefault(key, row.fields["source"][:120])
    if job.create_sources:
        known.update(lead_sources_create(names=[name for key, name in spelling.items() if key]))
    unsourced = 0
    for row in rows:
        source_id = known.get(keys[row.fields.pop("source")])
        row.fields["source_id"] = source_id
        unsourced += source_id is None
    unknown = [name for key, name in spelling.items() if key not in known]
    job.unknown_sources, job.unsourced_count = unknown[:UNKNOWN_SHOWN], unsourced
    ImportJob.objects.filter(pk=job.pk).update(
        unknown_sources=job.unknown_sources, unsourced_count=unsourced
    )
