from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from contacts import custom_field_forms
from contacts.custom_field_values import active_custom_fields
from contacts.models import Contact, LeadSource, Suppression, canonical_time_zone
from contacts.privacy import ContactSuppressed
from contacts.roles import SALES
from contacts.services import CONTACT_FIELDS

IDENTIFYING_FIELDS = ("email", "first_name", "last_name", "company", "phone")


class ContactForm(forms.ModelForm):
    class Meta:
        model = Contact
        fields = list(CONTACT_FIELDS)

    # The consent to open tracking, as a box to tick: its date is the moment it is ticked.
    open_tracking = forms.BooleanField(
        label=_("Consented to open tracking"),
        required=False,
        help_text=_("The person agreed that the opening of our emails be tracked (open pixel)."),
    )

    def __init__(self, *args: Any, custom_fields: bool = False, **kwargs: Any) -> None:
        """``custom_fields``: an input per active custom field too (the contact's edit page);
        the values come back as ``cleaned_data["custom_fields"]``."""
        super().__init__(*args, **kwargs)
        if "open_tracking_consent_at" in self.fields:
            del self.fields["open_tracking_consent_at"]
            self.fields["open_tracking"].initial = (
                self.instance.open_tracking_consent_at is not None
            )
            # Beside its source, not after the custom fields.
            order = [name for name in self.fields if name != "open_tracking"]
            at = order.index("open_tracking_consent_source")
            order.insert(at, "open_tracking")
            self.order_fields(order)
        if "legitimate_interest_notice_on" in self.fields:
            self.fields["legitimate_interest_notice_on"].widget = forms.DateInput(
                attrs={"type": "date"}, format="%Y-%m-%d"
            )
        self.custom = active_custom_fields() if custom_fields else []
        values = self.instance.custom_fields or {}
        self.fields.update(custom_field_forms.value_fields(self.custom, values))

    def clean_email(self) -> str | None:
        email = self.cleaned_data.get("email") or None
        if email:
            others = Contact.objects.filter(email__iexact=email)
            if self.instance.pk:
                others = others.exclude(pk=self.instance.pk)
            if others.exists():
                raise forms.ValidationError(
                    _("A contact with this email already exists."), code="duplicate"
                )
            if Suppression.suppressed([email]):
                raise forms.ValidationError(str(ContactSuppressed(email)), code="suppressed")
        return email

    def clean_time_zone(self) -> str:
        # "europe/paris" means Europe/Paris; the model's validator refuses what is no zone.
        value = self.cleaned_data.get("time_zone") or ""
        return canonical_time_zone(value) or value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # A contact with nothing to know them by is no use to anyone. Anonymous visitors come
        # from tracking, not from this form; editing one without adding anything is allowed.
        known_before = self.instance.pk is None or any(
            getattr(self.instance, name) for name in IDENTIFYING_FIELDS
        )
        invalid = set(IDENTIFYING_FIELDS) & set(self.errors)
        if (
            known_before
            and not invalid
            and not any(str(data.get(name) or "").strip() for name in IDENTIFYING_FIELDS)
        ):
            raise forms.ValidationError(
                _("Give at least an email, a name, a company or a phone number."), code="empty"
            )
        if self.custom:
            data["custom_fields"] = custom_field_forms.values_from(data, self.custom)
        self._open_tracking_consent(data)
        return data

    def _open_tracking_consent(self, data: dict[str, Any]) -> None:
        """The ticked box as the consent's date: kept when it was ticked already, now when it
        is ticked now, cleared when it is not."""
        if "open_tracking" not in self.fields:
            return
        ticked = data.pop("open_tracking", False)
        before = self.instance.open_tracking_consent_at
        data["open_tracking_consent_at"] = (before or timezone.now()) if ticked else None
        if ticked and not before and not data.get("open_tracking_consent_source"):
            data["open_tracking_consent_source"] = str(_("contact page"))
        if not ticked:
            data["open_tracking_consent_source"] = ""


STAGE_RANK = Case(
    *(When(stage=stage, then=Value(rank)) for rank, stage in enumerate(Contact.Stage.values)),
    output_field=IntegerField(),
)

SORTS: dict[str, tuple[Any, ...]] = {
    "name": (F("last_name").asc(), F("first_name").asc(), "pk"),
    "email": (F("email").asc(nulls_last=True), "pk"),
    "company": (F("company").asc(), "pk"),
    "stage": (STAGE_RANK.asc(), "-score", "pk"),
    "score": (F("score").asc(), "pk"),
    "fit": (F("fit_score").asc(), "pk"),
    "last_activity": (F("last_activity_at").asc(nulls_first=True), "pk"),
    "created": (F("created_at").asc(), "pk"),
}


def _descending(ordering: tuple[Any, ...]) -> tuple[Any, ...]:
    flipped = []
    for term in ordering:
        if isinstance(term, str):
            flipped.append(term[1:] if term.startswith("-") else f"-{term}")
        else:
            term = term.copy()
            term.reverse_ordering()
            flipped.append(term)
    return tuple(flipped)


class ContactFilterForm(forms.Form):
    """The contact list's query string: every field optional; a bad value is dropped, not fatal."""

    ACTIVITY_CHOICES = [
        ("", _("Any time")),
        ("7", _("Active in the last 7 days")),
        ("30", _("Active in the last 30 days")),
        ("90", _("Active in the last 90 days")),
        ("inactive90", _("Inactive for 90 days or more")),
        ("never", _("Never active")),
    ]
    SORT_CHOICES = [(key, key) for key in SORTS] + [(f"-{key}", f"-{key}") for key in SORTS]
    DEFAULT_SORT = "-last_activity"

    q = forms.CharField(label=_("Search"), required=False, max_length=200)
    stage = forms.ChoiceField(
        label=_("Stage"), required=False, choices=[("", _("All stages")), *Contact.Stage.choices]
    )
    owner = forms.ChoiceField(label=_("Owner"), required=False)
    source = forms.ModelChoiceField(
        label=_("Source"),
        required=False,
        queryset=LeadSource.objects.order_by("name"),
        empty_label=_("All sources"),
    )
    score_min = forms.IntegerField(label=_("Score from"), required=False)
    score_max = forms.IntegerField(label=_("Score to"), required=False)
    fit_grade = forms.ChoiceField(
        label=_("Fit grade"),
        required=False,
        choices=[("", _("Any fit")), *Contact.FitGrade.choices],
    )
    activity = forms.ChoiceField(label=_("Last activity"), required=False, choices=ACTIVITY_CHOICES)
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        reps = (
            get_user_model()
            .objects.filter(Q(groups__name=SALES) | Q(is_staff=True), is_active=True)
            .distinct()
            .order_by("first_name", "last_name", "username")
        )
        self.fields["owner"].choices = [
            ("", _("Anyone")),
            ("none", _("Unassigned")),
            *((str(user.pk), user.get_full_name() or user.get_username()) for user in reps),
        ]
        self.custom = active_custom_fields()
        self.fields.update(custom_field_forms.filter_fields(self.custom))

    def custom_filter_rows(self) -> list[dict[str, Any]]:
        return custom_field_forms.filter_rows(self, self.custom)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        low, high = data.get("score_min"), data.get("score_max")
        if low is not None and high is not None and low > high:
            # As the dashboard does with dates: what was meant is plain, say what was done.
            data["score_min"], data["score_max"] = high, low
            self.swapped = True
        return data

    swapped = False

    def notices(self) -> list[str]:
        """One line per ignored filter, for the person who typed the URL."""
        notices = [
            _("The filter “%(field)s” was ignored: %(error)s")
            % {"field": self.fields[name].label or name, "error": " ".join(errors)}
            for name, errors in self.errors.items()
        ]
        if self.swapped:
            notices.append(_("The score range was reversed: the two bounds were swapped."))
        return notices

    def shown(self, name: str) -> Any:
        """What a filter box shows: the value used (swapped bounds included), else as typed."""
        value = self.cleaned_data.get(name) if hasattr(self, "cleaned_data") else None
        return value if value is not None else self.data.get(name, "")

    FILTERS = ("q", "stage", "owner", "source", "score_min", "score_max", "fit_grade", "activity")

    def selects_everyone(self) -> bool:
        """No filter takes effect (none given, or only ones ignored as nonsense): the list is
        every contact. Enrolling "everyone" needs an explicit choice, not an empty query."""
        self.is_valid()
        custom = [name for name in self.fields if name.startswith(custom_field_forms.PREFIX)]
        return all(self.cleaned_data.get(name) in (None, "") for name in [*self.FILTERS, *custom])

    def filter(self, contacts: Any) -> Any:
        self.is_valid()  # fills cleaned_data with the fields that are valid
        data = self.cleaned_data
        if data.get("q"):
            contacts = contacts.search(data["q"])
        if data.get("stage"):
            contacts = contacts.in_stage(data["stage"])
        owner = data.get("owner")
        if owner == "none":
            contacts = contacts.filter(owner__isnull=True)
        elif owner:
            contacts = contacts.filter(owner_id=int(owner))
        if data.get("source"):
            contacts = contacts.filter(source=data["source"])
        if data.get("score_min") is not None:
            contacts = contacts.filter(score__gte=data["score_min"])
        if data.get("score_max") is not None:
            contacts = contacts.filter(score__lte=data["score_max"])
        if data.get("fit_grade"):
            contacts = contacts.filter(fit_grade=data["fit_grade"])
        activity = data.get("activity")
        now = timezone.now()
        if activity in {"7", "30", "90"}:
            contacts = contacts.filter(last_activity_at__gte=now - timedelta(days=int(activity)))
        elif activity == "inactive90":
            contacts = contacts.filter(last_activity_at__lt=now - timedelta(days=90))
        elif activity == "never":
            contacts = contacts.filter(last_activity_at__isnull=True)
        contacts = custom_field_forms.filters_apply(contacts, data, self.custom)
        return contacts.order_by(*self.ordering())

    def current_sort(self) -> str:
        return (self.cleaned_data.get("sort") if hasattr(self, "cleaned_data") else "") or (
            self.DEFAULT_SORT
        )

    def ordering(self) -> tuple[Any, ...]:
        sort = self.current_sort()
        if sort.startswith("-"):
            return _descending(SORTS[sort[1:]])
        return SORTS[sort]
