"""Import jobs and the rows they refused."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from contacts import reasons
from contacts.models.people import LeadSource


class ImportJob(models.Model):
    """A CSV file a marketer uploaded, its column mapping, and how its import went."""

    class Status(models.TextChoices):
        MAPPING = "mapping", _("Columns to map")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    # What was read (contacts.imports.files): a CSV (encoding, delimiter) or a workbook's sheet.
    class FileFormat(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", _("Excel workbook")

    file = models.FileField(_("file"), upload_to="imports/%Y/%m/")
    filename = models.CharField(_("file name"), max_length=255)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("imported by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    source = models.ForeignKey(
        LeadSource,
        verbose_name=_("lead source"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    overwrite = models.BooleanField(_("overwrite existing values"), default=False)
    # Chosen in the mapping step: create the lead sources a source column names that none of
    # the known sources (names, aliases) match; without it those rows keep no source.
    create_sources = models.BooleanField(_("create unknown sources"), default=False)
    # Chosen in the mapping step: rows with an external id but no email are leads (a CRM's
    # export), not anonymous suspects.
    rows_are_leads = models.BooleanField(_("rows are leads"), default=False)
    # The source column's values no source matched and that were not created, and how many
    # rows they left without a source: the report says so.
    unknown_sources = models.JSONField(_("unknown sources"), default=list, blank=True)
    unsourced_count = models.PositiveIntegerField(_("rows left without a source"), default=0)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.MAPPING
    )
    encoding = models.CharField(_("encoding"), max_length=20)
    delimiter = models.CharField(_("delimiter"), max_length=1)
    columns = models.JSONField(_("columns"), default=list)
    # One entry per column, in file order: a contact field name, or "" for an ignored column.
    mapping = models.JSONField(_("mapping"), default=list)
    rows_total = models.PositiveIntegerField(_("rows"), default=0)
    rows_done = models.PositiveIntegerField(_("rows done"), default=0)
    created_count = models.PositiveIntegerField(
        pgettext_lazy("count of contacts", "created"), default=0
    )
    merged_count = models.PositiveIntegerField(_("merged"), default=0)
    unchanged_count = models.PositiveIntegerField(_("unchanged"), default=0)
    rejected_count = models.PositiveIntegerField(_("rejected"), default=0)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("uploaded"), default=timezone.now)
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    file_format = models.CharField(
        _("file format"), max_length=10, choices=FileFormat.choices, default=FileFormat.CSV
    )
    sheet = models.CharField(_("sheet"), max_length=100, blank=True)
    # The pre-import summary's figures per column (contacts.imports.summary), read at upload.
    summary = models.JSONField(_("summary"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("contact import")
        verbose_name_plural = _("contact imports")
        indexes = [
            # The sweep only looks at the few jobs waiting for, or stuck in, a worker.
            models.Index(
                fields=["status", "queued_at"],
                name="importjob_pending",
                condition=Q(status__in=["queued", "running"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.get_status_display()})"

    @property
    def error_text(self) -> str:
        return reasons.text(self.error)

    @property
    def in_progress(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return round(100 * self.rows_done / self.rows_total) if self.rows_total else 0


class ImportRowError(models.Model):
    """A row an import refused, and why: the marketer's report to fix and re-upload."""

    job = models.ForeignKey(
        ImportJob, verbose_name=_("import"), on_delete=models.CASCADE, related_name="row_errors"
    )
    line_number = models.PositiveIntegerField(_("line"))
    raw = models.TextField(_("row"))
    message = models.CharField(_("reason"), max_length=500)

    class Meta:
        ordering = ["job", "line_number"]
        verbose_name = _("import row error")
        verbose_name_plural = _("import row errors")

    def __str__(self) -> str:
        return f"{self.job_id} line {self.line_number}: {self.message}"

    @property
    def reason(self) -> str:
        """The refusal in the reader's language."""
        return reasons.text(self.message)


# What CRM and spreadsheet exports write in a cell that holds nothing ("NA" is not one: it is
# Namibia in a country column); the migration that creates ImportPlaceholder stores them, and
# an admin edits them there.
DEFAULT_PLACEHOLDERS = ("Select", "N/A", "-", "--", "null", "none", "—", "–", "nil", "#N/A")


class ImportPlaceholder(models.Model):
    """A cell value read as blank by every import, in every column ("Select", "N/A"…), compared
    without case or surrounding spaces. A table rather than a setting: the team that meets a new
    one in its CRM's exports adds it in the admin, without a deployment."""

    value = models.CharField(_("value"), max_length=50, unique=True)

    class Meta:
        ordering = ["value"]
        verbose_name = _("blank placeholder")
        verbose_name_plural = _("blank placeholders")

    def __str__(self) -> str:
        return self.value

    @classmethod
    def values(cls) -> frozenset[str]:
        """The placeholders as imports compare them (case-folded, trimmed)."""
        return frozenset(
            value.strip().casefold() for value in cls.objects.values_list("value", flat=True)
        )


class SavedMapping(models.Model):
    """A column mapping a marketer saved by name, applied to a later file by header names."""

    name = models.CharField(_("name"), max_length=100)
    # [{"header": "Courriel", "field": "email"}, …]: the mapped columns only, in file order.
    columns = models.JSONField(_("columns"), default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("saved by"),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        ordering = [Lower("name")]
        verbose_name = _("saved import mapping")
        verbose_name_plural = _("saved import mappings")
        constraints = [
            models.UniqueConstraint(Lower("name"), name="savedmapping_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name
