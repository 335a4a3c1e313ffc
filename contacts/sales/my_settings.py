"""A sales user's own settings (/me/settings/): their time zone (due times and "today") and how
they hear of things by email (the digest, which the notifications' sender reads)."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from contacts.models import SalesRep
from contacts.roles import SALES, role_required


@cache
def _zone_choices() -> list[tuple[str, str]]:
    names = sorted(
        name for name in zoneinfo.available_timezones() if "/" in name and "Etc" not in name
    )
    return [(name, name.replace("_", " ")) for name in names]


class MySettingsForm(forms.Form):
    time_zone = forms.ChoiceField(
        label=gettext_lazy("Time zone"),
        help_text=gettext_lazy("Due times you type and the times you read are in this zone."),
    )
    email_digest = forms.ChoiceField(
        label=gettext_lazy("Email"), choices=SalesRep.Digest.choices, widget=forms.RadioSelect
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = _zone_choices()


@transaction.atomic
def sales_rep_settings_save(*, user: Any, time_zone: str, email_digest: str) -> SalesRep:
    """The user's seat with this zone and digest choice (made if they had none). A new pace or
    zone forgets the digest's due time: the next sweep schedules it anew (``contacts.digest``)."""
    rep, created = SalesRep.objects.select_for_update().get_or_create(
        user=user, defaults={"time_zone": time_zone, "email_digest": email_digest}
    )
    if not created and (rep.time_zone, rep.email_digest) != (time_zone, email_digest):
        rep.time_zone, rep.email_digest, rep.digest_due_at = time_zone, email_digest, None
        rep.save(update_fields=["time_zone", "email_digest", "digest_due_at"])
    return rep


@role_required(SALES)
def my_settings(request: HttpRequest) -> HttpResponse:
    try:
        rep = request.user.sales_rep
        initial = {"time_zone": rep.time_zone or settings.TIME_ZONE,
                   "email_digest": rep.email_digest}  # fmt: skip
    except ObjectDoesNotExist:
        initial = {"time_zone": settings.TIME_ZONE, "email_digest": SalesRep.Digest.DAILY}
    form = MySettingsForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST":
        if form.is_valid():
            sales_rep_settings_save(user=request.user, **form.cleaned_data)
            messages.success(request, _("Your settings are saved."))
            return redirect("my-settings")
        return render(request, "contacts/my_settings.html", {"form": form}, status=400)
    return render(request, "contacts/my_settings.html", {"form": form})
