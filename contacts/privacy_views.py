"""Personal data of one contact: export as JSON, erase (anonymise)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from contacts import privacy
from contacts.access import Act
from contacts.roles import MARKETING, role_required
from contacts.views import visible_contact_or_404


@require_POST
@role_required(MARKETING)
def contact_export(request: HttpRequest, pk: int) -> HttpResponse:
    """A POST, because each export is recorded: a link prefetched by a browser would log one."""
    contact = visible_contact_or_404(request, pk, act=Act.EXPORT)
    body = privacy.contact_export_json(contact=contact, actor=request.user)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="contact-{contact.pk}.json"'
    return response


@role_required(MARKETING)
def contact_erase(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation, POST erases."""
    contact = visible_contact_or_404(request, pk, act=Act.ERASE)
    if request.method == "POST":
        if privacy.contact_erase(contact=contact, actor=request.user):
            messages.success(request, _("The person's data was erased."))
        else:
            messages.info(request, _("This contact was already erased."))
        return redirect("contact-detail", pk=contact.pk)
    return render(request, "contacts/contact_erase.html", {"contact": contact})
