"""Reading a marketer's CSV file: pure functions, no ORM, so they are tested in milliseconds.

Detection (encoding, delimiter, header), the proposed column mapping, and turning rows into
clean contact fields or a reason for refusal. ``contacts.imports.jobs.contacts_import`` writes.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts import reasons
from contacts.imports import meaning
from contacts.models import Contact, CustomField, canonical_time_zone
from contacts.models.custom_fields import PREFIX as CUSTOM_PREFIX
from contacts.reasons import coded

# What a column may become; "" means the column is ignored.
IMPORT_FIELDS = (
    "email", "external_id", "first_name", "last_name", "company", "phone", "job_title",
    "country", "industry", "company_size", "time_zone", "utm_source", "utm_medium",
    "utm_campaign", "utm_term", "utm_content",
)  # fmt: skip
# What a column may mean beyond a contact's text fields: a per-row lead source, consent and
# suppression, an outcome (``contacts.imports.meaning`` reads their values).
MEANING_FIELDS = (
    "source", "do_not_email", "do_not_call", "unsubscribed", "consent", "consent_at",
    "consent_basis", "consent_method", "legitimate_interest_notice_on",
    "open_tracking_consent", "outcome", "outcome_at", "outcome_amount", "outcome_currency",
)  # fmt: skip
MEANING_FIELDS_SET = frozenset(MEANING_FIELDS)
IGNORE = ""

# Headers as marketers write them, compared without case, accents or punctuation.
HEADER_ALIASES: dict[str, str] = {
    "email": "email", "e mail": "email", "courriel": "email", "adresse e mail": "email",
    "adresse email": "email", "mail": "email", "email address": "email",
    "adresse courriel": "email",
    "external id": "external_id", "id externe": "external_id", "identifiant": "external_id",
    "identifiant externe": "external_id", "id": "external_id", "external reference": "external_id",
    "first name": "first_name", "firstname": "first_name", "prenom": "first_name",
    "last name": "last_name", "lastname": "last_name", "surname": "last_name", "nom": "last_name",
    "nom de famille": "last_name",
    "societe": "company", "entreprise": "company", "company": "company",
    "organisation": "company", "organization": "company",
    "phone": "phone", "telephone": "phone", "tel": "phone", "phone number": "phone",
    "portable": "phone", "mobile": "phone",
    "job title": "job_title", "fonction": "job_title", "poste": "job_title",
    "titre": "job_title", "title": "job_title",
    "country": "country", "pays": "country",
    "industry": "industry", "secteur": "industry", "secteur d activite": "industry",
    "company size": "company_size", "employees": "company_size", "effectif": "company_size",
    "taille entreprise": "company_size", "taille de l entreprise": "company_size",
    "time zone": "time_zone", "timezone": "time_zone", "fuseau horaire": "time_zone",
    "fuseau": "time_zone", "tz": "time_zone",
    "utm source": "utm_source", "utm medium": "utm_medium", "utm campaign": "utm_campaign",
    "utm term": "utm_term", "utm content": "utm_content",
    # A CRM's own ids: the first such column is proposed as the external id.
    "prospect id": "external_id", "lead number": "external_id", "lead id": "external_id",
    "crm id": "external_id", "id client": "external_id", "customer id": "external_id",
    "record id": "external_id", "contact id": "external_id", "client id": "external_id",
    "id crm": "external_id", "numero client": "external_id", "id prospect": "external_id",
    "identifiant client": "external_id", "reference client": "external_id",
    "source": "source", "lead source": "source", "origine": "source",
    "source du lead": "source", "source du contact": "source", "origine du lead": "source",
    "origine du contact": "source", "source de la piste": "source", "contact source": "source",
    "do not email": "do_not_email", "donotemail": "do_not_email",
    "email opt out": "do_not_email", "ne pas envoyer d email": "do_not_email",
    "ne pas envoyer de mail": "do_not_email", "ne pas contacter par email": "do_not_email",
    "do not call": "do_not_call", "donotcall": "do_not_call", "ne pas appeler": "do_not_call",
    "unsubscribed": "unsubscribed", "desabonne": "unsubscribed", "desinscrit": "unsubscribed",
    "consent": "consent", "consentement": "consent", "consent status": "consent",
    "statut du consentement": "consent", "opt in": "consent", "marketing consent": "consent",
    "consent date": "consent_at", "date du consentement": "consent_at",
    "date de consentement": "consent_at", "consent given": "consent_at",
    "informed on": "legitimate_interest_notice_on", "notice date": "legitimate_interest_notice_on",
    "legitimate interest notice": "legitimate_interest_notice_on",
    "date d information": "legitimate_interest_notice_on",
    "informe le": "legitimate_interest_notice_on",
    "open tracking consent": "open_tracking_consent", "open tracking": "open_tracking_consent",
    "suivi des ouvertures": "open_tracking_consent",
    "consentement suivi des ouvertures": "open_tracking_consent",
    "legal basis": "consent_basis", "lawful basis": "consent_basis",
    "base legale": "consent_basis", "base juridique": "consent_basis",
    "consent proof": "consent_method", "consent method": "consent_method",
    "preuve du consentement": "consent_method", "consent source": "consent_method",
    "converted": "outcome", "outcome": "outcome", "won lost": "outcome", "won": "outcome",
    "converti": "outcome", "gagne perdu": "outcome", "statut gagne perdu": "outcome",
    "outcome date": "outcome_at", "conversion date": "outcome_at",
    "converted date": "outcome_at", "date de conversion": "outcome_at",
    "close date": "outcome_at", "date de cloture": "outcome_at", "date du resultat": "outcome_at",
    "amount": "outcome_amount", "montant": "outcome_amount", "deal amount": "outcome_amount",
    "deal value": "outcome_amount", "montant gagne": "outcome_amount",
    "montant de l affaire": "outcome_amount", "revenue": "outcome_amount",
    "currency": "outcome_currency", "devise": "outcome_currency",
}  # fmt: skip

SAMPLE_BYTES = 8192
DELIMITERS = ",;\t"
# Signatures of files people upload by mistake: xlsx/docx/odt (zip), old .xls, images, PDF.
BINARY_SIGNATURES = (
    b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF",
)  # fmt: skip
# Control characters never found in a text export (tab, CR and LF are allowed).
CONTROL_CHARACTERS = frozenset(chr(code) for code in range(32)) - {"\t", "\r", "\n"}
CONTROL_PATTERN = re.compile("[" + re.escape("".join(sorted(CONTROL_CHARACTERS))) + "]")
# More control characters than this (or one per thousand characters) in the first 32 KB: the
# file is binary, not a text export with a damaged row or two.
MAX_STRAY_CONTROL_CHARACTERS = 8


class NotACsv(ValueError):
    """The upload cannot be read as a CSV file; the message says why, for the marketer."""


class RowRefused(ValueError):
    """A row the import cannot take; ``reason`` is a code of ``contacts.reasons``, translated
    when the marketer reads the report."""

    def __init__(self, code: str, **params: object) -> None:
        self.reason = coded(code, cut=True, **params)
        super().__init__(reasons.text(self.reason))


@dataclass(frozen=True)
class Detected:
    encoding: str
    delimiter: str  # "" for a workbook: no quoting to check, see ``check_shape``
    columns: list[str]
    file_format: str = "csv"  # or "xlsx" (``contacts.imports.spreadsheets``)
    sheet: str = ""  # the workbook's sheet read


def detect(raw: bytes) -> Detected:
    """The file's encoding, delimiter and header, or ``NotACsv``."""
    text, encoding = decode(raw)
    header_line = _first_line(text)
    if header_line is None:
        raise NotACsv(_("The file is empty."))
    delimiter = sniff_delimiter(text[:SAMPLE_BYTES], header_line)
    reader = csv.reader(lines(text), delimiter=delimiter)
    header = next((row for row in reader if any(cell.strip() for cell in row)), [])
    return Detected(
        encoding=encoding, delimiter=delimiter, columns=[cell.strip() for cell in header]
    )


def _first_line(text: str) -> str | None:
    """The first non-blank line (``str.splitlines``' lines), read from a growing start of the
    text rather than from a list of all its lines."""
    size = SAMPLE_BYTES
    while True:
        found = text[:size].splitlines()
        if size < len(text):
            found = found[:-1]  # the last line may go on past the cut
        line = next((line for line in found if line.strip()), None)
        if line is not None or size >= len(text):
            return line
        size *= 4


def lines(text: str) -> Iterator[str]:
    """The text's lines with their ends, cut at "\n" only: what ``io.StringIO(text)`` gives a
    CSV reader, without its copy of the whole text at 4 bytes a character (38 MB for a
    100,000-row CRM export with one "œ" in it, bench ``import``)."""
    start, end = 0, len(text)
    find = text.find
    while start < end:
        stop = find("\n", start)
        if stop < 0:
            yield text[start:]
            return
        yield text[start : stop + 1]
        start = stop + 1


def decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (BOM or not), UTF-16 with a BOM (Excel's "Unicode text"),
    else Windows-1252, the French Excel default."""
    if raw.startswith(BINARY_SIGNATURES):
        raise NotACsv(
            _("This looks like a spreadsheet, an image or a PDF, not a CSV file. In your "
              "spreadsheet, use “Save as” → “CSV” and upload that file.")
        )  # fmt: skip
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text, encoding = _decode_as(raw, "utf-16"), "utf-16"
    else:
        try:
            text, encoding = raw.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError:
            text, encoding = _decode_as(raw, "cp1252"), "cp1252"
    if _looks_binary(text):
        raise NotACsv(_("The file contains binary data: it is not a CSV file."))
    return text, encoding


def _looks_binary(text: str) -> bool:
    """Control characters in the header line, or in more than a few places of the sample:
    binary data (or UTF-16 without its BOM). One stray NUL in a row is that row's problem
    (``clean_row`` refuses it), not a reason to refuse the file."""
    sample = text[: SAMPLE_BYTES * 4]
    header = next((line for line in sample.splitlines() if line.strip()), "")
    if any(char in CONTROL_CHARACTERS for char in header):
        return True
    found = sum(1 for char in sample if char in CONTROL_CHARACTERS)
    return found > max(MAX_STRAY_CONTROL_CHARACTERS, len(sample) // 1000)


def _decode_as(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        raise NotACsv(
            _("The file's characters cannot be read. Save it as “CSV UTF-8” and try again.")
        ) from error


def sniff_delimiter(sample: str, header_line: str) -> str:
    """Comma, semicolon or tab. The sniffer reads a sample cut at a line end; when it fails,
    or picks a character the header does not contain, the header's most frequent one wins."""
    counts = {candidate: header_line.count(candidate) for candidate in DELIMITERS}
    if "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        sniffed = None
    if sniffed and (counts[sniffed] or not any(counts.values())):
        return sniffed
    best = max(DELIMITERS, key=lambda candidate: counts[candidate])
    return best if counts[best] else ","


def header_key(header: str) -> str:
    """ "Adresse E-mail " → "adresse e mail": no case, accents or punctuation."""
    decomposed = unicodedata.normalize("NFKD", header.casefold())
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    words = "".join(char if char.isalnum() else " " for char in letters)
    return " ".join(words.split())


def propose_mapping(columns: Sequence[str], custom: Sequence[CustomField] = ()) -> list[str]:
    """A contact field per column (or ``IGNORE``); each field goes to its first column. A
    header that is a custom field's label or key is proposed as that field."""
    taken: set[str] = set()
    mapping = []
    aliases = dict(HEADER_ALIASES)
    for custom_field in custom:
        for name in (custom_field.key, custom_field.label):
            aliases.setdefault(header_key(name), f"{CUSTOM_PREFIX}{custom_field.key}")
    for column in columns:
        target = aliases.get(header_key(column), IGNORE)
        if target in taken:
            target = IGNORE
        taken.add(target)
        mapping.append(target)
    return mapping


MEANING_LABELS = {
    "source": gettext_lazy("Lead source (per row)"),
    "do_not_email": gettext_lazy("Do not email"),
    "do_not_call": gettext_lazy("Do not call"),
    "unsubscribed": gettext_lazy("Unsubscribed"),
    "consent": gettext_lazy("Consent status"),
    "consent_at": gettext_lazy("Consent date"),
    "consent_basis": gettext_lazy("Legal basis"),
    "consent_method": gettext_lazy("Consent proof"),
    "legitimate_interest_notice_on": gettext_lazy("Legitimate interest: informed on"),
    "open_tracking_consent": gettext_lazy("Consent to open tracking (yes/no)"),
    "outcome": gettext_lazy("Outcome (won, lost, converted)"),
    "outcome_at": gettext_lazy("Outcome date"),
    "outcome_amount": gettext_lazy("Amount won"),
    "outcome_currency": gettext_lazy("Currency"),
}


def field_label(name: str) -> str:
    if name in MEANING_LABELS:
        return str(MEANING_LABELS[name])
    if name.startswith(CUSTOM_PREFIX):  # a custom field: its key (field_choices has its label)
        return name.removeprefix(CUSTOM_PREFIX)
    return str(Contact._meta.get_field(name).verbose_name).capitalize()


def _import_field_label(name: object) -> str:
    try:
        return field_label(str(name))
    except Exception:  # noqa: BLE001 (a field renamed since: its name is all there is)
        return str(name)


reasons.LABELS["import_field"] = _import_field_label


def field_choices(custom: Sequence[CustomField] = ()) -> list[tuple[str, str]]:
    return [
        (IGNORE, str(gettext_lazy("— ignore this column —"))),
        *((name, field_label(name)) for name in (*IMPORT_FIELDS, *MEANING_FIELDS)),
        *((f"{CUSTOM_PREFIX}{field.key}", field.label) for field in custom),
    ]


@dataclass(frozen=True, slots=True)
class Row:
    line_number: int  # where the record starts in the file, header included
    cells: list[str]
    last_line: int = 0  # where it ends (a quoted newline makes a record of several lines)


def read_rows(text: str, delimiter: str) -> Iterator[Row]:
    """Data records after the header; blank lines skipped, quoted newlines kept."""
    return read_lines(lines(text), delimiter)


def read_file_rows(stream: BinaryIO, encoding: str, delimiter: str) -> Iterator[Row]:
    """``read_rows`` of a file's bytes, decoded as they are read: neither the bytes nor the
    text of the whole file are ever held (for a 100,000-row file, 9 MB of bytes and 9 to 36 MB
    of text, by its widest character). A byte that does not decode raises
    ``UnicodeDecodeError`` on the way, as ``bytes.decode`` would have up front."""
    return read_lines(decoded_lines(stream, encoding), delimiter)


READ_BYTES = 1 << 20


def decoded_lines(stream: BinaryIO, encoding: str) -> Iterator[str]:
    """``lines(stream.read().decode(encoding))``, a megabyte at a time."""
    decoder = codecs.getincrementaldecoder(encoding)()
    pending = ""
    while True:
        chunk = stream.read(READ_BYTES)
        text = pending + decoder.decode(chunk, final=not chunk)
        cut = text.rfind("\n") + 1
        yield from lines(text[:cut])
        pending = text[cut:]
        if not chunk:
            if pending:
                yield pending
            return


def read_lines(source: Iterable[str], delimiter: str) -> Iterator[Row]:
    """Data records after the header of a CSV's lines (``lines``)."""
    reader = csv.reader(source, delimiter=delimiter)
    seen_header = False
    start = 1
    for cells in reader:
        line_number, start = start, reader.line_num + 1
        if not "".join(cells).strip():  # every cell blank (one join: cheaper than a loop)
            continue
        if not seen_header:
            seen_header = True
            continue
        yield Row(line_number=line_number, cells=cells, last_line=reader.line_num)


def check_shape(row: Row, columns: int, delimiter: str) -> None:
    """Refuse a row the parser may have misread: ``RowRefused`` says how.

    An unclosed quote makes the parser read the following lines into one value, until some
    later quote closes it: such a value holds a line break and about a record's worth of
    delimiters. More non-blank cells than the header has means a stray delimiter or quote
    shifted the values. A short row is kept (missing cells are blank): Excel drops empty
    cells at the end of rows."""
    joined = "".join(row.cells)
    if CONTROL_PATTERN.search(joined):
        raise RowRefused("import_control_characters", line=row.line_number)
    if columns > 1 and delimiter and "\n" in joined:  # one search, not one a cell
        for cell in row.cells:
            if "\n" in cell and cell.count(delimiter) >= columns - 1:
                last = max(row.last_line, row.line_number + cell.count("\n"))
                raise RowRefused("import_unclosed_quote", line=row.line_number, last=last)
    if len(row.cells) > columns and any(cell.strip() for cell in row.cells[columns:]):
        raise RowRefused(
            "import_extra_cells", line=row.line_number, count=len(row.cells), expected=columns
        )


@dataclass(slots=True)
class CleanRow:
    line_number: int
    # What makes two rows the same person: ("email", lower-cased email), or for a row without
    # email ("external_id", its external id).
    key: tuple[str, str]
    # Text by contact field; the meaning fields as ``meaning.read_meaning`` leaves them (flags
    # as booleans, dates as aware datetimes, codes).
    fields: dict[str, Any] = field(default_factory=dict)


class CompiledEmailValidator(EmailValidator):
    """Django's email validator with the same patterns compiled once: its lazily compiled ones
    go through a proxy on every match (9 µs an email against 2 µs, most of a row's cleaning)."""

    user_regex = re.compile(EmailValidator.user_regex.pattern, EmailValidator.user_regex.flags)
    domain_regex = re.compile(
        EmailValidator.domain_regex.pattern, EmailValidator.domain_regex.flags
    )
    literal_regex = re.compile(
        EmailValidator.literal_regex.pattern, EmailValidator.literal_regex.flags
    )


validate_email = CompiledEmailValidator()
MAX_LENGTHS = {
    name: Contact._meta.get_field(name).max_length for name in (*IMPORT_FIELDS, "consent_method")
}
MAX_LENGTHS["source"] = 120  # LeadSource.name, when the import creates it


def clean_row(
    row: Row,
    mapping: Sequence[str],
    delimiter: str,
    custom: Mapping[str, CustomField] | None = None,
    *,
    placeholders: frozenset[str] = frozenset(),
) -> CleanRow:
    """The row's non-blank values by field, validated; ``RowRefused`` says what is wrong.

    ``mapping`` has one entry per column of the header (``check_shape``); ``custom``: the
    custom fields it maps by key, whose values come typed ("custom:<key>": 12); a cell whose
    case-folded value is in ``placeholders`` ("select", "n/a") is blank."""
    check_shape(row, len(mapping), delimiter)
    fields: dict[str, Any] = {}
    for target, cell in zip(mapping, row.cells, strict=False):
        if not target:
            continue
        value = cell.strip()
        if not value or (placeholders and value.casefold() in placeholders):
            continue
        if target.startswith(CUSTOM_PREFIX):
            _custom_value(fields, target, value, custom or {})
        else:
            fields[target] = value
    email = fields.get("email")  # trimmed and not blank, as normalize_email leaves it
    external_id = fields.get("external_id")
    if not email and not external_id:
        raise RowRefused("import_no_identity")
    if email:
        try:
            validate_email(email)
        except ValidationError as error:
            raise RowRefused("import_invalid_email", email=email) from error
    if "time_zone" in fields:
        zone = canonical_time_zone(fields["time_zone"])
        if zone is None:
            raise RowRefused("import_bad_time_zone", value=fields["time_zone"])
        fields["time_zone"] = zone
    if "company_size" in fields:
        fields["company_size"] = _company_size(fields["company_size"])
    for name, value in fields.items():
        limit = MAX_LENGTHS.get(name)  # a custom field's parsing checks its own
        if limit and len(value) > limit:
            raise RowRefused("import_too_long", field=name, length=len(value), limit=limit)
    if not MEANING_FIELDS_SET.isdisjoint(fields):
        try:
            meaning.read_meaning(fields)
        except meaning.BadValue as bad:
            raise RowRefused(bad.code, **bad.params) from bad
    key = ("email", email.lower()) if email else ("external_id", str(external_id))
    return CleanRow(line_number=row.line_number, key=key, fields=fields)


def _custom_value(
    fields: dict[str, Any], target: str, cell: str, custom: Mapping[str, CustomField]
) -> None:
    """A custom field's cell, typed as its kind; refused as a company size is when it is not
    one. A column of a field deleted since the mapping is ignored."""
    definition = custom.get(target.removeprefix(CUSTOM_PREFIX))
    value = cell.strip()
    if definition is None or not value:
        return
    try:
        fields[target] = definition.parse(value)
    except ValueError as error:
        raise RowRefused(
            "import_bad_custom_value", field=definition.label, value=value,
            kind=definition.kind, choices=", ".join(definition.choice_list()),
        ) from error  # fmt: skip


def _company_size(value: str) -> int:  # type: ignore[return]
    """A number of employees as people write it: "250", "1 200", "1,200" ("" is refused)."""
    digits = re.sub(r"[\s\u202f,.']", "", value)
    if digits.isascii() and digits.isdigit() and len(digits) <= 9:
        return int(digits)
    raise RowRefused("import_bad_company_size", value=value)


def merge_fields(current: dict[str, Any], incoming: dict[str, Any], *, overwrite: bool) -> bool:
    """Apply ``incoming`` onto ``current`` in place: blanks are filled, or differing values
    replaced when ``overwrite``. A blank cell never erases anything. True if ``current`` changed."""
    changed = False
    for name, value in incoming.items():
        if value in (None, "") or current.get(name) == value:
            continue
        if overwrite or current.get(name) in (None, ""):
            current[name] = value
            changed = True
    return changed


def raw_text(cells: Sequence[str], delimiter: str) -> str:
    """The row as it was written, for the error report; control characters (which PostgreSQL
    text cannot hold: a NUL) become "\ufffd"."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter or ",", lineterminator="").writerow(cells)
    return CONTROL_PATTERN.sub("\ufffd", buffer.getvalue())
