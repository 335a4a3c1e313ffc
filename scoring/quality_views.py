"""The score-vs-outcome page for marketers and admins (figures in ``scoring/quality.py``)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from contacts.reports.dashboard import Period, period_from, period_presets
from contacts.reports.views import chart
from contacts.roles import MARKETING, role_required
from scoring.quality import MIN_PER_CLASS, Band, default_period, score_quality

PRESETS = (90, 365, 730)


def band_label(band: Band) -> str:
    if band.low is None:
        return _("below 0")
    if band.high is None:
        return _("%(low)s and more") % {"low": band.low}
    if band.low == band.high:
        return str(band.low)
    return f"{band.low}–{band.high}"


def outcome_period(request: HttpRequest) -> tuple[Period, list[str]]:
    """The dashboard's period rules, but the last 12 months when no date is given."""
    today = timezone.localdate()
    if not request.GET.get("from", "").strip() and not request.GET.get("to", "").strip():
        return default_period(today), []
    return period_from(request.GET, today)


@role_required(MARKETING)
def score_quality_page(request: HttpRequest) -> HttpResponse:
    """How well the score ranks the outcomes known in a period."""
    period, notices = outcome_period(request)
    report = score_quality(period)
    # Rows of the conversion tables: a key for the row's data attribute, a label, the counts.
    bands = [
        {
            "key": "below" if band.low is None else band.low,
            "label": band_label(band),
            "counts": band,
        }
        for band in report.bands
    ]
    grades = [{"key": row.grade, "label": row.grade, "counts": row} for row in report.grades]
    figure = chart(
        "bar",
        [row["label"] for row in bands],
        {
            "label": _("Won (%)"),
            "data": [round(row["counts"].rate or 0, 1) for row in bands],
        },
    )
    presets = period_presets(period, timezone.localdate(), PRESETS)
    context = {
        "period": period,
        "notices": notices,
        "presets": presets,
        "report": report,
        "bands": bands,
        "grades": grades,
        "chart": figure,
        "minimum": MIN_PER_CLASS,
    }
    return render(request, "scoring/score_quality.html", context)
