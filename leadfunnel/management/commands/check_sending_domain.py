"""``python manage.py check_sending_domain [domain]``: the sending domain's SPF, DKIM and DMARC
records as receivers read them, and what is missing (nurturing/sending_domain.py).

Exits 0 when nothing is missing or wrong (warnings allowed), 1 otherwise, 2 when no DNS server
answered (a message, never a traceback). Speaks the user's language (LC_ALL, LC_MESSAGES or
LANG when LeadFunnel has it, else LANGUAGE_CODE).
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from nurturing.dkim_signing import address_domain
from nurturing.sending_domain import (
    ERROR,
    MISSING,
    OK,
    WARNING,
    DnsUnreachable,
    domain_findings,
    resolver_for,
)


def user_language() -> str:
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG"):
        code = os.environ.get(variable, "").split(".")[0].split("_")[0].lower()
        if code in dict(settings.LANGUAGES):
            return code
    return settings.LANGUAGE_CODE


class Command(BaseCommand):
    help = "Check the sending domain's SPF, DKIM and DMARC records in DNS."
    # Broken DKIM settings are reported here, with the DNS records, rather than stopping it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "domain", nargs="?", help="default: DKIM_DOMAIN, else DEFAULT_FROM_EMAIL's domain"
        )
        parser.add_argument("--selector", default="", help="default: DKIM_SELECTOR")
        parser.add_argument(
            "--nameserver", default="", help="ask this DNS server (host or host:port)"
        )
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")

    def handle(self, *args: Any, **options: Any) -> None:
        with translation.override(user_language()):
            self.check_domain(**options)

    def check_domain(self, **options: Any) -> None:
        domain = (
            options["domain"] or settings.DKIM_DOMAIN or address_domain(settings.DEFAULT_FROM_EMAIL)
        )
        try:
            resolver = resolver_for(options["nameserver"], options["timeout"])
            findings = domain_findings(resolver, domain, selector=options["selector"])
        except DnsUnreachable as error:
            raise CommandError(
                _("DNS cannot be reached (%(error)s): nothing was checked. Check the network, or "
                  "name a DNS server with --nameserver.") % {"error": error},
                returncode=2,
            ) from error  # fmt: skip
        except ValueError as error:  # --nameserver with a port that is not a number
            raise CommandError(
                _("--nameserver %(value)s: give a host or host:port.")
                % {"value": options["nameserver"]},
                returncode=2,
            ) from error
        labels = {
            OK: _("OK"),
            WARNING: _("WARNING"),
            MISSING: _("MISSING"),
            ERROR: _("ERROR"),
        }
        styles = {OK: self.style.SUCCESS, WARNING: self.style.WARNING}
        self.stdout.write(_("Sending domain: %(domain)s") % {"domain": domain})
        for finding in findings:
            style = styles.get(finding.level, self.style.ERROR)
            self.stdout.write(
                style(f"[{labels[finding.level]}] {finding.record}: ") + finding.message
            )
        problems = [f for f in findings if f.level in (MISSING, ERROR)]
        if problems:
            names = sorted({f.record for f in problems}, key=["SPF", "DKIM", "DMARC"].index)
            raise CommandError(
                ngettext(
                    "%(count)s problem to fix (%(records)s).",
                    "%(count)s problems to fix (%(records)s).",
                    len(problems),
                )
                % {"count": len(problems), "records": ", ".join(names)}
            )
        self.stdout.write(self.style.SUCCESS(_("SPF, DKIM and DMARC are in place.")))
