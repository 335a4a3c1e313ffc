"""Texts the application writes for people to read later, stored as codes.

Why an import refused a row, why a contact moved, who moved it: a worker writes these in the
server's language, and people read them in theirs. So the application stores a code and its
parameters (``imported_from{"file":"leads.csv"}``) and translates when the text is shown
(``text``). What is not a known code (a rep's words, an admin's reason, a row written before
codes) is shown as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

Label = Promise | Callable[[dict[str, Any]], str]

# A parameter value is cut to this length: a cell of 10,000 characters is not worth keeping
# whole in a reason, and three of them still fit ImportRowError.message.
PARAM_MAX_LENGTH = 120


# How the models' codes read (a stage, an event type, a field, an outcome, a lost reason):
# contacts.models fills this when it loads, so that this module, which the models use, never
# imports them.
LABELS: dict[str, Callable[[object], str]] = {}


def label(kind: str, code: object) -> str:
    lookup = LABELS.get(kind)
    return lookup(code) if lookup is not None else str(code)


def _stage(code: object) -> str:
    return label("stage", code)


def _event_type(code: object) -> str:
    return label("event_type", code)


def _field(name: object) -> str:
    return label("field", name)


def _threshold(params: dict[str, Any]) -> str:
    """ "Threshold: SQL at 60 points or Demo requested"."""
    parts = []
    if params.get("score") is not None:
        parts.append(_("%(points)s points") % {"points": params["score"]})
    parts.extend(_event_type(event_type) for event_type in params.get("events") or ())
    if params.get("tag"):
        parts.append(_("“%(tag)s” content") % {"tag": params["tag"]})
    # Translators: joins the conditions of a threshold, e.g. "score ≥ 60 or Demo requested".
    conditions = f" {_('or')} ".join(str(part) for part in parts)
    if params.get("fit"):
        conditions = _("%(conditions)s and fit %(grade)s or better") % {
            "conditions": conditions,
            "grade": params["fit"],
        }
    return _("Threshold: %(stage)s at %(conditions)s") % {
        "stage": _stage(params.get("stage")),
        "conditions": conditions,
    }


def _lost(params: dict[str, Any]) -> str:
    reason = label("lost_reason", params.get("reason", ""))
    words = params.get("words")
    return f"{reason}: {words}" if words else reason


def _import_field(params: dict[str, Any]) -> dict[str, Any]:
    # contacts.imports.parsing registers the import fields' labels ("import_field").
    return {**params, "field": label("import_field", params.get("field"))}


def _too_long(params: dict[str, Any]) -> str:
    return _("%(field)s is too long (%(length)d characters, at most %(limit)d).") % {
        **params,
        "field": _field(params.get("field")),
    }


def _bad_custom_value(params: dict[str, Any]) -> str:
    """A custom field's cell that is not of its kind ("“abc” is not a number for “Seats”")."""
    expected = {
        "number": _("“%(value)s” is not a number for “%(field)s”: write it as 1200 or 4.5."),
        "date": _(
            "“%(value)s” is not a date for “%(field)s”: write it as 2026-03-31 or 31/03/2026."
        ),
        "choice": _("“%(value)s” is not a choice of “%(field)s”: %(choices)s."),
    }.get(str(params.get("kind")), _("The value of “%(field)s” is too long."))
    return str(expected) % {"value": "", "field": "", "choices": "", **params}


def assignment_condition(params: dict[str, Any]) -> str:
    """An assignment rule's condition: "Country is one of France, Belgium"."""
    values = {
        "field": params.get("label") or _field(params.get("field")),
        "value": params.get("value", ""),
        "values": ", ".join(str(value) for value in params.get("values") or ()),
        "min": params.get("min"),
        "max": params.get("max"),
    }
    operator = params.get("operator")
    if operator == "in":
        return _("%(field)s is one of %(values)s") % values
    if operator == "between":
        if values["min"] is None:
            return _("%(field)s at most %(max)s") % values
        if values["max"] is None:
            return _("%(field)s at least %(min)s") % values
        return _("%(field)s between %(min)s and %(max)s") % values
    return _("%(field)s is “%(value)s”") % values


def _assigned_by_rule(params: dict[str, Any], *, to_rep: bool) -> str:
    values = {
        "position": params.get("position", ""),
        "condition": assignment_condition(params),
        "team": params.get("team", ""),
        "rep": params.get("rep", ""),
    }
    if to_rep:
        return _("Rule %(position)s (%(condition)s): given to %(rep)s") % values
    return _("Rule %(position)s (%(condition)s): round robin in %(team)s") % values


REASONS: dict[str, Label] = {
    # Why a contact moved (StageChange.reason) and who moved it (StageChange.actor_name).
    "created_with_email": _("Created with an email address"),
    "email_added": _("Email address added"),
    "imported_from": _("Imported from %(file)s"),
    "moved_in_admin": _("Moved in admin"),
    "lost": _lost,
    "score_reached": _("Score %(score)s ≥ %(min)s"),
    "fit_reached": lambda params: (
        _("%(reached)s, fit %(grade)s ≥ %(min)s")
        % {
            "reached": text(str(params.get("reached", ""))),
            "grade": params.get("grade", ""),
            "min": params.get("min", ""),
        }
    ),
    "score_below": _("Score %(score)s below %(exit)s"),
    "stage_recomputed": _("The rules now reach no further: score %(score)s"),
    "rescore": _("Rescore"),
    "qualifying_event": lambda params: _event_type(params.get("type")),
    "qualifying_content": _("“%(tag)s” content"),
    "threshold": _threshold,
    "sequence": _("Sequence “%(sequence)s”"),
    "sequence_step": _("Step %(position)s"),
    "sequence_points": lambda params: (
        _("Sequence “%(sequence)s”: %(step)s")
        % {"sequence": params.get("sequence", ""), "step": text(str(params.get("step", "")))}
    ),
    # Why an import refused a row (ImportRowError.message) or failed (ImportJob.error).
    "import_no_identity": _("No email address and no external id."),
    "import_invalid_email": _("“%(email)s” is not a valid email address."),
    "import_bad_time_zone": _(
        "“%(value)s” is not a time zone; write it as Europe/Paris or America/Montreal."
    ),
    "import_bad_company_size": _(
        "“%(value)s” is not a company size: give a whole number of employees, such as 250."
    ),
    "import_too_long": _too_long,
    "import_bad_yes_no": lambda params: (
        _("“%(value)s” in “%(field)s” is not yes or no: write Yes, No, 1, 0, X or leave it blank.")
        % _import_field(params)
    ),
    "import_bad_consent": _(
        "“%(value)s” is not a consent status: write granted, withdrawn or unknown (or yes, no)."
    ),
    "import_bad_legal_basis": _(
        "“%(value)s” is not a legal basis: write consent, contract, legitimate interest or "
        "legal obligation."
    ),
    "import_bad_amount": _(
        "“%(value)s” is not an amount: write a number such as 1200 or 1 234,50 (not negative)."
    ),
    "import_bad_currency": _("“%(value)s” is not a currency code: write EUR, USD, GBP…"),
    "import_bad_outcome": _(
        "“%(value)s” is not an outcome: write won or lost (or converted 1 or 0, yes or no)."
    ),
    "import_bad_date": lambda params: (
        _("“%(value)s” in “%(field)s” is not a date: write it as 2024-03-31 or 31/03/2024.")
        % _import_field(params)
    ),
    "import_bad_custom_value": _bad_custom_value,
    "import_external_id_taken": _(
        "The external id “%(id)s” is given with another email on line %(line)d."
    ),
    "import_two_contacts": _(
        "“%(email)s” and the external id “%(id)s” belong to two different contacts; "
        "nothing was merged."
    ),
    "import_external_id_elsewhere": _(
        "The external id “%(id)s” belongs to %(other)s, not to %(email)s."
    ),
    "import_erased": _(
        "%(email)s belongs to a person whose data was erased at their request; "
        "they cannot be added again without their new consent."
    ),
    "import_control_characters": _(
        "Line %(line)s contains a control character (such as a NUL byte) that a text file "
        "cannot hold; fix or delete it in the file."
    ),
    "import_extra_cells": _(
        "Line %(line)s has %(count)s cells where the header has %(expected)s: a delimiter or "
        "a quote is probably misplaced, so its values would land in the wrong columns."
    ),
    "import_unclosed_quote": _(
        "Line %(line)s opens a quote that is not closed where it should be: lines %(line)s "
        "to %(last)s were read as one row and none of them was imported. Close the quote "
        "and import these lines again."
    ),
    "import_unreadable": _("The file's characters cannot be read."),
    "import_not_csv": _("The file is not a valid CSV: %(error)s"),
    "import_unexpected": _(
        "The import stopped on an unexpected error; the rows counted were imported."
    ),
    "import_interrupted": _(
        "The import was interrupted. The rows counted were imported: upload the file again "
        "to import the rest (rows already imported will count as unchanged)."
    ),
    # Contact audits (ContactAudit.note).
    "released_from": _("Released from %(owner)s"),
    "released_because": _("Released from %(owner)s: %(words)s"),
    "reassigned_from": _("From %(owner)s"),
    "reassigned_from_queue": _("From the queue"),
    # Which rule gave an SQL its rep (contacts.sales.assignment).
    "assigned_rule_round_robin": lambda params: _assigned_by_rule(params, to_rep=False),
    "assigned_rule_rep": lambda params: _assigned_by_rule(params, to_rep=True),
    "assigned_default_team": _("No rule matched: round robin in %(team)s, the default team"),
    "claim_expired": _("Claimed by %(owner)s on %(claimed)s, no outcome after %(hours)s hours"),
    "referred_by": _("Referred by %(referrer)s"),
    "inactive_years": _("No activity for %(years)s years"),
    "outcome": lambda params: (
        f"{_outcome(params.get('outcome'))}: {text(params['why'])}"
        if params.get("why")
        else _outcome(params.get("outcome"))
    ),
    # A rep's estimate of an open deal (contacts.sales.deals).
    "estimate": lambda params: (
        _("Expected amount: %(amount)s %(currency)s") % params
        if params.get("amount")
        else _("Expected amount removed")
    ),
    "system": pgettext_lazy("who moved a contact", "System"),
    # A ledger line of a score rule whose points fade with the age of the event.
    "rule_fading": _(
        "%(rule)s (%(points)s points while the event is at most %(full)s days old, then fewer "
        "each day, none from %(zero)s days)"
    ),
    # Why everyone was rescored (scoring's Rescore.reason).
    "rescore_saved": _("Saved: %(what)s"),
    "rescore_deleted": _("Deleted: %(what)s"),
    "rescore_requested": _("Requested in admin"),
    "rescore_suggested": _("%(count)s suggested rules applied"),
}


def _outcome(code: object) -> str:
    return label("outcome", code)


def coded(code: str, *, cut: bool = False, **params: Any) -> str:
    """The stored form of a reason: its code, then its parameters as JSON; with ``cut``, text
    parameters are cut to PARAM_MAX_LENGTH (an import's cells, not a person's words)."""
    if code not in REASONS:
        raise ValueError(f"unknown reason code {code!r}")
    if not params:
        return code
    if cut:
        params = {
            name: value[:PARAM_MAX_LENGTH] if isinstance(value, str) else value
            for name, value in params.items()
        }
    return code + json.dumps(params, ensure_ascii=False, separators=(",", ":"), default=_json_value)


def _json_value(value: object) -> object:
    # A score summed by PostgreSQL comes as a Decimal.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def code(stored: str) -> str:
    """The code of a stored reason, or "" for a text that is no code."""
    found = stored.partition("{")[0]
    return found if found in REASONS else ""


def text(stored: str, registry: Mapping[str, Label] | None = None) -> str:
    """What a stored reason says in the active language; any other text as it is."""
    registry = REASONS if registry is None else registry
    code, brace, rest = stored.partition("{")
    label = registry.get(code)
    if label is None:
        return stored
    params: Any = {}
    if brace:
        try:
            params = json.loads(brace + rest)
        except ValueError:
            return stored
        if not isinstance(params, dict):
            return stored
    try:
        if callable(label):
            return label(params)
        return str(label) % params if params else str(label)
    except (KeyError, TypeError, ValueError):  # parameters that no longer fit the text
        return stored
