"""Reading what form and marketing tools post to an inbound webhook: each sender's signature
scheme, and its payload turned into ``Submission``s (a person, their answers, the sender's id
for the submission). Pure: bytes and dicts in, dataclasses out; no ORM, no clock.

The schemes, as each sender documents them (HMAC-SHA256 of the raw body, keyed with the
endpoint's secret, compared in constant time):

- Typeform: ``Typeform-Signature: sha256=<base64 digest>`` ("Secure your webhooks",
  typeform.com/developers/webhooks/secure-your-webhooks).
- Tally: ``Tally-Signature: <base64 digest>`` (tally.so/help/webhooks, "Add a signing
  secret"). Tally's own example signs ``JSON.stringify`` of the parsed body, which is the body
  Tally sends (compact JSON); a body re-spaced on the way is checked in that compact form too.
- Mautic: ``Webhook-Signature: <base64 digest>`` of the JSON payload (Mautic's developer
  documentation, "Getting started with webhooks"; ``WebhookBundle/Http/Client.php`` computes
  ``base64_encode(hash_hmac('sha256', $jsonPayload, $secret, true))``).
- Generic JSON: ``LeadFunnel-Signature: sha256=<hex digest>`` (ours: what n8n, Zapier or a
  script can compute in one line).

Anything a sender may put in a payload is read defensively: a list where an object was
expected, a number where text was, is skipped, never an exception.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _

SIGNATURE_HEADERS = {
    "typeform": "Typeform-Signature",
    "tally": "Tally-Signature",
    "mautic": "Webhook-Signature",
    "generic": "LeadFunnel-Signature",
}

# What a submission may set on the contact (the rest of CONTACT_FIELDS is not a person's
# answer: stage, source, UTM come from elsewhere), with the model's lengths.
CONTACT_TARGETS = {
    "email": 254, "external_id": 200, "first_name": 100, "last_name": 100, "company": 200,
    "phone": 40, "job_title": 150, "country": 100,
    "utm_source": 200, "utm_medium": 200, "utm_campaign": 200, "utm_term": 200,
    "utm_content": 200,
}  # fmt: skip
FLAGS = ("consent", "do_not_email")
# Generic mappings only: where the submission's own facts are.
SUBMISSION_TARGETS = ("submission_id", "form_name", "occurred_at", "url")

# Question names understood without a mapping (compared without case, accents, punctuation).
ALIASES = {
    "email": {"email", "e mail", "email address", "adresse email", "adresse e mail", "courriel"},
    "first_name": {"first name", "firstname", "prenom", "given name"},
    "last_name": {"last name", "lastname", "surname", "family name", "nom", "nom de famille"},
    "company": {"company", "company name", "entreprise", "societe", "organisation",
                "organization"},
    "phone": {"phone", "phone number", "telephone", "tel", "mobile"},
    "job_title": {"job title", "jobtitle", "poste", "fonction", "position"},
    "country": {"country", "pays"},
    "external_id": {"external id", "externalid", "crm id", "customer id", "id client"},
    "consent": {"consent", "consentement", "gdpr", "rgpd", "opt in", "optin",
                "marketing consent"},
    "do_not_email": {"do not email", "donotemail", "unsubscribed", "email opt out"},
    **{name: {name.replace("_", " ")} for name in ("utm_source", "utm_medium", "utm_campaign",
                                                   "utm_term", "utm_content")},
}  # fmt: skip
TRUE_WORDS = {"1", "true", "yes", "y", "on", "oui", "accepted", "agree", "checked"}

MAX_ANSWERS = 100
MAX_TEXT = 1000
MAX_LIST = 50


class PayloadRefused(ValueError):
    """The payload is JSON but not something we can record; ``ignored`` when it is a kind of
    event we do not take (answered 2xx so that the sender does not retry it)."""

    def __init__(self, reason: str, *, ignored: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ignored = ignored


@dataclass(frozen=True)
class Answer:
    """One answer: the names that identify its question (ref, key, label…), a hint of what it
    holds ("email", "phone", "consent" or ""), its value, and its question's wording."""

    names: tuple[str, ...]
    value: Any
    hint: str = ""
    wording: str = ""
    recorded: bool = True  # kept in the event's properties (not a sender's stored profile)

    @property
    def key(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Submission:
    submission_id: str
    form_id: str
    form_name: str
    occurred_at: datetime | None
    contact: dict[str, str] = field(default_factory=dict)
    consent: bool = False
    consent_wording: str = ""
    do_not_email: bool = False
    answers: dict[str, Any] = field(default_factory=dict)
    url: str = ""


# -- signatures ---------------------------------------------------------------------------


def _digest(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def sign(kind: str, secret: str, body: bytes) -> str:
    """The header value ``kind``'s sender puts on ``body`` (tests and benchmarks sign with it)."""
    digest = _digest(secret, body)
    if kind == "typeform":
        return "sha256=" + base64.b64encode(digest).decode()
    if kind == "generic":
        return "sha256=" + digest.hex()
    return base64.b64encode(digest).decode()


def signature_problem(kind: str, secret: str, body: bytes, header: str | None) -> str:
    """Empty when ``header`` is ``kind``'s signature of ``body`` under ``secret``, else why not
    (for the delivery log)."""
    if not header:
        return str(_("No %(header)s header.") % {"header": SIGNATURE_HEADERS[kind]})
    header = header.strip()
    if kind == "generic" and not header.startswith("sha256="):
        header = "sha256=" + header
    if hmac.compare_digest(header.encode(), sign(kind, secret, body).encode()):
        return ""
    if kind == "tally":
        compact = _compact(body)
        if compact is not None and hmac.compare_digest(
            header.encode(), sign(kind, secret, compact).encode()
        ):
            return ""
    return str(_("The %(header)s header does not match the body.") % {
        "header": SIGNATURE_HEADERS[kind]
    })  # fmt: skip


def _compact(body: bytes) -> bytes | None:
    """The body as JavaScript's ``JSON.stringify`` writes it, or None if it is not JSON."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


# -- payloads -----------------------------------------------------------------------------


def submissions_read(kind: str, payload: Any, mapping: Mapping[str, Any]) -> list[Submission]:
    """The submissions in a sender's parsed JSON payload (Mautic may batch several).
    ``PayloadRefused`` when there is none."""
    if not isinstance(payload, dict):
        raise PayloadRefused(str(_("The payload is not a JSON object.")))
    mapping = mapping if isinstance(mapping, Mapping) else {}
    reader = {"typeform": _typeform, "tally": _tally, "mautic": _mautic, "generic": _generic}
    return list(reader[kind](payload, mapping))


def _typeform(payload: dict, mapping: Mapping[str, Any]) -> Iterator[Submission]:
    if payload.get("event_type") != "form_response":
        raise PayloadRefused(
            str(_("Not a form response (event_type %(type)s).") % {
                "type": _text(payload.get("event_type"))[:40]}),
            ignored=True,
        )  # fmt: skip
    response = _object(payload.get("form_response"))
    definition = _object(response.get("definition"))
    questions = {_text(q.get("id")): q for q in _objects(definition.get("fields"))}
    answers = []
    for given in _objects(response.get("answers")):
        question_field = _object(given.get("field"))
        question = _object(questions.get(_text(question_field.get("id"))))
        kind = _text(given.get("type"))
        value = given.get(kind)
        if isinstance(value, dict):  # choice: {"label": …}; choices: {"labels": […]}
            value = value.get("label", value.get("labels", value.get("other")))
        field_type = _text(question_field.get("type")) or _text(question.get("type"))
        hint = {"email": "email", "phone_number": "phone"}.get(kind, "")
        if field_type == "legal":
            hint = "consent"
        names = (_text(question_field.get("ref")), _text(question_field.get("id")),
                 _text(question.get("title")))  # fmt: skip
        answers.append(Answer(names, value, hint, _text(question.get("title"))))
    for name, value in _object(response.get("hidden")).items():
        answers.append(Answer((str(name),), value))
    score = _object(response.get("calculated")).get("score")
    yield _submission(
        answers,
        mapping,
        submission_id=_text(response.get("token")) or _text(payload.get("event_id")),
        form_id=_text(response.get("form_id")) or _text(definition.get("id")),
        form_name=_text(definition.get("title")),
        occurred_at=_when(response.get("submitted_at")),
        extra={"score": score} if isinstance(score, int | float) else {},
    )


def _tally(payload: dict, mapping: Mapping[str, Any]) -> Iterator[Submission]:
    if payload.get("eventType") != "FORM_RESPONSE":
        raise PayloadRefused(
            str(_("Not a form response (eventType %(type)s).") % {
                "type": _text(payload.get("eventType"))[:40]}),
            ignored=True,
        )  # fmt: skip
    data = _object(payload.get("data"))
    answers = []
    for given in _objects(data.get("fields")):
        value = given.get("value")
        options = {_text(o.get("id")): _text(o.get("text")) for o in _objects(given.get("options"))}
        if options and isinstance(value, list):  # choices arrive as option ids
            value = [options.get(_text(item), item) for item in value]
        elif options and isinstance(value, str) and value in options:
            value = options[value]
        kind = _text(given.get("type"))
        hint = {"INPUT_EMAIL": "email", "INPUT_PHONE_NUMBER": "phone"}.get(kind, "")
        label = _text(given.get("label"))
        answers.append(Answer((label, _text(given.get("key"))), value, hint, label))
    yield _submission(
        answers,
        mapping,
        submission_id=(_text(data.get("responseId")) or _text(data.get("submissionId"))
                       or _text(payload.get("eventId"))),
        form_id=_text(data.get("formId")),
        form_name=_text(data.get("formName")),
        occurred_at=_when(data.get("createdAt")) or _when(payload.get("createdAt")),
    )  # fmt: skip


def _mautic(payload: dict, mapping: Mapping[str, Any]) -> Iterator[Submission]:
    events = payload.get("mautic.form_on_submit")
    if not isinstance(events, list) or not events:
        raise PayloadRefused(
            str(_("No form submission in this payload (events: %(types)s).") % {
                "types": ", ".join(sorted(str(k) for k in payload))[:100]}),
            ignored=True,
        )  # fmt: skip
    for event in _objects(events):
        submission = _object(event.get("submission"))
        form = _object(submission.get("form"))
        lead = _object(submission.get("lead"))
        answers = [Answer((str(name),), value) for name, value in
                   _object(submission.get("results")).items()]  # fmt: skip
        # The contact as Mautic knows it: behind the form's own answers.
        groups = _object(lead.get("fields"))
        for group in groups.values():
            for alias, described in _object(group).items():
                described = _object(described)
                hint = {"email": "email", "tel": "phone"}.get(_text(described.get("type")), "")
                answers.append(Answer((str(alias),), described.get("value"), hint, recorded=False))
        opted_out = any(
            _text(entry.get("channel")) == "email" for entry in _objects(lead.get("doNotContact"))
        )
        yield _submission(
            answers,
            mapping,
            submission_id=_text(submission.get("id")),
            form_id=_text(form.get("alias")) or _text(form.get("id")),
            form_name=_text(form.get("name")),
            occurred_at=_when(submission.get("dateSubmitted")) or _when(event.get("timestamp")),
            url=_text(submission.get("referer")),
            do_not_email=opted_out,
        )


def _generic(payload: dict, mapping: Mapping[str, Any]) -> Iterator[Submission]:
    """Every value comes from where the mapping points: ``{"email": "contact.email",
    "properties.plan": "answers.plan"}`` (a dotted path; numbers index lists; "$." allowed)."""
    answers, facts = [], {}
    for target, path in mapping.items():
        value = value_at(payload, path)
        if value is None:
            continue
        if target.startswith("properties."):
            answers.append(Answer((target.removeprefix("properties."),), value))
        elif target in SUBMISSION_TARGETS:
            facts[target] = value
        elif target in CONTACT_TARGETS or target in FLAGS:
            answers.append(Answer((target,), value, "consent" if target == "consent" else ""))
    # Here the mapping has been applied: each answer is named for its target.
    yield _submission(
        answers,
        {target: target for target in (*CONTACT_TARGETS, *FLAGS)},
        submission_id=_text(facts.get("submission_id")),
        form_id="",
        form_name=_text(facts.get("form_name")),
        occurred_at=_when(facts.get("occurred_at")),
        url=_text(facts.get("url")),
    )


def value_at(data: Any, path: Any) -> Any:
    """The value at a dotted path (``a.b.0.c``), or None when the path leads nowhere."""
    if not isinstance(path, str) or not path.strip():
        return None
    for part in path.strip().removeprefix("$.").split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and re.fullmatch(r"-?\d{1,6}", part):
            index = int(part)
            data = data[index] if -len(data) <= index < len(data) else None
        else:
            return None
    return data


# -- one submission -----------------------------------------------------------------------


def _submission(
    answers: list[Answer],
    mapping: Mapping[str, Any],
    *,
    submission_id: str,
    form_id: str,
    form_name: str,
    occurred_at: datetime | None,
    url: str = "",
    do_not_email: bool = False,
    extra: dict[str, Any] | None = None,
) -> Submission:
    """The contact fields and flags found among the answers (the mapping first, then the
    hints, then the question names in ALIASES), and the answers as event properties."""
    found: dict[str, Answer] = {}
    by_name: dict[str, Answer] = {}
    for answer in answers:
        for name in answer.names:
            if name:
                by_name.setdefault(_normal(name), answer)
    for target, name in mapping.items():
        answer = by_name.get(_normal(name)) if isinstance(name, str) else None
        if answer is not None and (target in CONTACT_TARGETS or target in FLAGS):
            found[target] = answer
    for answer in answers:
        if (
            answer.hint
            and answer.hint not in found
            and (answer.hint in FLAGS or _text(answer.value))
        ):
            found[answer.hint] = answer
    for target, aliases in ALIASES.items():
        if target not in found:
            answer = next((by_name[a] for a in aliases if a in by_name), None)
            if answer is not None and (target in FLAGS or _text(answer.value)):
                found[target] = answer
    contact = {}
    for target, length in CONTACT_TARGETS.items():
        if target in found:
            text = _text(found[target].value).strip()[:length]
            if text:
                contact[target] = text
    if "email" in contact and not _is_email(contact["email"]):
        del contact["email"]
    consent = "consent" in found and _truthy(found["consent"].value)
    properties = {}
    for answer in [answer for answer in answers if answer.recorded][:MAX_ANSWERS]:
        key = _text(answer.key)[:100]
        if key and key not in properties:
            properties[key] = _property(answer.value)
    properties.update(extra or {})
    return Submission(
        submission_id=submission_id[:150],
        form_id=form_id[:100],
        form_name=form_name[:200],
        occurred_at=occurred_at,
        contact=contact,
        consent=consent,
        consent_wording=_wording(found["consent"]) if consent else "",
        do_not_email=do_not_email or ("do_not_email" in found
                                      and _truthy(found["do_not_email"].value)),
        answers=properties,
        url=url[:1000] if url.startswith(("http://", "https://")) else "",
    )  # fmt: skip


def _wording(answer: Answer) -> str:
    """What the person agreed to: the option they ticked (Tally's checkbox), else the question."""
    ticked = _text(answer.value) if isinstance(answer.value, list) else ""
    return (ticked or answer.wording)[:MAX_TEXT]


def _property(value: Any) -> Any:
    """An answer as stored in the event's properties: bounded text, numbers, booleans, lists."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list):
        return [_property(item) for item in value[:MAX_LIST] if not isinstance(item, dict | list)]
    if isinstance(value, dict):
        return _text(value.get("label", value.get("text", "")))[:MAX_TEXT]
    return _text(value)[:MAX_TEXT]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.replace("\x00", "")  # PostgreSQL keeps no NUL, in text nor in JSON
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return ", ".join(_text(item) for item in value[:MAX_LIST] if _text(item))
    return ""


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, list):  # the options ticked
        return bool(value)
    return _normal(_text(value)) in TRUE_WORDS


@lru_cache(maxsize=4096)  # the same question names in every post of a form
def _normal(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain.casefold()).split())


def _is_email(text: str) -> bool:
    try:
        validate_email(text)
    except ValidationError:
        return False
    return True


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = parse_datetime(value.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    return moment if moment is not None and moment.tzinfo is not None else None


def _object(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
