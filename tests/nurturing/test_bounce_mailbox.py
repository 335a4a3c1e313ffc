"""The bounce mailbox end to end: messages sent to a real SMTP server (aiosmtpd) with their VERP
return path, bounces filed in a real IMAP server (Dovecot, tests/imap_server.py) and read by
a pass of ``bounce_mailbox_read``, the contacts' fates recorded (nurturing.bounces)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from contacts.models import Contact
from nurturing import bounce_mailbox, enrolment, scheduler, sending, verp
from nurturing.models import Bounce, Message, UnmatchedMail
from tests import imap_server
from tests.factories import ContactFactory
from tests.nurturing.bounce_data import BOUNCE_ADDRESS, bounce
from tests.nurturing.helpers import email_step, sequence_with

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def dovecot():
    if not imap_server.available():
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = imap_server.Dovecot()
    yield server
    server.stop()


class Mailbox:
    def __init__(self, server: imap_server.Dovecot) -> None:
        self.server = server
        self.user = server.new_user()
        self.url = server.url(self.user)

    def file(self, *mails: bytes) -> None:
        self.server.append(self.user, *mails)

    def count(self, folder: str = "INBOX") -> int:
        return self.server.count(self.user, folder)


@pytest.fixture
def mailbox(dovecot, settings):
    settings.NURTURING_BOUNCE_ADDRESS = BOUNCE_ADDRESS
    settings.DEFAULT_FROM_EMAIL = "LeadFunnel <marketing@leadfunnel.test>"
    settings.NURTURING_BOUNCE_REVIEW_FOLDER = "Review"
    box = Mailbox(dovecot)
    settings.NURTURING_BOUNCE_MAILBOX_URL = box.url
    return box


def sent_to(*contacts: Contact) -> list[Message]:
    sequence = sequence_with(email_step())
    enrolment.enrollments_start(sequence=sequence, contact_ids=[c.pk for c in contacts])
    scheduler.enrollments_advance()
    assert sending.messages_send() == len(contacts)
    return list(Message.objects.order_by("pk"))


def test_each_message_leaves_with_its_own_return_path_and_the_same_from(mailbox, nurturing_smtp):
    first, second = sent_to(*ContactFactory.create_batch(2))

    envelopes = {r.recipients[0]: r.mail_from for r in nurturing_smtp.received}
    assert envelopes == {
        first.to: verp.return_path(first.pk),
        second.to: verp.return_path(second.pk),
    }
    assert all(r.message["From"] == "LeadFunnel <marketing@leadfunnel.test>"
               for r in nurturing_smtp.received)  # fmt: skip
    assert "Return-Path" not in nurturing_smtp.received[0].message  # the MTA writes it


def test_a_bounce_to_the_return_path_suppresses_the_address(mailbox, nurturing_smtp):
    contact = ContactFactory(email="claire.martin@example.org")
    [message] = sent_to(contact)
    [received] = nurturing_smtp.received
    mailbox.file(bounce("postfix_dsn", recipient=message.to, return_path=received.mail_from))

    done = bounce_mailbox.bounce_mailbox_read()

    assert done["recorded"] == 1 and done["kept"] == 0
    contact.refresh_from_db()
    message.refresh_from_db()
    assert contact.email_status == Contact.EmailStatus.HARD_BOUNCE
    assert message.status == Message.Status.BOUNCED
    report = Bounce.objects.get()
    assert (report.kind, report.status, report.source) == ("hard", "5.1.1", "mailbox")
    assert report.message == message
    assert mailbox.count() == 0  # recorded, so gone from the mailbox


def test_a_pass_reads_every_vendor_shape_and_keeps_what_matches_nothing(mailbox, settings):
    hard, soft, deferred, complaint, exim, qmail, replying = contacts = [
        ContactFactory(email=f"person{n}@example.org") for n in range(7)
    ]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    messages = dict(zip(contacts, sent_to(*contacts), strict=True))

    def about(contact: Contact, name: str, **fields) -> bytes:
        message = messages[contact]
        fields.setdefault("message_pk", message.pk)
        return bounce(name, recipient=contact.email, message_id=message.message_id, **fields)

    forged = verp.return_path(messages[hard].pk).replace(f"+{messages[hard].pk}-", "+999999-")
    mailbox.file(
        about(hard, "postfix_dsn"),
        about(soft, "exchange_dsn", message_pk=None),  # found by its Message-ID
        about(deferred, "gmail_dsn"),
        about(complaint, "yahoo_arf"),  # to the feedback loop's address, token in the original
        about(exim, "exim_plain"),
        about(qmail, "qmail_plain", message_pk=None),  # found by its recipient only
        about(replying, "auto_reply"),
        bounce("postfix_dsn", recipient="nobody@elsewhere.example"),  # nobody we know
        bounce("postfix_dsn", recipient=messages[replying].to, return_path=forged),
        bounce("garbage"),
    )

    done = bounce_mailbox.bounce_mailbox_read()

    assert done == {"read": 10, "recorded": 6, "duplicates": 0, "ignored": 1, "kept": 3}
    status = dict(Contact.objects.values_list("email", "email_status"))
    assert status == {
        hard.email: Contact.EmailStatus.HARD_BOUNCE,
        soft.email: Contact.EmailStatus.OK,  # counted: one of five
        deferred.email: Contact.EmailStatus.OK,
        complaint.email: Contact.EmailStatus.COMPLAINT,
        exim.email: Contact.EmailStatus.HARD_BOUNCE,
        qmail.email: Contact.EmailStatus.HARD_BOUNCE,
        replying.email: Contact.EmailStatus.OK,  # an auto-reply, and a forged bounce
    }
    kinds = dict(Bounce.objects.values_list("contact__email", "kind"))
    assert kinds == {
        hard.email: "hard", soft.email: "soft", deferred.email: "deferred",
        complaint.email: "complaint", exim.email: "hard", qmail.email: "hard",
    }  # fmt: skip
    assert Bounce.objects.get(kind="soft").message == messages[soft]
    assert Message.objects.get(pk=messages[complaint].pk).status == Message.Status.COMPLAINED
    kept = dict(UnmatchedMail.objects.values_list("reason", "sender"))
    assert kept == {
        "matches no message or contact": "MAILER-DAEMON@mail.example.org (Mail Delivery System)",
        "forged VERP token": "MAILER-DAEMON@mail.example.org (Mail Delivery System)",
        "not recognised as a bounce": '"Mega Deals" <promo@deals.example>',
    }
    nobody = UnmatchedMail.objects.get(reason="matches no message or contact")
    assert nobody.findings[0]["email"] == "nobody@elsewhere.example"
    assert b"Undelivered Mail Returned to Sender" in bytes(nobody.raw)
    assert mailbox.count() == 0
    assert mailbox.count("Review") == 3


def test_a_bounce_read_twice_counts_once(mailbox, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    contact = ContactFactory(email="claire.martin@example.org")
    [message] = sent_to(contact)
    dsn = bounce("exchange_dsn", recipient=contact.email, message_id=message.message_id)
    garbage = bounce("garbage")
    mailbox.file(dsn, garbage)
    assert bounce_mailbox.bounce_mailbox_read()["recorded"] == 1

    # As after a crash between recording and deleting: the same mail is there again.
    mailbox.file(dsn, garbage)
    done = bounce_mailbox.bounce_mailbox_read()

    assert (done["recorded"], done["duplicates"], done["kept"]) == (0, 1, 1)
    assert Bounce.objects.count() == 1 and UnmatchedMail.objects.count() == 1
    assert mailbox.count() == 0 and mailbox.count("Review") == 2


def test_without_a_review_folder_unmatched_mail_stays_in_place(mailbox, settings):
    settings.NURTURING_BOUNCE_REVIEW_FOLDER = ""
    mailbox.file(bounce("garbage"))

    bounce_mailbox.bounce_mailbox_read()
    bounce_mailbox.bounce_mailbox_read()

    assert mailbox.count() == 1 and UnmatchedMail.objects.count() == 1


def test_the_task_does_nothing_without_a_mailbox(settings):
    from nurturing.tasks import read_bounce_mailbox_task

    settings.NURTURING_BOUNCE_MAILBOX_URL = ""
    assert read_bounce_mailbox_task() == {}


def test_a_wrong_mailbox_url_says_what_is_expected(settings):
    with pytest.raises(Exception, match="imaps://"):
        bounce_mailbox.bounce_mailbox_read(url="pop3://user:pass@host/INBOX")


def test_unmatched_mail_is_shown_to_an_admin(mailbox, client):
    mailbox.file(bounce("garbage"))
    bounce_mailbox.bounce_mailbox_read()
    admin = get_user_model().objects.create_superuser("admin", "admin@example.fr", "pw")
    client.force_login(admin)
    mail = UnmatchedMail.objects.get()

    listing = client.get("/admin/nurturing/unmatchedmail/")
    page = client.get(f"/admin/nurturing/unmatchedmail/{mail.pk}/change/")

    assert listing.status_code == 200 and "You won&#x27;t believe these prices" in listing.text
    assert "Courriers non rapprochés" in listing.text
    assert "Non reconnu comme un échec de remise" in listing.text
    assert page.status_code == 200
    assert "Up to 90% off!" in page.text and "deal-0001@deals.example" in page.text
