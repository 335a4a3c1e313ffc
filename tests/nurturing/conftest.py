import logging

import pytest

from tests.esp_api import BrevoApi
from tests.nurturing.helpers import SmtpSink, smtp_server

# Sending through Django's SMTP backend (the hand-over marked before the message goes, as for
# any backend) and through nurturing's own (marked between DATA and the end of the data).
SMTP_BACKENDS = {
    "django-smtp": "django.core.mail.backends.smtp.EmailBackend",
    "nurturing-smtp": "nurturing.smtp.EmailBackend",
}


def _sink(settings, backend: str):
    """A real SMTP server on a free port, and ``backend`` pointed at it."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    sink = SmtpSink()
    controller = smtp_server(sink)
    settings.EMAIL_BACKEND = backend
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    sink.controller = controller
    yield sink
    controller.stop()


@pytest.fixture(params=sorted(SMTP_BACKENDS))
def smtp(settings, request):
    """A real SMTP server on a free port, and an SMTP backend pointed at it."""
    yield from _sink(settings, SMTP_BACKENDS[request.param])


@pytest.fixture
def nurturing_smtp(settings):
    """A real SMTP server, sent to through nurturing's own backend only (it signs with DKIM
    and honours a message's envelope sender; Django's stock one sends from the header From)."""
    yield from _sink(settings, SMTP_BACKENDS["nurturing-smtp"])


@pytest.fixture
def brevo(settings):
    """A stand-in for Brevo's API on a free port, and anymail's Brevo backend pointed at it."""
    api = BrevoApi()
    api.start()
    settings.EMAIL_BACKEND = "anymail.backends.brevo.EmailBackend"
    settings.ANYMAIL = {
        "BREVO_API_KEY": "xkeysib-test",
        "BREVO_API_URL": f"http://127.0.0.1:{api.port}/v3/",
    }
    yield api
    api.stop()
