"""The local mail folder of `make run` (no EMAIL_URL): each email is an .eml file under var/mail/,
listed on the "Sent emails" page for marketers."""

import pytest
from django.core.mail import EmailMultiAlternatives
from django.urls import reverse

from leadfunnel import mailbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(settings, tmp_path):
    settings.EMAIL_BACKEND = mailbox.BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    return tmp_path / "mail"


def send(subject="Offre d’été", html='<p>Voyez <a href="https://shop.example.fr/">ici</a></p>'):
    message = EmailMultiAlternatives(
        subject, "Voyez https://shop.example.fr/", "LeadFunnel <m@example.fr>", ["zoe@example.fr"]
    )
    message.attach_alternative(html, "text/html")
    assert message.send() == 1


def test_a_marketer_reads_an_email_the_app_sent(marketer_client, folder):
    send()
    [written] = folder.glob("*.eml")

    listing = marketer_client.get(reverse("mail-list"))
    assert listing.status_code == 200
    assert "Offre d’été" in listing.content.decode()
    email_page = marketer_client.get(reverse("mail-email", args=[written.name]))
    body = email_page.content.decode()
    assert email_page.status_code == 200
    assert "zoe@example.fr" in body and '<a href="https://shop.example.fr/"' in body  # urlized
    assert "sandbox" in body and "&lt;p&gt;Voyez" in body  # the HTML part, inert


def test_an_emails_html_runs_no_script_on_the_page(marketer_client, folder):
    send(html='<p>x</p>"><script>alert(1)</script>')
    [written] = folder.glob("*.eml")

    body = marketer_client.get(reverse("mail-email", args=[written.name])).content.decode()

    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;alert(1)" in body


def test_the_menu_links_the_page_only_while_emails_go_to_the_folder(marketer_client, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert marketer_client.get(reverse("mail-list")).status_code == 404
    assert reverse("mail-list") not in marketer_client.get(reverse("home")).content.decode()
    settings.EMAIL_BACKEND = mailbox.BACKEND
    assert reverse("mail-list") in marketer_client.get(reverse("home")).content.decode()


def test_a_sales_rep_may_not_read_the_folder(sales_client, folder):
    send()
    assert sales_client.get(reverse("mail-list")).status_code == 403


def test_only_names_the_backend_wrote_can_be_opened(marketer_client, folder):
    send()
    (folder.parent / "secret.eml").write_text("Subject: secret\n\nno")
    for name in ("secret.eml", "..%2Fsecret.eml", "1.eml"):
        assert marketer_client.get(f"/mail/{name}/").status_code == 404
