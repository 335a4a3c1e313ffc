import pytest
from django.contrib import admin
from django.urls import reverse

from contacts.models import Contact, StageChange
from tests.factories import ContactFactory, EventFactory, LeadSourceFactory, StageChangeFactory


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_every_model_has_a_working_admin_list_and_form(admin_client):
    contact = ContactFactory()
    EventFactory(contact=contact)
    StageChangeFactory(contact=contact)
    LeadSourceFactory()
    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert admin_client.get(changelist).status_code == 200, changelist
        assert admin_client.get(changelist, {"q": "é"}).status_code == 200, changelist
        obj = model.objects.first()
        if obj is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            assert admin_client.get(change).status_code == 200, change


@pytest.mark.django_db
def test_stage_and_score_cannot_be_edited_in_the_contact_form(admin_client):
    contact = ContactFactory(stage="lead", score=10, email="ana@exemple.fr", first_name="Ana")
    url = reverse("admin:contacts_contact_change", args=[contact.pk])

    response = admin_client.post(url, {
        "email": "ana@exemple.fr", "first_name": "Anaïs", "stage": "client", "score": 999,
        "stage_changes-TOTAL_FORMS": 0, "stage_changes-INITIAL_FORMS": 0,
    })  # fmt: skip

    assert response.status_code == 302
    contact.refresh_from_db()
    assert (contact.first_name, contact.stage, contact.score) == ("Anaïs", "lead", 10)


@pytest.mark.django_db
def test_adding_a_contact_with_an_email_in_admin_makes_a_recorded_lead(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:contacts_contact_add"),
        {"email": " noel@exemple.fr ", "first_name": "Noël", "stage_changes-TOTAL_FORMS": 0,
         "stage_changes-INITIAL_FORMS": 0},
    )  # fmt: skip

    assert response.status_code == 302
    contact = Contact.objects.get()
    assert (contact.email, contact.stage) == ("noel@exemple.fr", "lead")
    assert contact.stage_changes.get().actor == admin_user


@pytest.mark.django_db
def test_a_duplicate_email_in_another_case_is_refused_in_admin(admin_client):
    ContactFactory(email="zoe@exemple.fr")

    response = admin_client.post(
        reverse("admin:contacts_contact_add"),
        {
            "email": "ZOE@Exemple.fr",
            "stage_changes-TOTAL_FORMS": 0,
            "stage_changes-INITIAL_FORMS": 0,
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["email"]
    assert Contact.objects.count() == 1


@pytest.mark.django_db
def test_the_move_action_goes_through_the_stage_service(admin_client, admin_user):
    movable = ContactFactory(stage="sql")
    stuck = ContactFactory(stage="suspect", email=None)

    response = admin_client.post(
        reverse("admin:contacts_contact_changelist"),
        {"action": "move_stage", "_selected_action": [movable.pk, stuck.pk],
         "stage": "client", "reason": "Contrat signé"},
        follow=True,
    )  # fmt: skip

    movable.refresh_from_db()
    stuck.refresh_from_db()
    assert (movable.stage, stuck.stage) == ("client", "suspect")
    change = StageChange.objects.get(contact=movable)
    assert (change.cause, change.actor, change.reason) == ("user", admin_user, "Contrat signé")
    shown = [str(m) for m in response.context["messages"]]
    assert any("1" in m for m in shown)
    assert any(str(stuck) in m for m in shown)  # the refusal names the contact


@pytest.mark.django_db
def test_the_stage_history_is_read_only_in_admin(admin_client):
    change = StageChangeFactory()
    url = reverse("admin:contacts_stagechange_change", args=[change.pk])
    assert admin_client.post(url, {"reason": "rewritten"}).status_code == 403
    assert admin_client.get(reverse("admin:contacts_stagechange_add")).status_code == 403
