"""The JSON API for integrations: /api/v1/ (schema at /api/v1/openapi.json, docs at /api/v1/docs).

Bad input is a 400 with field errors, never a 500: pydantic checks shapes and sizes, Django's
validators check emails, and nothing reaches the services unchecked.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse
from django.utils import timezone, translation
from ninja import Field, NinjaAPI, Schema
from ninja.errors import HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema, field_validator

from contacts import ratelimit
from contacts.custom_field_values import active_custom_fields, custom_values_accept
from contacts.events import NewEvent, events_record_many
from contacts.models import (
    ApiKey,
    Contact,
    Event,
    Suppression,
    canonical_time_zone,
    normalize_email,
)
from contacts.privacy import ContactSuppressed
from contacts.referrals import contact_referral_link, referrer_find
from contacts.services import (
    ContactErased,
    DuplicateContact,
    contact_ensure,
    contact_ids_by_email,
    contact_ids_by_external_id,
    contact_update,
    contact_upsert,
)

MAX_BATCH = 1000
MAX_PROPERTIES_BYTES = 16_384
EVENT_TYPES = tuple(t for t in Event.Type.values if t not in Event.SYSTEM_TYPES)


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        key = ApiKey.objects.filter(hashed=ApiKey.hash(token)).first()
        if key is None:
            return None
        if key.revoked_at is not None:
            raise HttpError(403, "This API key has been revoked.")
        _count_request(key)
        return key


def _reads(request: HttpRequest) -> None:
    """A send-only key (``ApiKey.can_read`` off) may not read contacts back: 403."""
    if not request.auth.can_read:  # type: ignore[attr-defined]
        raise HttpError(403, "This API key only sends: it may not read contacts.")


def _count_request(key: ApiKey) -> None:
    """Per key; the window is ratelimit's one minute."""
    wait = ratelimit.seconds_to_wait(
        f"api:{key.hashed[:16]}", key.rate_per_minute or settings.API_RATE_PER_MINUTE
    )
    if wait:
        raise RateLimited(retry_after=wait)
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


api = NinjaAPI(
    title="LeadFunnel API",
    version="1",
    description="Send events and contacts from your site or tools. Authenticate with "
    "`Authorization: Bearer <key>` (keys are made in admin or with "
    "`python manage.py create_api_key NAME`; `--send-only` for a key that may not read "
    "contacts back, e.g. a website's: its reads are refused with 403). Batches hold up to "
    "1,000 items. A request body "
    f"is read up to {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE): "
    'a larger one is answered 413 `{"detail": ..., "max_bytes": ...}`.',
    urls_namespace="api-v1",
    auth=ApiKeyAuth(),
)


@api.exception_handler(NinjaValidationError)
def invalid_input(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors
    ]
    too_long = any(
        e["type"] == "too_long" and e["loc"][-1] in {"events", "contacts"} for e in errors
    )
    if too_long:
        return api.create_response(
            request, {"detail": f"A batch holds at most {MAX_BATCH:,} items."}, status=413
        )
    return api.create_response(request, {"detail": errors}, status=400)


@api.exception_handler(RateLimited)
def rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = api.create_response(
        request, {"detail": "Too many requests for this API key; retry later."}, status=429
    )
    response["Retry-After"] = str(exc.retry_after)
    return response


def _storable(value: Any) -> Any:
    """Refuse what a database cannot store: NUL characters and lone surrogates, at any depth."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("Text must not contain NUL characters.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError("Text must be valid Unicode.") from error
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable(item)
    elif isinstance(value, list):
        for item in value:
            _storable(item)
    return value


def _email(value: str) -> str:
    value = normalize_email(value) or ""
    try:
        validate_email(value)
    except DjangoValidationError as error:
        raise ValueError("Enter a valid email address.") from error
    return value


def _blank_is_none(value: Any) -> Any:
    """An email "" (a CRM export's empty cell) is no email."""
    return None if isinstance(value, str) and not value.strip() else value


# Declared as the server reads it: an address, or "" or null for none.
Email = Annotated[
    Annotated[str, Field(max_length=254), AfterValidator(_email)] | None,
    BeforeValidator(_blank_is_none),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "email", "maxLength": 254},
                {"type": "string", "maxLength": 0},
                {"type": "null"},
            ]
        }
    ),
]


def text(max_length: int) -> Any:
    return Annotated[str, Field(max_length=max_length), AfterValidator(_storable)]


Text = text(200)
# Far enough either way for back-filled history and clock skew; beyond, it is a mistake.
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def known_by(name: str, schema: dict[str, Any], **others: dict[str, Any]) -> dict[str, Any]:
    """The schema of an item known by its email or, without one, by another field."""
    return {
        "anyOf": [
            {"required": ["email"], "properties": {"email": {"type": "string", "minLength": 1}}},
            *(
                {"required": [field], "properties": {field: field_schema}}
                for field, field_schema in {name: schema, **others}.items()
            ),
        ]
    }


EXTERNAL_ID_SCHEMA = {"type": "string", "pattern": r"\S"}


class EventIn(Schema):
    model_config = {
        "json_schema_extra": known_by(
            "contact_id", {"type": "integer"}, external_id=EXTERNAL_ID_SCHEMA
        )
    }

    email: Email = None
    contact_id: int | None = Field(None, gt=0, lt=2**63)
    external_id: Text | None = Field(
        None,
        description="The contact's id in your system (CRM, shop). An unknown one refuses this "
        "event alone (see `errors`), unless `create_contact` is true.",
    )
    create_contact: bool = Field(
        False,
        description="With `external_id`: an unknown one becomes a new contact (with `email` "
        "if given: a lead; without: an anonymous suspect) instead of refusing the event.",
    )
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    occurred_at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    source: text(40) = "api"  # type: ignore[valid-type]
    idempotency_key: (
        Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable)] | None
    ) = None

    @field_validator("occurred_at")
    @classmethod
    def aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # a time without zone is taken as UTC
        try:
            in_range = EARLIEST <= value < LATEST
        except OverflowError:
            in_range = False
        if not in_range:
            raise ValueError("occurred_at must be between 1970 and 2100.")
        return value

    @field_validator("properties")
    @classmethod
    def small(cls, value: dict[str, Any]) -> dict[str, Any]:
        _storable(value)
        if len(json.dumps(value, default=str)) > MAX_PROPERTIES_BYTES:
            raise ValueError(f"properties are limited to {MAX_PROPERTIES_BYTES:,} bytes of JSON")
        return value


class EventsIn(Schema):
    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_BATCH)]


class ItemError(Schema):
    index: int = Field(description="The event's position in the batch, from 0.")
    loc: list[str | int]
    msg: str
    type: str


class EventsOut(Schema):
    stored: int
    duplicates: int
    event_ids: list[int]
    refused: int = Field(0, description="Events refused one by one (listed in `errors`).")
    errors: list[ItemError] = Field(
        default_factory=list,
        description="Why each refused event was refused (e.g. an unknown external id); the "
        "other events of the batch are stored.",
    )
    contacts_created: int = Field(
        0, description="Contacts made for unknown external ids (`create_contact`)."
    )


LegalBasis = Literal["consent", "contract", "legitimate_interest", "legal_obligation", ""]


class ContactIn(Schema):
    model_config = {"json_schema_extra": known_by("external_id", EXTERNAL_ID_SCHEMA)}

    email: Email = Field(
        None, description='"" or null: no email; the contact is then known by its external_id.'
    )
    first_name: text(100) = ""  # type: ignore[valid-type]
    last_name: text(100) = ""  # type: ignore[valid-type]
    company: Text = ""
    phone: text(40) = ""  # type: ignore[valid-type]
    job_title: text(150) = ""  # type: ignore[valid-type]
    country: text(100) = ""  # type: ignore[valid-type]
    industry: text(100) = ""  # type: ignore[valid-type]
    company_size: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = Field(
        None, description="Number of employees (fit rules may give points for a range)."
    )
    utm_source: Text = ""
    utm_medium: Text = ""
    utm_campaign: Text = ""
    referrer_id: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = Field(
        None, description="The contact who referred this one (kept if one is already set)."
    )
    referrer_email: Email = Field(None, description="Or the referrer's email.")
    # The contact's id in your system; unique: one that belongs to another contact is a 400.
    external_id: Text | None = None
    time_zone: str | None = Field(
        None,
        description='An IANA time zone (e.g. America/Montreal) for send windows; "": the site\'s.',
        max_length=64,
    )
    do_not_email: bool | None = Field(
        None,
        description="true: never send this contact marketing email. An opt-out is sticky: false "
        "or null leaves the contact as it is (only a person lifts an opt-out, on its page).",
    )
    do_not_call: bool | None = Field(
        None, description="true: sales must not phone this contact; sticky like do_not_email."
    )
    consent_basis: LegalBasis | None = Field(
        None,
        description="The legal basis for marketing email (GDPR 6(1)); legitimate interest holds "
        "for a work address once the person was informed (legitimate_interest_notice_on). "
        'null: as it is; "": none.',
    )
    legitimate_interest_notice_on: date | None = Field(
        None,
        description="The day the person was told of the processing and of their right to object "
        '("YYYY-MM-DD"); null clears it.',
    )
    open_tracking_consent: bool | None = Field(
        None,
        description="true: the person consented to the tracking of email opens (recorded now); "
        "false: they did not, or withdrew it. Left out: as it is.",
    )
    open_tracking_consent_source: text(200) = Field(  # type: ignore[valid-type]
        "", description='Where the open-tracking consent was given (default "api").'
    )

    custom_fields: dict[str, Any] | None = Field(
        None,
        description="Custom field values by key, typed as each field's kind: text, a number, "
        'a date as "YYYY-MM-DD", one of the choices; null clears a value. Keys left out stay.',
    )

    @field_validator("custom_fields")
    @classmethod
    def storable_custom_fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _storable(value)

    @field_validator("time_zone")
    @classmethod
    def known_time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        zone = canonical_time_zone(value)
        if zone is None:
            raise ValueError("Not a time zone: write it as Europe/Paris or America/Montreal.")
        return zone


class ContactsIn(Schema):
    contacts: Annotated[list[ContactIn], Field(min_length=1, max_length=MAX_BATCH)]


class ContactOut(Schema):
    id: int
    email: str | None
    first_name: str
    last_name: str
    company: str
    job_title: str
    country: str
    industry: str
    company_size: int | None
    external_id: str | None
    time_zone: str
    do_not_email: bool
    do_not_call: bool
    email_status: str = Field(
        description="Whether email to the address arrives: empty (it does), `hard_bounce`, "
        "`soft_bounces` (too many) or `complaint` (marked as spam); anything but empty stops "
        "marketing email until a person clears it or the email changes."
    )
    email_status_at: datetime | None = Field(description="Since when the email status holds.")
    consent_basis: str
    legitimate_interest_notice_on: date | None
    open_tracking_consent_at: datetime | None
    stage: str
    score: int
    fit_score: int = Field(description="Fit points: the sum of the fit rules that hold.")
    fit_grade: str = Field(description="Fit grade, A (best) to D, from the fit score.")
    custom_fields: dict[str, Any] = Field(description="Custom field values by key.")
    created_at: datetime
    last_activity_at: datetime | None
    referred_by_id: int | None


class ContactPage(Schema):
    contacts: list[ContactOut]
    next_after: int | None = Field(
        description="Pass it as `after` for the next page; null: this was the last one."
    )


class ContactsOut(Schema):
    created: int
    updated: int
    contacts: list[ContactOut]


class Problem(Schema):
    detail: Any


ERRORS = {400: Problem, 401: Problem, 403: Problem, 413: Problem, 429: Problem}


@api.post("/events", response={200: EventsOut, **ERRORS}, summary="Send events (a batch)")
def send_events(request: HttpRequest, payload: EventsIn) -> EventsOut:
    """Store each event once per idempotency key: a retried batch stores nothing twice.
    An event names its contact by `contact_id`, else `external_id` (your system's id), else
    `email` (an unknown email becomes a lead). An unknown external id refuses that event
    alone: it is listed in `errors` (its position in `index`) and the other events are stored;
    send it again once the contact exists, or with `create_contact: true` to make the contact.
    Any other bad event (a malformed field, an unknown `contact_id`) refuses the batch whole
    with a 400, so a corrected retry is simple."""
    with transaction.atomic():
        return _send_events(payload)


def _send_events(payload: EventsIn) -> EventsOut:
    contact_ids, refused, created = _resolve_contacts(payload.events)
    new = [
        NewEvent(
            contact_id=contact_ids[i],
            type=event.type,
            occurred_at=event.occurred_at or timezone.now(),
            properties=event.properties,
            source=event.source,
            idempotency_key=event.idempotency_key,
        )
        for i, event in enumerate(payload.events)
        if i not in refused
    ]
    ids = events_record_many(events=new) if new else []
    return EventsOut(
        stored=len(ids),
        duplicates=len(new) - len(ids),
        event_ids=ids,
        refused=len(refused),
        errors=[{"index": i, **refused[i]} for i in sorted(refused)],
        contacts_created=created,
    )


def _external_id(event: EventIn) -> str | None:
    """The external id an event names its contact by (a contact_id, if given, comes first)."""
    if event.contact_id:
        return None
    return (event.external_id or "").strip() or None


def _resolve_contacts(
    events: list[EventIn],
) -> tuple[list[int], dict[int, dict[str, Any]], int]:
    """Each event's contact id; the events refused one by one (index -> error); the number of
    contacts made for unknown external ids. Raises the 400 that refuses the batch whole."""
    errors = []
    by_id = {e.contact_id for e in events if e.contact_id}
    known_ids = set(Contact.objects.filter(pk__in=by_id).values_list("pk", flat=True))
    # An email is read for the events known by it, and to make a contact for an external id.
    uses_email = [
        i for i, e in enumerate(events)
        if e.email and not e.contact_id and (not _external_id(e) or e.create_contact)
    ]  # fmt: skip
    suppressed = Suppression.suppressed([events[i].email for i in uses_email])
    if suppressed:
        raise NinjaValidationError(
            [
                _error(i, "email", str(ContactSuppressed(events[i].email)))
                for i in uses_email
                if events[i].email in suppressed
            ]
        )
    by_external_id, refused, created = _contacts_by_external_id(events)
    by_email = contact_ids_by_email(
        [e.email for e in events if e.email and not e.contact_id and not _external_id(e)],
        create_missing=True,
    )
    resolved = []
    for i, event in enumerate(events):
        external_id = _external_id(event)
        if event.contact_id:
            if event.contact_id not in known_ids:
                errors.append(_error(i, "contact_id", "No contact has this id."))
            resolved.append(event.contact_id)
        elif external_id:
            if external_id not in by_external_id and i not in refused:
                refused[i] = _refusal(i, "external_id", "No contact has this external id: "
                                      "send the contact first, or set create_contact.",
                                      "unknown_external_id")  # fmt: skip
            resolved.append(by_external_id.get(external_id, 0))
        elif event.email:
            resolved.append(by_email[event.email.lower()])
        else:
            errors.append(
                _error(i, "email", "Give the contact's email, external_id or contact_id.")
            )
            resolved.append(0)
    if errors:
        raise NinjaValidationError(errors)
    return resolved, refused, created


def _contacts_by_external_id(
    events: list[EventIn],
) -> tuple[dict[str, int], dict[int, dict[str, Any]], int]:
    """External id -> contact id for the events known by one, one query; the unknown ones
    whose events ask for it become contacts (``contact_ensure``). Returns that map, the
    events refused because their contact could not be made, and how many were made."""
    named = {i: external_id for i, e in enumerate(events) if (external_id := _external_id(e))}
    if not named:
        return {}, {}, 0
    found = contact_ids_by_external_id(named.values())
    wanted: dict[str, str | None] = {}  # unknown external id -> the first email given with it
    for i, external_id in named.items():
        if external_id not in found and events[i].create_contact:
            wanted[external_id] = wanted.get(external_id) or events[i].email
    refused: dict[int, dict[str, Any]] = {}
    created = 0
    for external_id, email in wanted.items():
        try:
            contact, made = contact_ensure(external_id=external_id, email=email)
        except DuplicateContact:
            message = "The contact with this email has another external id."
            for i, other in named.items():
                if other == external_id and events[i].create_contact:
                    refused[i] = _refusal(i, "email", message, "external_id_conflict")
            continue
        found[external_id] = contact.pk
        created += made
    return found, refused, created


def _refusal(index: int, field: str, message: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", "payload", "events", index, field], "msg": message, "type": kind}


def _error(index: int, field: str, message: str, items: str = "events") -> dict[str, Any]:
    return {
        "loc": ["body", "payload", items, index, field],
        "msg": message,
        "type": "value_error",
    }


@api.post("/contacts", response={200: ContactsOut, **ERRORS}, summary="Create or update contacts")
def upsert_contacts(request: HttpRequest, payload: ContactsIn) -> ContactsOut:
    """Match on the email, whatever its case, else on the external_id (a contact without an
    email is known by it); fields sent overwrite, fields left out stay. A send-only key gets
    the counts and an empty `contacts` (it may not read them back)."""
    with transaction.atomic():
        answer = _upsert_contacts(payload)
    if not request.auth.can_read:  # type: ignore[attr-defined]
        answer.contacts = []
    return answer


def _upsert_contacts(payload: ContactsIn) -> ContactsOut:
    suppressed = Suppression.suppressed([item.email for item in payload.contacts if item.email])
    errors = [
        _error(i, "email", str(ContactSuppressed(item.email)), "contacts")
        for i, item in enumerate(payload.contacts)
        if item.email in suppressed
    ]
    errors += [
        _error(i, "email", "Give the contact's email or external_id.", "contacts")
        for i, item in enumerate(payload.contacts)
        if not item.email and not (item.external_id or "").strip()
    ]
    referrers = [_referrer(i, item, errors) for i, item in enumerate(payload.contacts)]
    custom = _custom_values(payload.contacts, errors)
    if errors:
        raise NinjaValidationError(errors)
    consented = _open_tracking_consents(payload.contacts)
    results = []
    for i, item in enumerate(payload.contacts):
        # No email (none sent, "" or null) leaves the contact's email as it is.
        fields = item.dict(exclude_unset=True, exclude={"email", "referrer_id", "referrer_email"})
        for flag in ("do_not_email", "do_not_call"):  # an opt-out is set, never lifted here
            if not fields.get(flag):
                fields.pop(flag, None)
        _open_tracking_fields(fields, since=consented.get((item.email or "").lower()))
        fields.pop("custom_fields", None)
        if custom[i]:
            fields["custom_fields"] = custom[i]
        try:
            results.append(contact_upsert(email=item.email, **fields))
        except DuplicateContact as error:  # an external id another contact has
            loc = ["body", "payload", "contacts", i, "external_id"]
            message = "Another contact has this external id."
            problem = {"loc": loc, "msg": message, "type": "value_error"}
            raise NinjaValidationError([problem]) from error
    for (contact, _created), referrer in zip(results, referrers, strict=True):
        if referrer is not None:
            contact_referral_link(contact=contact, referrer=referrer)
    created = sum(1 for _, was_created in results if was_created)
    return ContactsOut(
        created=created,
        updated=len(results) - created,
        contacts=[contact for contact, _ in results],
    )


def _custom_values(items: list[ContactIn], errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each item's custom field values, typed; an unknown key or a value of the wrong type is
    an error on ``custom_fields.<key>``."""
    if not any(item.custom_fields for item in items):
        return [{} for _item in items]
    fields = active_custom_fields()
    values = []
    with translation.override("en"):  # the API speaks English, as its other messages
        for i, item in enumerate(items):
            clean, problems = custom_values_accept(item.custom_fields or {}, fields)
            values.append(clean)
            errors += [
                {
                    "loc": ["body", "payload", "contacts", i, "custom_fields", key],
                    "msg": message,
                    "type": "value_error",
                }
                for key, message in problems.items()
            ]
    return values


def _referrer(index: int, item: ContactIn, errors: list[dict[str, Any]]) -> Contact | None:
    if item.referrer_id is None and not item.referrer_email:
        return None
    properties = {"referrer_id": item.referrer_id, "referrer_email": item.referrer_email}
    referrer = referrer_find(properties)
    if referrer is None:
        field = "referrer_id" if item.referrer_id is not None else "referrer_email"
        errors.append(_error(index, field, "No contact is this referrer.", "contacts"))
    return referrer


@api.get("/contacts/{contact_id}", response={200: ContactOut, 404: Problem, **ERRORS},
         summary="Read a contact with its stage and score")  # fmt: skip
def read_contact(request: HttpRequest, contact_id: int) -> Contact:
    _reads(request)
    contact = Contact.objects.filter(pk=contact_id).first()
    if contact is None:
        raise HttpError(404, "No contact has this id.")
    return contact


def _open_tracking_consents(items: list[ContactIn]) -> dict[str, datetime]:
    """When the known contacts of a batch who are given ``open_tracking_consent`` consented
    to open tracking, by lower-cased email: a consent given again keeps its first date."""
    emails = {item.email.lower() for item in items if item.email and item.open_tracking_consent}
    if not emails:
        return {}
    found = Contact.objects.annotate(email_lower=Lower("email")).filter(
        email_lower__in=emails, open_tracking_consent_at__isnull=False
    )
    return dict(found.values_list("email_lower", "open_tracking_consent_at"))


def _open_tracking_fields(fields: dict[str, Any], since: datetime | None = None) -> None:
    """A null ``consent_basis`` left out; ``open_tracking_consent`` (true/false) as the
    contact's fields: the consent's date
    (``since``, when it was given before, else now) and source, or none."""
    if fields.get("consent_basis", "") is None:
        fields.pop("consent_basis")
    source = fields.pop("open_tracking_consent_source", "") or "api"
    if "open_tracking_consent" not in fields:
        return
    given = fields.pop("open_tracking_consent")
    if given is None:
        return
    fields["open_tracking_consent_at"] = (since or timezone.now()) if given else None
    if given and not since:
        fields["open_tracking_consent_source"] = source
    elif not given:
        fields["open_tracking_consent_source"] = ""


class ContactChange(ContactIn):
    """The fields to change; all optional. `email` or `external_id` blank or null: left as is."""

    model_config = {"json_schema_extra": None}


@api.get("/contacts/external/{path:external_id}",
         response={200: ContactOut, 404: Problem, **ERRORS},
         summary="Read a contact by its external id")  # fmt: skip
def read_contact_by_external_id(request: HttpRequest, external_id: str) -> Contact:
    """The contact whose external id (your system's id) is exactly this one."""
    _reads(request)
    contact = Contact.objects.filter(external_id=external_id.strip()).first()
    if contact is None:
        raise HttpError(404, "No contact has this external id.")
    return contact


@api.patch("/contacts/external/{path:external_id}",
           response={200: ContactOut, 404: Problem, **ERRORS},
           summary="Update a contact found by its external id")  # fmt: skip
def update_contact_by_external_id(
    request: HttpRequest, external_id: str, payload: ContactChange
) -> Contact:
    """Fields sent overwrite, fields left out stay. An `external_id` in the body renames it
    (one another contact has is a 400); an `email` sets or changes the contact's email.
    It answers the contact: a key that reads only."""
    _reads(request)
    with transaction.atomic():
        contact = (
            Contact.objects.select_for_update().filter(external_id=external_id.strip()).first()
        )
        if contact is None:
            raise HttpError(404, "No contact has this external id.")
        return _change_contact(contact, payload)


def _change_contact(contact: Contact, payload: ContactChange) -> Contact:
    fields = payload.dict(exclude_unset=True, exclude={"referrer_id", "referrer_email"})
    for name in ("email", "external_id"):
        if not (fields.get(name) or "").strip():
            fields.pop(name, None)
    for flag in ("do_not_email", "do_not_call"):  # an opt-out is set, never lifted here
        if not fields.get(flag):
            fields.pop(flag, None)
    _open_tracking_fields(fields, since=contact.open_tracking_consent_at)
    problems = []
    if "custom_fields" in fields:
        with translation.override("en"):
            custom, wrong = custom_values_accept(
                fields.pop("custom_fields") or {}, active_custom_fields()
            )
        problems += [(f"custom_fields.{key}", message) for key, message in wrong.items()]
        if custom:
            fields["custom_fields"] = custom
    others = Contact.objects.exclude(pk=contact.pk)
    if "email" in fields and others.filter(email__iexact=fields["email"]).exists():
        problems.append(("email", "Another contact has this email."))
    if "external_id" in fields and others.filter(external_id=fields["external_id"]).exists():
        problems.append(("external_id", "Another contact has this external id."))
    if fields.get("email") and Suppression.suppressed([fields["email"]]):
        problems.append(("email", str(ContactSuppressed(fields["email"]))))
    referrer = None
    if payload.referrer_id is not None or payload.referrer_email:
        referrer = referrer_find(
            {"referrer_id": payload.referrer_id, "referrer_email": payload.referrer_email}
        )
        if referrer is None:
            problems.append(("referrer_id", "No contact is this referrer."))
    if problems:
        raise NinjaValidationError(
            [{"loc": ["body", "payload", *field.split(".")], "msg": message,
              "type": "value_error"}
             for field, message in problems]
        )  # fmt: skip
    try:
        contact_update(contact=contact, **fields)
    except (DuplicateContact, ContactErased) as error:  # a race lost, or erased data
        raise HttpError(400, str(error)) from error
    if referrer is not None:
        contact_referral_link(contact=contact, referrer=referrer)
    return contact


@api.get("/contacts", response={200: ContactPage, **ERRORS},
         summary="List contacts with their stage, score and fit, by id")  # fmt: skip
def list_contacts(
    request: HttpRequest,
    stage: Literal["suspect", "lead", "mql", "hmql", "sql", "client", "ambassador"] | None = None,
    fit_grade: Literal["A", "B", "C", "D"] | None = None,
    after: Annotated[int, Field(ge=0)] = 0,
    limit: Annotated[int, Field(ge=1, le=MAX_BATCH)] = 100,
) -> ContactPage:
    """Contacts in id order, `limit` at a time after the id `after`; only one stage or fit
    grade if asked (e.g. `?stage=sql&fit_grade=A`)."""
    _reads(request)
    contacts = Contact.objects.filter(pk__gt=after).order_by("pk")
    if stage:
        contacts = contacts.filter(stage=stage)
    if fit_grade:
        contacts = contacts.filter(fit_grade=fit_grade)
    page = list(contacts[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return ContactPage(contacts=page, next_after=page[-1].pk if more else None)
