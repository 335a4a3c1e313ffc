"""How fast ``nurturing.bounces.record_reports`` records delivery reports on PostgreSQL (a
measuring script, not a timed test; the ``bounces`` benchmark times the sources around it).

    DATABASE_URL=postgres://... REDIS_URL=redis://127.0.0.1:6379/<db> python bench/record_reports.py [count]

Makes ``count`` (default 10,000) contacts, each with a sent email of one sequence, then records
one report per contact, as a bounce mailbox or an email service would send them: 60 % hard
bounces found by message id, 25 % soft bounces found by address, 5 % complaints, 5 %
deferrals, 5 % matching nothing; then the same reports again (all duplicates). Prints the
reports per second of each pass. The event handlers (scoring) run later in a worker, as in
production: the events' task goes to REDIS_URL's broker (or the file broker) and the rows are
deleted at the end.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadfunnel.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-0123456789")
os.environ.setdefault("READ_DOT_ENV", "false")


def main(count: int) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from contacts.models import Contact, Event
    from nurturing.bounces import Kind, Report, record_reports
    from nurturing.models import Bounce, Enrollment, Message, Sequence, Step

    call_command("migrate", verbosity=0)
    run = uuid.uuid4().hex[:8]
    now = timezone.now()
    sequence = Sequence.objects.create(name=f"bench bounces {run}")
    step = Step.objects.create(sequence=sequence, position=1, kind="email", subject="s",
                               body_text="b")  # fmt: skip
    contacts = Contact.objects.bulk_create(
        Contact(email=f"b{n}-{run}@example.com", stage="lead") for n in range(count)
    )
    enrollments = Enrollment.objects.bulk_create(
        Enrollment(contact=c, sequence=sequence, step=step, status="completed") for c in contacts
    )
    messages = Message.objects.bulk_create(
        Message(enrollment=e, step=step, contact_id=e.contact_id, to=c.email, subject="s",
                body_text="b", message_id=f"<{e.pk}@bench>", status="sent", sent_at=now)
        for e, c in zip(enrollments, contacts, strict=True)
    )  # fmt: skip
    reports = []
    for n, (contact, message) in enumerate(zip(contacts, messages, strict=True)):
        share = n % 20
        if share < 12:
            report = Report(kind=Kind.HARD, message_id=message.pk, status="5.1.1",
                            diagnostic="550 5.1.1 User unknown", source="mailbox")  # fmt: skip
        elif share < 17:
            report = Report(kind=Kind.SOFT, email=contact.email.upper(), status="4.2.2",
                            diagnostic="452 4.2.2 Mailbox full", source="esp:brevo")  # fmt: skip
        elif share == 17:
            report = Report(kind=Kind.COMPLAINT, email=contact.email, source="esp:ses")
        elif share == 18:
            report = Report(kind=Kind.DEFERRED, message_id=message.pk, status="4.4.1",
                            source="esp:postmark")  # fmt: skip
        else:
            report = Report(kind=Kind.HARD, email=f"nobody{n}-{run}@example.com", source="mailbox")
        reports.append(
            Report(
                **{**{f: getattr(report, f) for f in Report.__slots__}, "reference": f"{run}-{n}"}
            )  # fmt: skip
        )
    try:
        for label in ("first pass", "again (duplicates)"):
            started = time.perf_counter()
            result = record_reports(reports)
            seconds = time.perf_counter() - started
            print(
                f"{label}: {count} reports in {seconds:.2f} s = {count / seconds:,.0f}/s "
                f"(recorded {result.recorded}, duplicates {result.duplicates}, "
                f"unmatched {len(result.unmatched)}, suppressed {len(result.suppressed)})",
                flush=True,
            )
    finally:
        Bounce.objects.filter(reference__startswith=f"{run}-").delete()
        Event.objects.filter(contact__in=contacts).delete()
        Message.objects.filter(enrollment__sequence=sequence).delete()
        sequence.delete()
        Contact.objects.filter(pk__in=[c.pk for c in contacts]).delete()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
