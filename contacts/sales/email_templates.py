"""A rep's email templates: placeholders such as ``{{ first_name }}`` filled with the lead's
values, and nothing else.

Deliberately not a template engine (nurturing's restricted Django engine lives above contacts,
and a rep's template needs no tags or filters): the only syntax is ``{{ name }}`` with a name
from ``PLACEHOLDERS``. Substitution is one pass, so a lead's value that itself looks like a
placeholder is sent as it is, never filled in. Emails are plain text: nothing is escaped.
"""

from __future__ import annotations

import re
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.models import Contact

PLACEHOLDERS: dict[str, Any] = {
    "first_name": gettext_lazy("first name"),
    "last_name": gettext_lazy("last name"),
    "full_name": gettext_lazy("first and last name"),
    "email": gettext_lazy("email address"),
    "company": gettext_lazy("company"),
    "job_title": gettext_lazy("job title"),
    "rep_name": gettext_lazy("your name"),
}

# Anything between braces counts, so that a typo ({{ firstname }}, {{ first_name|upper }}) is
# refused when the template is saved instead of reaching a lead as written.
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = re.compile(r"\s*([a-z_]+)\s*")


class TemplateProblem(ValueError):
    """A template that cannot be saved; the message says why, for the rep."""


def template_check(text: str) -> None:
    """Refuse text with a placeholder that is not one of ``PLACEHOLDERS`` or a template tag."""
    if "{%" in text:
        raise TemplateProblem(
            _("Only placeholders such as {{ first_name }} are allowed, no template tags.")
        )
    unknown = []
    for match in _PLACEHOLDER.finditer(text):
        name = _NAME.fullmatch(match.group(1))
        if name is None or name.group(1) not in PLACEHOLDERS:
            unknown.append(match.group(0))
    if unknown:
        raise TemplateProblem(
            _("Unknown placeholder(s): %(names)s. Available: %(available)s.")
            % {
                "names": ", ".join(unknown),
                "available": ", ".join(f"{{{{ {name} }}}}" for name in PLACEHOLDERS),
            }
        )


def template_values(contact: Contact, rep: Any) -> dict[str, str]:
    rep_name = (rep.get_full_name() or rep.get_username()) if rep is not None else ""
    return {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "full_name": contact.full_name,
        "email": contact.email or "",
        "company": contact.company,
        "job_title": contact.job_title,
        "rep_name": rep_name,
    }


def template_render(text: str, values: dict[str, str]) -> str:
    """``text`` with each known placeholder replaced by its value; an unknown one is left as
    it is (templates are checked when saved: this only meets text a rep typed in the form)."""

    def fill(match: re.Match[str]) -> str:
        name = _NAME.fullmatch(match.group(1))
        if name is None or name.group(1) not in values:
            return match.group(0)
        return values[name.group(1)] or ""

    return _PLACEHOLDER.sub(fill, text)
