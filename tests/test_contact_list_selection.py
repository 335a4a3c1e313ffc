"""The contact list's selection: a reversed score range is swapped with a notice (as the
dashboard's dates are), and nothing offers to export or enrol an empty list."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored():
    return {score: ContactFactory(score=score, last_name=f"Score{score}") for score in (10, 30, 50)}


def get(client, url, **params):
    return client.get(url, params, HTTP_ACCEPT_LANGUAGE="en")


def test_a_reversed_score_range_is_swapped_with_a_notice(marketer_client, scored):
    response = get(marketer_client, reverse("contact-list"), score_min=40, score_max=20)

    assert [c.pk for c in response.context["page"]] == [scored[30].pk]
    body = response.content.decode()
    assert "swapped" in body
    assert 'name="score_min" id="id_score_min" value="20"' in body
    assert 'name="score_max" id="id_score_max" value="40"' in body


def test_the_swap_also_holds_for_the_htmx_results(marketer_client, scored):
    response = marketer_client.get(
        reverse("contact-list"),
        {"score_min": 40, "score_max": 20},
        HTTP_HX_REQUEST="true",
        HTTP_ACCEPT_LANGUAGE="en",
    )
    body = response.content.decode()
    assert "Score30" in body and "Score10" not in body and "Score50" not in body
    assert "swapped" in body


def test_an_export_with_a_reversed_range_exports_the_same_contacts(marketer_client, scored):
    response = get(marketer_client, reverse("contact-export"), score_min=40, score_max=20)
    rows = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    assert len(rows) == 2 and "Score30" in rows[1]


def test_a_score_of_zero_stays_in_the_box(marketer_client, scored):
    body = get(marketer_client, reverse("contact-list"), score_min=0).content.decode()
    assert 'name="score_min" id="id_score_min" value="0"' in body


def test_an_empty_list_offers_neither_export_nor_enrolment(marketer_client, scored):
    empty = get(marketer_client, reverse("contact-list"), stage="ambassador").content.decode()
    full = get(marketer_client, reverse("contact-list")).content.decode()

    assert 'id="export-link"' in full and 'id="enroll-link"' in full
    assert 'id="export-link"' not in empty and 'id="enroll-link"' not in empty


def test_exporting_an_empty_selection_is_refused_with_a_message(marketer_client, scored):
    response = get(marketer_client, reverse("contact-export"), stage="ambassador")

    assert response.status_code == 302
    assert response["Location"] == reverse("contact-list") + "?stage=ambassador"
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert said == ["No contact matches these filters: there is nothing to export."]
