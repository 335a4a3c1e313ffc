"""Shared fixtures: personas (the demo team) and service detection for Postgres/Redis tests."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from tests.factories import UserFactory

# The tests' users need a password, not the production hasher's deliberate slowness (about
# 0.2 s a hash here, paid by every user a fixture makes). Django's testing docs suggest this.
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def uses_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_pg = pytest.mark.skip(
        reason="needs PostgreSQL: set DATABASE_URL=postgres://... (.ci/run does)"
    )
    skip_redis = pytest.mark.skip(reason="needs Redis: set REDIS_URL=redis://... (.ci/run does)")
    for item in items:
        # Markers, not keywords: a keyword also matches a folder name (a checkout in .../redis/).
        if item.get_closest_marker("postgres") and not uses_postgres():
            item.add_marker(skip_pg)
        if item.get_closest_marker("redis") and not os.environ.get("REDIS_URL"):
            item.add_marker(skip_redis)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The suite scores with the classic rules of scoring 0002, whatever the shipped defaults
    are (scoring 0014 and later): a test states the points it expects, and a better default
    set must not rewrite a thousand tests. The shipped set has its own tests
    (tests/test_default_rules.py)."""
    import importlib

    from django.apps import apps

    from scoring.models import ScoreRule

    classic = importlib.import_module("scoring.migrations.0002_default_rules")
    with django_db_blocker.unblock():
        ScoreRule.objects.all().delete()
        classic.create_defaults(apps, None)


@pytest.fixture(autouse=True)
def _forget_outages():
    """A Redis one test made unreachable is not taken for down in the next."""
    from contacts import ratelimit
    from contacts.intake import tracking

    yield
    ratelimit.reset()
    tracking.outage.reset()


@pytest.fixture(autouse=True)
def _default_language():
    """A request in another language leaves it active in this thread: the next test would
    read English where it expects the default."""
    from django.utils import translation

    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture
def marketer(db):
    return UserFactory(
        username="claire", first_name="Claire", last_name="Martin", roles=["marketing"]
    )


@pytest.fixture
def sales_rep(db):
    return UserFactory(username="hugo", first_name="Hugo", last_name="Bernard", roles=["sales"])


@pytest.fixture
def other_rep(db):
    return UserFactory(username="lea", first_name="Léa", last_name="Dubois", roles=["sales"])


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def no_role_user(db):
    return UserFactory(username="nobody")


@pytest.fixture
def marketer_client(client, marketer):
    client.force_login(marketer)
    return client


@pytest.fixture
def sales_client(client, sales_rep):
    client.force_login(sales_rep)
    return client


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium driven by Playwright (no browser download)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"needs Chromium at {CHROMIUM}: make browser (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are still plain synchronous code. Undone when the browser closes.
    patch = pytest.MonkeyPatch()
    patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
    patch.undo()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(locale="fr-FR")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def django_smtp_sink(settings):
    """A real SMTP server (aiosmtpd) on a free port, and Django's own SMTP backend pointed at
    it; what it received is in ``.received``, its controller in ``.controller``."""
    import logging

    from tests.nurturing.helpers import SmtpSink, smtp_server

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sink = SmtpSink()
    controller = smtp_server(sink)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    sink.controller = controller
    yield sink
    controller.stop()
