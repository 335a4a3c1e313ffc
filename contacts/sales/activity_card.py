"""What the Activities card shows (on the queue's lead page and the contact page): one page of
the lead's activities, a form of each kind, the rep's templates. Both pages and the card's own
views build it here."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from contacts.models import Activity, Contact, EmailTemplate
from contacts.sales.activities import email_refusal, may_log
from contacts.sales.activity_forms import ACTIVITY_FORMS, EmailForm

# The card shows this many activities; older ones are a page further ("Older"): the lead page
# costs the same queries with 5 activities or 5,000 (bench/queue_lead_page.py).
ACTIVITIES_SHOWN = 20


def templates_for(user: Any) -> Any:
    """The templates a rep may write from: their own and the shared ones."""
    return EmailTemplate.objects.filter(Q(owner=user) | Q(owner__isnull=True))


def activities_context(
    request: HttpRequest,
    contact: Contact,
    *,
    bound: Any = None,
    notice: str = "",
    email_initial: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the card needs: the latest activities (one page), a form of each kind (``bound``:
    the one refused, with its errors and the rep's text), the rep's templates."""
    activities = Paginator(
        contact.activities.select_related("user").order_by("-at", "-id"), ACTIVITIES_SHOWN
    ).get_page(request.GET.get("activities"))
    forms: dict[str, Any] = {kind: form_class() for kind, form_class in ACTIVITY_FORMS.items()}
    forms[Activity.Kind.EMAIL] = EmailForm(initial=email_initial)
    if bound is not None:
        forms[bound.kind] = bound
    user = request.user
    return {
        "contact": contact,
        "activities": activities,
        "may_log": may_log(contact, user) and not contact.erased_at,
        "note_form": forms[Activity.Kind.NOTE],
        "call_form": forms[Activity.Kind.CALL],
        "meeting_form": forms[Activity.Kind.MEETING],
        "email_form": forms[Activity.Kind.EMAIL],
        "open": bound.kind if bound is not None else ("email" if email_initial else ""),
        "email_refusal": email_refusal(contact),
        "email_templates": list(templates_for(user).only("pk", "name")),
        "notice": notice,
        "back": back_url(request, contact),
    }


def back_url(request: HttpRequest, contact: Contact) -> str:
    """The page the card sits on, to go back to after a plain (non-htmx) post."""
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if wanted and url_has_allowed_host_and_scheme(
        wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return wanted
    match = request.resolver_match
    if match is not None and match.url_name in ("queue-lead", "contact-detail"):
        return request.path  # the card is being drawn on that page
    return reverse("contact-detail", args=[contact.pk])
