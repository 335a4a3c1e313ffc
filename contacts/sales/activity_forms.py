"""The forms of the Activities card (a note, a call, a meeting, an email) and of a rep's email
templates."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.models import Activity, EmailTemplate
from contacts.sales.activities import FUTURE_TOLERANCE, MAX_DURATION_MINUTES
from contacts.sales.email_templates import TemplateProblem, template_check

DATETIME_INPUT = "%Y-%m-%dT%H:%M"


class WhenField(forms.DateTimeField):
    """When it happened, typed in the browser's date-and-time picker; empty means now."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_INPUT)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", gettext_lazy("When"))
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", gettext_lazy("Empty: now."))
        super().__init__(input_formats=[DATETIME_INPUT, "%Y-%m-%d %H:%M"], **kwargs)

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value and value > timezone.now() + FUTURE_TOLERANCE:
            raise forms.ValidationError(_("Log what already happened: this time is in the future."))


class KindForm(forms.Form):
    """The card holds a form of each kind: ids carry the kind, so each label finds its field."""

    kind: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", f"id_{self.kind}_%s")
        super().__init__(*args, **kwargs)


def _duration() -> forms.IntegerField:
    return forms.IntegerField(
        label=gettext_lazy("Duration (minutes)"),
        required=False,
        min_value=0,
        max_value=MAX_DURATION_MINUTES,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )


class NoteForm(KindForm):
    kind = Activity.Kind.NOTE
    body = forms.CharField(
        label=gettext_lazy("Note"), max_length=10_000, widget=forms.Textarea(attrs={"rows": 3})
    )


class CallForm(KindForm):
    kind = Activity.Kind.CALL
    call_outcome = forms.ChoiceField(
        label=gettext_lazy("How did it go?"),
        choices=Activity.CallOutcome.choices,
        widget=forms.RadioSelect,
    )
    duration_minutes = _duration()
    at = WhenField()
    body = forms.CharField(
        label=gettext_lazy("Notes"),
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class MeetingForm(KindForm):
    kind = Activity.Kind.MEETING
    subject = forms.CharField(label=gettext_lazy("Topic"), required=False, max_length=300)
    at = WhenField()
    duration_minutes = _duration()
    body = forms.CharField(
        label=gettext_lazy("Notes"),
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


ACTIVITY_FORMS: dict[str, type[forms.Form]] = {
    Activity.Kind.NOTE: NoteForm,
    Activity.Kind.CALL: CallForm,
    Activity.Kind.MEETING: MeetingForm,
}


class EmailForm(KindForm):
    kind = Activity.Kind.EMAIL
    subject = forms.CharField(label=gettext_lazy("Subject"), max_length=300)
    body = forms.CharField(
        label=gettext_lazy("Text"), max_length=50_000, widget=forms.Textarea(attrs={"rows": 8})
    )


class EmailTemplateForm(forms.ModelForm):
    class Meta:
        model = EmailTemplate
        fields = ["name", "subject", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 10})}

    def _checked(self, name: str) -> str:
        value = self.cleaned_data.get(name, "")
        try:
            template_check(value)
        except TemplateProblem as problem:
            raise forms.ValidationError(str(problem)) from problem
        return value

    def clean_subject(self) -> str:
        return self._checked("subject")

    def clean_body(self) -> str:
        return self._checked("body")
