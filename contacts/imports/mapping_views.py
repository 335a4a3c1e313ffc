"""The mapping step's helpers: the pre-import summary (also as an htmx partial refreshed when a
column's field changes) and saving or applying a mapping by name. Kept apart from the upload and
job pages so each part of the mapping step stays in its own module."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from contacts.imports.forms import ImportMappingForm, SavedMappingChoiceForm, SavedMappingNameForm
from contacts.imports.saved import import_job_remap, mapping_from_saved, saved_mapping_save
from contacts.imports.summary import import_summary_record, summary_for
from contacts.models import CustomField, ImportJob, SavedMapping
from contacts.roles import MARKETING, role_required


def mapping_context(job: ImportJob, form: ImportMappingForm) -> dict[str, Any]:
    """What the mapping page shows besides the column selects: the summary of the mapping as
    chosen (the posted one when the form was sent back), the saved mappings, the save form."""
    figures = job.summary if job.summary is not None else import_summary_record(job=job)
    return {
        "summary": summary_for(figures, job.columns, _chosen_mapping(form, job)),
        "saved_mappings": SavedMapping.objects.all(),
        "save_form": SavedMappingNameForm(),
    }


def _chosen_mapping(form: ImportMappingForm, job: ImportJob) -> list[str]:
    if not form.is_bound:
        return list(job.mapping)
    chosen = []
    for index in range(len(form.columns)):
        offered = {value for value, _label in form.fields[f"column_{index}"].choices}
        value = form.data.get(f"column_{index}", "")
        chosen.append(value if value in offered else "")
    return chosen


@require_GET
@role_required(MARKETING)
def import_summary(request: HttpRequest, pk: int) -> HttpResponse:
    """The summary partial for the mapping in the query string (the selects of the form)."""
    job = get_object_or_404(ImportJob, pk=pk)
    if job.status != ImportJob.Status.MAPPING:
        return redirect("contact-import-job", pk=job.pk)
    form = ImportMappingForm(
        request.GET, columns=job.columns, mapping=job.mapping,
        custom_fields=list(CustomField.objects.active()),
    )  # fmt: skip
    context = {"job": job, **mapping_context(job, form)}
    return render(request, "contacts/import_summary_body.html", context)


@require_POST
@role_required(MARKETING)
def import_mapping_save(request: HttpRequest, pk: int) -> HttpResponse:
    """Save the columns as chosen under a name (the job keeps them too), back to the job."""
    job = get_object_or_404(ImportJob, pk=pk)
    if job.status != ImportJob.Status.MAPPING:
        return redirect("contact-import-job", pk=job.pk)
    form = ImportMappingForm(
        request.POST, columns=job.columns, mapping=job.mapping,
        custom_fields=list(CustomField.objects.active()),
    )  # fmt: skip
    name_form = SavedMappingNameForm(request.POST)
    valid = form.is_valid()
    import_job_remap(job=job, mapping=form.mapping())
    if valid and name_form.is_valid():
        saved, created = saved_mapping_save(
            name=name_form.cleaned_data["mapping_name"],
            columns=job.columns,
            mapping=job.mapping,
            actor=request.user,
        )
        text = _("Mapping “%(name)s” saved.") if created else _("Mapping “%(name)s” updated.")
        messages.success(request, text % {"name": saved.name})
    else:
        for error in [*form.non_field_errors(), *name_form.errors.get("mapping_name", [])]:
            messages.error(request, _("The mapping was not saved: %(error)s") % {"error": error})
    return redirect("contact-import-job", pk=job.pk)


@require_POST
@role_required(MARKETING)
def import_mapping_apply(request: HttpRequest, pk: int) -> HttpResponse:
    """Choose each column's field from a saved mapping, matched on the header names."""
    job = get_object_or_404(ImportJob, pk=pk)
    form = SavedMappingChoiceForm(request.POST)
    if job.status == ImportJob.Status.MAPPING and form.is_valid():
        saved = form.cleaned_data["saved_mapping"]
        mapping = mapping_from_saved(saved, job.columns, list(CustomField.objects.active()))
        import_job_remap(job=job, mapping=mapping)
        matched = sum(1 for target in mapping if target)
        messages.success(
            request,
            ngettext(
                "Mapping “%(name)s” applied: %(count)d column matched.",
                "Mapping “%(name)s” applied: %(count)d columns matched.",
                matched,
            )
            % {"name": saved.name, "count": matched},
        )
    return redirect("contact-import-job", pk=job.pk)
