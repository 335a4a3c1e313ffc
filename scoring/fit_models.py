"""Fit rules and the grade cut-offs, edited in admin (``scoring.fit`` applies them)."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact
from scoring import fit_engine


def _field_label(name: str) -> str:
    return Contact._meta.get_field(name).verbose_name


class FitRule(models.Model):
    """Points for contacts whose field meets a condition ("job title contains director": +15,
    "company size between 50 and 1,000": +10, "country is one of …": -20)."""

    class Operator(models.TextChoices):
        CONTAINS = "contains", _("contains")
        EQUALS = "equals", _("equals")
        IN = "in", _("is one of")
        BETWEEN = "between", _("is a number between")

    FIELD_CHOICES = [(name, _field_label(name)) for name in fit_engine.FIELDS]

    name = models.CharField(_("name"), max_length=120)
    field = models.CharField(_("contact field"), max_length=40, choices=FIELD_CHOICES)
    operator = models.CharField(_("condition"), max_length=10, choices=Operator.choices)
    value = models.CharField(
        _("value"),
        max_length=200,
        blank=True,
        help_text=_("For “contains” and “equals”. Case and spaces do not matter."),
    )
    values = models.TextField(
        _("values"), blank=True, help_text=_("For “is one of”, one per line.")
    )
    number_min = models.PositiveIntegerField(
        _("range from"), null=True, blank=True, help_text=_("For “between”: the lowest (included).")
    )
    number_max = models.PositiveIntegerField(
        _("range to"), null=True, blank=True, help_text=_("For “between”: the highest (included).")
    )
    points = models.IntegerField(_("points"), help_text=_("Negative to take points away."))
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["field", "name", "id"]
        verbose_name = _("fit rule")
        verbose_name_plural = _("fit rules")

    def __str__(self) -> str:
        return f"{self.name} ({self.points:+d})"

    def value_list(self) -> tuple[str, ...]:
        return tuple(line.strip() for line in self.values.splitlines() if line.strip())

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.points == 0:
            errors["points"] = _("A rule must give or take at least one point.")
        numeric = self.field in fit_engine.NUMBER_FIELDS
        if self.operator == self.Operator.BETWEEN:
            if self.field and not numeric:
                errors["operator"] = _(
                    "“Between” compares numbers: choose company size, or a text condition."
                )
            if self.number_min is None and self.number_max is None:
                errors["number_min"] = _("Give at least one bound of the range.")
            elif (
                self.number_min is not None
                and self.number_max is not None
                and self.number_min > self.number_max
            ):
                errors["number_max"] = _("The upper bound cannot be below the lower bound.")
            if self.value or self.values.strip():
                errors["value"] = _("A range takes numbers only: leave the values empty.")
        elif self.operator:
            if numeric:
                errors["operator"] = _("Company size is a number: use “is a number between”.")
            if self.operator == self.Operator.IN:
                if not self.value_list():
                    errors["values"] = _("Give the values, one per line.")
                if self.value:
                    errors["value"] = _("“Is one of” takes its values below, one per line.")
            elif not self.value.strip():
                errors["value"] = _("Give the value to compare with.")
            elif self.values.strip():
                errors["values"] = _("Only “is one of” takes a list of values.")
            if self.number_min is not None or self.number_max is not None:
                errors["number_min"] = _("Only “is a number between” takes numbers.")
        if errors:
            raise ValidationError(errors)

    def to_engine(self) -> fit_engine.FitRule:
        return fit_engine.FitRule(
            id=self.pk or 0,
            name=self.name,
            field=self.field,
            operator=self.operator,
            points=self.points,
            value=self.value,
            values=self.value_list(),
            number_min=None if self.number_min is None else Decimal(self.number_min),
            number_max=None if self.number_max is None else Decimal(self.number_max),
            active=self.active,
        )


class FitGrades(models.Model):
    """The fit points each grade starts at (one row): A from 30, B from 15, C from 5, else D."""

    a_from = models.IntegerField(_("A from"), default=30)
    b_from = models.IntegerField(_("B from"), default=15)
    c_from = models.IntegerField(_("C from"), default=5)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("fit grades")
        verbose_name_plural = _("fit grades")

    def __str__(self) -> str:
        return str(_("A ≥ %(a)s, B ≥ %(b)s, C ≥ %(c)s, else D")) % {
            "a": self.a_from,
            "b": self.b_from,
            "c": self.c_from,
        }

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.b_from is not None and self.a_from is not None and self.a_from <= self.b_from:
            errors["a_from"] = _("A must start above B.")
        if self.c_from is not None and self.b_from is not None and self.b_from <= self.c_from:
            errors["b_from"] = _("B must start above C.")
        if errors:
            raise ValidationError(errors)

    @classmethod
    def current(cls) -> fit_engine.Grades:
        row = cls.objects.order_by("pk").first()
        if row is None:
            return fit_engine.Grades()
        return fit_engine.Grades(a=row.a_from, b=row.b_from, c=row.c_from)
