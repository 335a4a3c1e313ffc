"""Full rescore after a rule change (contacts x events): seconds and peak memory, against a
naive per-contact Python loop timed on a 2,000-contact sample and scaled to the same size."""

from __future__ import annotations

import resource
import time
import tracemalloc

from django.db import connection, transaction

from bench import seed
from bench.common import result
from contacts.models import Contact, Event
from scoring import engine, services
from scoring.models import Rescore, ScoreEntry, ScoreRule

NAME = "rescore"
SAMPLE = 2000


def rescore() -> Rescore:
    run = services.rescore_start(reason="benchmark")
    services.rescore_run(rescore_id=run.pk)
    run.refresh_from_db()
    assert run.status == Rescore.Status.DONE, run.error
    return run


def naive_loop(contact_ids: list[int]) -> float:
    """What a rescore without set-based SQL does: each contact, its events, the engine."""
    rules = services.active_rules()
    tz = services.site_timezone()
    started = time.perf_counter()
    for contact_id in contact_ids:
        with transaction.atomic():
            ScoreEntry.objects.filter(contact_id=contact_id, event__isnull=False).delete()
            facts = [services.event_fact(e) for e in Event.objects.filter(contact_id=contact_id)]
            lines, _ = engine.score_events(rules, facts, engine.Earned(), tz=tz)
            ScoreEntry.objects.bulk_create([
                ScoreEntry(contact_id=contact_id, points=line.points, rule_id=line.rule_id,
                           event_id=line.event_id, reason=line.reason, filtered=line.filtered, at=line.at)
                for line in lines
            ])  # fmt: skip
            Contact.objects.filter(pk=contact_id).update(score=sum(line.points for line in lines))
    return time.perf_counter() - started


def run(scale: float) -> list[dict]:
    contacts = max(2000, int(100_000 * scale))
    events = max(20_000, int(1_000_000 * scale))
    seed.reset()
    seed.contacts(contacts, stage_sql="'lead'")
    seed.events(events)
    first = rescore()  # brings scores and stages in line with the rules, untimed
    print(f"  first rescore: {first.seconds:.1f} s, {first.stage_moves:,} stage moves")

    download = ScoreRule.objects.get(name="Download")
    download.points = 3
    download.save()
    tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    run = rescore()
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM contacts_contact ORDER BY id LIMIT %s", [SAMPLE])
        sample = [row[0] for row in cursor.fetchall()]
    naive = naive_loop(sample) * contacts / len(sample)
    return [
        result(
            name=NAME,
            metric=f"full rescore of {contacts:,} contacts x {events:,} events",
            value=run.seconds, unit="s", baseline=naive,
            target="< 15 s at 100,000 x 1,000,000", passed=run.seconds < 15, scale=scale,
            lines=run.lines, contacts_changed=run.contacts_changed, stage_moves=run.stage_moves,
            naive_loop_note=f"naive loop timed on {len(sample):,} contacts, scaled",
        ),
        result(
            name=NAME, metric="peak memory of the rescoring process (RSS)", value=rss_peak,
            unit="MB", baseline=None, target="< 500 MB", passed=rss_peak < 500, scale=scale,
            rss_before_mb=round(rss_before, 1), python_allocations_peak_mb=round(python_peak / 2**20, 1),
        ),
    ]  # fmt: skip
