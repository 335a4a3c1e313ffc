"""What kind of file an upload is, and its rows whatever the kind: the one place that tells a
CSV from an Excel workbook. The rows are ``parsing.Row`` either way, so the mapping, cleaning,
summary and report never ask."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from django.utils.translation import gettext as _

from contacts.imports import parsing, spreadsheets
from contacts.models import ImportJob

OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0"  # Excel 97-2003 (.xls), old Word documents


def detect(raw: bytes) -> parsing.Detected:
    """The file's format and header (encoding and delimiter for a CSV, sheet for a workbook),
    or ``parsing.NotACsv`` with a message for the marketer."""
    if raw.startswith(spreadsheets.ZIP_SIGNATURE):
        return spreadsheets.detect(raw)
    if raw.startswith(OLE2_SIGNATURE):
        raise parsing.NotACsv(
            _("This is an old Excel 97-2003 file (.xls) or a workbook protected by a password. "
              "Save it as “Excel workbook (.xlsx)” without a password, or as CSV, and upload "
              "that file.")
        )  # fmt: skip
    return parsing.detect(raw)


def rows(
    raw: bytes, *, file_format: str, encoding: str, delimiter: str, sheet: str, whole: bool = False
) -> Iterator[parsing.Row]:
    """Data rows after the header. A CSV's bytes that do not decode raise
    ``UnicodeDecodeError``; ``whole`` keeps a workbook's cells past the header's columns."""
    if file_format == ImportJob.FileFormat.XLSX:
        return spreadsheets.read_rows(raw, sheet, whole=whole)
    return parsing.read_rows(raw.decode(encoding), delimiter)


def job_file_rows(job: ImportJob, stored: BinaryIO) -> Iterator[parsing.Row]:
    """The job's data rows from its open file: a CSV decoded as it is read (``UnicodeDecodeError``
    on the way for bytes that do not decode), a workbook from its bytes (calamine reads it
    whole, into compact memory of its own)."""
    if job.file_format == ImportJob.FileFormat.XLSX:
        return spreadsheets.read_rows(stored.read(), job.sheet)
    return parsing.read_file_rows(stored, job.encoding, job.delimiter)


def job_rows(job: ImportJob, raw: bytes, *, whole: bool = False) -> Iterator[parsing.Row]:
    return rows(
        raw,
        file_format=job.file_format,
        encoding=job.encoding,
        delimiter=job.delimiter,
        sheet=job.sheet,
        whole=whole,
    )
