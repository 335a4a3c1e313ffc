"""The score-vs-outcome page (marketers and admins) and the AUC beside a rule's preview."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from contacts.models import Contact, StageChange
from contacts.outcomes import outcome_record
from scoring.models import ScoreEntry, ScoreRule
from tests.factories import ContactFactory, EventFactory, StageChangeFactory

pytestmark = pytest.mark.django_db

URL = reverse("score-quality")


def outcomes(*, won: list[int], lost: list[int], days_ago: int = 30, sql: bool = False) -> None:
    """Contacts with these scores and a known outcome ``days_ago``; with ``sql``, each reached
    SQL the day before."""
    at = timezone.now() - timedelta(days=days_ago)
    for scores, result in ((won, "won"), (lost, "lost")):
        for score in scores:
            contact = ContactFactory(stage=Contact.Stage.LEAD, score=score)
            if sql:
                StageChangeFactory(
                    contact=contact, from_stage="lead", to_stage="sql", at=at - timedelta(days=1)
                )
            outcome_record(contact=contact, result=result, at=at, source="sales")


def test_a_marketer_sees_how_the_score_ranks_known_outcomes(marketer_client):
    # 20 won scored 10..29 and 20 lost scored 0..19: AUC (400 - 45 - 5) / 400 = 0.875.
    outcomes(won=list(range(10, 30)), lost=list(range(20)), sql=True)

    response = marketer_client.get(URL)

    body = response.content.decode()
    assert response.status_code == 200
    assert response.context["report"].auc == 0.875
    assert '<p class="figure" data-figure="auc">0,88</p>' in body  # French decimals
    assert "20 gagnés, 20 perdus" in body
    assert 'id="too-few"' not in body
    # Every contact reached SQL before its outcome: precision 50 %, recall 100 %.
    assert '<td class="num" data-figure="precision">50,0\xa0%</td>' in body
    assert '<td class="num" data-figure="recall">100,0\xa0%</td>' in body
    # Bands of 5 up to 28 (the 95th percentile): 0–4 holds five lost contacts.
    assert 'data-band="0"' in body and "0–4" in body
    assert 'data-band="25"' in body and "25 et plus" in body


def test_an_english_reader_gets_english_numbers(marketer_client):
    outcomes(won=list(range(10, 30)), lost=list(range(20)))

    marketer_client.post(reverse("language-set"), {"language": "en"})
    body = marketer_client.get(URL).content.decode()

    assert '<p class="figure" data-figure="auc">0.88</p>' in body
    assert "20 won, 20 lost" in body and "Score against outcomes" in body


def test_too_few_outcomes_get_a_message_instead_of_figures(marketer_client):
    outcomes(won=list(range(25)), lost=list(range(19)))

    body = marketer_client.get(URL).content.decode()

    assert 'id="too-few"' in body and "au moins 20 gagnés et 20 perdus" in body
    assert 'data-figure="auc"' not in body and "data-band=" not in body


def test_the_period_is_the_last_twelve_months_unless_chosen(marketer_client):
    outcomes(won=list(range(20)), lost=list(range(20)), days_ago=400)

    default = marketer_client.get(URL)
    start = (timezone.localdate() - timedelta(days=500)).isoformat()
    chosen = marketer_client.get(URL, {"from": start})

    assert default.context["report"].total == 0
    assert 'id="too-few"' in default.content.decode()
    assert chosen.context["report"].total == 40 and chosen.context["report"].enough


def test_a_date_that_is_not_one_is_ignored_with_a_notice(marketer_client):
    response = marketer_client.get(URL, {"from": "2026-13-45"})

    assert response.status_code == 200
    assert "2026-13-45" in response.content.decode()  # the notice names it


def test_a_sales_rep_may_not_open_it(sales_client):
    assert sales_client.get(URL).status_code == 403
    assert URL not in sales_client.get(reverse("queue")).content.decode()


def test_a_visitor_is_sent_to_log_in(client):
    response = client.get(URL)

    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_marketers_find_it_in_the_menu_and_the_score_panel(marketer_client):
    assert f'href="{URL}"' in marketer_client.get(reverse("contact-list")).content.decode()
    panel = marketer_client.get(reverse("score-distribution-panel")).content.decode()
    assert f'href="{URL}"' in panel


def test_an_admin_opens_it(admin_client):
    outcomes(won=list(range(20)), lost=list(range(20)))

    assert admin_client.get(URL).status_code == 200


def test_the_rule_preview_shows_the_auc_the_change_would_give(admin_client):
    # The won contacts downloaded something (not scored yet: every score is 0).
    outcomes(won=[0] * 20, lost=[0] * 20)
    for contact in Contact.objects.filter(outcome__result="won"):
        EventFactory(contact=contact, type="download", properties={})
    download = ScoreRule.objects.get(name="Download")
    data = {"name": "Download", "event_type": "download", "points": "25", "priority": "10",
            "active": "on", "cap_period": "", "_rule_id": download.pk}  # fmt: skip

    response = admin_client.post(reverse("admin:scoring_scorerule_preview"), data)

    ranking = response.context["preview"].ranking
    assert (ranking.current, ranking.new, ranking.won, ranking.lost) == (0.5, 1.0, 20, 20)
    assert "0,50 maintenant, 1,00 avec cette modification" in response.content.decode()


def test_the_rule_preview_says_when_outcomes_are_too_few(admin_client):
    download = ScoreRule.objects.get(name="Download")
    data = {"name": "Download", "event_type": "download", "points": "25", "priority": "10",
            "active": "on", "cap_period": "", "_rule_id": download.pk}  # fmt: skip

    body = admin_client.post(reverse("admin:scoring_scorerule_preview"), data).content.decode()

    assert "Trop peu d’issues connues" in body


def test_stage_changes_after_the_outcome_do_not_count_as_predictions(marketer_client):
    outcomes(won=list(range(10, 30)), lost=list(range(20)))
    late = timezone.now()
    for contact in Contact.objects.all()[:5]:
        StageChange.objects.create(
            contact=contact, from_stage="lead", to_stage="mql", cause="threshold", at=late
        )

    report = marketer_client.get(URL).context["report"]

    assert [call.reached for call in report.stage_calls] == [0, 0]


def test_points_earned_after_the_outcome_are_left_out_of_the_second_auc(marketer_client):
    # Every won contact earned its 10 points after it was won (a client's later activity).
    outcomes(won=[10] * 20, lost=[0] * 20, days_ago=30)
    for contact in Contact.objects.filter(outcome__result="won"):
        ScoreEntry.objects.create(
            contact=contact, points=10, reason="Pricing page", at=timezone.now()
        )
    lost = Contact.objects.filter(outcome__result="lost").first()
    ScoreEntry.objects.create(
        contact=lost, points=5, reason="Pricing page", at=timezone.now() - timedelta(days=60)
    )

    response = marketer_client.get(URL)

    report = response.context["report"]
    assert report.auc == 1.0
    # Before their outcomes the won scored 0 and one lost contact 5: 20 × 19 ties at half,
    # 20 pairs lost: 190 of 400.
    assert report.auc_before_outcome == pytest.approx(190 / 400)
    assert "juste avant son issue (sans les points gagnés ensuite)\xa0: 0,48" in (
        response.content.decode()
    )


def test_conversion_by_fit_grade_shows_which_grades_were_won(marketer_client):
    outcomes(won=list(range(10, 30)), lost=list(range(20)))
    # Fit grades as the fit rules would have left them: the won mostly A, the lost mostly D.
    known = list(Contact.objects.order_by("pk"))
    won, lost = known[:20], known[20:]
    Contact.objects.filter(pk__in=[c.pk for c in won[:15]]).update(fit_grade="A")
    Contact.objects.filter(pk__in=[c.pk for c in won[15:] + lost[:5]]).update(fit_grade="B")
    Contact.objects.filter(pk__in=[c.pk for c in lost[5:]]).update(fit_grade="D")

    body = marketer_client.get(URL).content.decode()

    grades = body.split('id="grades"')[1].split("</section>")[0]
    rows = {grade: grades.split(f'data-grade="{grade}"')[1].split("</tr>")[0] for grade in "ABD"}
    assert 'data-grade="C"' not in grades  # nobody has C
    assert 'data-figure="contacts">15<' in rows["A"] and "100,0\xa0%" in rows["A"]
    assert 'data-figure="contacts">10<' in rows["B"] and "50,0\xa0%" in rows["B"]
    assert 'data-figure="contacts">15<' in rows["D"] and "0,0\xa0%" in rows["D"]
