"""Realistic B2B histories with known outcomes, for judging how well a score ranks leads.

Each person has a hidden intent (how close they are to buying) and a hidden fit (whether the
product suits their company). Conversion depends on both, with noise. Behaviour depends on
intent with different strengths: a pricing page visit or a demo request says much, a blog
visit a little, an email open nearly nothing (and a third of opens are machine opens); time on
page grows with intent; a careers page visit is a decoy (job seekers, not buyers); an
unsubscribe counts against. Traffic is seasonal (August quiet, September and January busy),
whatever the intent, and people who mean it are recently active. Deterministic for a seed.

Used by the scoring-quality benchmark (``bench/bench_quality.py``) and the tests of suggested
rules; nothing in the product imports it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# Behaviour: (event type, properties maker, base rate per person, strength of intent on it).
# The rate of a behaviour is base * exp(strength * intent), intent ~ N(0, 1).
BLOG = ["/blog/lead-scoring", "/blog/nurturing", "/blog/crm-migration", "/blog/b2b-funnel"]
BEHAVIOURS: list[tuple[str, str, float, float]] = [
    ("page_view", "blog", 3.0, 0.15),
    ("page_view", "features", 1.2, 0.45),
    ("page_view", "pricing", 0.35, 1.25),
    ("page_view", "docs", 0.5, 0.5),
    ("page_view", "careers", 0.4, -0.1),  # decoy
    ("email_open", "", 2.0, 0.05),
    ("email_click", "", 0.35, 0.7),
    ("download", "", 0.3, 0.6),
    ("newsletter_subscribe", "", 0.15, 0.1),
    ("form_submit", "", 0.12, 0.9),
    ("demo_request", "", 0.015, 1.7),
    ("newsletter_unsubscribe", "", 0.05, -0.9),
]
# Share of a month's traffic (January first): seasonal whatever the intent.
SEASON = [1.3, 1.1, 1.0, 1.0, 1.0, 0.9, 0.7, 0.4, 1.4, 1.2, 1.1, 0.8]
TITLES = [
    ("Head of Marketing", 1.0), ("Marketing Manager", 0.7), ("CEO", 0.6), ("Sales Director", 0.5),
    ("Growth Lead", 0.8), ("Student", -1.2), ("Intern", -0.9), ("Developer", -0.2),
    ("Consultant", 0.0), ("Select", -0.1),
]  # fmt: skip
SIZES = [("1-10", -0.6), ("11-50", 0.2), ("51-200", 0.8), ("201-1000", 0.6), ("1000+", 0.1)]
INDUSTRIES = [("Software", 0.6), ("Retail", 0.1), ("Manufacturing", 0.2), ("Education", -0.5),
              ("Finance", 0.3), ("Health", 0.0)]  # fmt: skip
COUNTRIES = ["FR", "FR", "FR", "BE", "CH", "CA", "DE", "GB", "US"]


@dataclass
class Person:
    key: int
    email: str
    job_title: str
    company_size: str
    industry: str
    country: str
    intent: float  # hidden
    fit: float  # hidden
    converted: bool
    touches: list[Touch] = field(default_factory=list)


@dataclass(frozen=True)
class Touch:
    type: str
    occurred_at: datetime
    properties: dict[str, Any]


def people(
    n: int, *, seed: int, as_of: datetime, events_per_person: float = 10.0, days: int = 180
) -> Iterator[Person]:
    """``n`` people with their histories over the ``days`` before ``as_of``: about
    ``events_per_person`` events each on average, and whether they converted (38 % do, as in
    the public dataset the issue was measured on)."""
    rng = random.Random(seed)
    scale = events_per_person / _mean_events()
    for key in range(n):
        intent = rng.gauss(0, 1)
        title, title_fit = rng.choice(TITLES)
        size, size_fit = rng.choice(SIZES)
        industry, industry_fit = rng.choice(INDUSTRIES)
        fit = (title_fit + size_fit + industry_fit) / 1.5 + rng.gauss(0, 0.3)
        odds = 1.7 * intent + 0.7 * fit - 0.9 + rng.gauss(0, 0.6)
        person = Person(
            key=key,
            email=f"person{key}@quality.example",
            job_title=title,
            company_size=size,
            industry=industry,
            country=rng.choice(COUNTRIES),
            intent=intent,
            fit=fit,
            converted=rng.random() < 1 / (1 + math.exp(-odds)),
        )
        # People who mean it were active lately; the others any time in the period.
        recent_days = days / (1 + math.exp(1.2 * intent))
        for kind, page, rate, strength in BEHAVIOURS:
            for _ in range(_poisson(rng, scale * rate * math.exp(strength * intent))):
                ago = min(days - 1, rng.expovariate(1 / max(recent_days, 3)))
                at = _seasonal(rng, as_of - timedelta(days=ago), as_of, days)
                person.touches.append(Touch(kind, at, _properties(rng, kind, page, intent)))
        person.touches.sort(key=lambda touch: touch.occurred_at)
        yield person


def _properties(rng: random.Random, kind: str, page: str, intent: float) -> dict[str, Any]:
    if kind == "page_view":
        url = rng.choice(BLOG) if page == "blog" else f"/{page}"
        seconds = round(rng.lognormvariate(3.4 + 0.45 * intent, 0.8))
        properties: dict[str, Any] = {"url": url, "seconds": seconds}
        if page == "pricing":
            properties["content_tag"] = "pricing"
        return properties
    if kind == "email_open":
        return {"user_agent": "Mozilla/5.0", "machine": rng.random() < 0.33}
    if kind == "email_click":
        return {"url": "/features", "seconds_after_send": rng.randint(60, 86_400)}
    if kind == "download":
        return {"file": rng.choice(["guide.pdf", "checklist.pdf", "case-study.pdf"])}
    if kind == "form_submit":
        return {"form": rng.choice(["contact", "webinar"])}
    return {}


def _seasonal(rng: random.Random, at: datetime, as_of: datetime, days: int) -> datetime:
    """Move a moment to a busier month now and then, so traffic follows the seasons."""
    if rng.random() < SEASON[at.month - 1] / max(SEASON):
        return at
    return as_of - timedelta(days=rng.uniform(0, days - 1), seconds=rng.randint(0, 86_399))


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: the means here are small (a few events).
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _mean_events() -> float:
    """Events per person at scale 1 (E[exp(s·z)] = exp(s²/2) for z ~ N(0, 1))."""
    return sum(rate * math.exp(strength**2 / 2) for _, _, rate, strength in BEHAVIOURS)
