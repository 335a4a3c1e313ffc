"""Timestamps read back from PostgreSQL are the instants that were stored, in UTC, whichever
loader reads them (``leadfunnel.database`` replaces Django's by a faster one on UTC sessions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import DataError, connection

from contacts.models import Contact
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

MOMENTS = [
    datetime(2026, 12, 6, 5, 7, 13, 123456, tzinfo=UTC),
    datetime(2026, 3, 29, 0, 30, tzinfo=UTC),  # the hour Paris skips
    datetime(2026, 10, 25, 1, 30, 0, 100000, tzinfo=UTC),  # the hour Paris repeats
    datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC),
    datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 6, 1, 12, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
]


@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: m.isoformat())
def test_a_last_activity_reads_back_as_the_same_instant_in_utc(moment):
    contact = ContactFactory(last_activity_at=moment)

    read = Contact.objects.values_list("last_activity_at", flat=True).get(pk=contact.pk)

    assert read == moment
    assert read.tzinfo is UTC
    assert read.utcoffset() == timedelta(0)


def test_a_timestamp_python_cannot_hold_is_refused_as_before():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's infinity")
    with pytest.raises(DataError), connection.cursor() as cursor:
        cursor.execute("SELECT 'infinity'::timestamptz")
        cursor.fetchone()
