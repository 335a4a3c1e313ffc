"""The import pages: upload (CSV or XLSX), column mapping then progress, and the rejected rows
as CSV. The mapping step's summary and saved mappings: ``contacts.imports.mapping_views``."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from contacts import reasons
from contacts.custom_field_values import custom_field_create
from contacts.imports import parsing
from contacts.imports.forms import ImportMappingForm, ImportUploadForm
from contacts.imports.jobs import import_job_create, import_job_start
from contacts.imports.mapping_views import mapping_context
from contacts.imports.sources import UnknownSource, unknown_sources
from contacts.imports.summary import import_summary_record
from contacts.models import CustomField, ImportJob
from contacts.models.custom_fields import PREFIX as CUSTOM
from contacts.roles import MARKETING, role_required
from contacts.views import Echo, partial_or_page, spreadsheet_safe

PREVIEW_BYTES = 16 * 1024
PREVIEW_ROWS = 3


@role_required(MARKETING)
def import_upload(request: HttpRequest) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        job = import_job_create(
            upload=form.cleaned_data["file"],
            detected=form.detected,
            source=form.cleaned_data["source"],
            overwrite=form.cleaned_data["overwrite"],
            actor=request.user,
        )
        import_summary_record(job=job)  # the pre-import summary's one pass over the file
        return redirect("contact-import-job", pk=job.pk)
    jobs = ImportJob.objects.select_related("created_by", "source")[:10]
    return render(request, "contacts/import_upload.html", {"form": form, "jobs": jobs})


@role_required(MARKETING)
def import_job(request: HttpRequest, pk: int) -> HttpResponse:
    """The mapping form until the import starts, then its progress (polled by htmx)."""
    job = get_object_or_404(ImportJob.objects.select_related("created_by", "source"), pk=pk)
    form = None
    unknown: list[UnknownSource] = []
    may_create_sources = request.user.has_perm("contacts.add_leadsource")
    if job.status == ImportJob.Status.MAPPING:
        form = ImportMappingForm(
            request.POST or None, columns=job.columns, mapping=job.mapping,
            custom_fields=list(CustomField.objects.active()),
            may_create_fields=request.user.has_perm("contacts.add_customfield"),
        )  # fmt: skip
        source_column = form.source_column()
        if source_column is not None:
            unknown = unknown_sources(job, source_column)
        shown = "" if source_column is None or not unknown else str(source_column)
        if request.method == "POST" and form.is_valid():
            create_sources = may_create_sources and form.cleaned_data["create_sources"]
            if create_sources and form.cleaned_data["sources_of"] != shown:
                # The source column changed since the page listed its unknown values: the
                # marketer sees the new list before anything is created or left without source.
                form.add_error(None, _("Check the unknown lead sources listed below, then start."))
            else:
                mapping = form.mapping()
                with transaction.atomic():
                    for index, (key, label, kind) in form.new_fields().items():
                        created = custom_field_create(key=key, label=label, kind=kind)
                        mapping[index] = f"{CUSTOM}{created.key}"
                    import_job_start(
                        job=job,
                        mapping=mapping,
                        create_sources=create_sources,
                        rows_are_leads=form.cleaned_data["rows_are_leads"],
                    )
                return redirect("contact-import-job", pk=job.pk)
        form.data = form.data.copy() if form.is_bound else form.data
        if form.is_bound:
            form.data["sources_of"] = shown
        else:
            form.initial["sources_of"] = shown
    elif request.method == "POST":  # a second submit of the mapping: it has started already
        return redirect("contact-import-job", pk=job.pk)
    context = {
        "job": job,
        "form": form,
        "columns": list(
            zip(form.column_fields(), _samples(job), form.creation_fields(), strict=True)
        )
        if form is not None
        else [],
        "unknown_sources": unknown,
        "may_create_sources": may_create_sources,
        "errors_shown": job.row_errors.all()[:20],
        **(mapping_context(job, form) if form is not None else {}),
    }
    response = render(
        request, partial_or_page(request, "contacts/import_job.html", "progress"), context
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


def _samples(job: ImportJob) -> list[list[str]]:
    """The first values of each column, to help choose its field."""
    if job.file_format == ImportJob.FileFormat.XLSX:
        # A workbook is read whole: its first distinct values, read at upload, stand in.
        columns = (job.summary or {}).get("columns") or []
        if len(columns) == len(job.columns):
            return [column["samples"][:PREVIEW_ROWS] for column in columns]
        return [[] for _column in job.columns]
    with job.file.open("rb") as stored:
        head = stored.read(PREVIEW_BYTES)
    # The cut may split a character or a line: this is only a preview.
    text = head.decode(job.encoding, errors="ignore")
    samples: list[list[str]] = [[] for _column in job.columns]
    for count, row in enumerate(parsing.read_rows(text, job.delimiter)):
        if count == PREVIEW_ROWS:
            break
        for values, cell in zip(samples, row.cells, strict=False):
            values.append(parsing.CONTROL_PATTERN.sub("\ufffd", cell.strip()))
    return samples


@role_required(MARKETING)
def import_errors_csv(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The refused rows as CSV (UTF-8 with BOM), formula cells neutralised."""
    job = get_object_or_404(ImportJob, pk=pk)
    errors = job.row_errors.values_list("line_number", "message", "raw")
    writer = csv.writer(Echo(), delimiter=";" if get_language() == "fr" else ",")

    language = get_language()

    def rows() -> Iterator[str]:
        # Read after the view has returned: the reader's language is set again for the reasons.
        with translation.override(language):
            yield "\ufeff" + writer.writerow([_("Line"), _("Reason"), _("Row")])
            for line_number, message, raw in errors.iterator(chunk_size=2000):
                row = [line_number, reasons.text(message), raw]
                yield writer.writerow([spreadsheet_safe(value) for value in row])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
    return response
