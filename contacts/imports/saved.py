"""Column mappings saved by name and applied to later files by their header names.

A saved mapping is keyed by header (compared as ``parsing.header_key`` compares them: no case,
accents or punctuation), so it fits a file whose columns come in another order; a header it
does not know stays ignored, and a field it names that the import no longer offers is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from contacts.imports import parsing
from contacts.models import CustomField, ImportJob, SavedMapping


@transaction.atomic
def saved_mapping_save(
    *, name: str, columns: Sequence[str], mapping: Sequence[str], actor: AbstractBaseUser | None
) -> tuple[SavedMapping, bool]:
    """Save the mapped columns under ``name``, replacing a mapping of that name (any case).
    Returns the mapping and whether it was created."""
    pairs = [
        {"header": header, "field": target}
        for header, target in zip(columns, mapping, strict=False)
        if target and header
    ]
    name = name.strip()
    saved = (
        SavedMapping.objects.select_for_update()
        .annotate(lowered=Lower("name"))
        .filter(lowered=name.lower())
        .first()
    )
    if saved is None:
        try:
            with transaction.atomic():  # two marketers saving one new name at once
                saved = SavedMapping.objects.create(name=name, columns=pairs, created_by=actor)
            return saved, True
        except IntegrityError:
            saved = SavedMapping.objects.select_for_update().get(name__iexact=name)
    saved.name, saved.columns, saved.updated_at = name, pairs, timezone.now()
    saved.save(update_fields=["name", "columns", "updated_at"])
    return saved, False


def mapping_from_saved(
    saved: SavedMapping, columns: Sequence[str], custom: Sequence[CustomField] = ()
) -> list[str]:
    """A field per column of a new file (or ``IGNORE``), matched on header names; each field
    goes to its first column, as the proposed mapping does. ``custom``: the active custom
    fields, which the import offers too."""
    offered = {value for value, _label in parsing.field_choices(custom)}
    by_header: dict[str, str] = {}
    for pair in saved.columns:
        if pair.get("field") in offered:
            by_header.setdefault(parsing.header_key(pair.get("header", "")), pair["field"])
    taken: set[str] = set()
    mapping = []
    for column in columns:
        target = by_header.get(parsing.header_key(column), parsing.IGNORE)
        if target in taken:
            target = parsing.IGNORE
        taken.add(target)
        mapping.append(target)
    return mapping


@transaction.atomic
def import_job_remap(*, job: ImportJob, mapping: list[str]) -> bool:
    """Keep the mapping being chosen on a job not started yet; False once it has started."""
    changed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.MAPPING).update(
        mapping=mapping
    )
    if changed:
        job.mapping = mapping
    return bool(changed)
