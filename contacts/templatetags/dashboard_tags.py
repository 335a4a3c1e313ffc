from decimal import Decimal

from django import template
from django.utils.formats import number_format
from django.utils.translation import gettext as _

register = template.Library()


@register.filter
def percent(value: Decimal | float | None) -> str:
    if value is None:
        return "—"
    return _("%(value)s%%") % {"value": number_format(value, 1)}


@register.filter
def money(value: Decimal | None) -> str:
    if value is None:
        return "—"
    return number_format(value, 2, force_grouping=True)


@register.filter
def ratio(value: Decimal | None) -> str:
    """Revenue over cost as "3.20×" in the reader's number format; "—" when unknown."""
    if value is None:
        return "—"
    return _("%(value)s×") % {"value": number_format(value, 2, force_grouping=True)}


@register.filter
def duration(seconds: float | None) -> str:
    """A length of time in the unit that reads best: minutes, hours or days."""
    if seconds is None:
        return "—"
    if seconds < 3600:
        return _("%(minutes)s min") % {"minutes": number_format(round(seconds / 60))}
    if seconds < 86400:
        return _("%(hours)s h") % {"hours": number_format(seconds / 3600, 1)}
    return _("%(days)s d") % {"days": number_format(seconds / 86400, 1)}
