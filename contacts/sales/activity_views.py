"""The Activities card (on the queue's lead page and the contact page) and a rep's email
templates. Every form posts with htmx (the card comes back, re-rendered) and without it (a
redirect to the page it came from, or the card alone as a page when the input is refused)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from contacts.access import Act
from contacts.models import Activity, Contact, EmailTemplate
from contacts.roles import MARKETING, SALES, role_required
from contacts.sales.activities import (
    ActivityRefused,
    activity_email_send,
    activity_log,
)
from contacts.sales.activity_card import activities_context, back_url, templates_for
from contacts.sales.activity_forms import ACTIVITY_FORMS, EmailForm, EmailTemplateForm
from contacts.sales.email_templates import PLACEHOLDERS
from contacts.views import visible_contact_or_404


def _card(request: HttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    htmx = getattr(request, "htmx", None)
    template = "contacts/activities_card.html" if htmx else "contacts/activities_page.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


@role_required(MARKETING, SALES)
def contact_activities(request: HttpRequest, pk: int) -> HttpResponse:
    """The card alone: its "Older" pages, a template picked for an email (``?template=``)."""
    contact = visible_contact_or_404(request, pk)
    initial = None
    if request.GET.get("template"):
        try:
            template = templates_for(request.user).get(pk=int(request.GET["template"]))
        except (ValueError, EmailTemplate.DoesNotExist):
            raise Http404 from None
        initial = {"subject": template.subject, "body": template.body}
    return _card(request, activities_context(request, contact, email_initial=initial))


def _writable(request: HttpRequest, pk: int) -> Contact:
    return visible_contact_or_404(
        request, pk, Contact.objects.select_related("owner"), act=Act.LOG_ACTIVITY
    )


def _done(request: HttpRequest, contact: Contact, text: str) -> HttpResponse:
    if getattr(request, "htmx", None):
        return _card(request, activities_context(request, contact, notice=text))
    messages.success(request, text)
    return redirect(back_url(request, contact))


@require_POST
@role_required(MARKETING, SALES)
def contact_activity_add(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    """Log a note, a call or a meeting."""
    form_class = ACTIVITY_FORMS.get(kind)
    if form_class is None:
        raise Http404
    contact = _writable(request, pk)
    form = form_class(request.POST)
    if form.is_valid():
        data = {key: value for key, value in form.cleaned_data.items() if value not in (None, "")}
        try:
            activity_log(contact=contact, user=request.user, kind=kind, **data)
        except ActivityRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            return _done(request, contact, _DONE[kind]())
    return _card(request, activities_context(request, contact, bound=form), status=400)


_DONE = {
    Activity.Kind.NOTE: lambda: _("Note added."),
    Activity.Kind.CALL: lambda: _("Call logged."),
    Activity.Kind.MEETING: lambda: _("Meeting logged."),
}


@require_POST
@role_required(MARKETING, SALES)
def contact_activity_email(request: HttpRequest, pk: int) -> HttpResponse:
    """Send an email to the lead (written from a template or not) and log it once it went.
    Refused or not sent: the form comes back with the rep's text and why."""
    contact = _writable(request, pk)
    form = EmailForm(request.POST)
    if form.is_valid():
        try:
            activity_email_send(contact=contact, user=request.user, **form.cleaned_data)
        except ActivityRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            return _done(request, contact, _("Email sent to %(email)s.") % {"email": contact.email})
    return _card(request, activities_context(request, contact, bound=form), status=400)


# --- A rep's email templates -------------------------------------------------------------------


@role_required(SALES)
def email_template_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "contacts/email_templates.html",
        {
            "mine": EmailTemplate.objects.filter(owner=request.user),
            "shared": EmailTemplate.objects.filter(owner__isnull=True),
        },
    )


@role_required(SALES)
def email_template_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create a template (no ``pk``) or edit one of one's own (a shared one is an admin's)."""
    template = None
    if pk is not None:
        template = get_object_or_404(EmailTemplate, pk=pk, owner=request.user)
    form = EmailTemplateForm(request.POST or None, instance=template)
    if request.method == "POST":
        if form.is_valid():
            saved = form.save(commit=False)
            saved.owner = request.user
            saved.updated_at = timezone.now()
            saved.save()
            messages.success(request, _("Template “%(name)s” saved.") % {"name": saved.name})
            return redirect("email-templates")
        status = 400
    else:
        status = 200
    context = {"form": form, "template": template, "placeholders": PLACEHOLDERS}
    return render(request, "contacts/email_template_form.html", context, status=status)
