import pytest
from django.urls import reverse

from contacts.models import Contact, StageChange
from tests.factories import ContactFactory

VALID = {"email": "  Helene.Dupre@Exemple.fr ", "first_name": "Hélène", "last_name": "Dupré",
         "company": "Société Générale d'Études", "phone": "+33 1 23 45 67 89", "job_title": "DAF"}  # fmt: skip


@pytest.mark.django_db
def test_a_marketer_creates_a_lead_with_accents_kept_and_the_move_recorded(
    marketer_client, marketer
):
    response = marketer_client.post(reverse("contact-create"), VALID, follow=True)

    contact = Contact.objects.get()
    assert response.redirect_chain[-1][0] == reverse("contact-detail", args=[contact.pk])
    assert contact.email == "Helene.Dupre@Exemple.fr"  # trimmed, case kept
    assert (contact.first_name, contact.company) == ("Hélène", "Société Générale d'Études")
    assert contact.stage == "lead"
    change = StageChange.objects.get(contact=contact)
    assert (change.from_stage, change.to_stage, change.actor) == ("suspect", "lead", marketer)
    assert "Société Générale d&#x27;Études" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("email", "not-an-email", "invalid"),
        ("email", "HELENE.DUPRE@EXEMPLE.FR", "duplicate"),
        ("first_name", "x" * 101, "max_length"),
        ("company", "y" * 201, "max_length"),
    ],
)
def test_bad_input_on_create_gets_a_clear_message_and_creates_nothing(
    marketer_client, field, value, code
):
    ContactFactory(email="helene.dupre@exemple.fr")

    response = marketer_client.post(reverse("contact-create"), {**VALID, field: value})

    assert response.status_code == 200
    [error] = response.context["form"].errors.as_data()[field]
    assert error.code == code
    assert str(error.message) % (error.params or {}) in response.content.decode().replace(
        "&#x27;", "'"
    )
    assert Contact.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("email", "bad@"), ("email", "Taken@Example.FR"), ("last_name", "z" * 101)],
)
def test_bad_input_on_edit_changes_nothing(marketer_client, field, value):
    ContactFactory(email="taken@example.fr")
    contact = ContactFactory(email="mine@example.fr", first_name="Noël", last_name="Hébert")
    before = Contact.objects.values().get(pk=contact.pk)

    response = marketer_client.post(
        reverse("contact-edit", args=[contact.pk]),
        {"email": "mine@example.fr", "first_name": "Changed", "last_name": "Hébert", field: value},
    )

    assert response.status_code == 200
    assert response.context["form"].errors[field]
    assert Contact.objects.values().get(pk=contact.pk) == before


@pytest.mark.django_db
def test_an_anonymous_visitor_given_an_email_becomes_a_lead(marketer_client):
    visitor = ContactFactory(anonymous=True)

    marketer_client.post(
        reverse("contact-edit", args=[visitor.pk]), {"email": "found@them.fr", "first_name": "Zoé"}
    )

    visitor.refresh_from_db()
    assert (visitor.email, visitor.first_name, visitor.stage) == ("found@them.fr", "Zoé", "lead")
    assert visitor.stage_changes.get().reason


@pytest.mark.django_db
def test_the_database_refuses_an_email_differing_only_in_case_or_spaces():
    from django.db import IntegrityError, transaction

    ContactFactory(email="anne@exemple.fr")
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(email="ANNE@exemple.fr")
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(email=" padded@exemple.fr")
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create(email="")


@pytest.mark.django_db
def test_the_service_refuses_a_duplicate_the_form_did_not_see():
    # Two tabs submitting the same person: the second one reaches the database and is refused.
    from contacts.services import DuplicateContact, contact_create

    contact_create(email="twice@exemple.fr", first_name="Premier")
    with pytest.raises(DuplicateContact):
        contact_create(email=" TWICE@exemple.fr", first_name="Second")

    assert list(Contact.objects.values_list("first_name", flat=True)) == ["Premier"]
    assert StageChange.objects.count() == 1


@pytest.mark.django_db
def test_upsert_finds_the_contact_whatever_the_case_and_fills_the_fields_given():
    from contacts.services import contact_upsert

    first, created = contact_upsert(email="Chloe@Exemple.fr", first_name="Chloé")
    again, created_again = contact_upsert(email=" CHLOE@exemple.fr", company="Boulangerie Ç")

    assert (created, created_again) == (True, False) and again.pk == first.pk
    again.refresh_from_db()
    assert (again.first_name, again.company, again.stage) == ("Chloé", "Boulangerie Ç", "lead")
    with pytest.raises(ValueError):
        contact_upsert(email="   ")
