"""Fit rules and the grade cut-offs, edited in admin (``scoring.fit`` applies them)."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models import Contact, CustomField
from scoring import fit_engine


def _field_label(name: str) -> str:
    return Contact._meta.get_field(name).verbose_name


def field_label(name: str) -> str:
    """What a rule's field is called: a contact field's name, a custom field's label."""
    if name.startswith(fit_engine.CUSTOM_PREFIX):
        key = name.removeprefix(fit_engine.CUSTOM_PREFIX)
        found = CustomField.objects.filter(key=key).values_list("label", flat=True).first()
        return found or key
    return str(_field_label(name))


def field_choices() -> list[tuple[str, object]]:
    """The contact's fields, then the custom fields (read when a form is built)."""
    custom = CustomField.objects.order_by("position", "label").values_list("key", "label")
    return [
        *((name, _field_label(name)) for name in fit_engine.FIELDS),
        *((f"{fit_engine.CUSTOM_PREFIX}{key}", label) for key, label in custom),
    ]


class FitRule(models.Model):
    """Points for contacts whose field meets a condition ("job title contains director": +15,
    "company size between 50 and 1,000": +10, "country is one of …": -20)."""

    class Operator(models.TextChoices):
        CONTAINS = "contains", _("contains")
        EQUALS = "equals", _("equals")
        IN = "in", _("is one of")
        BETWEEN = "between", _("is a number between")
        BEFORE = "before", _("is a date before")
        AFTER = "after", _("is a date after")

    name = models.CharField(_("name"), max_length=120)
    # A contact field (fit_engine.FIELDS) or "custom:<key>": the choices are read when a form
    # is built (``field_choices``: custom fields come and go), and checked by ``clean``.
    field = models.CharField(_("contact field"), max_length=40)
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
    day = models.DateField(
        _("date"), null=True, blank=True, help_text=_("For “before” and “after” (a date field).")
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

    def custom_field(self) -> CustomField | None:
        if not self.field.startswith(fit_engine.CUSTOM_PREFIX):
            return None
        key = self.field.removeprefix(fit_engine.CUSTOM_PREFIX)
        return CustomField.objects.filter(key=key).first()

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.points == 0:
            errors["points"] = _("A rule must give or take at least one point.")
        custom = self.custom_field()
        kind = custom.kind if custom is not None else ""
        if self.field and not self.field.startswith(fit_engine.CUSTOM_PREFIX):
            if self.field not in fit_engine.FIELDS:
                errors["field"] = _("Choose a contact field.")
        numeric = self.field in fit_engine.NUMBER_FIELDS or kind == CustomField.Kind.NUMBER
        dated = kind == CustomField.Kind.DATE
        if self.operator in fit_engine.DATE_OPERATORS or dated:
            errors.update(self._date_errors(dated))
        elif self.operator == self.Operator.BETWEEN:
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
            if numeric and custom is not None:
                errors["operator"] = _("This field is a number: use “is a number between”.")
            elif numeric:
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
            if kind == CustomField.Kind.CHOICE and not {"values", "value"} & set(errors):
                errors.update(self._choice_errors(custom))
        if self.day is not None and not (self.operator in fit_engine.DATE_OPERATORS or dated):
            errors["day"] = _("Only “before” and “after” take a date.")
        if self.field.startswith(fit_engine.CUSTOM_PREFIX) and custom is None:
            errors["field"] = _("No custom field has this key any more.")
        if errors:
            raise ValidationError(errors)

    def _date_errors(self, dated: bool) -> dict[str, str]:
        errors: dict[str, str] = {}
        if not dated:
            errors["operator"] = _("“Before” and “after” compare dates: choose a date field.")
        elif self.operator not in fit_engine.DATE_OPERATORS:
            errors["operator"] = _("This field is a date: use “is a date before” or “after”.")
        if self.day is None:
            errors["day"] = _("Give the date to compare with.")
        if self.value or self.values.strip():
            errors["value"] = _("A date condition takes a date only: leave the values empty.")
        if self.number_min is not None or self.number_max is not None:
            errors["number_min"] = _("Only “is a number between” takes numbers.")
        return errors

    def _choice_errors(self, custom: CustomField | None) -> dict[str, str]:
        if custom is None:
            return {}
        if self.operator == self.Operator.CONTAINS:
            return {"operator": _("This field is a choice: use “equals” or “is one of”.")}
        known = {choice.casefold() for choice in custom.choice_list()}
        given = self.value_list() if self.operator == self.Operator.IN else [self.value.strip()]
        unknown = [value for value in given if value.casefold() not in known]
        if unknown:
            name = "values" if self.operator == self.Operator.IN else "value"
            return {
                name: _("“%(value)s” is not one of the choices: %(choices)s.")
                % {"value": unknown[0], "choices": ", ".join(custom.choice_list())}
            }
        return {}

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
            day=self.day,
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
