"""Scoring quality: how well scores rank leads that converted, on realistic B2B histories with
known outcomes (``bench/quality_data.py``: conversion depends on hidden intent and fit, with
noise, behaviours of different strength, numeric signals, decoys, seasons).

Reports the area under the ROC curve (0.5 = chance, 1 = perfect), on the same held-out 30 %
of the contacts, of (a) the shipped default rules, as a full rescore scores them in the
product; (b) the rules suggested from the other 70 %'s outcomes (``scoring.suggest``); (c) a
plain logistic regression on the same features, the ceiling. And the time and peak memory of
suggesting, from the database, in a process of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from django.db import connection
from django.utils import timezone

from bench import seed
from bench.common import result
from bench.quality_data import people

NAME = "quality"
ROOT = Path(__file__).resolve().parent.parent
CHILD = r"""
import json, resource, sys, time
import django
django.setup()
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from scoring.suggest import Known, features, outcome_events, suggest

outcomes = {int(pk): Known(won) for pk, won in json.load(open(sys.argv[1])).items()}
started = time.perf_counter()
events, won = outcome_events(outcomes)
found = features(events)
suggested = suggest(found, won)
seconds = time.perf_counter() - started
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
test = suggested.held_out
train = np.setdiff1d(np.arange(len(won)), test)
ceiling = LogisticRegression(C=1.0, max_iter=3000).fit(found.matrix[train], won[train])
print(json.dumps({
    "seconds": seconds, "peak_mb": peak_mb, "features": len(found.conditions),
    "rules": len(suggested.rules), "auc_suggested": suggested.auc_suggested,
    "auc_model": suggested.auc_model,
    "auc_ceiling": roc_auc_score(won[test], ceiling.decision_function(found.matrix[test])),
    "held_out_ids": events.contact_ids[test].tolist(),
    "examples": [[s.points, s.condition.describe()] for s in suggested.rules[:8]],
}))
"""


def run(scale: float) -> list[dict]:
    n = max(2000, int(100_000 * scale))
    as_of = timezone.now()
    seed.reset()
    seed.contacts(n, stage_sql="'lead'")
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(id) FROM contacts_contact")
        first = cursor.fetchone()[0]
    started = time.perf_counter()
    outcomes = _seed_histories(n, first, as_of)
    print(f"  seeded {n:,} contacts and their events in {time.perf_counter() - started:.0f} s")

    child = _suggest_in_own_process(outcomes)
    held_out = child["held_out_ids"]
    defaults = _default_rules_auc(outcomes, held_out)
    print(f"  suggested {child['rules']} rules from {child['features']} candidate conditions")
    for points, condition in child["examples"]:
        print(f"    {points:+d} {condition}")
    ceiling = child["auc_ceiling"]
    events_total = _events_count()
    shape = f"{n:,} contacts x {events_total:,} events, {sum(outcomes.values()):,} won"
    return [
        result(
            name=NAME,
            metric="AUC of the suggested rules on held-out contacts (ceiling: logistic "
            "regression on the same features)",
            value=child["auc_suggested"],
            unit="AUC",
            baseline=ceiling,
            target=">= 0.97 x the ceiling",
            passed=child["auc_suggested"] >= 0.97 * ceiling,
            scale=scale,
            data=shape,
            unrounded_model_auc=round(child["auc_model"], 4),
        ),
        result(
            name=NAME,
            metric="AUC of the shipped default rules on the same contacts (full rescore)",
            value=defaults,
            unit="AUC",
            baseline=0.5,
            target="clearly above chance (>= 0.6)",
            passed=defaults >= 0.6,
            scale=scale,
            data=shape,
            ceiling_auc=round(ceiling, 4),
        ),
        result(
            name=NAME,
            metric="time to suggest rules from the database (own process)",
            value=child["seconds"],
            unit="s",
            baseline=None,
            target="< 60 s and < 1 GB at 100,000 contacts x 1,000,000 events",
            passed=child["seconds"] < 60 and child["peak_mb"] < 1024,
            scale=scale,
            data=shape,
            peak_rss_mb=round(child["peak_mb"]),
        ),
    ]


def _seed_histories(n: int, first: int, as_of: datetime) -> dict[int, bool]:
    """The generated histories as events (COPY: this is the benchmark's own data), and each
    contact's outcome."""
    outcomes = {}
    received = as_of.astimezone(UTC)
    with connection.cursor() as cursor:
        columns = "contact_id, type, occurred_at, received_at, properties, source"
        with cursor.cursor.copy(f"COPY contacts_event ({columns}) FROM STDIN") as copy:
            for person in people(n, seed=42, as_of=as_of):
                pk = first + person.key
                outcomes[pk] = person.converted
                for touch in person.touches:
                    copy.write_row(
                        (pk, touch.type, touch.occurred_at, received,
                         json.dumps(touch.properties), "quality")
                    )  # fmt: skip
        cursor.execute("ANALYZE contacts_event")
    return outcomes


def _suggest_in_own_process(outcomes: dict[int, bool]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump({str(pk): won for pk, won in outcomes.items()}, file)
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, file.name],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(file.name)
    if done.returncode:
        raise RuntimeError(f"the suggestion failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _default_rules_auc(outcomes: dict[int, bool], held_out: list[int]) -> float:
    """Score everyone with the shipped rules as the product does (a full rescore), then the
    AUC of those scores on the held-out contacts."""
    from sklearn.metrics import roc_auc_score

    from contacts.models import Contact
    from scoring.models import Rescore
    from scoring.rescore import rescore_run

    run = Rescore.objects.create(reason="quality benchmark")
    rescore_run(rescore_id=run.pk, move_stages=False)
    scores = dict(Contact.objects.filter(pk__any=set(held_out)).values_list("pk", "score"))
    won = np.array([outcomes[pk] for pk in held_out])
    return float(roc_auc_score(won, [scores[pk] for pk in held_out]))


def _events_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM contacts_event")
        return cursor.fetchone()[0]
