"""Assignment rules: which team (or which rep of it) a new SQL goes to, by territory or a contact
field. ``contacts.sales.assignment`` applies them; ``contacts.sales.routing`` holds the
matching, pure."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts.models.custom_fields import PREFIX, CustomField
from contacts.models.team import SalesRep, Team

# The contact fields a rule may look at: text fields, then the one number.
TEXT_FIELDS = ("country", "industry", "job_title", "company")
NUMBER_FIELDS = ("company_size",)
FIELDS = (*TEXT_FIELDS, *NUMBER_FIELDS)


class AssignmentRule(models.Model):
    """ "Country is one of France, Belgium → team Europe", "company size between 1,000 and
    any → Anne". The active rules are read in order; the first that holds for an SQL routes
    it; when none holds, the default team takes it (or it stays in the pull queue)."""

    class Operator(models.TextChoices):
        EQUALS = "equals", _("equals")
        IN = "in", _("is one of")
        BETWEEN = "between", _("is a number between")

    position = models.PositiveIntegerField(
        _("order"),
        default=0,
        help_text=_("Rules are tried in this order; the first that holds wins."),
    )
    # A contact field (FIELDS) or "custom:<key>": the choices are read when a form is built
    # (custom fields come and go), and checked by ``clean``.
    field = models.CharField(_("contact field"), max_length=40)
    operator = models.CharField(_("condition"), max_length=10, choices=Operator.choices)
    value = models.CharField(
        _("value"),
        max_length=200,
        blank=True,
        help_text=_("For “equals”. Case and spaces do not matter."),
    )
    values = models.TextField(
        _("values"), blank=True, help_text=_("For “is one of”, one per line.")
    )
    number_min = models.DecimalField(
        _("range from"),
        max_digits=18,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("For “between”: the lowest (included)."),
    )
    number_max = models.DecimalField(
        _("range to"),
        max_digits=18,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("For “between”: the highest (included)."),
    )
    team = models.ForeignKey(
        Team,
        verbose_name=_("team"),
        on_delete=models.CASCADE,
        related_name="assignment_rules",
        help_text=_("The team that takes the SQLs this rule matches, as its assignment says."),
    )
    # PROTECT: a rep who leaves has their territory handed over first, not dropped silently.
    rep = models.ForeignKey(
        SalesRep,
        verbose_name=_("rep"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="assignment_rules",
        help_text=_(
            "Optional, for a team assigning by rules: this rep takes the matching SQLs while on "
            "duty and under capacity; otherwise round robin in the team."
        ),
    )
    active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("assignment rule")
        verbose_name_plural = _("assignment rules")

    def __str__(self) -> str:
        return str(_("Rule %(position)s") % {"position": self.position})

    def value_list(self) -> tuple[str, ...]:
        return tuple(line.strip() for line in self.values.splitlines() if line.strip())

    def custom_field(self) -> CustomField | None:
        if not self.field.startswith(PREFIX):
            return None
        return CustomField.objects.filter(key=self.field.removeprefix(PREFIX)).first()

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        custom = self.custom_field()
        kind = custom.kind if custom is not None else ""
        if self.field.startswith(PREFIX):
            if custom is None:
                errors["field"] = _("No custom field has this key any more.")
            elif kind == CustomField.Kind.DATE:
                errors["field"] = _("A date field cannot route leads: choose another field.")
        elif self.field and self.field not in FIELDS:
            errors["field"] = _("Choose a contact field.")
        numeric = self.field in NUMBER_FIELDS or kind == CustomField.Kind.NUMBER
        if self.operator == self.Operator.BETWEEN:
            errors.update(self._range_errors(numeric))
        elif self.operator:
            if numeric:
                errors["operator"] = _("This field is a number: use “is a number between”.")
            errors.update(self._text_errors(custom))
        if self.rep_id is not None and self.team_id is not None:
            rep_team = SalesRep.objects.filter(pk=self.rep_id).values_list("team_id", flat=True)
            if rep_team.first() != self.team_id:
                errors["rep"] = _("This rep is not in the rule's team.")
            elif self.team.assignment != Team.Assignment.RULES:
                errors["rep"] = _(
                    "Only a team assigning by rules gives leads to a named rep: change the "
                    "team's assignment, or leave the rep empty."
                )
        if errors:
            raise ValidationError(errors)

    def _range_errors(self, numeric: bool) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        if self.field and not numeric:
            errors["operator"] = _(
                "“Between” compares numbers: choose company size or a number field."
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
        return errors

    def _text_errors(self, custom: CustomField | None) -> dict[str, Any]:
        errors: dict[str, Any] = {}
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
        if custom is not None and custom.kind == CustomField.Kind.CHOICE and not errors:
            known = {choice.casefold() for choice in custom.choice_list()}
            given = self.value_list() if self.operator == self.Operator.IN else [self.value]
            unknown = [value for value in given if value.strip().casefold() not in known]
            if unknown:
                name = "values" if self.operator == self.Operator.IN else "value"
                errors[name] = _("“%(value)s” is not one of the choices: %(choices)s.") % {
                    "value": unknown[0],
                    "choices": ", ".join(custom.choice_list()),
                }
        return errors
