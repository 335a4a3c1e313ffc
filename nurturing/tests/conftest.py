import logging

import pytest

from nurturing.tests.helpers import SmtpSink, smtp_server


@pytest.fixture
def smtp(settings):
    """A real SMTP server on a free port, and Django's SMTP backend pointed at it."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    sink = SmtpSink()
    controller = smtp_server(sink)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    sink.controller = controller
    yield sink
    controller.stop()
