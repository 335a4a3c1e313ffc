"""Full rescore after a rule change (contacts x events): seconds and peak memory, against a
naive per-contact Python loop timed on a 2,000-contact sample and scaled to the same size.

Seeding a million events takes minutes on a small machine: BENCH_REUSE=1 keeps data of the same
size from an earlier run (stages are put back to lead and the untimed first rescore brings the
ledger back in line). Each phase of the timed rescore is printed with its time.

BENCH_RESCORE_CONDITIONS=1 adds a numeric rule (page views of at least 120 seconds, on a
"seconds" property given to every page view, one in seven as a string) and a count rule (the
pricing page twice in 30 days, once), and prints the time each of them takes to rebuild.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from django.db import connection, transaction

from bench import seed
from bench.common import result
from contacts.models import Contact, Event
from scoring import engine, live
from scoring import rescore as rescoring
from scoring.models import Rescore, ScoreEntry, ScoreRule

NAME = "rescore"
SAMPLE = 2000
DOWNLOAD_POINTS = 1  # the default rule's points (data migration), changed to 3 for the timed run
CONDITIONS = os.environ.get("BENCH_RESCORE_CONDITIONS") == "1"
CONDITION_RULES = {
    "Long page view (bench)": {"event_type": "page_view", "points": 2, "property_name": "seconds",
                               "property_operator": "gte", "property_number": 120},
    "Pricing twice in 30 days (bench)": {"event_type": "page_view", "points": 10,
                                         "url_contains": "/pricing", "count_at_least": 2,
                                         "count_within_days": 30, "max_times": 1},
}  # fmt: skip


def conditions_use() -> None:
    """The numeric and count rules, and the property the numeric one reads (once per data)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE contacts_event SET properties = properties || jsonb_build_object('seconds', "
            "CASE WHEN id % 7 = 0 THEN to_jsonb((id % 300)::text) ELSE to_jsonb(id % 300) END) "
            "WHERE type = 'page_view' AND NOT properties ? 'seconds'"
        )
        cursor.execute("VACUUM ANALYZE contacts_event")
    for name, fields in CONDITION_RULES.items():
        ScoreRule.objects.update_or_create(name=name, defaults=fields)


def rescore() -> Rescore:
    run = rescoring.rescore_start(reason="benchmark")
    rescoring.rescore_run(rescore_id=run.pk)
    run.refresh_from_db()
    assert run.status == Rescore.Status.DONE, run.error
    return run


@contextlib.contextmanager
def phases_timed() -> Iterator[dict[str, float]]:
    """Seconds spent in each phase of the rescore, by wrapping the functions it calls."""
    spent: dict[str, float] = defaultdict(float)
    wrapped = [
        (rescoring, "rebuild_rule_lines", "rule lines"),
        (rescoring, "update_scores", "scores"),
        (rescoring, "stages_apply", "stages"),
    ]
    originals = [
        (module, attribute, getattr(module, attribute)) for module, attribute, _ in wrapped
    ]

    def timed(function: Callable, label: str) -> Callable:
        def call(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - started
                rule = args[0] if args else None
                if isinstance(rule, engine.Rule) and rule.name in CONDITION_RULES:
                    spent[f"  of which {rule.name}"] += time.perf_counter() - started

        return call

    for (module, attribute, label), (_, _, function) in zip(wrapped, originals, strict=True):
        setattr(module, attribute, timed(function, label))
    try:
        yield spent
    finally:
        for module, attribute, function in originals:
            setattr(module, attribute, function)


def sizes() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM contacts_contact")
        (contacts,) = cursor.fetchone()
        # Stage moves add stage_changed events: the seeded ones are the rest.
        cursor.execute("SELECT count(*) FROM contacts_event WHERE type <> 'stage_changed'")
        (events,) = cursor.fetchone()
    return contacts, events


def naive_loop(contact_ids: list[int]) -> float:
    """What a rescore without set-based SQL does: each contact, its events, the engine."""
    rules = live.active_rules()
    tz = live.site_timezone()
    started = time.perf_counter()
    for contact_id in contact_ids:
        with transaction.atomic():
            ScoreEntry.objects.filter(contact_id=contact_id, event__isnull=False).delete()
            facts = [live.event_fact(e) for e in Event.objects.filter(contact_id=contact_id)]
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
    # The download rule, whatever the shipped set names it ("Download" in scoring 0002,
    # "Content download" since 0014).
    download = ScoreRule.objects.filter(event_type="download").order_by("pk").first()
    reuse = os.environ.get("BENCH_REUSE") == "1" and sizes() == (contacts, events)
    if reuse:
        print("  reusing the seeded contacts and events", flush=True)
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE scoring_rescore, contacts_stagestay, contacts_stagechange, "
                "contacts_pendingevent, contacts_eventdailycount, contacts_contactoutcome"
            )
            cursor.execute("DELETE FROM contacts_event WHERE type = 'stage_changed'")
            cursor.execute("UPDATE contacts_contact SET stage = 'lead' WHERE stage <> 'lead'")
    else:
        seed.reset()
        seed.contacts(contacts, stage_sql="'lead'")
        seed.events(events)
    if CONDITIONS:
        conditions_use()
    else:
        ScoreRule.objects.filter(name__in=CONDITION_RULES).delete()
    download.points = DOWNLOAD_POINTS  # an earlier run on this database left it at 3
    download.save()
    first = rescore()  # brings scores and stages in line with the rules, untimed
    print(f"  first rescore: {first.seconds:.1f} s, {first.stage_moves:,} stage moves")
    # A rule is changed on tables that (auto)vacuum has long since cleaned, not right after a
    # rescore that left a dead version of every contact and ledger line behind.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE contacts_contact, scoring_scoreentry, contacts_event")

    download.points = 3
    download.save()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with phases_timed() as phases:
        run = rescore()
    for label, seconds in phases.items():
        print(f"  {label}: {seconds:.2f} s", flush=True)
    print(f"  other (setup, deleting lines of removed rules, progress): "
          f"{run.seconds - sum(v for k, v in phases.items() if 'of which' not in k):.2f} s",
          flush=True)  # fmt: skip
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM contacts_contact ORDER BY id LIMIT %s", [SAMPLE])
        sample = [row[0] for row in cursor.fetchall()]
    naive = naive_loop(sample) * contacts / len(sample)
    return [
        result(
            name=NAME,
            metric=f"full rescore of {contacts:,} contacts x {events:,} events"
            + (" (with a numeric and a count rule)" if CONDITIONS else ""),
            value=run.seconds, unit="s", baseline=naive,
            target="< 15 s at 100,000 x 1,000,000", passed=run.seconds < 15, scale=scale,
            lines=run.lines, contacts_changed=run.contacts_changed, stage_moves=run.stage_moves,
            phases_s={label: round(seconds, 2) for label, seconds in phases.items()},
            naive_loop_note=f"naive loop timed on {len(sample):,} contacts, scaled",
        ),
        result(
            name=NAME, metric="peak memory of the rescoring process (RSS)", value=rss_peak,
            unit="MB", baseline=None, target="< 500 MB", passed=rss_peak < 500, scale=scale,
            rss_before_mb=round(rss_before, 1),
        ),
    ]  # fmt: skip
