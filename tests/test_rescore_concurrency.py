"""A rescore's score update beside live scoring, on PostgreSQL: it waits for a live batch that
holds a contact, then counts that batch's lines (it does not put back the score it read before)."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from contacts.models import Contact
from scoring import rescore
from scoring.models import ScoreEntry

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_score_update_waits_for_a_live_batch_and_counts_its_lines():
    now = timezone.now()
    first, second = Contact.objects.bulk_create(
        Contact(email=f"c{n}@exemple.fr", stage="client", score=99) for n in range(2)
    )
    for contact in (first, second):
        ScoreEntry.objects.create(contact=contact, points=5, reason="manual", at=now)
    locked, release = threading.Event(), threading.Event()

    def live_batch() -> None:  # as live scoring does: lock, add lines and points, commit
        try:
            with transaction.atomic():
                Contact.objects.select_for_update(no_key=True).filter(pk=second.pk).get()
                locked.set()
                release.wait(5)
                ScoreEntry.objects.create(contact=second, points=7, reason="live", at=now)
                Contact.objects.filter(pk=second.pk).update(score=F("score") + 7)
        finally:
            connection.close()

    thread = threading.Thread(target=live_batch)
    thread.start()
    assert locked.wait(5)
    threading.Timer(0.5, release.set).start()  # commits while the rescore waits for the row
    started = time.monotonic()

    changed = rescore.update_scores()

    thread.join(5)
    assert time.monotonic() - started >= 0.4  # it did wait
    assert changed == 2
    assert dict(Contact.objects.values_list("pk", "score")) == {first.pk: 5, second.pk: 12}
