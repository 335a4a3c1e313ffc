"""Settings checked at start: values that would break the app (stop all sending, beat in a
busy loop, dead links in every email) are errors with a clear message.

Django runs its checks for manage.py commands (check, migrate, runserver, serve...). gunicorn,
the Celery worker and beat run none, so they call ``refuse_to_start_on_errors`` themselves
(leadfunnel/wsgi.py, leadfunnel/celery.py) and stop with the same messages.
"""

from __future__ import annotations

from numbers import Number
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, register, run_checks
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured

TAG = "leadfunnel_settings"

# Beat entries whose period comes from a variable.
PERIODS = {
    "nurturing-tick": "NURTURING_TICK_SECONDS",
    "drain-page-views": "PAGE_VIEW_DRAIN_SECONDS",
    "sweep-unprocessed-events": "EVENT_SWEEP_SECONDS",
    "webhooks-tick": "WEBHOOK_TICK_SECONDS",
}
AT_LEAST_ONE = (
    "CLAIM_RELEASE_HOURS",
    "SLA_HOURS",
    "API_RATE_PER_MINUTE",
    "FORM_RATE_PER_MINUTE",
    "NURTURING_MAX_ATTEMPTS",
    "EVENT_MAX_ATTEMPTS",
    "CONTACTS_PER_PAGE",
    "DATA_UPLOAD_MAX_MEMORY_SIZE",
    "WEBHOOK_MAX_ATTEMPTS",
    "WEBHOOK_DISABLE_AFTER_FAILURES",
    "WEBHOOK_RETRY_SECONDS",
)
AT_LEAST_ZERO = (
    "NURTURING_DAILY_EMAIL_CAP",
    "SCORING_CONFIRM_NEW_SQLS",
    "RETENTION_YEARS",
    "TRUSTED_PROXY_COUNT",
    "EVENT_SWEEP_GRACE_SECONDS",
)


def _error(number: int, message: str, hint: str) -> Error:
    return Error(message, hint=hint, obj="settings", id=f"leadfunnel.E{number:03d}")


@register(TAG)
def check_sending(**kwargs: Any) -> list[CheckMessage]:
    from nurturing.sending import send_margin_seconds

    errors = []
    timeout = settings.EMAIL_TIMEOUT
    if timeout is not None and timeout <= 0:
        errors.append(
            _error(
                1,
                f"EMAIL_TIMEOUT is {timeout}: it must be a number of seconds above 0.",
                "Leave it unset for 30 s.",
            )
        )
        return errors
    lease, margin = settings.NURTURING_SEND_LEASE_SECONDS, send_margin_seconds()
    if lease <= margin:
        errors.append(
            _error(
                2,
                f"NURTURING_SEND_LEASE_SECONDS is {lease}: no email would ever be sent. A send "
                f"stops taking messages {margin} s before its lease runs out (two "
                f"EMAIL_TIMEOUT of {settings.EMAIL_TIMEOUT or 30} s, the longest an SMTP "
                "exchange can take, and 5 s), so the lease must be longer than that.",
                f"Set it to 300 (the default) or at least {margin + 60}.",
            )
        )
    return errors


@register(TAG)
def check_periods(**kwargs: Any) -> list[CheckMessage]:
    errors = []
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        period = entry.get("schedule")
        if isinstance(period, Number) and not period > 0:  # type: ignore[operator]
            variable = PERIODS.get(name, f"the period of beat's {name!r}")
            errors.append(
                _error(
                    3,
                    f"{variable} is {period}: it must be a number of seconds above 0.",
                    "Leave it unset for the default.",
                )
            )
    return errors


@register(TAG)
def check_site_url(**kwargs: Any) -> list[CheckMessage]:
    url = settings.SITE_URL
    try:
        parts = urlsplit(url)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname)
        valid = valid and not parts.query and not parts.fragment and parts.port != 0
    except ValueError:  # a port that is not a number
        valid = False
    if valid:
        return []
    return [
        _error(
            4,
            f"SITE_URL is {url!r}: it must be this site's public address, http:// or https:// "
            "and a host, since every link in an email (unsubscribe, tracking) starts with it.",
            "For example SITE_URL=https://leadfunnel.example.com",
        )
    ]


@register(TAG)
def check_counts(**kwargs: Any) -> list[CheckMessage]:
    errors = []
    for name in AT_LEAST_ONE:
        value = getattr(settings, name, None)
        if value is not None and value < 1:
            errors.append(_error(5, f"{name} is {value}: it must be 1 or more.",
                                 "Leave it unset for the default."))  # fmt: skip
    for name in AT_LEAST_ZERO:
        value = getattr(settings, name, None)
        if value is not None and value < 0:
            errors.append(_error(6, f"{name} is {value}: it must be 0 or more.",
                                 "Leave it unset for the default."))  # fmt: skip
    return errors


@register(TAG)
def check_webhooks(**kwargs: Any) -> list[CheckMessage]:
    from contacts.webhooks.delivery import send_margin_seconds

    timeout, lease = settings.WEBHOOK_TIMEOUT_SECONDS, settings.WEBHOOK_LEASE_SECONDS
    if timeout <= 0:
        return [_error(11, f"WEBHOOK_TIMEOUT_SECONDS is {timeout}: it must be above 0.",
                       "Leave it unset for 10 s.")]  # fmt: skip
    if lease <= send_margin_seconds():
        return [
            _error(
                12,
                f"WEBHOOK_LEASE_SECONDS is {lease}: no webhook would ever be sent. A send stops "
                f"taking deliveries {send_margin_seconds()} s before its lease runs out (the "
                "timeout and 5 s), so the lease must be longer than that.",
                f"Set it to 120 (the default) or at least {send_margin_seconds() + 60}.",
            )
        ]
    return []


@register(TAG)
def check_open_tracking(**kwargs: Any) -> list[CheckMessage]:
    from contacts.legal_basis import OPEN_TRACKING_MODES

    mode = settings.NURTURING_OPEN_TRACKING
    if mode in OPEN_TRACKING_MODES:
        return []
    return [
        _error(
            30,
            f"NURTURING_OPEN_TRACKING is {mode!r}: it must be one of "
            f"{', '.join(OPEN_TRACKING_MODES)}.",
            "consent (the default): the open pixel only for contacts who consented to it.",
        )
    ]


@register(TAG)
def check_dkim(**kwargs: Any) -> list[CheckMessage]:
    if not (settings.DKIM_SELECTOR or settings.DKIM_PRIVATE_KEY or settings.DKIM_PRIVATE_KEY_FILE):
        return []  # signing off (dkimpy not imported for nothing)
    from nurturing.dkim_signing import DkimSettingsError, signer

    try:
        signing = signer()
    except DkimSettingsError as error:
        return [
            _error(
                13,
                str(error),
                "Leave DKIM_SELECTOR and the key unset to send unsigned (an ESP signs for "
                "itself); `python manage.py check_sending_domain` shows the DNS records.",
            )
        ]
    if signing is not None and settings.EMAIL_BACKEND != "nurturing.smtp.EmailBackend":
        return [
            CheckWarning(
                f"DKIM_SELECTOR is set but EMAIL_BACKEND is {settings.EMAIL_BACKEND}: only "
                "nurturing's SMTP backend (EMAIL_URL=smtp://...) signs with DKIM.",
                hint="An ESP signs with the keys set up in its own dashboard.",
                obj="settings",
                id="leadfunnel.W014",
            )
        ]
    return []


def refuse_to_start_on_errors(process: str) -> None:
    """Raise ImproperlyConfigured naming every invalid setting (for the processes Django runs
    no checks in)."""
    errors = [message for message in run_checks(tags=[TAG]) if message.is_serious()]
    if errors:
        lines = "\n".join(f"  {message}" for message in errors)
        raise ImproperlyConfigured(
            f"LeadFunnel's {process} will not start: fix these settings (.env.example "
            f"describes each).\n{lines}"
        )
