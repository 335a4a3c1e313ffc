"""Reading an Excel workbook (.xlsx) as the rows of a CSV file: its first non-empty sheet, each
cell rendered as the text a marketer sees, so the import's mapping, cleaning and report are the
CSV's own (``contacts.imports.parsing``).

Read with python-calamine (a Rust reader) rather than openpyxl: openpyxl's read-only mode
streams, but builds a Python cell object per value and is several times slower; calamine keeps
the sheet's values in compact Rust memory (tens of bytes a cell) and hands Python one row at a
time, so a 100,000-row workbook costs a few dozen MB (``import`` benchmark, XLSX case).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.utils.translation import gettext as _
from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

from contacts.imports import parsing

ZIP_SIGNATURE = b"PK\x03\x04"
# A workbook's XML is 5 to 20 times its zipped size; more than this is a zip bomb or a sheet far
# beyond the upload limit's rows, refused before anything is decompressed.
MAX_UNZIPPED_BYTES = 400 * 1024 * 1024
# Excel stores every number as a double: integers up to 2**53 are exact, so a phone number or an
# id typed as a number is rendered with all its digits and no ".0".
EXACT_INTEGER = 2**53
XLSX_FORMAT = "xlsx"


class NotASpreadsheet(parsing.NotACsv):
    """A zip file that is not an Excel workbook we can read; the message says what it is."""


def detect(raw: bytes) -> parsing.Detected:
    """The first non-empty sheet's name and header, or ``NotASpreadsheet`` saying why not."""
    _check_package(raw)
    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(raw))
        # Worksheets a person sees: not a chart, nor a sheet someone hid.
        names = [
            sheet.name
            for sheet in workbook.sheets_metadata
            if sheet.typ == SheetTypeEnum.WorkSheet and sheet.visible == SheetVisibleEnum.Visible
        ]
        for name in names:
            header = next(_sheet_rows(workbook, name), None)
            if header is not None:
                return parsing.Detected(
                    encoding="",
                    delimiter="",
                    columns=[cell.strip() for cell in header.cells],
                    file_format=XLSX_FORMAT,
                    sheet=name,
                )
    except CalamineError as error:
        raise NotASpreadsheet(_damaged()) from error
    raise NotASpreadsheet(_("The workbook's sheets are all empty."))


def _check_package(raw: bytes) -> None:
    """A zip holding an Excel workbook, not a Word or OpenDocument file, nor a damaged zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as package:
            names = set(package.namelist())
            unzipped = sum(info.file_size for info in package.infolist())
            mimetype = package.read("mimetype")[:100] if "mimetype" in names else b""
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise NotASpreadsheet(_damaged()) from error
    if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
        if "xl/workbook.bin" in names:
            raise NotASpreadsheet(
                _("This is an Excel binary workbook (.xlsb). Save it as “Excel workbook (.xlsx)” "
                  "or as CSV and upload that file.")
            )  # fmt: skip
        if unzipped > MAX_UNZIPPED_BYTES:
            raise NotASpreadsheet(_("The workbook is too large once unzipped."))
        return
    if "word/document.xml" in names:
        raise NotASpreadsheet(
            _("This is a Word document, not a spreadsheet. Upload a CSV or an Excel (.xlsx) "
              "file of your contacts.")
        )  # fmt: skip
    if mimetype.startswith(b"application/vnd.oasis.opendocument"):
        raise NotASpreadsheet(
            _("This is an OpenDocument file (LibreOffice). Save it as “Excel 2007-365 (.xlsx)” "
              "or as CSV and upload that file.")
        )  # fmt: skip
    raise NotASpreadsheet(
        _("This is a zip archive, not a CSV or Excel (.xlsx) file of contacts.")
    )  # fmt: skip


def _damaged() -> str:
    return _(
        "This file looks like an Excel workbook but cannot be opened: it is damaged or "
        "incomplete. Open it in your spreadsheet, save it again and upload it."
    )


def read_rows(raw: bytes, sheet: str, *, whole: bool = False) -> Iterator[parsing.Row]:
    """Data rows after the header of ``sheet``, numbered as the spreadsheet numbers them; blank
    rows skipped. Cells past the header's last column are dropped unless ``whole``: they have no
    header to map to, and unlike a CSV's extra cells they cannot be a shifted row."""
    workbook = CalamineWorkbook.from_filelike(io.BytesIO(raw))
    rows = _sheet_rows(workbook, sheet)
    header = next(rows, None)
    if header is None:
        return
    width = len(header.cells)
    for row in rows:
        if whole:
            yield row
        elif "".join(row.cells[:width]).strip():
            yield parsing.Row(
                line_number=row.line_number, cells=row.cells[:width], last_line=row.line_number
            )


def _sheet_rows(workbook: CalamineWorkbook, sheet: str) -> Iterator[parsing.Row]:
    """Non-blank rows of the sheet as text, the header first; calamine yields them one at a time
    from row 1 (its used range starts at the first used column)."""
    values = workbook.get_sheet_by_name(sheet)
    for number, cells in enumerate(values.iter_rows(), start=1):
        texts = [cell_text(cell) for cell in cells]
        while texts and not texts[-1]:
            texts.pop()
        if texts and any(text.strip() for text in texts):
            yield parsing.Row(line_number=number, cells=texts, last_line=number)


def cell_text(value: object) -> str:
    """A cell as a marketer reads it: whole numbers without ".0" or an exponent (a phone number
    typed as a number keeps its digits), dates in ISO 8601, booleans as Excel shows them."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < EXACT_INTEGER:
            return str(int(value))
        if value != value or value in (float("inf"), float("-inf")):
            return ""
        text = repr(value)
        # repr writes 1e+20 or 1.5e-07 where a person writes the digits
        return format(Decimal(text), "f") if "e" in text else text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        if value.time() == time():
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds" if value.microsecond == 0 else "auto")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return value.isoformat(timespec="seconds" if value.microsecond == 0 else "auto")
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return "" if value is None else str(value)
