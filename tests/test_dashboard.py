"""The marketer dashboard against a small funnel computed by hand: every panel's figures, as
functions and as the pages show them, the period filter, query counts and who may look."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from conftest import uses_postgres
from contacts.events import event_record
from contacts.models import Contact, Event, LeadSourceCost, StageChange
from contacts.pipeline import events_process
from contacts.reports import dashboard, timing
from contacts.reports.dashboard import Period, period_from
from contacts.reports.timing import percentile_cont
from contacts.stages import stage_move
from scoring.dashboard import score_distribution
from tests.factories import ContactFactory, LeadSourceFactory, UserFactory

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 2, 28, 12, 0, tzinfo=PARIS)
FEBRUARY = Period(date(2026, 2, 1), date(2026, 2, 28))
FEBRUARY_QUERY = "?from=2026-02-01&to=2026-02-28"
HOUR, DAY = 3600, 86400


def paris(month: int, day: int, hour: int = 10, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


def walk(contact: Contact, *steps: tuple[str, datetime]) -> None:
    for stage, at in steps:
        stage_move(contact=contact, to=stage, cause=StageChange.Cause.THRESHOLD, at=at)


@pytest.fixture
def funnel(db, settings):
    """Nine contacts, two paid sources, February 2026 (Paris time). The figures each test
    expects are worked out by hand in its comments."""
    # The stage history below is the whole story: only the rollups read it.
    settings.LEADFUNNEL_EVENT_HANDLERS = ["contacts.reports.rollups.on_event"]
    settings.SLA_HOURS = 4
    rep = UserFactory(username="rep", roles=["sales"])
    salon = LeadSourceFactory(name="Salon", slug="salon")
    google = LeadSourceFactory(name="Google Ads", slug="google")
    LeadSourceCost.objects.create(
        source=salon, starts_on=date(2026, 2, 1), ends_on=date(2026, 2, 28), amount=600
    )
    LeadSourceCost.objects.create(  # January only: nothing in February
        source=google, starts_on=date(2026, 1, 1), ends_on=date(2026, 1, 31), amount=310
    )
    LeadSourceCost.objects.create(  # 28 days, 14 of them in February: 140.00
        source=google, starts_on=date(2026, 2, 15), ends_on=date(2026, 3, 14), amount=280
    )

    def contact(name, source, created, score, **extra):
        return ContactFactory(
            first_name=name, source=source, created_at=created, score=score,
            stage=Contact.Stage.SUSPECT, **extra,
        )  # fmt: skip

    a = contact("A", salon, paris(1, 20), 150, owner=rep, claimed_at=paris(2, 5, 12))
    walk(a, ("lead", paris(1, 20)), ("mql", paris(2, 3)), ("sql", paris(2, 5)),
         ("client", paris(2, 10)))  # fmt: skip
    b = contact("B", salon, paris(2, 2, 9), 75, owner=rep, claimed_at=paris(2, 7, 19))
    walk(b, ("lead", paris(2, 2, 9)), ("mql", paris(2, 4, 9)), ("hmql", paris(2, 6, 9)),
         ("sql", paris(2, 7, 9)))  # fmt: skip
    c = contact("C", google, paris(2, 10, 8), 30)
    walk(c, ("lead", paris(2, 10, 8)), ("mql", paris(2, 20, 8)))
    d = contact("D", None, paris(2, 12, 8), 5)
    walk(d, ("lead", paris(2, 12, 14)))
    contact("E", None, paris(2, 25), 0, email=None, last_name="")
    f = contact("F", google, paris(1, 5), 210, owner=rep, claimed_at=paris(1, 15, 13))
    walk(f, ("lead", paris(1, 5)), ("mql", paris(1, 10)), ("sql", paris(1, 15)),
         ("client", paris(2, 14)))  # fmt: skip
    g = contact("G", salon, paris(2, 20), 65)
    walk(g, ("lead", paris(2, 20)), ("sql", paris(2, 26)))
    h = contact("H", google, paris(2, 27, 9), 64)
    walk(h, ("lead", paris(2, 27, 9)), ("sql", paris(2, 28, 10)))
    i = contact("I", google, paris(1, 25), -5)
    walk(i, ("lead", paris(1, 25)), ("mql", paris(2, 8)), ("lead", paris(2, 9)))

    # Touchpoints, through the real pipeline (recorded, then processed into the rollup).
    for who, kind, at, source in [
        (a, "page_view", paris(2, 3, 11), "beacon"),
        (a, "email_open", paris(2, 4, 0, 30), "email"),  # 23:30 UTC on the 3rd: the 4th in Paris
        (b, "form_submit", paris(2, 2, 9), "form"),
        (b, "page_view", paris(2, 10, 15), "beacon"),
        (c, "download", paris(2, 20, 8), "api"),
        (c, "page_view", paris(1, 31, 23, 30), "beacon"),  # January in Paris
        (c, "page_view", paris(3, 1, 0, 10), "beacon"),  # March in Paris
    ]:
        event_record(contact=who, type=kind, occurred_at=at, source=source)
    events_process(event_ids=list(Event.objects.values_list("pk", flat=True)))
    return {"a": a, "b": b, "c": c, "d": d, "f": f, "g": g, "h": h, "i": i}


def figure(html: str, row: str, name: str) -> str:
    """The text of the cell ``data-figure=name`` in the row marked ``row`` (e.g. data-stage="mql")."""
    match = re.search(rf'<tr {row}>.*?data-figure="{name}"[^>]*>(.*?)</td>', html, re.S)
    assert match, f"no {name} in row {row}"
    return match.group(1).strip()


def panel(client, name: str, query: str = FEBRUARY_QUERY) -> str:
    response = client.get(reverse(name) + query, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


# --- Figures ----------------------------------------------------------------------------------


def test_the_funnel_counts_contacts_per_stage_now(funnel, marketer_client):
    assert {row["stage"]: row["count"] for row in dashboard.funnel()} == {
        "suspect": 1, "lead": 2, "mql": 1, "hmql": 0, "sql": 3, "client": 2, "ambassador": 0,
    }  # fmt: skip
    html = panel(marketer_client, "funnel-panel")
    assert re.search(r'data-stage="sql">3<', html) and re.search(r'data-stage="total">9<', html)


def test_conversion_follows_contacts_that_entered_each_stage_in_the_period(funnel):
    # suspect: created in February B C D E G H, all but E moved on (5/6).
    # lead: B C D G H, and I back from MQL; B C G H moved on (4/6).
    # mql: A B C I; A and B moved on, I fell back to lead (2/4). hmql: B went on (1/1).
    # sql: A B G H; only A became a client (1/4). client: A and F, no ambassador (0/2).
    rows = {row["stage"]: (row["entered"], row["moved_on"], row["rate"])
            for row in dashboard.conversion(FEBRUARY)}  # fmt: skip
    assert rows == {
        "suspect": (6, 5, Decimal("83.3")),
        "lead": (6, 4, Decimal("66.7")),
        "mql": (4, 2, Decimal("50.0")),
        "hmql": (1, 1, Decimal("100.0")),
        "sql": (4, 1, Decimal("25.0")),
        "client": (2, 0, Decimal("0.0")),
    }


def test_conversion_panel_shows_the_figures_in_the_users_language(funnel, marketer_client):
    html = panel(marketer_client, "dashboard-conversion")
    assert figure(html, 'data-stage="lead"', "entered") == "6"
    assert figure(html, 'data-stage="lead"', "moved_on") == "4"
    assert figure(html, 'data-stage="lead"', "rate") == "66,7\xa0%"
    marketer_client.post(reverse("language-set"), {"language": "en"})
    html = panel(marketer_client, "dashboard-conversion")
    assert figure(html, 'data-stage="lead"', "rate") == "66.7%"
    assert "1 févr. 2026" not in html and "Feb. 1, 2026" in html


def test_velocity_gives_median_and_90th_percentile_of_stays_that_ended_in_the_period(funnel):
    # suspect: B C G H left at once, D after 6 h: [0, 0, 0, 0, 6 h] -> median 0, p90 0.6 × 6 h.
    # lead: H 25 h, B 2 d, G 6 d, C 10 d, A 14 d, I 14 d -> median (6 d + 10 d) / 2 = 8 d.
    # mql: I 1 d, A 2 d, B 2 d. hmql: B 1 d. sql: A 5 d, F 30 d -> median 17.5 d, p90 5 + 0.9 × 25 d.
    def seconds(value):  # interpolation may leave a float's last bit either way
        return None if value is None else round(value, 6)

    rows = {row["stage"]: (row["stays"], seconds(row["median"]), seconds(row["p90"]))
            for row in timing.velocity(FEBRUARY)}  # fmt: skip
    assert rows == {
        "suspect": (5, 0, 3.6 * HOUR),
        "lead": (6, 8 * DAY, 14 * DAY),
        "mql": (3, 2 * DAY, 2 * DAY),
        "hmql": (1, 1 * DAY, 1 * DAY),
        "sql": (2, 17.5 * DAY, 27.5 * DAY),
        "client": (0, None, None),
        "ambassador": (0, None, None),
    }


def test_velocity_panel_shows_durations(funnel, marketer_client):
    html = panel(marketer_client, "dashboard-velocity")
    assert figure(html, 'data-stage="lead"', "median") == "8,0\xa0j"
    assert figure(html, 'data-stage="suspect"', "p90") == "3,6\xa0h"
    assert figure(html, 'data-stage="client"', "median") == "—"


def test_sources_count_arrivals_per_source_with_cost_per_lead_and_per_client(funnel):
    # Salon: leads B G, MQLs A B, SQLs A B G, client A; 600.00 in February.
    # Google Ads: leads C H (I fell back from MQL to lead: a lead since January, not a new
    # one), MQLs C I, SQL H, client F; 140.00 (half of a 280.00 cost).
    # No source: D became a lead. E (anonymous) never moved.
    figures = dashboard.sources(FEBRUARY)
    rows = {
        row["name"]: (row["leads"], row["mqls"], row["sqls"], row["clients"], row["cost"],
                      row["cost_per_lead"], row["cost_per_client"])
        for row in [*figures["rows"], figures["total"]]
    }  # fmt: skip
    assert rows == {
        "Google Ads": (2, 2, 1, 1, Decimal("140.00"), Decimal("70.00"), Decimal("140.00")),
        "Salon": (2, 2, 3, 1, Decimal("600.00"), Decimal("300.00"), Decimal("600.00")),
        "Aucune source": (1, 0, 0, 0, None, None, None),
        "Total": (5, 4, 4, 2, Decimal("740.00"), Decimal("148.00"), Decimal("370.00")),
    }
    assert [row["name"] for row in figures["rows"]] == ["Google Ads", "Salon", "Aucune source"]


def test_sources_panel_shows_costs_in_the_users_language(funnel, marketer_client):
    html = panel(marketer_client, "dashboard-sources")
    assert figure(html, 'data-source="Google Ads"', "cost_per_lead") == "70,00"
    assert figure(html, 'data-source="Total"', "cost") == "740,00"
    assert figure(html, 'data-source="Aucune source"', "cost") == "—"


def test_sla_times_claims_from_entering_sql(funnel):
    # A claimed 2 h after becoming SQL (on time), B after 10 h (late), G unclaimed for two days
    # (late), H became SQL two hours ago (still within the 4 h). F became SQL in January.
    assert timing.sla(FEBRUARY, NOW) == {
        "entered": 4,
        "claimed": 2,
        "on_time": 1,
        "late": 2,
        "waiting": 1,
        "median": 6 * HOUR,
        "share_on_time": Decimal("33.3"),
        "sla_hours": 4,
    }


def test_sla_panel(funnel, marketer_client):
    with time_machine.travel(NOW, tick=False):
        html = panel(marketer_client, "dashboard-sla")
    assert 'data-figure="median" data-seconds="21600.0">6,0\xa0h<' in html
    assert 'data-figure="share_on_time">33,3\xa0%<' in html
    assert "Pris en charge en moins de 4\xa0heures" in html or "moins de 4 heures" in html


def test_touchpoints_come_from_the_daily_rollup_in_local_days(funnel, marketer_client):
    figures = dashboard.touchpoints(FEBRUARY)
    assert figures["total"] == 5
    assert {row["type"]: row["count"] for row in figures["types"]} == {
        "page_view": 2, "email_open": 1, "form_submit": 1, "download": 1,
    }  # fmt: skip
    assert {row["source"]: row["count"] for row in figures["sources"]} == {
        "beacon": 2, "email": 1, "form": 1, "api": 1,
    }  # fmt: skip
    per_day = {row["day"]: row["count"] for row in figures["days"] if row["count"]}
    assert per_day == {
        date(2026, 2, 2): 1, date(2026, 2, 3): 1, date(2026, 2, 4): 1, date(2026, 2, 10): 1,
        date(2026, 2, 20): 1,
    }  # fmt: skip
    assert len(figures["days"]) == 28
    html = panel(marketer_client, "dashboard-touchpoints")
    assert 'data-figure="total">5<' in html
    assert '<tr data-day="2026-02-04"><th scope="row">4 février 2026</th><td class="num">1<' in html


def test_score_distribution_counts_contacts_per_band(funnel, marketer_client):
    counts = {row["band"]: row["count"] for row in score_distribution() if row["count"]}
    # I −5; D 5, E 0; C 30; G 65, H 64, B 75; A 150; F 210.
    assert counts == {-1: 1, 0: 2, 1: 1, 3: 3, 7: 1, 10: 1}
    html = panel(marketer_client, "score-distribution-panel", "")
    assert re.search(r'<tr data-band="3"><th scope="row">60–79</th><td class="num">3<', html)
    assert 'data-figure="total">9<' in html


# --- Pages ------------------------------------------------------------------------------------

PANELS = [
    "funnel-panel", "dashboard-conversion", "dashboard-velocity", "dashboard-sources",
    "dashboard-sla", "dashboard-touchpoints", "score-distribution-panel",
]  # fmt: skip


def test_the_dashboard_loads_each_panel_on_its_own_with_a_plain_link(funnel, marketer_client):
    html = marketer_client.get(reverse("home") + FEBRUARY_QUERY).content.decode()
    for name in PANELS:
        url = reverse(name) + "?from=2026-02-01&amp;to=2026-02-28"
        assert f'hx-get="{url}" hx-trigger="load"' in html
        assert f'<a href="{url}">' in html
    assert 'value="2026-02-01"' in html and 'value="2026-02-28"' in html
    assert "vendor/chartjs/chart.umd.min.js" in html


@pytest.mark.parametrize("name", PANELS)
def test_a_panel_is_a_fragment_for_htmx_and_a_page_on_its_own(funnel, marketer_client, name):
    fragment = panel(marketer_client, name)
    page = marketer_client.get(reverse(name) + FEBRUARY_QUERY)
    assert "<html" not in fragment and "<table" in fragment and "<canvas" in fragment
    body = page.content.decode()
    assert "<html" in body and "<table" in body and "chart.umd.min.js" in body
    assert page["Vary"] and "HX-Request" in page["Vary"]


# Session, user, roles, then the panel's own queries.
PANEL_QUERIES = {
    "funnel-panel": 1,
    "dashboard-conversion": 1,
    # PostgreSQL: SET LOCAL work_mem for the percentiles, in a savepoint within the test's
    # transaction (savepoint, set, select, release).
    "dashboard-velocity": 4 if uses_postgres() else 1,
    "dashboard-sources": 4,  # arrivals, won deals, costs, source names
    "dashboard-sla": 1,
    "dashboard-touchpoints": 1,
    "score-distribution-panel": 1,
}


@pytest.mark.parametrize("name", PANELS)
def test_each_panel_runs_a_fixed_number_of_queries(
    funnel, marketer_client, django_assert_num_queries, name
):
    with django_assert_num_queries(3 + PANEL_QUERIES[name]):
        panel(marketer_client, name)


@pytest.mark.parametrize("name", PANELS + ["home"])
def test_only_marketers_open_the_dashboard(db, client, sales_rep, marketer, name):
    client.force_login(sales_rep)
    expected = 302 if name == "home" else 403  # a rep's home is the queue
    assert client.get(reverse(name)).status_code == expected
    client.logout()
    assert client.get(reverse(name)).status_code == 302
    client.force_login(marketer)
    assert client.get(reverse(name)).status_code == 200


# --- The period -------------------------------------------------------------------------------

TODAY = date(2026, 2, 28)


def test_no_dates_means_the_last_30_days():
    assert period_from({}, TODAY) == (Period(date(2026, 1, 30), TODAY), [])


def test_reversed_dates_are_swapped_with_a_notice():
    period, notices = period_from({"from": "2026-02-28", "to": "2026-02-01"}, TODAY)
    assert period == FEBRUARY
    assert notices == ["La date de fin précédait la date de début\xa0: les deux ont été inversées."]


@pytest.mark.parametrize("value", ["2026-02-30", "hier", "2026-2-1", "0001-01-01", "9999-12-31"])
def test_a_malformed_date_is_ignored_with_a_notice(value):
    period, notices = period_from({"from": value, "to": "2026-02-28"}, TODAY)
    assert period == Period(date(2026, 1, 30), TODAY)
    assert len(notices) == 1 and value in notices[0]


def test_one_date_is_enough():
    assert period_from({"from": "2026-02-01"}, TODAY)[0] == FEBRUARY
    assert period_from({"to": "2026-02-28"}, TODAY)[0] == Period(date(2026, 1, 30), TODAY)


def test_the_dashboard_tells_what_it_corrected_and_passes_the_corrected_period_on(
    db, marketer_client
):
    response = marketer_client.get(reverse("home") + "?from=2026-02-28&to=2026-02-01")
    html = response.content.decode()
    assert response.status_code == 200
    assert "les deux ont été inversées" in html
    assert reverse("dashboard-sources") + "?from=2026-02-01&amp;to=2026-02-28" in html

    html = marketer_client.get(reverse("home") + "?from=nonsense").content.decode()
    assert "nonsense" in html and "a été ignorée" in html


@time_machine.travel(NOW, tick=False)
def test_presets_cover_the_last_30_90_and_365_days(db, marketer_client):
    html = marketer_client.get(reverse("home")).content.decode()
    assert '<a href="?from=2026-01-30&amp;to=2026-02-28" aria-current="true">' in html
    assert '<a href="?from=2025-12-01&amp;to=2026-02-28">' in html
    assert '<a href="?from=2025-03-01&amp;to=2026-02-28">' in html


# --- The PostgreSQL fallback ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, None),
        ([7.0], 0.9, 7.0),
        ([1.0, 2.0], 0.5, 1.5),
        ([0.0, 0.0, 0.0, 0.0, 10.0], 0.9, 6.0),
        ([1.0, 2.0, 3.0, 4.0], 0.9, 3.7),
    ],
)
def test_percentile_cont_interpolates_like_postgresql(values, fraction, expected):
    result = percentile_cont(values, fraction)
    assert result == pytest.approx(expected) if expected is not None else result is None


def test_rebuilt_summaries_give_the_same_figures(funnel):
    from contacts.reports.rollups import rollups_rebuild

    before = [dashboard.conversion(FEBRUARY), timing.velocity(FEBRUARY),
              dashboard.sources(FEBRUARY), dashboard.touchpoints(FEBRUARY)]  # fmt: skip
    rollups_rebuild()
    after = [dashboard.conversion(FEBRUARY), timing.velocity(FEBRUARY),
             dashboard.sources(FEBRUARY), dashboard.touchpoints(FEBRUARY)]  # fmt: skip
    assert after == before
