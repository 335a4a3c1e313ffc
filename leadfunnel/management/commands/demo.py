"""Load a demo team and a realistic six-month funnel: sources, contacts, stage history, events.

Deterministic for a given ``--seed`` (dates are relative to now). Loads once: a second run only
refreshes the demo logins.
"""

from __future__ import annotations

import random
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from contacts.models import (
    Contact,
    ContactOutcome,
    DealEstimate,
    Event,
    LeadSource,
    SalesRep,
    StageChange,
    Team,
)
from contacts.outcomes import outcomes_follow_sources, outcomes_from_stage_changes
from contacts.reports.rollups import rollups_rebuild
from leadfunnel.demo_data import (
    ACTIVITY_TYPES,
    ACTIVITY_WEIGHTS,
    ADD_ONS,
    CAMPAIGNS,
    COMPANIES,
    COMPANY_SIZES,
    CONSENT_METHODS,
    COUNTRIES,
    DEMO_TEAM,
    DEMO_TEAM_MEMBERS,
    DEMO_USERS,
    DOWNLOADS,
    FIRST_NAMES,
    FIT_RULES,
    HIGH_INTENT,
    INDUSTRIES,
    JOB_TITLES,
    LAST_NAMES,
    LEAD_FORMS,
    LOST_REASONS,
    LOW_INTENT_PAGES,
    MOVES,
    PAGES,
    PHONE_PREFIXES,
    PLANS,
    SALES_REPS,
    SALON_DAYS,
    SALON_STARTED,
    SOURCE_SLUGS,
    SOURCES,
    STAGE_ACTIVITY,
    STAGE_SHARES,
    TYPICAL_DAYS,
    Channel,
)
from nurturing.demo import campaigns_install
from scoring.fit import fit_recompute
from scoring.models import FitRule, Rescore
from scoring.rescore import rescore_run

Stage = Contact.Stage
Cause = StageChange.Cause
Outcome = StageChange.Outcome
EventType = Event.Type

PASSWORD = "leadfunnel"  # noqa: S105 (public on purpose: printed with the logins)
BATCH_SIZE = 1000
MIN_CONTACTS = 50
FUNNEL = list(Stage)
# An hour short of 180 days, so "within the last 180 days" still holds a while after loading.
OLDEST = timedelta(days=180) - timedelta(hours=1)
# Moves and events stay this far from now and from each other, so their order is unambiguous.
GAP = timedelta(minutes=2)
LATEST = timedelta(minutes=30)


# --- Planning: everything is decided in memory, then written in bulk ------------------------


@dataclass
class Timeline:
    """One demo contact, unsaved, with its stage changes and the moments that matter."""

    contact: Contact
    changes: list[StageChange]
    activity_weight: float
    lead_at: datetime | None = None
    high_intent_at: datetime | None = None
    client_at: datetime | None = None
    ambassador_at: datetime | None = None
    emails_until: datetime | None = None  # None: no consent to email

    def reached(self, stage: str) -> datetime | None:
        return next((c.at for c in self.changes if c.to_stage == stage), None)


def stage_counts(total: int) -> dict[str, int]:
    """Contacts per final stage following STAGE_SHARES; suspects absorb the rounding."""
    counts = {stage: max(1, round(total * share)) for stage, share in STAGE_SHARES.items()}
    counts[Stage.SUSPECT] += total - sum(counts.values())
    return counts


def stage_path(rng: random.Random, final: str) -> list[str]:
    """The stages a contact went through. Some leads once were MQLs or SQLs and fell back."""
    forward = FUNNEL[: FUNNEL.index(Stage(final)) + 1]
    if final == Stage.LEAD:
        roll = rng.random()
        if roll < 0.12:
            return [Stage.SUSPECT, Stage.LEAD, Stage.MQL, Stage.LEAD]
        if roll < 0.27:
            return [*FUNNEL[: FUNNEL.index(Stage.SQL) + 1], Stage.LEAD]
    if final == Stage.MQL and rng.random() < 0.1:
        return [Stage.SUSPECT, Stage.LEAD, Stage.MQL, Stage.HMQL, Stage.MQL]
    return forward


def pick_source(rng: random.Random, sources: list[LeadSource], stage: str) -> LeadSource:
    # Nobody stays anonymous after a trade show: badges carry an email.
    weights = [
        0 if stage == Stage.SUSPECT and demo.channel == Channel.EVENT else demo.weight
        for demo in SOURCES
    ]
    return rng.choices(sources, weights=weights)[0]


def creation_time(
    rng: random.Random, now: datetime, source: LeadSource, path: list[str]
) -> datetime:
    if source.channel == Channel.EVENT:
        return now - SALON_STARTED + timedelta(days=SALON_DAYS) * rng.random()
    # A longer history needs an older contact; more contacts arrive recently (growing traffic).
    youngest = timedelta(hours=2) + timedelta(days=typical_days(path) / 2)
    return now - youngest - (OLDEST - youngest) * rng.random() ** 1.3


def typical_days(path: list[str]) -> float:
    return sum(TYPICAL_DAYS[move] for move in pairwise(path[1:]))


def move_times(
    rng: random.Random,
    created: datetime,
    path: list[str],
    now: datetime,
    *,
    first_visit: bool,
    last_at: datetime | None = None,
) -> list[datetime]:
    """When each move along ``path`` happened: the first on a form, the rest at a B2B pace."""
    end = last_at or now - LATEST
    if first_visit:
        first = created + GAP + timedelta(minutes=20) * rng.random()
    else:
        first = created + GAP + min((end - created) * 0.4, timedelta(days=21)) * rng.random()
    durations = [TYPICAL_DAYS[move] * rng.uniform(0.3, 1.7) for move in pairwise(path[1:])]
    available = (end - first) / timedelta(days=1)
    total = sum(durations) or 1.0
    # A young contact went faster than usual; an unclaimed SQL arrived exactly at ``last_at``.
    if last_at is None:
        scale = min(1.0, available * rng.uniform(0.6, 1.0) / total)
    else:
        scale = available / total
    times = [first]
    for days in durations:
        times.append(times[-1] + max(timedelta(days=days * scale), GAP))
    return times


def stage_change(
    rng: random.Random,
    contact: Contact,
    from_stage: str,
    to_stage: str,
    at: datetime,
    rep: AbstractUser,
) -> StageChange:
    change = StageChange(contact=contact, from_stage=from_stage, to_stage=to_stage, at=at)
    if (from_stage, to_stage) == (Stage.SQL, Stage.LEAD):
        change.outcome = rng.choices(list(LOST_REASONS), weights=[6, 3, 1])[0]
        change.cause, change.reason = Cause.USER, rng.choice(LOST_REASONS[change.outcome])
    else:
        change.cause, change.actor_name, reasons = MOVES[(from_stage, to_stage)]
        change.reason = rng.choice(reasons)
    if change.cause == Cause.USER:
        change.actor = rep
    if to_stage == Stage.CLIENT:
        change.outcome = Outcome.WON
    return change


def ascii_slug(text: str) -> str:
    text = text.translate(str.maketrans({"ı": "i", "ø": "o", "Ø": "O", "ł": "l", "œ": "oe"}))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(char for char in text.replace(" ", "-") if char.isalnum() or char == "-")


def identify(rng: random.Random, contact: Contact, number: int) -> None:
    """Give a known contact a name, a company and a unique email."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    company, domain = rng.choice(COMPANIES)
    contact.first_name, contact.last_name, contact.company = first, last, company
    contact.email = f"{ascii_slug(first)}.{ascii_slug(last)}{number}@{domain}"
    contact.job_title = rng.choice(JOB_TITLES)
    # A stream of its own: the firmographics leave the rest of the demo as it was.
    firm = random.Random(number)  # noqa: S311
    contact.industry, contact.country = firm.choice(INDUSTRIES), firm.choice(COUNTRIES)
    contact.company_size = firm.choice(COMPANY_SIZES)
    digits = " ".join(f"{rng.randrange(100):02d}" for _ in range(4))
    contact.phone = f"{rng.choice(PHONE_PREFIXES)} {digits}"


def plan_contact(
    rng: random.Random,
    *,
    final: str,
    number: int,
    sources: list[LeadSource],
    reps: list[AbstractUser],
    now: datetime,
) -> Timeline:
    path = stage_path(rng, final)
    source = pick_source(rng, sources, final)
    created = creation_time(rng, now, source, path)
    contact = Contact(
        stage=final,
        source=source,
        utm_source=source.utm_source,
        utm_medium=source.utm_medium,
        utm_campaign=source.utm_campaign,
        created_at=created,
        stage_entered_at=created,
    )
    weight = STAGE_ACTIVITY[final] * rng.lognormvariate(0, 0.7)
    timeline = Timeline(contact=contact, changes=[], activity_weight=weight)
    if final == Stage.SUSPECT:
        return timeline

    identify(rng, contact, number)
    rep = rng.choice(reps)
    claimed = final == Stage.SQL and rng.random() < 0.45
    # Unclaimed SQLs arrived recently: the queue shows some within the SLA and some overdue.
    # Claimed ones too, and were claimed soon after: a claim older than CLAIM_RELEASE_HOURS
    # would go back to the queue at beat's first sweep, fifteen minutes after `make run`.
    waiting_since = None
    if final == Stage.SQL and not claimed:
        waiting_since = now - timedelta(hours=rng.uniform(0.5, 120))
    elif final == Stage.SQL:
        waiting_since = now - timedelta(hours=rng.uniform(0.5, fresh_claim_hours()))
    times = move_times(
        rng,
        created,
        path,
        now,
        first_visit=source.channel == Channel.EVENT or rng.random() < 0.4,
        last_at=waiting_since,
    )
    timeline.changes = [
        stage_change(rng, contact, from_stage, to_stage, at, rep)
        for (from_stage, to_stage), at in zip(pairwise(path), times, strict=True)
    ]
    contact.stage_entered_at = times[-1]
    timeline.lead_at = times[0]
    timeline.high_intent_at = timeline.reached(Stage.HMQL)
    timeline.client_at = timeline.reached(Stage.CLIENT)
    timeline.ambassador_at = timeline.reached(Stage.AMBASSADOR)
    assign_owner(rng, timeline, rep, claimed=claimed, now=now)
    return timeline


def fresh_claim_hours() -> float:
    """How long ago a demo SQL still claimed reached SQL: well inside CLAIM_RELEASE_HOURS."""
    return max(1.0, settings.CLAIM_RELEASE_HOURS / 2)


def assign_owner(
    rng: random.Random, timeline: Timeline, rep: AbstractUser, *, claimed: bool, now: datetime
) -> None:
    contact, sql_at = timeline.contact, timeline.reached(Stage.SQL)
    if sql_at is None or contact.stage == Stage.LEAD:
        return
    if timeline.client_at is not None:
        contact.owner = rep
        contact.claimed_at = sql_at + (timeline.client_at - sql_at) * rng.uniform(0.01, 0.2)
    elif claimed:
        contact.owner = rep
        contact.claimed_at = sql_at + min(
            timedelta(hours=rng.uniform(0.1, 6)), (now - sql_at) * 0.8
        )


# --- Events ---------------------------------------------------------------------------------


def event(contact: Contact, kind: str, at: datetime, source: str, **properties: Any) -> Event:
    # Demo events arrive already handled (not queued), so six months of history are not replayed.
    return Event(
        contact=contact,
        type=kind,
        occurred_at=at,
        received_at=at,
        properties=properties,
        source=source,
    )


def page_view(rng: random.Random, contact: Contact, at: datetime, *, high_intent: bool) -> Event:
    url, title, tag = rng.choice(PAGES if high_intent else LOW_INTENT_PAGES)
    return event(contact, EventType.PAGE_VIEW, at, "beacon", url=url, title=title, content_tag=tag)


def milestone_events(rng: random.Random, timeline: Timeline, now: datetime) -> list[Event]:
    """The events that explain the contact's record: first visit, the form, the demo request…"""
    contact = timeline.contact
    events = [page_view(rng, contact, contact.created_at, high_intent=False)]
    for change in timeline.changes:
        events += move_events(rng, timeline, change)
    if timeline.lead_at is not None:
        events += consent_events(rng, timeline, timeline.lead_at, now)
    sql_at = timeline.reached(Stage.SQL)
    if sql_at is not None and rng.random() < 0.4:
        # Some try the product while sales talks to them: before they sign or are lost.
        left_sql = (c.at for c in timeline.changes if c.from_stage == Stage.SQL)
        at = sql_at + (next(left_sql, now - LATEST) - sql_at) * rng.random()
        events.append(event(contact, EventType.TRIAL_STARTED, at, "app", plan="pro"))
    return events


def move_events(rng: random.Random, timeline: Timeline, change: StageChange) -> list[Event]:
    contact, move = timeline.contact, (change.from_stage, change.to_stage)
    just_before = change.at - timedelta(seconds=rng.randint(5, 60))
    if move == (Stage.SUSPECT, Stage.LEAD):
        return lead_form_events(rng, timeline, just_before)
    if move == (Stage.MQL, Stage.HMQL):
        return [
            event(
                contact,
                EventType.PAGE_VIEW,
                just_before,
                "beacon",
                url="/pricing",
                title="Tarifs",
                content_tag=HIGH_INTENT,
            ),
        ]
    if move == (Stage.HMQL, Stage.SQL):
        return [
            event(contact, EventType.DEMO_REQUEST, just_before, "form", form="demo", url="/demo")
        ]
    if move == (Stage.SQL, Stage.CLIENT):
        product, amount = rng.choice(PLANS)
        return [
            event(
                contact,
                EventType.PURCHASE,
                just_before,
                "billing",
                amount=amount,
                currency="EUR",
                product=product,
            ),
        ]
    if move == (Stage.CLIENT, Stage.AMBASSADOR):
        if change.reason.startswith("Referred"):
            return [referral(rng, contact, just_before)]
        return [review(rng, contact, just_before)]
    return []


def lead_form_events(rng: random.Random, timeline: Timeline, at: datetime) -> list[Event]:
    contact = timeline.contact
    if contact.source and contact.source.channel == Channel.EVENT:
        form = "badge-scan"
        events = [event(contact, EventType.FORM_SUBMIT, at, "form", form=form, event="Vivatech")]
    else:
        form = rng.choices(list(LEAD_FORMS), weights=list(LEAD_FORMS.values()))[0]
        events = [event(contact, EventType.FORM_SUBMIT, at, "form", form=form, url=f"/{form}")]
    if form == "ebook":
        events.append(download(rng, contact, at + timedelta(seconds=3)))
    if form == "newsletter":
        events.append(event(contact, EventType.NEWSLETTER_SUBSCRIBE, at, "form", list="newsletter"))
    contact.consent_method = CONSENT_METHODS[form]
    return events


def consent_events(
    rng: random.Random, timeline: Timeline, lead_at: datetime, now: datetime
) -> list[Event]:
    """Most known contacts agreed to be emailed when they left their email; a few withdrew."""
    contact = timeline.contact
    if rng.random() >= 0.85:
        contact.consent_method = ""
        return []
    contact.consent, contact.consent_at = Contact.Consent.GRANTED, lead_at
    timeline.emails_until = now
    if rng.random() >= 0.05:
        return []
    withdrawn_at = lead_at + (now - LATEST - lead_at) * rng.random()
    contact.consent, contact.consent_at = Contact.Consent.WITHDRAWN, withdrawn_at
    contact.do_not_email = True
    timeline.emails_until = withdrawn_at
    campaign, _subject = rng.choice(CAMPAIGNS)
    return [
        event(
            contact,
            EventType.NEWSLETTER_UNSUBSCRIBE,
            withdrawn_at,
            "email",
            campaign=campaign,
            list="newsletter",
        ),
    ]


def download(rng: random.Random, contact: Contact, at: datetime) -> Event:
    file, title = rng.choice(DOWNLOADS)
    return event(
        contact,
        EventType.DOWNLOAD,
        at,
        "beacon",
        file=file,
        title=title,
        url=f"/ressources/{file}",
        content_tag="ebook",
    )


def referral(rng: random.Random, contact: Contact, at: datetime) -> Event:
    company, _domain = rng.choice(COMPANIES)
    return event(contact, EventType.REFERRAL, at, "form", referred_company=company)


def review(rng: random.Random, contact: Contact, at: datetime) -> Event:
    platform = rng.choice(("G2", "Capterra", "Trustpilot"))
    return event(
        contact, EventType.REVIEW, at, "form", platform=platform, rating=rng.choice((4, 5, 5, 5))
    )


def activity_event(rng: random.Random, timeline: Timeline, now: datetime) -> Event:
    """One more thing the contact did, at a time the rest of its record allows."""
    contact = timeline.contact
    at = contact.created_at + (now - contact.created_at) * rng.random()
    if timeline.lead_at is None or at < timeline.lead_at:
        return page_view(rng, contact, at, high_intent=True)
    kind = rng.choices(ACTIVITY_TYPES, weights=ACTIVITY_WEIGHTS[contact.stage])[0]
    high_intent = timeline.high_intent_at is not None and at >= timeline.high_intent_at
    if kind in (EventType.EMAIL_OPEN, EventType.EMAIL_CLICK):
        if timeline.emails_until is None or at > timeline.emails_until:
            return page_view(rng, contact, at, high_intent=high_intent)
        campaign, subject = rng.choice(CAMPAIGNS)
        if kind == EventType.EMAIL_OPEN:
            return event(contact, kind, at, "email", campaign=campaign, subject=subject)
        url = rng.choice(PAGES if high_intent else LOW_INTENT_PAGES)[0]
        return event(contact, kind, at, "email", campaign=campaign, subject=subject, url=url)
    if kind == EventType.DOWNLOAD:
        return download(rng, contact, at)
    if kind == EventType.FORM_SUBMIT:
        form = rng.choice(("webinar", "ebook", "contact"))
        return event(contact, kind, at, "form", form=form, url=f"/{form}")
    if kind == EventType.PURCHASE and timeline.client_at is not None:
        product, amount = rng.choice(ADD_ONS)
        at = after(rng, timeline.client_at, now)
        return event(contact, kind, at, "billing", amount=amount, currency="EUR", product=product)
    if kind in (EventType.REFERRAL, EventType.REVIEW) and timeline.ambassador_at is not None:
        at = after(rng, timeline.ambassador_at, now)
        return (referral if kind == EventType.REFERRAL else review)(rng, contact, at)
    return page_view(rng, contact, at, high_intent=high_intent)


def after(rng: random.Random, start: datetime, now: datetime) -> datetime:
    return start + GAP + max(now - LATEST - start, timedelta(0)) * rng.random()


def plan_events(
    rng: random.Random, timelines: list[Timeline], total: int, now: datetime
) -> list[Event]:
    """Milestones first, then ``total`` minus those spread by activity weight; oldest first."""
    events = [e for timeline in timelines for e in milestone_events(rng, timeline, now)]
    extra = max(0, total - len(events))
    weights = [timeline.activity_weight for timeline in timelines]
    for timeline in rng.choices(timelines, weights=weights, k=extra):
        events.append(activity_event(rng, timeline, now))
    events.sort(key=lambda e: e.occurred_at)
    for number, planned in enumerate(events, start=1):
        planned.idempotency_key = f"demo:{number}"
        contact = planned.contact
        if contact.last_activity_at is None or planned.occurred_at > contact.last_activity_at:
            contact.last_activity_at = planned.occurred_at
    return events


def stage_change_event(change: StageChange) -> Event:
    return Event(
        contact=change.contact,
        received_at=change.at,
        **change.event_fields(),
    )


# --- Writing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSummary:
    stages: dict[str, int]
    events: int
    stage_changes: int


def demo_users() -> dict[str, AbstractUser]:
    """Create or refresh the demo team: same names, groups and password on every run."""
    user_model = get_user_model()
    users: dict[str, AbstractUser] = {}
    for demo in DEMO_USERS:
        user, _created = user_model.objects.get_or_create(username=demo.username)
        user.first_name, user.last_name = demo.first_name, demo.last_name
        user.email = f"{demo.username}@leadfunnel.example"
        user.is_active = True
        user.is_staff = user.is_superuser = demo.admin
        user.set_password(PASSWORD)
        user.save()
        user.groups.set([Group.objects.get_or_create(name=demo.group)[0]] if demo.group else [])
        users[demo.username] = user
    team, _created = Team.objects.get_or_create(name=DEMO_TEAM)
    for username in DEMO_TEAM_MEMBERS:
        SalesRep.objects.update_or_create(user=users[username], defaults={"team": team})
    return users


def score_history() -> None:
    """Score six months of history with the active rules. Stages stay as the history has
    them: a rescore that moved them all today would rewrite that history."""
    run = Rescore.objects.create(reason="Demo data")
    rescore_run(rescore_id=run.pk, move_stages=False)


def fit_install() -> None:
    """The demo's fit rules (unless some exist), then everyone's fit. No threshold asks for a
    grade: stages stay as the history has them."""
    if not FitRule.objects.exists():
        for name, field, operator, value, bounds, points in FIT_RULES:
            low, high = bounds or (None, None)
            FitRule.objects.create(
                name=name, field=field, operator=operator, points=points,
                value="" if operator == "in" else value,
                values=value if operator == "in" else "", number_min=low, number_max=high,
            )  # fmt: skip
    fit_recompute()


def deals_priced(outcomes: list[ContactOutcome], events: list[Event]) -> list[ContactOutcome]:
    """Won deals carry what their purchase event says (plan, amount, currency): the
    dashboard's revenue per source."""
    plans = {name for name, _price in PLANS}
    bought: dict[int, Event] = {}
    for purchase in sorted(events, key=lambda e: e.occurred_at):
        if purchase.type == EventType.PURCHASE and purchase.properties.get("product") in plans:
            bought.setdefault(purchase.contact.pk, purchase)
    for outcome in outcomes:
        purchase = bought.get(outcome.contact_id)
        if outcome.result == ContactOutcome.Result.WON and purchase is not None:
            outcome.product = purchase.properties["product"]
            outcome.amount = Decimal(str(purchase.properties["amount"]))
            outcome.currency = purchase.properties.get("currency", "EUR")
    return outcomes


def open_deal_estimates(seed: int, timelines: list[Timeline]) -> list[DealEstimate]:
    """Half the claimed SQLs carry their rep's estimate (the manager's pipeline); a random
    generator of their own, so the rest of the demo stays as it was for a seed."""
    rng = random.Random(seed + 1)  # noqa: S311 (repeatable demo data, not secrets)
    estimates = []
    for timeline in timelines:
        contact = timeline.contact
        if contact.stage == Contact.Stage.SQL and contact.owner_id and rng.random() < 0.5:
            _plan, amount = rng.choice(PLANS)
            estimates.append(
                DealEstimate(contact=contact, amount=amount, updated_by_id=contact.owner_id,
                             updated_at=contact.claimed_at or contact.stage_entered_at)
            )  # fmt: skip
    return estimates


def demo_loaded() -> bool:
    return LeadSource.objects.filter(slug__in=SOURCE_SLUGS).exists()


def load_funnel(
    *, seed: int, contacts: int, events: int, reps: list[AbstractUser], now: datetime
) -> LoadSummary:
    rng = random.Random(seed)  # noqa: S311 (repeatable demo data, not secrets)
    sources = LeadSource.objects.bulk_create(
        [
            LeadSource(
                slug=demo.slug,
                name=demo.name,
                channel=demo.channel,
                utm_source=demo.utm_source,
                utm_medium=demo.utm_medium,
                utm_campaign=demo.utm_campaign,
                created_at=now - OLDEST,
            )
            for demo in SOURCES
        ]
    )
    finals = [stage for stage, count in stage_counts(contacts).items() for _ in range(count)]
    rng.shuffle(finals)
    timelines = [
        plan_contact(rng, final=final, number=number, sources=sources, reps=reps, now=now)
        for number, final in enumerate(finals, start=1)
    ]
    activity = plan_events(rng, timelines, events, now)

    timelines.sort(key=lambda timeline: timeline.contact.created_at)
    Contact.objects.bulk_create([t.contact for t in timelines], batch_size=BATCH_SIZE)
    changes = sorted((c for t in timelines for c in t.changes), key=lambda c: c.at)
    StageChange.objects.bulk_create(changes, batch_size=BATCH_SIZE)
    outcomes = ContactOutcome.objects.bulk_create(
        deals_priced(outcomes_from_stage_changes(changes), activity), batch_size=BATCH_SIZE
    )
    outcomes_follow_sources([outcome.contact_id for outcome in outcomes])
    DealEstimate.objects.bulk_create(open_deal_estimates(seed, timelines), batch_size=BATCH_SIZE)
    everything = activity + [stage_change_event(change) for change in changes]
    everything.sort(key=lambda planned: planned.occurred_at)
    Event.objects.bulk_create(everything, batch_size=BATCH_SIZE)
    return LoadSummary(
        stages=stage_counts(contacts), events=len(activity), stage_changes=len(changes)
    )


class Command(BaseCommand):
    help = "Load demo users and a six-month demo funnel (once; later runs refresh the logins)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42).")
        parser.add_argument(
            "--contacts", type=int, default=2400, help="Number of contacts (default 2400)."
        )
        parser.add_argument(
            "--events",
            type=int,
            default=60000,
            help="Number of contact events, stage changes aside (default 60000).",
        )

    def handle(self, *args: Any, seed: int, contacts: int, events: int, **options: Any) -> None:
        if contacts < MIN_CONTACTS:
            raise CommandError(f"--contacts must be at least {MIN_CONTACTS}.")
        started = time.monotonic()
        with transaction.atomic():
            users = demo_users()
            if demo_loaded():
                self.stdout.write("Demo data already loaded; demo logins refreshed.")
                summary = None
            else:
                reps = [users[name] for name in SALES_REPS]
                summary = load_funnel(
                    seed=seed, contacts=contacts, events=events, reps=reps, now=timezone.now()
                )
                fit_install()
                score_history()
                # The demo's history is written already processed: summarise it in one pass.
                rollups_rebuild()
            sequences = campaigns_install()
        if summary is not None:
            self.report(summary, time.monotonic() - started)
        self.stdout.write("Demo campaigns: " + ", ".join(s.name for s in sequences))
        self.logins()

    def report(self, summary: LoadSummary, seconds: float) -> None:
        self.stdout.write(self.style.SUCCESS(f"Demo funnel loaded in {seconds:.1f} s:"))
        for stage, count in summary.stages.items():
            self.stdout.write(f"  {stage:<14}{count:>7,}")
        self.stdout.write(f"  {'contacts':<14}{sum(summary.stages.values()):>7,}")
        self.stdout.write(f"  {'events':<14}{summary.events:>7,}")
        self.stdout.write(
            f"  {'stage changes':<14}{summary.stage_changes:>7,} (each with its event)"
        )
        self.stdout.write("")

    def logins(self) -> None:
        self.stdout.write(logins_text())


def logins_text() -> str:
    lines = [f"Demo logins (password: {PASSWORD})"]
    lines += [f"  {demo.username:<8}{demo.role:<15}{demo.home}" for demo in DEMO_USERS]
    return "\n".join(lines)
