"""A sales manager's team page: the team's open leads by rep, each reassigned to another rep of
the team or released to the queue with a reason (``contacts.access`` decides whose)."""

from __future__ import annotations

from itertools import groupby

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from contacts import access
from contacts.access import Act
from contacts.models import Contact
from contacts.roles import SALES_MANAGER, role_required
from contacts.sales.claims import contact_reassign, contact_release
from contacts.views import visible_contact_or_404

TEAM_LEADS_SHOWN = 500


@role_required(SALES_MANAGER)
def team_leads(request: HttpRequest) -> HttpResponse:
    leads = (
        Contact.objects.filter(access.team_owned(request.user), stage=Contact.Stage.SQL)
        .select_related("owner", "source")
        .order_by("owner__first_name", "owner__username", "owner_id", "claimed_at", "id")
    )[:TEAM_LEADS_SHOWN]
    by_rep = [
        {"rep": rep, "leads": list(rows)} for rep, rows in groupby(leads, key=lambda c: c.owner)
    ]
    context = {
        "by_rep": by_rep,
        "reps": list(access.managed_reps(request.user)),
        "shown": TEAM_LEADS_SHOWN,
    }
    return render(request, "contacts/queue_team.html", context)


@require_POST
@role_required(SALES_MANAGER)
def team_lead_reassign(request: HttpRequest, pk: int) -> HttpResponse:
    contact = visible_contact_or_404(request, pk, act=Act.REASSIGN)
    to = access.managed_reps(request.user).filter(pk=request.POST.get("to") or 0).first()
    if to is None:
        messages.error(request, _("Choose a rep of your team."))
    elif contact_reassign(contact=contact, to=to, actor=request.user):
        messages.success(
            request,
            _("%(contact)s was given to %(owner)s.")
            % {"contact": contact.display_name, "owner": to.get_full_name() or to.get_username()},
        )
    else:
        messages.error(
            request,
            _("%(contact)s was not reassigned: it is no longer an SQL, or already theirs.")
            % {"contact": contact.display_name},
        )
    return redirect("queue-team")


@require_POST
@role_required(SALES_MANAGER)
def team_lead_release(request: HttpRequest, pk: int) -> HttpResponse:
    contact = visible_contact_or_404(request, pk, act=Act.REASSIGN)
    reason = (request.POST.get("reason") or "").strip()[:500]
    if not reason:
        messages.error(request, _("Say why the lead goes back to the queue."))
    elif contact_release(contact=contact, actor=request.user, reason=reason):
        messages.success(
            request,
            _("%(contact)s went back to the queue.") % {"contact": contact.display_name},
        )
    else:
        messages.error(
            request,
            _("%(contact)s was not released: it is no longer a claimed SQL.")
            % {"contact": contact.display_name},
        )
    return redirect("queue-team")
