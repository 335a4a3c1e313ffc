"""The dashboard panels contacts serves: each at its own URL, an htmx fragment for the dashboard
and a whole page when opened directly (no JavaScript), with its numbers in a table."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from contacts.reports import dashboard, timing
from contacts.roles import MARKETING, role_required
from contacts.views import partial_or_page

STAGE_COLORS = {
    "suspect": "#98a2b3",
    "lead": "#528bff",
    "mql": "#6172f3",
    "hmql": "#7a5af8",
    "sql": "#ef6820",
    "client": "#12b76a",
    "ambassador": "#f79009",
}


def period_of(request: HttpRequest) -> tuple[dashboard.Period, list[str]]:
    return dashboard.period_from(request.GET, timezone.localdate())


def render_panel(
    request: HttpRequest,
    template: str,
    period: dashboard.Period,
    notices: list[str],
    context: dict[str, Any],
) -> HttpResponse:
    response = render(
        request,
        partial_or_page(request, template, "panel"),
        {"period": period, "notices": notices, **context},
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


def chart(kind: str, labels: list[Any], *datasets: dict[str, Any]) -> dict[str, Any]:
    """What static/js/dashboard.js draws: Chart.js data, plain JSON."""
    return {"type": kind, "labels": [str(label) for label in labels], "datasets": list(datasets)}


@role_required(MARKETING)
def conversion_panel(request: HttpRequest) -> HttpResponse:
    period, notices = period_of(request)
    rows = dashboard.conversion(period)
    figure = chart(
        "bar",
        [f"{row['label']} → {row['next_label']}" for row in rows],
        {"label": _("Moved on (%)"), "data": [float(row["rate"] or 0) for row in rows]},
    )
    return render_panel(
        request,
        "contacts/panels/conversion.html",
        period,
        notices,
        {"rows": rows, "chart": figure},
    )


@role_required(MARKETING)
def velocity_panel(request: HttpRequest) -> HttpResponse:
    period, notices = period_of(request)
    rows = timing.velocity(period)
    shown = [row for row in rows if row["stays"]]
    figure = chart(
        "bar",
        [row["label"] for row in shown],
        {"label": _("Median (days)"), "data": [round(row["median"] / 86400, 2) for row in shown]},
        {
            "label": _("90th percentile (days)"),
            "data": [round(row["p90"] / 86400, 2) for row in shown],
        },
    )
    return render_panel(
        request,
        "contacts/panels/velocity.html",
        period,
        notices,
        {"rows": rows, "chart": figure},
    )


@role_required(MARKETING)
def sources_panel(request: HttpRequest) -> HttpResponse:
    period, notices = period_of(request)
    by = request.GET.get("by", "source")
    by = by if by in dashboard.SOURCE_GROUPINGS else "source"
    figures = dashboard.sources(period, by=by)
    rows = figures["rows"]
    figure = chart(
        "bar",
        [row["name"] for row in rows],
        {"label": _("Leads"), "data": [row["leads"] for row in rows]},
        {"label": _("Clients"), "data": [row["clients"] for row in rows]},
    )
    earning = [row for row in rows if row["revenue"]]
    revenue_chart = chart(
        "bar",
        [row["name"] for row in earning],
        {
            "label": _("Revenue (%(currency)s)") % {"currency": figures["currency"]},
            "data": [float(row["revenue"]) for row in earning],
        },
    )
    return render_panel(
        request,
        "contacts/panels/sources.html",
        period,
        notices,
        {
            "rows": rows,
            "total": figures["total"],
            "chart": figure,
            "revenue_chart": revenue_chart if earning else None,
            "currency": figures["currency"],
            "other_currencies": figures["other_currencies"],
            "by": by,
        },
    )


@role_required(MARKETING)
def sla_panel(request: HttpRequest) -> HttpResponse:
    period, notices = period_of(request)
    figures = timing.sla(period, timezone.now())
    figure = chart(
        "doughnut",
        [_("Claimed within the SLA"), _("Late"), _("Still within the SLA")],
        {
            "label": _("SQLs"),
            "data": [figures["on_time"], figures["late"], figures["waiting"]],
            "backgroundColor": ["#12b76a", "#b42318", "#98a2b3"],
        },
    )
    return render_panel(
        request,
        "contacts/panels/sla.html",
        period,
        notices,
        {"sla": figures, "chart": figure},
    )


@role_required(MARKETING)
def touchpoints_panel(request: HttpRequest) -> HttpResponse:
    period, notices = period_of(request)
    figures = dashboard.touchpoints(period)
    figure = chart(
        "line",
        [date_format(day["day"], "SHORT_DATE_FORMAT") for day in figures["days"]],
        {"label": _("Touchpoints"), "data": [day["count"] for day in figures["days"]]},
    )
    return render_panel(
        request,
        "contacts/panels/touchpoints.html",
        period,
        notices,
        {"touchpoints": figures, "chart": figure},
    )


@role_required(MARKETING)
def funnel_panel(request: HttpRequest) -> HttpResponse:
    """Contacts per stage now (the period does not apply; it is kept for the links)."""
    period, notices = period_of(request)
    rows = dashboard.funnel()
    largest = max(row["count"] for row in rows) or 1
    for row in rows:
        row["width"] = round(100 * row["count"] / largest)
    figure = chart(
        "bar",
        [row["label"] for row in rows],
        {
            "label": _("Contacts"),
            "data": [row["count"] for row in rows],
            "backgroundColor": [STAGE_COLORS[row["stage"]] for row in rows],
        },
    )
    return render_panel(
        request,
        "contacts/panels/funnel.html",
        period,
        notices,
        {"funnel": rows, "funnel_total": sum(row["count"] for row in rows), "chart": figure},
    )
