from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth.models import Group, User
from django.utils import timezone
from factory.django import DjangoModelFactory

from contacts.models import Contact, Event, LeadSource, PendingEvent, StageChange


class UserFactory(DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name", locale="fr_FR")
    last_name = factory.Faker("last_name", locale="fr_FR")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("secret-pass-123")

    @factory.post_generation
    def roles(self, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
        if create and extracted:
            self.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in extracted))


class LeadSourceFactory(DjangoModelFactory[LeadSource]):
    class Meta:
        model = LeadSource
        django_get_or_create = ["slug"]

    name = factory.Sequence(lambda n: f"Source {n}")
    slug = factory.Sequence(lambda n: f"source-{n}")
    channel = LeadSource.Channel.PAID
    utm_source = "google"
    utm_medium = "cpc"


class ContactFactory(DjangoModelFactory[Contact]):
    class Meta:
        model = Contact

    email = factory.Sequence(lambda n: f"contact{n}@example.fr")
    first_name = factory.Faker("first_name", locale="fr_FR")
    last_name = factory.Faker("last_name", locale="fr_FR")
    company = factory.Faker("company", locale="fr_FR")
    stage = Contact.Stage.LEAD

    class Params:
        anonymous = factory.Trait(
            email=None, first_name="", last_name="", company="", stage=Contact.Stage.SUSPECT
        )


class EventFactory(DjangoModelFactory[Event]):
    class Meta:
        model = Event
        skip_postgeneration_save = True

    contact = factory.SubFactory(ContactFactory)
    type = Event.Type.PAGE_VIEW
    occurred_at = factory.LazyFunction(timezone.now)
    properties = factory.LazyAttribute(lambda _: {"url": "https://example.fr/pricing"})

    @factory.post_generation
    def pending(obj, create, extracted, **kwargs):  # noqa: N805
        """``pending=True``: queued for the handlers, as a freshly recorded event is."""
        if create and extracted:
            PendingEvent.objects.create(event=obj, received_at=obj.received_at)


class StageChangeFactory(DjangoModelFactory[StageChange]):
    class Meta:
        model = StageChange

    contact = factory.SubFactory(ContactFactory)
    from_stage = Contact.Stage.SUSPECT
    to_stage = Contact.Stage.LEAD
    cause = StageChange.Cause.SYSTEM
