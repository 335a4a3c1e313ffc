"""What a notification says (every kind, French and English, params missing or odd), the bell
in the top bar (its count, its polling), the notifications page and the digest setting."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import translation

from contacts.models import Contact, ContactAudit, Notification, SalesRep
from contacts.notification_text import render
from contacts.notifications import notify
from contacts.reasons import coded
from contacts.sales.claims import contact_reassign, contact_release
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

Kind = Notification.Kind


@pytest.fixture
def lead(sales_rep):
    return ContactFactory(
        first_name="Zoé", last_name="Lœwy", stage=Contact.Stage.SQL, owner=sales_rep
    )


def said(notification, reader, language):
    with translation.override(language):
        return render(notification, reader=reader)


def one(user, kind, **fields):
    return notify(user_ids=[user.pk], kind=kind, **fields)[0]


def test_every_kind_reads_in_french_and_in_english(sales_rep, admin_user, lead):
    expired = ContactAudit.objects.create(
        contact=lead, action=ContactAudit.Action.EXPIRED,
        note=coded("claim_expired", owner="Hugo", claimed="2026-12-01T10:00:00+00:00", hours=48),
    )  # fmt: skip
    released = ContactAudit.objects.create(
        contact=lead, action=ContactAudit.Action.RELEASED, actor=admin_user,
        note="Client en vacances jusqu’en janvier",
    )  # fmt: skip
    rule = ContactAudit.objects.create(
        contact=lead, action="assigned", owner=sales_rep, note="Territoire : Bretagne"
    )
    cases = {
        "expired": (
            one(sales_rep, Kind.TAKEN, contact_id=lead.pk, audit=expired),
            "Zoé Lœwy est retourné dans la file\u00a0: aucun résultat dans les 48 heures",
            "Zoé Lœwy went back to the queue: no outcome within 48 hours of the claim.",
        ),
        "released": (
            one(sales_rep, Kind.TAKEN, contact_id=lead.pk, audit=released),
            "Motif\u00a0: Client en vacances jusqu’en janvier",
            "released to the queue by Admin Istrateur. Reason: Client en vacances",
        ),
        "new_sql": (
            one(sales_rep, Kind.NEW_SQL, params={"count": 3}),
            "3 nouveaux SQL sont arrivés dans la file.",
            "3 new SQLs arrived in the queue.",
        ),
        "new_sql_one": (
            one(sales_rep, Kind.NEW_SQL, contact_id=lead.pk),
            "Zoé Lœwy est un nouveau SQL dans la file.",
            "Zoé Lœwy is a new SQL in the queue.",
        ),
        "sla": (
            one(sales_rep, Kind.SLA_WARNING, contact_id=lead.pk, params={"hours_left": 1}),
            "le SLA est dépassé dans moins de 1 heure si personne ne le prend",
            "the SLA is breached in less than 1 hour if nobody claims it.",
        ),
        "assigned": (
            one(
                sales_rep,
                Kind.ASSIGNED,
                contact_id=lead.pk,
                audit=rule,
                params={"rule": "Territoire : Bretagne"},
            ),  # fmt: skip
            "Zoé Lœwy vous a été attribué\u00a0: Territoire : Bretagne.",
            "Zoé Lœwy was assigned to you: Territoire : Bretagne.",
        ),
        "hard_bounce": (
            one(
                sales_rep,
                Kind.HARD_BOUNCE,
                contact_id=lead.pk,
                params={"email": "zoe@exemple.fr", "detail": "5.1.1 User unknown"},
            ),  # fmt: skip
            "revenu en échec\u00a0: zoe@exemple.fr ne reçoit pas de courrier (5.1.1 User unknown)",
            "The email to Zoé Lœwy bounced: zoe@exemple.fr does not receive mail",
        ),
        "follow_up": (
            one(
                sales_rep,
                Kind.FOLLOW_UP_DUE,
                contact_id=lead.pk,
                params={
                    "follow_up": 1,
                    "title": "Rappeler pour le devis",
                    "due_at": "2026-12-07T09:30:00+00:00",
                },
            ),  # fmt: skip
            "Relance prévue le 7 décembre 2026",
            "Rappeler pour le devis (Zoé Lœwy).",
        ),
        "no_next_step": (
            one(sales_rep, Kind.NO_NEXT_STEP, contact_id=lead.pk, params={"hours": 24}),
            "Zoé Lœwy n’a pas de prochaine étape depuis 24 heures.",
            "Zoé Lœwy has had no next step for 24 hours.",
        ),
    }
    admin_user.first_name, admin_user.last_name = "Admin", "Istrateur"
    admin_user.save()
    for name, (note, french, english) in cases.items():
        note = Notification.objects.select_related("audit__actor").get(pk=note.pk)
        assert french in said(note, sales_rep, "fr").text, name
        assert english in said(note, sales_rep, "en").text, name
        assert said(note, sales_rep, "fr").url in ("", reverse("queue"), f"/queue/leads/{lead.pk}/")


def test_missing_or_odd_params_still_make_a_sentence(sales_rep, lead):
    odd = [
        one(sales_rep, Kind.SLA_WARNING, contact_id=lead.pk, params={"hours_left": "soon"}),
        one(sales_rep, Kind.HARD_BOUNCE, contact_id=lead.pk),
        one(sales_rep, Kind.FOLLOW_UP_DUE, params={"due_at": "not a date"}),
        one(sales_rep, Kind.NO_NEXT_STEP, contact_id=lead.pk, params=["not", "a", "dict"]),
        one(sales_rep, Kind.TAKEN, contact_id=lead.pk),
        one(sales_rep, Kind.NEW_SQL, params={"count": None}),
        one(sales_rep, "someday_new", contact_id=lead.pk),
    ]
    with translation.override("en"):
        texts = [render(note, reader=sales_rep).text for note in odd]
    assert texts[0].startswith("Zoé Lœwy is waiting in the queue")
    assert texts[1] == "The email to Zoé Lœwy bounced: the address does not receive mail."
    assert texts[2] == "Follow-up due: a follow-up."
    assert texts[3] == "Zoé Lœwy has no next step."
    assert texts[4] == "Zoé Lœwy was taken from you."
    assert texts[5] == "1 new SQL arrived in the queue."
    assert "Zoé Lœwy" in texts[6]


def test_a_reassigned_lead_tells_the_old_owner_why_and_the_new_one_who_gave_it(
    sales_rep, other_rep, admin_user
):
    lead = ContactFactory(first_name="Anaïs", last_name="Roux", stage="sql", owner=sales_rep)
    contact_reassign(contact=lead, to=other_rep, actor=admin_user)

    given = Notification.objects.get(user=other_rep)
    assert given.kind == Kind.ASSIGNED
    with translation.override("fr"):
        text = render(given, reader=other_rep).text
    assert (
        text
        == f"{admin_user.get_full_name()} vous a confié Anaïs Roux (Auparavant à Hugo Bernard)."
    )
    taken = Notification.objects.get(user=sales_rep)
    assert render(taken, reader=sales_rep).url == ""  # no longer Hugo's to open


def test_a_release_with_an_admins_reason_says_the_reason(sales_rep, admin_user):
    lead = ContactFactory(first_name="Loïc", last_name="Brunet", stage="sql", owner=sales_rep)
    contact_release(contact=lead, actor=admin_user, note="Doublon d’un compte existant")
    note = Notification.objects.get(user=sales_rep)
    with translation.override("fr"):
        rendered = render(note, reader=sales_rep)
    assert "Loïc Brunet" in rendered.text and "Doublon d’un compte existant" in rendered.text
    assert rendered.url == reverse("queue-lead", args=[lead.pk])  # back in the queue: open


def bell(response) -> str:
    body = response.content.decode()
    return body.split('<a id="bell"')[1].split("</a>")[0]


def test_the_bell_shows_the_unread_count_and_polls_for_it(sales_client, sales_rep, settings):
    settings.NOTIFICATION_BELL_SECONDS = 30
    notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL, params={"count": 2})
    notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL, params={"count": 1})

    page = bell(sales_client.get(reverse("queue")))
    assert 'data-testid="bell-count">2<' in page
    assert 'hx-trigger="every 30s"' in page and f'hx-get="{reverse("notifications-bell")}"' in page
    assert f'href="{reverse("notifications")}"' in page  # works without JavaScript

    Notification.objects.filter(user=sales_rep).update(read_at="2026-12-06T10:00:00Z")
    partial = sales_client.get(reverse("notifications-bell"), HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and "bell-count" not in partial.content.decode()
    assert 'hx-trigger="every 30s"' in partial.content.decode()  # keeps polling
    assert not partial.cookies  # no session, CSRF or messages cookie from a poll
    assert "no-cache" in partial["Cache-Control"]


def test_the_bells_poll_reads_one_count(sales_client, sales_rep, django_assert_max_num_queries):
    notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL)
    with django_assert_max_num_queries(3):  # session, user, the COUNT
        response = sales_client.get(reverse("notifications-bell"))
    assert 'data-testid="bell-count">1<' in response.content.decode()


def test_a_signed_out_poll_changes_nothing():
    response = Client().get(reverse("notifications-bell"))
    assert response.status_code == 204


def test_the_notifications_page_lists_newest_first_and_opening_one_marks_it_read(
    sales_client, sales_rep, other_rep
):
    lead = ContactFactory(first_name="Élodie", last_name="Faure", stage="sql", owner=sales_rep)
    old = one(sales_rep, Kind.HARD_BOUNCE, contact_id=lead.pk, params={"email": "e@x.fr"})
    new = one(sales_rep, Kind.NEW_SQL, params={"count": 5})
    one(other_rep, Kind.NEW_SQL, params={"count": 9})  # not Hugo's

    body = sales_client.get(reverse("notifications")).content.decode()
    assert body.index("5 nouveaux SQL") < body.index("Élodie Faure")
    assert "9 nouveaux" not in body

    response = sales_client.post(reverse("notification-open", args=[old.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("queue-lead", args=[lead.pk])
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.read_at is not None and new.read_at is None
    assert 'data-testid="bell-count">1<' in bell(sales_client.get(reverse("notifications")))

    other = Notification.objects.get(user=other_rep)
    assert sales_client.post(reverse("notification-open", args=[other.pk])).status_code == 404
    assert sales_client.get(reverse("notification-open", args=[new.pk])).status_code == 405


def test_mark_all_read_empties_the_bell(sales_client, sales_rep):
    for count in range(3):
        one(sales_rep, Kind.NEW_SQL, params={"count": count + 1})
    response = sales_client.post(reverse("notifications-read-all"), follow=True)
    assert "bell-count" not in bell(response)
    assert "Toutes les notifications sont marquées comme lues." in response.content.decode()
    assert not Notification.objects.filter(user=sales_rep, read_at=None).exists()


def test_the_notifications_page_is_paginated(sales_client, sales_rep):
    notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL)
    for _ in range(35):
        notify(user_ids=[sales_rep.pk], kind=Kind.NEW_SQL, params={"count": 7})
    first = sales_client.get(reverse("notifications")).content.decode()
    assert first.count('data-testid="notification"') == 30
    second = sales_client.get(reverse("notifications") + "?page=2").content.decode()
    assert second.count('data-testid="notification"') == 6


def test_the_digest_setting_is_saved_per_user(sales_client, sales_rep):
    page = sales_client.get(reverse("notification-settings"))
    assert "Récapitulatif quotidien" in page.content.decode() or page.status_code == 200
    response = sales_client.post(
        reverse("notification-settings"), {"email_digest": "hourly"}, follow=True
    )
    assert "Vos réglages de notifications sont enregistrés." in response.content.decode()
    assert SalesRep.objects.get(pk=sales_rep.pk).email_digest == SalesRep.Digest.HOURLY
    bad = sales_client.post(reverse("notification-settings"), {"email_digest": "weekly"})
    assert bad.status_code == 400


def test_a_marketer_is_sent_to_the_contact_page(marketer_client, marketer):
    Group.objects.get_or_create(name="marketing")
    lead = ContactFactory(stage="sql")
    note = one(marketer, Kind.HARD_BOUNCE, contact_id=lead.pk)
    response = marketer_client.post(reverse("notification-open", args=[note.pk]))
    assert response["Location"] == reverse("contact-detail", args=[lead.pk])


def test_erasing_a_person_removes_what_notifications_said_about_them(sales_rep, admin_user):
    from contacts.privacy import contact_erase

    lead = ContactFactory(first_name="Zoé", email="zoe@exemple.fr", stage="sql", owner=sales_rep)
    one(sales_rep, Kind.HARD_BOUNCE, contact_id=lead.pk, params={"email": "zoe@exemple.fr"})
    kept = one(sales_rep, Kind.NEW_SQL, params={"count": 2})
    contact_erase(contact=lead, actor=admin_user)
    assert list(Notification.objects.all()) == [kept]
