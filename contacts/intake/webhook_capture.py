"""Recording what a form tool posted to an inbound webhook: each submission makes or completes
a contact and records a ``form_submit`` event, once per sender's submission id; every delivery
leaves a row in the log an admin reads (received, accepted, already received, refused and why).

Two steps, so that a sender hears "ok" after one small commit (Tally gives up after 10 s,
Typeform after 30 s, and both advise answering at once):
1. ``delivery_receive`` (the request): what can be refused at once is refused (switched off,
   signature, not JSON, no submission, no one to attach it to); the rest is kept whole as a
   ``received`` row, committed before the answer, the commit waiting for the disk
   (``contacts.durability``: the sender was told "stored"), and a task is sent after commit.
2. ``inbound_delivery_process`` (a worker): the submissions are recorded, the row says what
   came of them. A task lost with a down broker is no lead lost: the sweep
   (``inbound_deliveries_sweep``, on beat) takes every row still ``received``.
Nothing on the request's way needs Redis: ``broker.send`` skips a down broker, the refusal
log's limiter counts in memory meanwhile (``contacts.ratelimit``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from contacts import broker, ratelimit
from contacts.events import event_record
from contacts.intake import tracking
from contacts.intake.webhooks import (
    SIGNATURE_HEADERS,
    PayloadRefused,
    Submission,
    signature_problem,
    submissions_read,
)
from contacts.models import (
    Consent,
    Contact,
    Event,
    InboundDelivery,
    InboundSource,
    StageChange,
    normalize_email,
)
from contacts.privacy import ContactSuppressed
from contacts.services import (
    UTM_FIELDS,
    ContactErased,
    DuplicateContact,
    contact_create,
    contact_update,
)

logger = logging.getLogger(__name__)

# Refused deliveries logged per endpoint and minute: anyone who knows a URL can post to it,
# and a flood of forged posts must not become a flood of rows.
REFUSED_LOGGED_PER_MINUTE = 60
# Deliveries older than this are deleted, now and then, as new ones arrive.
LOG_DAYS = 30
PRUNE_EVERY = 100
# A delivery still waiting this long after it came lost its task: the sweep takes it.
SWEEP_AFTER = 30.0
RECORD_TASK = "contacts.tasks.record_inbound_deliveries_task"
KICK = "leadfunnel:inbound:kick"
KICK_MS = 1000
RECORD_BATCH = 200
Status = InboundDelivery.Status


class NoIdentity(Exception):
    pass


@dataclass(frozen=True)
class Received:
    """What became of a delivery: the answer for the sender, and the log row (None when the
    row was not written: a refusal past REFUSED_LOGGED_PER_MINUTE)."""

    status: str
    http_status: int
    reason: str
    delivery: InboundDelivery | None


def delivery_receive(*, source: InboundSource, body: bytes, signature: str | None) -> Received:
    """Check one POST to ``source``'s endpoint and keep it for the workers: the answer the
    sender gets, and its row in the log (refusals logged within REFUSED_LOGGED_PER_MINUTE).

    What the sender can be told at once is checked here (switched off, signature, JSON, a
    payload with no submission or no one to attach it to); recording the submissions waits
    for a worker (``inbound_delivery_process``), so that the sender hears "ok" after one
    small commit, however busy the contact tables are."""
    if not source.active:
        return _refuse(source, body, 404, _("This webhook is switched off."))
    problem = signature_problem(source.kind, source.secret, body, signature)
    if problem:
        return _refuse(source, body, 401 if not signature else 403, problem)
    try:
        text = body.decode(json.detect_encoding(body))
        payload = json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:
        return _refuse(source, body, 400, _("Not JSON: %(error)s") % {"error": _problem(error)})
    try:
        submissions = submissions_read(source.kind, payload, source.mapping)
    except PayloadRefused as refusal:
        if refusal.ignored:  # answered 2xx: the sender need not send it again
            return _log(source, body, Status.IGNORED, 200, refusal.reason)
        return _refuse(source, body, 422, refusal.reason)
    if not any(s.contact.get("email") or s.contact.get("external_id") for s in submissions):
        return _refuse(source, body, 422, _("No valid email nor external id in the submission."))
    # One INSERT, committed on its own (autocommit) and waiting for the disk, before the
    # answer: no transaction around it (BEGIN and COMMIT cost a tenth of the receipt).
    delivery = InboundDelivery.objects.create(
        source=source, status=Status.RECEIVED, http_status=200, payload=text,
        payload_bytes=len(body), submission_ids=_ids(submissions),
    )  # fmt: skip
    # After that commit (at once here; after the caller's, inside a transaction). Without a
    # broker, the sweep (SWEEP_AFTER) finds the delivery in the table.
    transaction.on_commit(_kick, robust=True)
    return Received(Status.RECEIVED, 200, "", delivery)


def _kick() -> None:
    """Ask a worker to record what came in, at most once a second while deliveries pour in
    (a Redis SET NX, as the tracking beacon does): the worker records every delivery waiting,
    so a burst costs one task instead of a Celery message per post. A message per post cost
    most of a receipt's time: 176 receipts/s at saturation against 300 wanted (bench
    ``webhooks``, 6 December). Without Redis, or while it is away, every post sends its own."""
    if tracking.enabled() and not tracking.outage.ongoing():
        try:
            if not tracking.client().set(KICK, "1", nx=True, px=KICK_MS):
                return  # a worker was asked less than a second ago and takes this one too
        except RedisError:
            tracking.outage.begin("inbound webhooks ask the broker for every delivery meanwhile")
    broker.send(RECORD_TASK)


def inbound_deliveries_record() -> int:
    """Record every delivery waiting (the kicked task), oldest first; returns how many this
    worker recorded. Then it lets the next delivery ask again (drops the kick) and looks once
    more: a delivery that found the kick still set was committed before the drop, so this
    last look sees it; one that came after the drop sends its own kick."""
    recorded = _waiting_record()
    if tracking.enabled() and not tracking.outage.ongoing():
        try:
            tracking.client().delete(KICK)
        except RedisError:
            tracking.outage.begin("inbound webhooks ask the broker for every delivery meanwhile")
    return recorded + _waiting_record()


def _waiting_record() -> int:
    recorded = 0
    while True:
        waiting = list(
            InboundDelivery.objects.filter(status=Status.RECEIVED)
            .order_by("received_at")
            .values_list("pk", flat=True)[:RECORD_BATCH]
        )
        done = sum(inbound_delivery_process(delivery_id=pk) for pk in waiting)
        recorded += done
        if not done:  # nothing waiting, or the rest held by other workers
            return recorded


def _problem(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} (line {error.lineno}, column {error.colno})"
    return str(error)


def _ids(submissions: list[Submission]) -> str:
    return ", ".join(s.submission_id for s in submissions if s.submission_id)[:300]


def inbound_delivery_process(*, delivery_id: int) -> bool:
    """Record a received delivery's submissions (a worker's job): each in its own savepoint,
    the log row's outcome in the same transaction. False if another worker has it or had it.

    A delivery that fails for a reason of its own (a value the database refuses, a bug) is
    marked failed, its body kept, rather than tried by every sweep for ever; a database that
    is away leaves it received for the next sweep."""
    try:
        return _process(delivery_id)
    except (OperationalError, InterfaceError):
        raise
    except Exception as error:
        logger.exception("Inbound delivery %s could not be recorded", delivery_id)
        reason = _("Could not be recorded: %(error)s") % {"error": type(error).__name__}
        InboundDelivery.objects.filter(pk=delivery_id, status=Status.RECEIVED).update(
            status=Status.FAILED, reason=reason[:300]
        )
        return True


def _process(delivery_id: int) -> bool:
    with transaction.atomic():
        delivery = (
            InboundDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("source")
            .filter(pk=delivery_id, status=Status.RECEIVED)
            .first()
        )
        if delivery is None:
            return False
        source = delivery.source
        try:
            payload = json.loads(delivery.payload)
            submissions = submissions_read(source.kind, payload, source.mapping)
        except (ValueError, PayloadRefused) as refusal:  # the mapping changed since
            _outcome(delivery, Status.REFUSED, str(getattr(refusal, "reason", refusal)))
            return True
        digest = hashlib.sha256(delivery.payload.encode()).hexdigest()[:40]
        recorded, skipped, contact_id = 0, [], None
        for position, submission in enumerate(submissions):
            # No id from the sender: the same body sent twice is still one submission.
            key = submission.submission_id or f"sha256:{digest}:{position}"
            try:
                contact_id, created = inbound_submission_record(
                    source=source, submission=submission, idempotency_key=f"in:{source.pk}:{key}"
                )
            except NoIdentity:
                skipped.append(_("No valid email nor external id in the submission."))
                continue
            except (ContactSuppressed, ContactErased) as refusal:
                skipped.append(str(refusal))
                continue
            recorded += created
        if len(skipped) == len(submissions):
            status = Status.REFUSED
        else:
            status = Status.ACCEPTED if recorded else Status.DUPLICATE
        reason = " ".join(dict.fromkeys(skipped))
        if status == Status.DUPLICATE and not reason:
            reason = _("Already received: nothing recorded twice.")
        _outcome(delivery, status, reason, contact_id=contact_id)
    return True


def _outcome(
    delivery: InboundDelivery, status: str, reason: str, *, contact_id: int | None = None
) -> None:
    delivery.status, delivery.reason, delivery.contact_id = status, str(reason)[:300], contact_id
    delivery.payload = delivery.payload[: InboundDelivery.PAYLOAD_KEPT]  # the log is bounded
    delivery.save(update_fields=["status", "reason", "contact_id", "payload"])


def inbound_deliveries_sweep(*, older_than: float = SWEEP_AFTER) -> int:
    """Process the deliveries still waiting ``older_than`` seconds after they came (their
    task was lost, or the broker was down); returns how many were processed here."""
    waiting = (
        InboundDelivery.objects.filter(
            status=Status.RECEIVED, received_at__lt=timezone.now() - timedelta(seconds=older_than)
        )
        .order_by("received_at")
        .values_list("pk", flat=True)[:1000]
    )
    return sum(inbound_delivery_process(delivery_id=pk) for pk in waiting)


@transaction.atomic
def inbound_submission_record(
    *, source: InboundSource, submission: Submission, idempotency_key: str
) -> tuple[int, bool]:
    """One submission: its contact made or completed (blanks filled, nothing known is
    overwritten; an opt-out is kept, never undone), the consent with its proof, and a
    form_submit event stored once per ``idempotency_key``. Returns (contact id, recorded)."""
    known = Event.objects.filter(idempotency_key=idempotency_key).values_list("contact_id")
    if known:  # a retry: the contact is left as the first delivery made it
        return known[0][0], False
    fields = dict(submission.contact)
    email, external_id = fields.pop("email", None), fields.pop("external_id", None)
    if not email and not external_id:
        raise NoIdentity
    contact = _known(email, external_id)
    # Another person's external id is not taken over: the contact is kept without it.
    taken = (
        bool(external_id)
        and (contact is None or contact.external_id != external_id)
        and Contact.objects.filter(external_id=external_id).exists()
    )
    if contact is None:
        # A new person, made with everything at once: one save, one fit and one "changed".
        first = {name: value for name, value in fields.items() if value}
        if external_id and not taken:
            first["external_id"] = external_id
        if source.source_id:
            first["source"] = source.source
        if submission.do_not_email:
            first["do_not_email"] = True
        try:
            contact = contact_create(email=email, cause=StageChange.Cause.SYSTEM, **first)
        except DuplicateContact:  # made by a concurrent delivery since: completed below
            contact = _known(email, external_id)
            if contact is None:
                raise
        else:
            return contact.pk, _form_submit_record(source, submission, contact, idempotency_key)
    blanks = {
        name: value for name, value in fields.items()
        if name not in UTM_FIELDS and value and not getattr(contact, name)
    }  # fmt: skip
    if external_id and not taken and not contact.external_id:
        blanks["external_id"] = external_id
    if email and not contact.email:  # known by its external id until now
        blanks["email"] = email
    if not contact.source_id:  # first touch: where this person came from
        if source.source_id:
            blanks["source"] = source.source
        blanks.update({name: fields[name] for name in UTM_FIELDS if fields.get(name)})
    if submission.do_not_email and not contact.do_not_email:
        blanks["do_not_email"] = True
    if blanks:
        contact_update(contact=contact, **blanks)
    return contact.pk, _form_submit_record(source, submission, contact, idempotency_key)


def _known(email: str | None, external_id: str | None) -> Contact | None:
    """The person with this email (whatever its case), else the one with this external id
    and no email yet (as ``contact_upsert`` matches)."""
    if email:
        found = Contact.objects.filter(email__iexact=normalize_email(email)).first()
        if found is not None or not external_id:
            return found
        return Contact.objects.filter(external_id=external_id, email__isnull=True).first()
    return Contact.objects.filter(external_id=external_id).first()


def _form_submit_record(
    source: InboundSource, submission: Submission, contact: Contact, idempotency_key: str
) -> bool:
    """The event and the consent; False (and no second consent) if a concurrent delivery of
    the same submission stored the event first."""
    form_name = source.form_name or submission.form_name or source.name
    _event, created = event_record(
        contact=contact,
        type=Event.Type.FORM_SUBMIT,
        occurred_at=_occurred_at(submission),
        properties={
            **submission.answers,
            "form": submission.form_id or source.key,
            "form_name": form_name,
            "sender": source.kind,
            "submission_id": submission.submission_id,
            "url": submission.url,
        },
        source="webhook",
        idempotency_key=idempotency_key,
    )
    if created and submission.consent:
        _consent_record(source, submission, contact)
    return created


def _consent_record(source: InboundSource, submission: Submission, contact: Contact) -> None:
    wording = submission.consent_wording or _(
        "Consent given in the %(sender)s form “%(form)s”."
    ) % {"sender": source.get_kind_display(), "form": submission.form_name or source.name}
    at = _occurred_at(submission)
    Consent.objects.create(
        contact=contact, form=None, wording=wording, wording_version=1, ip=None,
        page=submission.url, at=at,
    )  # fmt: skip
    method = f"webhook:{source.kind}:{submission.form_id or source.key}"[:200]
    Contact.objects.filter(pk=contact.pk).update(
        consent=Contact.Consent.GRANTED, consent_at=at, consent_method=method
    )


def _occurred_at(submission: Submission):  # noqa: ANN202
    now = timezone.now()
    # A sender's clock ahead of ours would put the event in the future of every report.
    if submission.occurred_at is None or submission.occurred_at > now:
        return now
    return submission.occurred_at


# -- the log ------------------------------------------------------------------------------


def _refuse(source: InboundSource, body: bytes, http_status: int, reason: str) -> Received:
    wait = ratelimit.seconds_to_wait(f"inbound-refused:{source.key}", REFUSED_LOGGED_PER_MINUTE)
    if wait:
        logger.info("Inbound webhook %s: refusal not logged (%s): %s", source.pk, http_status,
                    reason)  # fmt: skip
        return Received(Status.REFUSED, http_status, reason, None)
    return _log(source, body, Status.REFUSED, http_status, reason)


def _log(
    source: InboundSource,
    body: bytes,
    status: str,
    http_status: int,
    reason: str,
    *,
    contact_id: int | None = None,
    ids: str = "",
) -> Received:
    text = body[: InboundDelivery.PAYLOAD_KEPT * 4].decode("utf-8", errors="replace")
    text = text.replace("\x00", "\ufffd")  # PostgreSQL keeps no NUL
    delivery = InboundDelivery.objects.create(
        source=source, status=status, http_status=http_status, reason=str(reason)[:300],
        submission_ids=ids[:300], contact_id=contact_id,
        payload=text[: InboundDelivery.PAYLOAD_KEPT], payload_bytes=len(body),
    )  # fmt: skip
    if delivery.pk % PRUNE_EVERY == 0:
        inbound_deliveries_prune()
    return Received(status, http_status, str(reason), delivery)


def inbound_deliveries_prune(*, days: int = LOG_DAYS) -> int:
    """Forget deliveries older than ``days``; returns how many."""
    deleted, _counts = InboundDelivery.objects.filter(
        received_at__lt=timezone.now() - timedelta(days=days)
    ).delete()
    return deleted


def signature_header(source: InboundSource) -> str:
    return SIGNATURE_HEADERS[source.kind]
