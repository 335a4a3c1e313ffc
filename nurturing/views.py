from __future__ import annotations

import base64
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contacts.access import Act
from contacts.roles import MARKETING, SALES, role_required
from contacts.views import partial_or_page, visible_contact_or_404
from nurturing import bounces, enrolment, preflight, tracking
from nurturing.models import (
    Bounce,
    Enrollment,
    Message,
    Sequence,
    SplitBranch,
    Step,
    reason_label,
)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


# --- Public: tracking and unsubscribe (no login; the signed token is the proof) --------------


@require_GET
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    found = tracking.message_for_token("open", token)
    if found is None:
        raise Http404
    tracking.message_open(message=found[0], user_agent=request.headers.get("User-Agent", ""))
    response = HttpResponse(PIXEL, content_type="image/gif")
    add_never_cache_headers(response)
    return response


@require_GET
def click(request: HttpRequest, token: str) -> HttpResponse:
    found = tracking.message_for_token("click", token)
    if found is None or len(found[1]) != 3:
        raise Http404
    message, parts = found
    url = tracking.message_click(
        message=message, link=parts[2], user_agent=request.headers.get("User-Agent", "")
    )
    if url is None:
        raise Http404
    # Only the URL stored for this link of this message, never one taken from the request.
    return HttpResponseRedirect(url)


# Mail providers POST the RFC 8058 one-click request without any CSRF token: the signed
# token in the address is what authorises it.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    found = tracking.message_for_token("unsubscribe", token)
    if found is None:
        raise Http404
    message = found[0]
    contact = message.contact
    if request.method == "POST":
        if contact is not None:
            tracking.contact_unsubscribe(contact=contact, message=message)
        return render(request, "nurturing/unsubscribe.html", {"done": True, "token": token})
    return render(
        request,
        "nurturing/unsubscribe.html",
        {"done": False, "token": token, "email": contact.email if contact else "",
         "already": bool(contact and contact.do_not_email)},
    )  # fmt: skip


# --- Marketers: results ------------------------------------------------------------------------

STATUS_COUNTS = {
    "enrolled": Count("id"),
    "active": Count("id", filter=Q(status=Enrollment.Status.ACTIVE)),
    "completed": Count("id", filter=Q(status=Enrollment.Status.COMPLETED)),
    "goal_reached": Count("id", filter=Q(status=Enrollment.Status.GOAL_REACHED)),
    "exited": Count("id", filter=Q(status=Enrollment.Status.EXITED)),
    "unsubscribed": Count("id", filter=Q(status=Enrollment.Status.UNSUBSCRIBED)),
}
MESSAGE_COUNTS = {
    # Went out (a later bounce or complaint does not take it back; a refusal at RCPT never
    # went, and has no sent_at).
    "sent": Count("id", filter=Q(status__in=Message.WENT_OUT, sent_at__isnull=False)),
    "opened": Count("id", filter=Q(opened_at__isnull=False)),
    "clicked": Count("id", filter=Q(clicked_at__isnull=False)),
    "queued": Count("id", filter=Q(status__in=[Message.Status.QUEUED, Message.Status.SENDING])),
    "failed": Count("id", filter=Q(status=Message.Status.FAILED)),
    "in_doubt": Count("id", filter=Q(status=Message.Status.IN_DOUBT)),
    "suppressed": Count("id", filter=Q(status=Message.Status.SUPPRESSED)),
    "bounced": Count("id", filter=Q(status=Message.Status.BOUNCED)),
    "complained": Count("id", filter=Q(status=Message.Status.COMPLAINED)),
}


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "—"


def sequence_summaries() -> list[dict[str, Any]]:
    """Every sequence with its totals: two grouped queries whatever the number of sequences."""
    enrolments = {
        row["sequence_id"]: row
        for row in Enrollment.objects.order_by().values("sequence_id").annotate(**STATUS_COUNTS)
    }
    mails = {
        row["enrollment__sequence_id"]: row
        for row in Message.objects.filter(internal=False)
        .order_by()
        .values("enrollment__sequence_id")
        .annotate(**MESSAGE_COUNTS)
    }
    rows = []
    for sequence in Sequence.objects.all():
        counts = {**dict.fromkeys(STATUS_COUNTS, 0), **dict.fromkeys(MESSAGE_COUNTS, 0)}
        counts.update({k: v for k, v in enrolments.get(sequence.pk, {}).items() if k in counts})
        counts.update({k: v for k, v in mails.get(sequence.pk, {}).items() if k in counts})
        counts["conversion"] = _rate(counts["goal_reached"], counts["enrolled"])
        rows.append({"sequence": sequence, **counts})
    return rows


@role_required(MARKETING)
def sequence_list(request: HttpRequest) -> HttpResponse:
    """All sequences and their results; the htmx fragment is the dashboard's campaign panel."""
    response = render(
        request,
        partial_or_page(request, "nurturing/sequence_list.html", "summaries"),
        {"summaries": sequence_summaries()},
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


def _reachable(steps: list[Step], start: Step | None) -> set[int]:
    """The steps an enrolment can run from ``start`` on (in order, and through branches)."""
    following = {step.pk: after.pk for step, after in zip(steps, steps[1:], strict=False)}
    by_id = {step.pk: step for step in steps}
    found: set[int] = set()
    waiting: list[int | None] = [start.pk] if start is not None else []
    while waiting:
        step = by_id.get(waiting.pop())
        if step is None or step.pk in found:
            continue
        found.add(step.pk)
        if step.kind in (Step.Kind.CONDITION, Step.Kind.SPLIT):
            after = following.get(step.pk)
            waiting += [step.yes_step_id or after, step.no_step_id or after]
        elif step.kind != Step.Kind.EXIT and step.pk in following:
            waiting.append(following[step.pk])
    return found


def _split_results(steps: list[Step]) -> list[dict[str, Any]]:
    """Per split step, per branch: the enrolments that took it, and the mail of that branch's
    path (the email steps reachable from the branch's target), two grouped queries whatever
    the number of splits."""
    split_steps = [step for step in steps if step.kind == Step.Kind.SPLIT]
    if not split_steps:
        return []
    taken = SplitBranch.objects.filter(step__in=split_steps).order_by()
    enrolments = {
        (row["step_id"], row["branch"]): row
        for row in taken.values("step_id", "branch").annotate(
            enrolled=Count("id"),
            goal_reached=Count("id", filter=Q(enrollment__status=Enrollment.Status.GOAL_REACHED)),
        )
    }
    mails: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for row in (
        Message.objects.filter(internal=False, enrollment__split_branches__step__in=split_steps)
        .order_by()
        .values(
            "enrollment__split_branches__step_id", "enrollment__split_branches__branch", "step_id"
        )
        .annotate(**MESSAGE_COUNTS)
    ):
        key = (
            row["enrollment__split_branches__step_id"],
            row["enrollment__split_branches__branch"],
        )
        mails.setdefault(key, []).append(row)
    following = {step.pk: after for step, after in zip(steps, steps[1:], strict=False)}
    by_id = {step.pk: step for step in steps}
    splits = []
    for step in split_steps:
        branches = []
        for branch, target_id in (("A", step.yes_step_id), ("B", step.no_step_id)):
            target = by_id.get(target_id) if target_id else following.get(step.pk)
            path = _reachable(steps, target)
            counts = enrolments.get((step.pk, branch), {})
            mail = {name: 0 for name in ("sent", "opened", "clicked")}
            for row in mails.get((step.pk, branch), []):
                if row["step_id"] in path:
                    for name in mail:
                        mail[name] += row[name]
            branches.append(
                {
                    "branch": branch,
                    "enrolled": counts.get("enrolled", 0),
                    "goal_reached": counts.get("goal_reached", 0),
                    **mail,
                    "conversion": _rate(counts.get("goal_reached", 0), counts.get("enrolled", 0)),
                }
            )
        splits.append({"step": step, "branches": branches})
    return splits


@role_required(MARKETING)
def sequence_results(request: HttpRequest, pk: int) -> HttpResponse:
    sequence = get_object_or_404(Sequence, pk=pk)
    enrolments = Enrollment.objects.filter(sequence=sequence)
    totals = {**dict.fromkeys(STATUS_COUNTS, 0), **enrolments.order_by().aggregate(**STATUS_COUNTS)}
    mails = Message.objects.filter(enrollment__sequence=sequence, internal=False)
    totals.update(mails.order_by().aggregate(**MESSAGE_COUNTS))
    per_step_mail = {
        row["step_id"]: row for row in mails.order_by().values("step_id").annotate(**MESSAGE_COUNTS)
    }
    waiting = dict(
        enrolments.filter(status=Enrollment.Status.ACTIVE)
        .order_by()
        .values_list("step_id")
        .annotate(n=Count("id"))
    )
    steps = []
    for step in sequence.steps.order_by("position", "id"):
        mail = per_step_mail.get(step.pk, {})
        steps.append(
            {
                "step": step,
                "waiting": waiting.get(step.pk, 0),
                "sent": mail.get("sent", 0),
                "opened": mail.get("opened", 0),
                "clicked": mail.get("clicked", 0),
                "bounced": mail.get("bounced", 0),
                "complained": mail.get("complained", 0),
                "open_rate": _rate(mail.get("opened", 0), mail.get("sent", 0)),
                "click_rate": _rate(mail.get("clicked", 0), mail.get("sent", 0)),
            }
        )
    splits = _split_results([row["step"] for row in steps])
    # Emails not sent and why (no consent, a legal basis the sequence does not send to…).
    suppressed = [
        (reason_label(code), count)
        for code, count in mails.filter(status=Message.Status.SUPPRESSED)
        .order_by()
        .values_list("error")
        .annotate(n=Count("id"))
        .order_by("-n", "error")
    ]
    context = {
        "sequence": sequence,
        "suppressed": suppressed,
        "totals": totals,
        "conversion": _rate(totals["goal_reached"], totals["enrolled"]),
        "steps": steps,
        "splits": splits,
        "Kind": Step.Kind,
    }
    response = render(
        request, partial_or_page(request, "nurturing/sequence_results.html", "results"), context
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


def _enroll_context(query: str) -> dict[str, Any]:
    return {
        "query": query,
        "count": enrolment.segment_contacts(query).count(),
        "everyone": enrolment.segment_selects_everyone(query),
        "sequences": Sequence.objects.filter(active=True).order_by("name"),
    }


@role_required(MARKETING)
def enroll_list(request: HttpRequest) -> HttpResponse:
    """From the contact list: the contacts its filters select, and the sequence to enrol them
    in (the form posts to ``sequence_enroll_list`` with the same filters). Without a filter
    the form asks to confirm that every contact is meant."""
    return render(request, "nurturing/enroll_list.html", _enroll_context(request.GET.urlencode()))


@role_required(MARKETING)
@require_POST
def sequence_enroll_list(request: HttpRequest, pk: int) -> HttpResponse:
    """Enrol every contact a contact-list filter selects (the list's query string). No filter
    means nobody unless "all contacts" was ticked; an empty selection is refused."""
    sequence = get_object_or_404(Sequence, pk=pk or request.POST.get("sequence") or 0)
    query = request.POST.get("query", "").lstrip("?")
    everyone = request.POST.get("all_contacts") == "on"
    if error := _selection_error(query, everyone):
        context = {**_enroll_context(query), "error": error}
        return render(request, "nurturing/enroll_list.html", context, status=400)
    count = enrolment.segment_enroll(
        sequence=sequence, query=query, source="list", everyone=everyone
    )
    messages.success(
        request, _("%(count)s contact(s) enrolled in “%(sequence)s”.")
        % {"count": count, "sequence": sequence.name},
    )  # fmt: skip
    return redirect("nurturing-sequence", pk=sequence.pk)


def _selection_error(query: str, everyone: bool) -> str:
    """Why a contact-list selection cannot be enrolled ("" if it can): no filter without the
    box ticked, or nobody selected."""
    if enrolment.segment_selects_everyone(query) and not everyone:
        return _(
            "No filter is set, so this would enrol every contact with an email address: "
            "tick the box to confirm that you mean them all."
        )
    if not enrolment.segment_contacts(query).exists():
        return _("No contact matches these filters: nobody was enrolled.")
    return ""


# --- Pre-flight: what activating or enrolling would send, confirmed by a POST -----------------


@role_required(MARKETING)
@require_http_methods(["GET", "POST"])
def sequence_activate(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the pre-flight of activating the sequence (who its trigger takes in at once, the
    coming week's emails); POST: activate it."""
    sequence = get_object_or_404(Sequence, pk=pk)
    if request.method == "POST":
        if preflight.sequence_activate(sequence=sequence):
            messages.success(request, _("“%(sequence)s” is active.") % {"sequence": sequence.name})
        return redirect("nurturing-sequence", pk=sequence.pk)
    context = {
        "sequence": sequence,
        "forecast": preflight.forecast(sequence, preflight.starting_contacts(sequence)),
        "activating": True,
        "confirm_url": reverse("nurturing-sequence-activate", args=[sequence.pk]),
    }
    return render(request, "nurturing/preflight.html", context)


@role_required(MARKETING)
@require_GET
def enroll_preflight(request: HttpRequest) -> HttpResponse:
    """The pre-flight of enrolling the contacts a contact-list filter selects (the form of
    ``enroll_list``); its confirmation posts to ``sequence_enroll_list``."""
    query = request.GET.get("query", "").lstrip("?")
    everyone = request.GET.get("all_contacts") == "on"
    sequence = Sequence.objects.filter(pk=_int(request.GET.get("sequence")), active=True).first()
    error = _("Choose an active sequence.") if sequence is None else ""
    if error := error or _selection_error(query, everyone):
        context = {**_enroll_context(query), "error": error}
        return render(request, "nurturing/enroll_list.html", context, status=400)
    assert sequence is not None
    context = {
        "sequence": sequence,
        "forecast": preflight.forecast(sequence, enrolment.segment_contacts(query)),
        "activating": False,
        "confirm_url": reverse("nurturing-sequence-enroll", args=[sequence.pk]),
        "query": query,
        "everyone": everyone,
    }
    return render(request, "nurturing/preflight.html", context)


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


# --- A contact's enrolments ------------------------------------------------------------------


@role_required(MARKETING, SALES)
def contact_enrollments(request: HttpRequest, pk: int) -> HttpResponse:
    contact = visible_contact_or_404(request, pk)
    enrollments = list(
        Enrollment.objects.filter(contact=contact)
        .select_related("sequence", "step")
        .order_by("-entered_at", "-id")[:50]
    )
    mails = (
        Message.objects.filter(contact=contact)
        .select_related("step")
        .order_by("-created_at", "-id")[:100]
    )
    by_enrollment: dict[int, list[Message]] = {}
    for mail in mails:
        by_enrollment.setdefault(mail.enrollment_id, []).append(mail)
    for enrollment in enrollments:
        enrollment.mails = by_enrollment.get(enrollment.pk, [])
    context = {
        "contact": contact,
        "enrollments": enrollments,
        "sequences": Sequence.objects.filter(active=True).order_by("name"),
        "reports": Bounce.objects.filter(contact=contact).order_by("-occurred_at", "-id")[:10],
        "soft_bounces": bounces.soft_bounces_counting([contact.pk], timezone.now()).count(),
        "soft_bounce_limit": settings.NURTURING_SOFT_BOUNCE_LIMIT,
        "soft_bounce_days": settings.NURTURING_SOFT_BOUNCE_DAYS,
    }
    response = render(
        request,
        partial_or_page(request, "nurturing/contact_enrollments.html", "enrollments"),
        context,
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


@role_required(MARKETING)
@require_POST
def contact_enroll(request: HttpRequest, pk: int) -> HttpResponse:
    contact = visible_contact_or_404(request, pk, act=Act.ENROLL)
    sequence = get_object_or_404(Sequence, pk=request.POST.get("sequence") or 0, active=True)
    enrollment = enrolment.enrollment_start(
        sequence=sequence, contact=contact, source=f"user:{request.user.pk}"
    )
    if enrollment is None:
        messages.error(
            request,
            _("%(contact)s cannot enter “%(sequence)s” (re-entry policy, or no email address).")
            % {"contact": contact.display_name, "sequence": sequence.name},
        )
    else:
        messages.success(
            request, _("%(contact)s enrolled in “%(sequence)s”.")
            % {"contact": contact.display_name, "sequence": sequence.name},
        )  # fmt: skip
    return redirect("contact-detail", pk=contact.pk)
