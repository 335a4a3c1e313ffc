"""What an imported cell means beyond text: yes/no flags (do not email, do not call,
unsubscribed), a consent status and its legal basis, a won/lost outcome, dates. Pure functions,
no ORM: ``parsing.clean_row`` calls ``read_meaning`` on each row's values.

Words are compared without case, accents or punctuation ("Oui", "OUI", "oui." are one word),
in English and French, as CRM exports and French spreadsheets write them.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from django.utils import timezone

from contacts.currencies import CURRENCY_CODES

YES = frozenset({"yes", "y", "true", "t", "1", "x", "oui", "o", "vrai"})
NO = frozenset({"no", "n", "false", "f", "0", "non", "faux"})

CONSENT_WORDS = {
    "granted": YES | {"granted", "given", "opt in", "optin", "opted in", "consented",
                      "subscribed", "accepted", "accepte", "donne", "consentement donne"},
    "withdrawn": NO | {"withdrawn", "revoked", "opt out", "optout", "opted out", "refused",
                       "unsubscribed", "retire", "refuse", "desabonne", "desinscrit"},
    "unknown": {"unknown", "inconnu", "pending", "en attente", "not asked"},
}  # fmt: skip

LEGAL_BASIS_WORDS = {
    "consent": {"consent", "consentement"},
    "contract": {"contract", "contrat", "performance of a contract", "execution d un contrat"},
    "legitimate_interest": {"legitimate interest", "legitimate interests", "interet legitime",
                            "interets legitimes", "legitimate_interest"},
    "legal_obligation": {"legal obligation", "obligation legale", "legal_obligation"},
}  # fmt: skip

OUTCOME_WORDS = {
    "won": YES | {"won", "win", "gagne", "converted", "converti", "client", "customer",
                  "closed won", "signe"},
    "lost": NO | {"lost", "perdu", "not converted", "non converti", "closed lost",
                  "disqualified", "disqualifie"},
}  # fmt: skip

FLAGS = ("do_not_email", "do_not_call", "unsubscribed")
DATES = ("consent_at", "outcome_at")

# 31/03/2024, 31-03-2024, 31.03.2024, with an optional time: day first (the French habit),
# unless the day cannot be one (03/31/2024 is read month first).
NUMERIC_DATE = re.compile(
    r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$"
)


class BadValue(ValueError):
    """A value the import cannot read: ``code`` (of ``contacts.reasons``) and its parameters."""

    def __init__(self, code: str, **params: Any) -> None:
        self.code, self.params = code, params
        super().__init__(code)


@lru_cache(maxsize=4096)  # a column holds a few distinct words, repeated on every row
def word(value: str) -> str:
    """ "Oui." → "oui", "Opt-In" → "opt in": no case, accents or punctuation."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    letters = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join("".join(char if char.isalnum() else " " for char in letters).split())


def yes_no(value: str, *, field: str) -> bool:
    key = word(value)
    if key in YES:
        return True
    if key in NO:
        return False
    raise BadValue("import_bad_yes_no", value=value, field=field)


def _one_of(words: dict[str, set[str] | frozenset[str]], value: str, code: str) -> str:
    key = word(value)
    for meaning, spellings in words.items():
        if key in spellings:
            return meaning
    raise BadValue(code, value=value)


def when(value: str, *, field: str) -> datetime:
    """An aware datetime from an ISO date or datetime, or a day-first numeric date; a date or a
    datetime without a time zone is in the site's."""
    return _when(value, field, timezone.get_default_timezone())


# A date column repeats its values (a CRM's export dates its leads by day): each distinct one is
# read once (its datetime is immutable, so shared). Keyed by the site's time zone, which a
# setting may change.
@lru_cache(maxsize=4096)
def _when(value: str, field: str, zone: tzinfo) -> datetime:
    text = value.strip()
    found: datetime | None = None
    try:
        found = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        match = NUMERIC_DATE.match(text)
        if match:
            first, second, year = (int(part) for part in match.group(1, 2, 3))
            day, month = (second, first) if second > 12 >= first else (first, second)
            clock = time(*(int(part or 0) for part in match.group(4, 5, 6)))
            try:
                found = datetime.combine(date(year, month, day), clock)
            except ValueError:
                found = None
    if found is None:
        raise BadValue("import_bad_date", value=value, field=field)
    if timezone.is_naive(found):
        found = timezone.make_aware(found, zone)
    return found


# Symbols and codes written beside an amount ("1 200 €", "EUR 1,200.00"): not part of it.
MONEY_NOISE = re.compile(r"[\s\u00a0\u202f€$£]|[A-Za-z]{3}")


def money(value: str) -> Decimal:
    """A deal's amount as files write it: "1 234,50", "1234.50", "1,234.50", "1.234,50 €".
    The last of "," and "." is the decimal mark when both are there; a lone "," is one (the
    French habit), unless it separates groups of three digits more than once."""
    text = MONEY_NOISE.sub("", value)
    if "," in text and "." in text:
        thousands = "," if text.rindex(",") < text.rindex(".") else "."
        text = text.replace(thousands, "").replace(",", ".")
    elif text.count(",") > 1 and re.fullmatch(r"\d{1,3}(,\d{3})+", text):
        text = text.replace(",", "")
    elif text.count(".") > 1 and re.fullmatch(r"\d{1,3}(\.\d{3})+", text):
        text = text.replace(".", "")
    else:
        text = text.replace(",", ".")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
        raise BadValue("import_bad_amount", value=value)
    return amount.quantize(Decimal("0.01"))


def read_meaning(fields: dict[str, Any]) -> None:
    """Turn the meaning fields of a row, in place, into what they mean: flags into booleans
    (an "unsubscribed" yes is a do-not-email), consent and legal basis and outcome into their
    codes, dates into aware datetimes. ``BadValue`` for a value that cannot be read: a
    do-not-email the import cannot understand must not be guessed."""
    for name in FLAGS:
        if name in fields:
            fields[name] = yes_no(fields[name], field=name)
    if fields.pop("unsubscribed", False):
        fields["do_not_email"] = True
    if "consent" in fields:
        fields["consent"] = _one_of(CONSENT_WORDS, fields["consent"], "import_bad_consent")
    if "consent_basis" in fields:
        fields["consent_basis"] = _one_of(
            LEGAL_BASIS_WORDS, fields["consent_basis"], "import_bad_legal_basis"
        )
    if "outcome" in fields:
        fields["outcome"] = _one_of(OUTCOME_WORDS, fields["outcome"], "import_bad_outcome")
    for name in DATES:
        if name in fields:
            fields[name] = when(fields[name], field=name)
    if "outcome_amount" in fields:
        fields["outcome_amount"] = money(fields["outcome_amount"])
    if "outcome_currency" in fields:
        code = fields["outcome_currency"].strip().upper()
        if code not in CURRENCY_CODES:
            raise BadValue("import_bad_currency", value=fields["outcome_currency"])
        fields["outcome_currency"] = code
    if "legitimate_interest_notice_on" in fields:
        notice = fields["legitimate_interest_notice_on"]
        fields["legitimate_interest_notice_on"] = when(
            notice, field="legitimate_interest_notice_on"
        ).date()
    if "open_tracking_consent" in fields:
        # Yes: consented, now (the file's date for it is unknown); no: not, or withdrawn.
        consented = yes_no(fields.pop("open_tracking_consent"), field="open_tracking_consent")
        fields["open_tracking_consent_at"] = timezone.now() if consented else None
        fields["open_tracking_consent_source"] = "import" if consented else ""
