"""Email templates written in admin: a restricted template engine, checked when saved.

Templates see plain values only (strings and numbers, listed in ``VARIABLES``), never a model
or settings. They have the built-in tags and filters less those that reach outside the
template (``load``, ``include``, ``extends``, ``debug``, ``url``, ``csrf_token``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import signing
from django.template import (
    Context,
    Engine,
    Library,
    Template,
    TemplateSyntaxError,
    defaultfilters,
    defaulttags,
)
from django.template.base import FilterExpression, Node, Variable
from django.template.defaulttags import ForNode, WithNode
from django.urls import reverse
from django.utils import formats, translation
from django.utils.html import escape, linebreaks
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from nurturing import safe_html

VARIABLES: dict[str, Any] = {
    "first_name": gettext_lazy("first name"),
    "last_name": gettext_lazy("last name"),
    "full_name": gettext_lazy("first and last name"),
    "email": gettext_lazy("email address"),
    "company": gettext_lazy("company"),
    "job_title": gettext_lazy("job title"),
    "stage": gettext_lazy("stage"),
    "score": gettext_lazy("score"),
    "sequence": gettext_lazy("sequence name"),
    "offer_code": gettext_lazy("the contact's offer code"),
    "offer_percent": gettext_lazy("the offer's discount in %"),
    "offer_expires_at": gettext_lazy("when the offer ends (date and time)"),
    "unsubscribe_url": gettext_lazy("the unsubscribe page"),
}
BANNED_TAGS = {"load", "debug", "url", "csrf_token", "autoescape"}
# A contact's values are escaped in the HTML part: nothing may mark them safe.
BANNED_FILTERS = {"safe", "safeseq"}


class TemplateProblem(ValueError):
    """A template that cannot be saved; the message says why, for the person editing it."""


def _library() -> Library:
    library = Library()
    library.tags = {k: v for k, v in defaulttags.register.tags.items() if k not in BANNED_TAGS}
    library.filters = {
        k: v for k, v in defaultfilters.register.filters.items() if k not in BANNED_FILTERS
    }
    return library


class _RestrictedEngine(Engine):
    def get_template_builtins(self, builtins: Any) -> list[Library]:
        return [_library()]


# No loaders at all: nothing can be read from disk. Text parts are not HTML-escaped.
HTML_ENGINE = _RestrictedEngine(dirs=[], app_dirs=False, loaders=[], autoescape=True)
TEXT_ENGINE = _RestrictedEngine(dirs=[], app_dirs=False, loaders=[], autoescape=False)


@lru_cache(maxsize=512)
def compiled(source: str, *, html: bool) -> Template:
    return (HTML_ENGINE if html else TEXT_ENGINE).from_string(source)


def check_template(source: str, *, html: bool = False) -> None:
    """Refuse a template that does not compile or names a variable it will not have; in an
    HTML part, one with a script, an event handler or a link that is not http(s), mailto or
    tel (``javascript:``, ``data:``…)."""
    try:
        template = compiled(source, html=False)
    except TemplateSyntaxError as error:
        raise TemplateProblem(_("Template error: %(error)s") % {"error": error}) from error
    unknown = sorted(used_names(template) - set(VARIABLES))
    if unknown:
        raise TemplateProblem(
            _("Unknown variable(s): %(names)s. Available: %(available)s.")
            % {"names": ", ".join(unknown), "available": ", ".join(VARIABLES)}
        )
    unsafe = safe_html.unsafe_parts(source) if html else []
    if unsafe:
        raise TemplateProblem(
            _(
                "Emails may not hold scripts, event handlers or links other than http, https, "
                "mailto and tel: %(parts)s."
            )
            % {"parts": ", ".join(f"“{part}”" for part in unsafe)}
        )


def used_names(template: Template) -> set[str]:
    """Every top-level variable name the template reads, less its own loop and with names."""
    found: set[str] = set()
    local = {"forloop"}
    for node in template.nodelist.get_nodes_by_type(Node):
        if isinstance(node, ForNode):
            local |= set(node.loopvars)
        if isinstance(node, WithNode):
            local |= set(node.extra_context)
        for value in vars(node).values():
            _collect(value, found, depth=0)
    return found - local


def _collect(value: Any, found: set[str], *, depth: int) -> None:
    if depth > 20:
        return
    if isinstance(value, FilterExpression):
        _collect(value.var, found, depth=depth + 1)
        for _function, arguments in value.filters:
            for is_variable, argument in arguments:
                if is_variable:
                    _collect(argument, found, depth=depth + 1)
    elif isinstance(value, Variable):
        if value.lookups:
            found.add(value.lookups[0])
    elif isinstance(value, list | tuple):
        for item in value:
            _collect(item, found, depth=depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found, depth=depth + 1)
    elif hasattr(value, "first") or hasattr(value, "value"):
        # {% if %} conditions: operators with first/second operands, literals with a value.
        for name in ("first", "second", "value"):
            if hasattr(value, name) and not isinstance(getattr(value, name), str):
                _collect(getattr(value, name), found, depth=depth + 1)


# --- Tokens -----------------------------------------------------------------------------------
# A message is one (enrolment, step) pair, so its tokens can be made before its row exists.

SALTS = {"open": "nurturing.open", "click": "nurturing.click", "unsubscribe": "nurturing.unsub"}


@lru_cache(maxsize=8)
def _signer(kind: str, secret: str) -> signing.Signer:
    return signing.Signer(key=secret, salt=SALTS[kind])


@lru_cache(maxsize=8)
def _token_mac(kind: str, secret: str) -> Any:
    """The HMAC ``Signer(key=secret, salt=…).sign`` computes, with its key derived once (every
    message needs a token, and deriving the key is half the cost of signing)."""
    key = hashlib.sha256(f"{SALTS[kind]}signer{secret}".encode()).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def make_token(kind: str, *parts: int) -> str:
    """What ``_signer(kind, SECRET_KEY).sign(…)`` returns (``read_token`` unsigns it)."""
    value = ".".join(str(part) for part in parts)
    mac = _token_mac(kind, settings.SECRET_KEY).copy()
    mac.update(value.encode())
    return f"{value}:{signing.b64_encode(mac.digest()).decode()}"


def read_token(kind: str, token: str) -> list[int] | None:
    """The ids a token carries, or None for a forged or tampered one."""
    try:
        value = _signer(kind, settings.SECRET_KEY).unsign(token)
        return [int(part) for part in value.split(".")]
    except (signing.BadSignature, ValueError):
        return None


def absolute(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


@lru_cache(maxsize=16)
def _url_prefix(name: str, site: str) -> tuple[str, str]:
    """What surrounds a token in the absolute URL of ``name`` (reverse() once, not per link)."""
    marker = "TOKEN0MARKER"
    before, after = reverse(name, args=[marker]).split(marker)
    return site.rstrip("/") + before, after


def token_url(name: str, token: str) -> str:
    before, after = _url_prefix(name, settings.SITE_URL)
    return f"{before}{token}{after}"


def message_id_header(enrollment_id: int, step_id: int) -> str:
    domain = settings.DEFAULT_FROM_EMAIL.rsplit("@", 1)[-1].strip(" >") or "localhost"
    return f"<nurturing.{enrollment_id}.{step_id}@{domain}>"


# --- Rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailTemplates:
    subject: str
    body_text: str
    body_html: str


@dataclass(frozen=True)
class Rendered:
    subject: str
    body_text: str
    body_html: str
    links: list[str]


HREF = re.compile(r'href="(https?://[^"]+)"', re.IGNORECASE)
# In a text part made into HTML: a URL runs to the next space or markup (urlize is far slower).
BARE_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")


def text_to_html(text: str) -> str:
    escaped = escape(text)
    linked = BARE_URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped)
    return linebreaks(linked, autoescape=False)


def _plain(text: str) -> str:
    """``text`` as a plain ``str`` (not a SafeString, which templates would not escape)."""
    return str.__str__(text)


def contact_context(
    *,
    first_name: str,
    last_name: str,
    email: str,
    company: str = "",
    job_title: str = "",
    stage: str = "",
    score: int = 0,
    sequence: str = "",
    offer: dict[str, Any] | None = None,
    tz: ZoneInfo | None = None,
) -> dict[str, Any]:
    """The plain values a template sees."""
    offer = offer or {}
    expires = offer.get("expires_at")
    expires_text = ""
    if expires:
        moment = datetime.fromisoformat(expires).astimezone(tz or ZoneInfo(settings.TIME_ZONE))
        expires_text = formats.date_format(moment, "DATETIME_FORMAT")
    return {
        "first_name": first_name,
        "last_name": last_name,
        "full_name": f"{first_name} {last_name}".strip(),
        "email": email,
        "company": company,
        "job_title": job_title,
        "stage": stage,
        "score": score,
        "sequence": sequence,
        "offer_code": offer.get("code", ""),
        "offer_percent": offer.get("percent", ""),
        "offer_expires_at": expires_text,
    }


def render_email(
    templates: EmailTemplates,
    context: dict[str, Any],
    *,
    enrollment_id: int,
    step_id: int,
    tracking: bool = True,
    open_pixel: bool = True,
) -> Rendered:
    """Subject, text and HTML parts; in HTML, links go through the click redirect and, with
    ``open_pixel`` (the contact's consent, ``contacts.legal_basis.open_tracking_allowed``), an
    open pixel is added. Dates in the context are formatted in the site's language."""
    unsubscribe = token_url(
        "nurturing-unsubscribe", make_token("unsubscribe", enrollment_id, step_id)
    )
    values = {**context, "unsubscribe_url": unsubscribe}
    with translation.override(settings.LANGUAGE_CODE):
        # Context, not the engine, decides escaping at render time. Template.render() marks
        # its output safe: the parts become plain strings, so a page showing the unescaped text
        # part (the admin's preview) escapes it.
        subject = _plain(
            compiled(templates.subject, html=False).render(Context(values, autoescape=False))
        )
        text = _plain(
            compiled(templates.body_text, html=False).render(Context(values, autoescape=False))
        )
        if templates.body_html.strip():
            html = _plain(compiled(templates.body_html, html=True).render(Context(values)))
            # A contact's value can make a link (href="{{ company }}"): never a javascript: one.
            html = safe_html.without_unsafe_parts(html)
        else:
            html = _plain(text_to_html(text))
    subject = " ".join(subject.split())  # a header holds one line
    links: list[str] = []
    if tracking:

        def tracked(match: re.Match[str]) -> str:
            url = match.group(1).replace("&amp;", "&")
            if url == unsubscribe:
                return match.group(0)
            links.append(url)
            token = make_token("click", enrollment_id, step_id, len(links) - 1)
            return f'href="{token_url("nurturing-click", token)}"'

        html = HREF.sub(tracked, html)
    if tracking and open_pixel:
        pixel = token_url("nurturing-open", make_token("open", enrollment_id, step_id))
        html += f'\n<img src="{pixel}" width="1" height="1" alt="" style="display:none">'
    return Rendered(subject=subject, body_text=text, body_html=html, links=links)
