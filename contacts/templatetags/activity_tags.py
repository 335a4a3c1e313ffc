"""How an activity reads on the lead's pages: a tag, not an include, because the timeline draws
up to 50 of them (an include per row took about a third of the contact page's time,
bench/queue_lead_page.py)."""

from __future__ import annotations

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from contacts.models import Activity

register = template.Library()


@register.simple_tag
def activity_summary(activity: Activity) -> SafeString:
    """Who, how the call went, how long, the subject, the address an email went to."""
    user = activity.user
    parts = [
        format_html(
            '<span class="activity-by">{}</span>',
            (user.get_full_name() or user.get_username()) if user else _("a former user"),
        )
    ]
    if activity.call_outcome:
        parts.append(
            format_html(
                '<span class="badge outcome-{}" data-testid="call-outcome">{}</span>',
                activity.call_outcome,
                activity.get_call_outcome_display(),
            )
        )
    if activity.duration_minutes is not None:
        minutes = activity.duration_minutes
        text = ngettext("%(minutes)s minute", "%(minutes)s minutes", minutes)
        parts.append(format_html("{}", text % {"minutes": minutes}))
    if activity.subject:
        parts.append(format_html("<strong>{}</strong>", activity.subject))
    if activity.sent_to:
        parts.append(format_html("{}", _("to %(email)s") % {"email": activity.sent_to}))
    return format_html_join(" · ", "{}", ((part,) for part in parts))
