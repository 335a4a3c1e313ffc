"""Scoring's panel on the marketer dashboard, served from its own URL."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

from contacts.reports.views import chart, period_of, render_panel
from contacts.roles import MARKETING, role_required
from scoring.dashboard import score_distribution


def band_label(row: dict[str, int | None]) -> str:
    if row["low"] is None:
        return _("below 0")
    if row["high"] is None:
        return _("%(low)s and more") % {"low": row["low"]}
    return f"{row['low']}–{row['high']}"


@role_required(MARKETING)
def score_distribution_panel(request: HttpRequest) -> HttpResponse:
    period, notices = period_of(request)
    rows = score_distribution()
    for row in rows:
        row["label"] = band_label(row)
    figure = chart(
        "bar",
        [row["label"] for row in rows],
        {"label": _("Contacts"), "data": [row["count"] for row in rows]},
    )
    return render_panel(
        request,
        "scoring/panels/score_distribution.html",
        period,
        notices,
        {"rows": rows, "total": sum(row["count"] for row in rows), "chart": figure},
    )
