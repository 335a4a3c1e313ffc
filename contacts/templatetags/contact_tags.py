import re

from django import template
from django.http import QueryDict
from django.utils.html import format_html

from contacts.models import Contact

register = template.Library()


@register.simple_tag(takes_context=True)
def sort_header(context: template.Context, key: str, label: str) -> str:
    """A column heading that sorts the list by ``key``, flipping direction on a second click."""
    current = context.get("sort", "")
    query: QueryDict = context["request"].GET.copy()
    query.pop("page", None)
    if current == key:
        query["sort"], arrow, aria = f"-{key}", " ▲", "ascending"
    elif current == f"-{key}":
        query["sort"], arrow, aria = key, " ▼", "descending"
    else:
        query["sort"], arrow, aria = key, "", "none"
    url = f"?{query.urlencode()}"
    return format_html(
        '<th scope="col" aria-sort="{}"><a href="{}" hx-get="{}" hx-target="#results" '
        'hx-push-url="true">{}{}</a></th>',
        aria,
        url,
        url,
        label,
        arrow,
    )


@register.filter
def stage_label(stage: str) -> str:
    try:
        return str(Contact.Stage(stage).label)
    except ValueError:
        return stage


_NOT_DIALLED = re.compile(r"[^0-9+]")


@register.filter
def tel_href(phone: str) -> str:
    """A phone number as a ``tel:`` link takes it (RFC 3966): digits and a leading +, without
    the spaces, dots, dashes and brackets people write, nor the "(0)" of "+33 (0)1…", which is
    not dialled after the country code; "" when nothing is left to dial."""
    phone = (phone or "").strip()
    if phone.startswith("+"):
        phone = phone.replace("(0)", "")
    number = _NOT_DIALLED.sub("", phone)
    number = number[:1] + number[1:].replace("+", "")
    return f"tel:{number}" if any(c.isdigit() for c in number) else ""
