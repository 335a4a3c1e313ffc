"""A score rule in plain words, for lists and explanations: "Page view with seconds ≥ 120, at
least 3 in 30 days". Translated when shown; the rule stores codes."""

from __future__ import annotations

from decimal import Decimal

from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from scoring.engine import Rule

SYMBOLS = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def number_text(number: Decimal | None) -> str:
    """120.0000 as 120, 3.5000 as 3.5 (3,5 in French)."""
    if number is None:
        return ""
    return number_format(f"{number.normalize():f}", use_l10n=True)


def rule_conditions(rule: Rule) -> str:
    """What an event must be, besides its type: "URL contains /pricing, seconds ≥ 120, …"."""
    parts = []
    if rule.url_contains:
        parts.append(_("URL contains %(text)s") % {"text": rule.url_contains})
    if rule.url_pattern:
        parts.append(_("URL matches %(pattern)s") % {"pattern": rule.url_pattern})
    if rule.content_tag:
        parts.append(_("tag %(tag)s") % {"tag": rule.content_tag})
    if rule.form:
        parts.append(_("form %(form)s") % {"form": rule.form})
    if rule.property_name:
        parts.append(property_condition(rule))
    if rule.count_at_least and rule.count_within_days:
        parts.append(count_condition(rule.count_at_least, rule.count_within_days))
    if rule.fade_full_days is not None and rule.fade_zero_days is not None:
        if rule.fade_zero_days == rule.fade_full_days + 1:  # no fading between: an age limit
            parts.append(
                ngettext(
                    "each one at most %(days)s day old",
                    "each one at most %(days)s days old",
                    rule.fade_full_days,
                )
                % {"days": rule.fade_full_days}
            )
        else:
            parts.append(
                _("full points for %(full)s days, none from %(zero)s days")
                % {"full": rule.fade_full_days, "zero": rule.fade_zero_days}
            )
    return ", ".join(parts)


def property_condition(rule: Rule) -> str:
    name, operator = rule.property_name, rule.property_operator
    if operator == "between":
        return _("%(property)s between %(low)s and %(high)s") % {
            "property": name,
            "low": number_text(rule.property_number),
            "high": number_text(rule.property_number_max),
        }
    if operator in SYMBOLS:
        return f"{name} {SYMBOLS[operator]} {number_text(rule.property_number)}"
    return f"{name} = {rule.property_value}"


def count_condition(times: int, days: int) -> str:
    return ngettext(
        "at least %(times)s in %(days)s day", "at least %(times)s in %(days)s days", days
    ) % {"times": times, "days": days}


def rule_description(rule: Rule, event_label: str) -> str:
    """The event and its conditions: "Page view with seconds ≥ 120, at least 3 in 30 days"."""
    conditions = rule_conditions(rule)
    if not conditions:
        return event_label
    return _("%(event)s with %(conditions)s") % {"event": event_label, "conditions": conditions}
