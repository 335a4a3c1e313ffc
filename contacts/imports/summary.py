"""The pre-import summary: what is in the file before anything is written.

One pass over the file at upload (``file_figures``) counts, per column, the filled cells, a few
distinct values, the values repeated from an earlier row and the valid email addresses, and
per file the rows the import will refuse for their shape. Those figures do not depend on the
mapping, so they are stored on the job once and ``summary_for`` turns them into the summary of
whatever mapping the marketer is choosing, without reading the file again.

Memory: a column's repeated values are counted from 8-byte hashes of its values kept in an
array and sorted at the end (about 1 MB a column per 100,000 rows), not from a set of strings.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from contacts import reasons
from contacts.imports import files, parsing
from contacts.models import ImportJob, ImportPlaceholder

SAMPLES = 5  # distinct values shown per column
LINES_SHOWN = 5  # line numbers given with a warning
# An email column where more than this share of the filled cells are not addresses is probably
# not the email column.
INVALID_EMAIL_SHARE = 0.2
SHAPE_CODES = ("import_extra_cells", "import_unclosed_quote", "import_control_characters")


@dataclass
class _Column:
    filled: int = 0
    samples: list[str] = field(default_factory=list)
    hashes: array = field(default_factory=lambda: array("q"))
    emails: int = 0


def file_figures(
    rows: Iterable[parsing.Row],
    width: int,
    *,
    delimiter: str,
    placeholders: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The mapping-independent figures of a file's data rows (``width``: the header's columns).

    ``rows`` are a workbook's whole rows (cells past the header included) or a CSV's records;
    a cell whose case-folded value is one of ``placeholders`` ("select") is blank, as the
    import reads it."""
    columns = [_Column() for _ in range(width)]
    seen_samples: list[set[str]] = [set() for _ in range(width)]
    shape: dict[str, dict[str, Any]] = {code: {"count": 0, "lines": []} for code in SHAPE_CODES}
    beyond_header = {"count": 0, "lines": []}
    short_rows = 0
    total = 0
    for row in rows:
        total += 1
        if delimiter:  # a CSV: the rows the import will refuse for their shape
            try:
                parsing.check_shape(row, width, delimiter)
            except parsing.RowRefused as refusal:
                _note(shape[reasons.code(refusal.reason)], row.line_number)
            if len(row.cells) < width:
                short_rows += 1
        elif len(row.cells) > width and "".join(row.cells[width:]).strip():
            _note(beyond_header, row.line_number)
        for index, cell in enumerate(row.cells[:width]):
            value = cell.strip()
            if not value:
                continue
            folded = value.casefold()
            if folded in placeholders:
                continue
            column = columns[index]
            column.filled += 1
            column.hashes.append(hash(folded))
            if len(column.samples) < SAMPLES and folded not in seen_samples[index]:
                seen_samples[index].add(folded)
                column.samples.append(parsing.CONTROL_PATTERN.sub("\ufffd", value)[:80])
            if "@" in value and _is_email(value):
                column.emails += 1
    return {
        "rows": total,
        "columns": [
            {
                "filled": column.filled,
                "samples": column.samples,
                "repeated": _repeated(column.hashes),
                "emails": column.emails,
            }
            for column in columns
        ],
        "extra_cells": shape["import_extra_cells"],
        "unclosed_quotes": shape["import_unclosed_quote"],
        "control_characters": shape["import_control_characters"],
        "beyond_header": beyond_header,
        "short_rows": short_rows,
    }


def _note(found: dict[str, Any], line: int) -> None:
    found["count"] += 1
    if len(found["lines"]) < LINES_SHOWN:
        found["lines"].append(line)


def _is_email(value: str) -> bool:
    try:
        parsing.validate_email(value)
    except ValidationError:
        return False
    return True


def _repeated(hashes: array) -> int:
    """Values equal to one on an earlier row: the cells minus the distinct values."""
    if not hashes:
        return 0
    ordered = sorted(hashes)
    steps = zip(ordered, ordered[1:], strict=False)
    distinct = 1 + sum(1 for before, after in steps if before != after)
    return len(ordered) - distinct


def import_summary_record(*, job: ImportJob) -> dict[str, Any]:
    """Read the job's file once and store its figures; returns them. A file that cannot be read
    gets empty figures: the import itself reports why. Not atomic: the file is read (seconds for
    a large one) before the one UPDATE, outside any transaction."""
    with job.file.open("rb") as stored:
        raw = stored.read()
    try:
        rows = files.job_rows(job, raw, whole=True)
        figures = file_figures(
            rows, len(job.columns), delimiter=job.delimiter,
            placeholders=ImportPlaceholder.values(),
        )  # fmt: skip
    except Exception:  # noqa: BLE001 (a summary never blocks an import; the job reports errors)
        figures = {"rows": None, "columns": []}
    ImportJob.objects.filter(pk=job.pk).update(summary=figures)
    job.summary = figures
    return figures


@dataclass(frozen=True)
class MappedField:
    label: str
    column: str
    filled: int
    samples: list[str]


@dataclass(frozen=True)
class SummaryWarning:
    text: str
    serious: bool = True  # rows will be refused or merged, not just a note


@dataclass(frozen=True)
class Summary:
    rows: int | None
    columns: int
    mapped: list[MappedField]
    warnings: list[SummaryWarning]


def summary_for(figures: dict[str, Any], columns: Sequence[str], mapping: Sequence[str]) -> Summary:
    """The summary of ``mapping`` (one field name or "" per column) from stored figures."""
    stats = figures.get("columns") or []
    if len(stats) != len(columns):
        return Summary(rows=figures.get("rows"), columns=len(columns), mapped=[], warnings=[])
    choices = dict(parsing.field_choices())
    names = [
        column or _("Column %(number)d") % {"number": number}
        for number, column in enumerate(columns, 1)
    ]
    mapped = [
        MappedField(
            label=str(choices.get(target, target)),
            column=name,
            filled=stat["filled"],
            samples=stat["samples"],
        )
        for name, target, stat in zip(names, mapping, stats, strict=False)
        if target
    ]
    warnings = _shape_warnings(figures)
    by_field = {target: index for index, target in enumerate(mapping) if target}
    warnings += _column_warnings(figures, stats, names, mapping, by_field)
    return Summary(rows=figures.get("rows"), columns=len(columns), mapped=mapped, warnings=warnings)


def _lines(found: dict[str, Any]) -> str:
    shown = ", ".join(str(line) for line in found["lines"])
    return shown + ("…" if found["count"] > len(found["lines"]) else "")


def _shape_warnings(figures: dict[str, Any]) -> list[SummaryWarning]:
    warnings = []
    messages = {
        "unclosed_quotes": lambda count: ngettext(
            "%(count)d row opens a quote that is not closed where it should be (lines "
            "%(lines)s): it will be refused; check the quoting around it.",
            "%(count)d rows open a quote that is not closed where it should be (lines "
            "%(lines)s): they will be refused; check the quoting around them.",
            count,
        ),
        "extra_cells": lambda count: ngettext(
            "%(count)d row has more cells than the header (lines %(lines)s): a stray delimiter "
            "or quote shifted its values; it will be refused.",
            "%(count)d rows have more cells than the header (lines %(lines)s): a stray "
            "delimiter or quote shifted their values; they will be refused.",
            count,
        ),
        "control_characters": lambda count: ngettext(
            "%(count)d row holds control characters (lines %(lines)s): it will be refused.",
            "%(count)d rows hold control characters (lines %(lines)s): they will be refused.",
            count,
        ),
        "beyond_header": lambda count: ngettext(
            "%(count)d row has values past the last titled column (lines %(lines)s): those "
            "values are ignored.",
            "%(count)d rows have values past the last titled column (lines %(lines)s): those "
            "values are ignored.",
            count,
        ),
    }
    for key, message in messages.items():
        found = figures.get(key) or {"count": 0}
        if found["count"]:
            text = message(found["count"]) % {"count": found["count"], "lines": _lines(found)}
            warnings.append(SummaryWarning(text, serious=key != "beyond_header"))
    short = figures.get("short_rows") or 0
    if short:
        text = ngettext(
            "%(count)d row has fewer cells than the header: its missing cells are read as blank.",
            "%(count)d rows have fewer cells than the header: their missing cells are read as "
            "blank.",
            short,
        ) % {"count": short}
        warnings.append(SummaryWarning(text, serious=False))
    return warnings


def _column_warnings(
    figures: dict[str, Any],
    stats: list[dict[str, Any]],
    names: list[str],
    mapping: Sequence[str],
    by_field: dict[str, int],
) -> list[SummaryWarning]:
    warnings = []
    rows = figures.get("rows") or 0
    choices = dict(parsing.field_choices())
    for name, target, stat in zip(names, mapping, stats, strict=False):
        if target and not stat["filled"]:
            text = _("The column “%(column)s” is empty: “%(field)s” gets nothing from it.") % {
                "column": name,
                "field": choices.get(target, target),
            }
            warnings.append(SummaryWarning(text))
    empty = [name for name, target, stat in zip(names, mapping, stats, strict=False)
             if not target and not stat["filled"]]  # fmt: skip
    if empty:
        text = ngettext(
            "An ignored column is empty: %(columns)s.",
            "%(count)d ignored columns are empty: %(columns)s.",
            len(empty),
        ) % {
            "count": len(empty),
            "columns": ", ".join(_("“%(column)s”") % {"column": name} for name in empty),
        }
        warnings.append(SummaryWarning(text, serious=False))
    if "email" in by_field:
        stat = stats[by_field["email"]]
        invalid = stat["filled"] - stat["emails"]
        if invalid:
            share = invalid / stat["filled"]
            text = ngettext(
                "%(count)d value of the email column is not a valid address (%(percent)d %%).",
                "%(count)d values of the email column are not valid addresses (%(percent)d %%).",
                invalid,
            ) % {"count": invalid, "percent": round(100 * share)}
            if share > INVALID_EMAIL_SHARE:
                text += " " + _("Is “%(column)s” really the email column?") % {
                    "column": names[by_field["email"]]
                }
            text += " " + _("Those rows will be refused.")
            warnings.append(SummaryWarning(text))
        if stat["repeated"]:
            warnings.append(SummaryWarning(_repeated_text("email", stat["repeated"])))
        if "external_id" not in by_field and rows > stat["filled"]:
            missing = rows - stat["filled"]
            text = ngettext(
                "%(count)d row has no email address: it will be refused.",
                "%(count)d rows have no email address: they will be refused.",
                missing,
            ) % {"count": missing}
            warnings.append(SummaryWarning(text))
    if "external_id" in by_field:
        repeated = stats[by_field["external_id"]]["repeated"]
        if repeated:
            warnings.append(SummaryWarning(_repeated_text("external_id", repeated)))
    return warnings


def _repeated_text(target: str, count: int) -> str:
    if target == "email":
        text = ngettext(
            "%(count)d row repeats an email address of an earlier row: it is merged into the "
            "first one.",
            "%(count)d rows repeat an email address of an earlier row: they are merged into the "
            "first one.",
            count,
        )
    else:
        text = ngettext(
            "%(count)d row repeats an external id of an earlier row: it is merged into the "
            "first one.",
            "%(count)d rows repeat an external id of an earlier row: they are merged into the "
            "first one.",
            count,
        )
    return text % {"count": count}
