import csv
from collections.abc import Iterator
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.functional import cached_property
from django.utils.timezone import localtime
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from contacts import access, email_status, legal_basis, services
from contacts.custom_field_values import active_custom_fields, custom_values_shown
from contacts.forms import ContactFilterForm, ContactForm
from contacts.models import Contact
from contacts.roles import MARKETING, SALES, role_required
from contacts.sales.activity_card import activities_context

TIMELINE_PER_PAGE = 50


class CappedPaginator(Paginator):
    """Counts at most ``cap`` rows. Past that, "more than" is all a person reads, and counting
    a hundred thousand matches of a common name costs more than the page itself."""

    cap = 10_000
    capped = False

    @cached_property
    def count(self) -> int:
        # Unordered: walking the list's order index to count would read far more rows.
        counted = self.object_list.order_by().values("pk")[: self.cap + 1].count()
        self.capped = counted > self.cap
        return min(counted, self.cap)


def partial_or_page(request: HttpRequest, template: str, partial: str) -> str:
    # A history-restore request wants the whole page back, not the fragment.
    htmx = getattr(request, "htmx", None)
    if htmx and not htmx.history_restore_request:
        return f"{template}#{partial}"
    return template


def visible_contact_or_404(
    request: HttpRequest,
    pk: int,
    contacts: QuerySet[Contact] | None = None,
    *,
    act: access.Act = access.Act.VIEW,
) -> Contact:
    """The contact ``pk`` if the user may open it, else 404 (the same answer as for an id that
    does not exist); 403 if they may open it but not do ``act`` (``contacts.access``)."""
    return access.contact_for(request.user, pk, act, contacts)


@role_required(MARKETING)
def contact_list(request: HttpRequest) -> HttpResponse:
    form = ContactFilterForm(request.GET)
    contacts = form.filter(Contact.objects.select_related("source", "owner"))
    page = CappedPaginator(contacts, settings.CONTACTS_PER_PAGE).get_page(request.GET.get("page"))
    response = render(
        request,
        partial_or_page(request, "contacts/contact_list.html", "results"),
        {
            "form": form,
            "page": page,
            "notices": form.notices(),
            "score_min": form.shown("score_min"),
            "score_max": form.shown("score_max"),
            "sort": form.current_sort(),
            "stages": Contact.Stage,
        },
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


EXPORT_COLUMNS = [
    (gettext_lazy("Email"), "email"),
    (gettext_lazy("External id"), "external_id"),
    (gettext_lazy("First name"), "first_name"),
    (gettext_lazy("Last name"), "last_name"),
    (gettext_lazy("Company"), "company"),
    (gettext_lazy("Phone"), "phone"),
    (gettext_lazy("Job title"), "job_title"),
    (gettext_lazy("Stage"), "stage"),
    (gettext_lazy("Score"), "score"),
    (gettext_lazy("Fit score"), "fit_score"),
    (gettext_lazy("Fit grade"), "fit_grade"),
    (gettext_lazy("Country"), "country"),
    (gettext_lazy("Industry"), "industry"),
    (gettext_lazy("Company size"), "company_size"),
    (gettext_lazy("Source"), "source__name"),
    (gettext_lazy("First source"), "first_source__name"),
    (gettext_lazy("Owner"), "owner__username"),
    (gettext_lazy("Created"), "created_at"),
    (gettext_lazy("Last activity"), "last_activity_at"),
]


class Echo:
    def write(self, value: str) -> str:
        return value


@role_required(MARKETING)
def contact_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """The filtered list as CSV, streamed (UTF-8 with BOM, so spreadsheets read the accents)."""
    form = ContactFilterForm(request.GET)
    selected = form.filter(Contact.objects.all())
    if not selected.exists():
        messages.warning(
            request, _("No contact matches these filters: there is nothing to export.")
        )
        query = request.GET.urlencode()
        return redirect(reverse("contact-list") + (f"?{query}" if query else ""))
    contacts = selected.values_list(*(f for _, f in EXPORT_COLUMNS), "custom_fields")
    custom = active_custom_fields()  # a column each, after the contact's own fields
    french = get_language() == "fr"
    writer = csv.writer(Echo(), delimiter=";" if french else ",")

    def rows() -> Iterator[str]:
        labels = [str(label) for label, _ in EXPORT_COLUMNS] + [field.label for field in custom]
        yield "\ufeff" + writer.writerow(labels)
        for *row, values in contacts.iterator(chunk_size=2000):
            row += [(values or {}).get(field.key) for field in custom]
            yield writer.writerow([spreadsheet_safe(value) for value in row])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="contacts.csv"'
    return response


def spreadsheet_safe(value: object) -> object:
    """Text a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading '."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return localtime(value).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


@role_required(MARKETING, SALES)
def contact_detail(request: HttpRequest, pk: int) -> HttpResponse:
    contact = visible_contact_or_404(
        request,
        pk,
        Contact.objects.select_related("source", "first_source", "owner", "referred_by"),
    )
    visible = Contact.objects.visible_to(request.user)
    timeline = contact.events.select_related("activity__user")
    events = Paginator(timeline, TIMELINE_PER_PAGE).get_page(request.GET.get("events"))
    template = partial_or_page(request, "contacts/contact_detail.html", "timeline")
    if "#" in template:  # the timeline's next page alone
        response = render(request, template, {"contact": contact, "events": events})
        patch_vary_headers(response, ["HX-Request"])
        return response
    context = {
        **activities_context(request, contact),
        "contact": contact,
        "custom_values": custom_values_shown(contact, active_custom_fields()),
        "marketing": legal_basis.marketing_summary(contact),
        "events": events,
        "stage_changes": contact.stage_changes.select_related("actor"),
        "referrals": visible.filter(referred_by=contact).order_by("pk")[:50],
        "referred_by_visible": bool(
            contact.referred_by_id and visible.filter(pk=contact.referred_by_id).exists()
        ),
    }
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@role_required(MARKETING)
def contact_create(request: HttpRequest) -> HttpResponse:
    form = ContactForm(request.POST if request.method == "POST" else None, custom_fields=True)
    if request.method == "POST" and form.is_valid():
        try:
            contact = services.contact_create(actor=request.user, **form.cleaned_data)
        except services.DuplicateContact as error:
            form.add_error("email", str(error))
        else:
            messages.success(request, _("Contact created."))
            return redirect("contact-detail", pk=contact.pk)
    return render(request, "contacts/contact_form.html", {"form": form, "contact": None})


@role_required(MARKETING)
@require_POST
def contact_email_status_clear(request: HttpRequest, pk: int) -> HttpResponse:
    """A person says the contact's address works again: marketing email may go to it."""
    contact = visible_contact_or_404(request, pk, act=access.Act.EDIT)
    if email_status.contact_email_status_clear(contact=contact, actor=request.user):
        messages.success(request, _("The address may receive email again."))
    return redirect("contact-detail", pk=contact.pk)


@role_required(MARKETING)
def contact_edit(request: HttpRequest, pk: int) -> HttpResponse:
    contact = visible_contact_or_404(request, pk, act=access.Act.EDIT)
    if contact.erased_at:
        messages.error(request, str(services.ContactErased()))
        return redirect("contact-detail", pk=contact.pk)
    # The form validates a copy, so a refused edit leaves the contact as it was.
    form = ContactForm(
        request.POST if request.method == "POST" else None,
        instance=Contact.objects.get(pk=pk),
        custom_fields=True,
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.contact_update(contact=contact, actor=request.user, **form.cleaned_data)
        except services.DuplicateContact as error:
            form.add_error("email", str(error))
        else:
            messages.success(request, _("Contact saved."))
            return redirect("contact-detail", pk=contact.pk)
    return render(request, "contacts/contact_form.html", {"form": form, "contact": contact})
