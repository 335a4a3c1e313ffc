"""Beat sweeps that tell the sales team about the queue: new SQLs (one coalesced notice per rep
on duty, however many arrived) and SQLs about to breach the SLA (reps on duty and sales
managers, once per lead).

Both read the queue behind a watermark (``SweepMark``) instead of hooking the hot paths that
make SQLs (``stage_move``, scoring's bulk moves, imports): a rescore that makes 10,000 SQLs
costs these sweeps one COUNT on the queue's partial index and one row per rep.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from contacts.models import Contact, Notification, SweepMark
from contacts.notifications import notify
from contacts.roles import SALES, SALES_MANAGER

NEW_SQL_MARK = "new_sql"
SLA_MARK = "sla_warning"
# The new-SQL sweep reads up to this long ago: a move stamps ``stage_entered_at`` before its
# transaction commits (a rescore batch, an import), so a later sweep still sees a move that
# committed up to this long after its stamp. A move committed later than that is not announced
# (it is in the queue all the same, and the SLA warning, hours behind, still sees it).
NEW_SQL_COMMIT_GRACE = timedelta(seconds=30)
# More leads than this reaching the warning in one sweep: one notice per person saying how
# many, instead of one each.
SLA_WARNING_ITEMIZE = 10


def on_duty_sales_user_ids() -> list[int]:
    """Active sales users (managers too) on duty; one without a SalesRep row is on duty.
    Staff count only when they are in a sales group."""
    return list(
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=[SALES, SALES_MANAGER])
        .exclude(sales_rep__on_duty=False)
        .values_list("pk", flat=True)
        .distinct()
        .order_by("pk")
    )


def sales_manager_ids() -> list[int]:
    return list(
        get_user_model()
        .objects.filter(is_active=True, groups__name=SALES_MANAGER)
        .values_list("pk", flat=True)
        .distinct()
        .order_by("pk")
    )


def _mark(name: str, default: datetime) -> SweepMark:
    """The sweep's watermark, locked for this transaction (two beats never both announce)."""
    mark, _created = SweepMark.objects.get_or_create(name=name, defaults={"mark": default})
    return SweepMark.objects.select_for_update().get(pk=mark.pk)


@transaction.atomic
def notifications_new_sqls(*, now: datetime | None = None) -> int:
    """Tell each rep on duty how many SQLs entered the queue since the last sweep: their one
    unread new-SQL notice counts up (and goes back to the top, due for the next digest), or a
    new one is made. Returns how many SQLs were announced (those that entered the queue
    between the mark and NEW_SQL_COMMIT_GRACE ago, and are still waiting).

    The first sweep only sets the mark (nothing before it is news)."""
    now = now or timezone.now()
    upto = now - NEW_SQL_COMMIT_GRACE
    mark = _mark(NEW_SQL_MARK, upto)
    if upto <= mark.mark:
        return 0
    arrived = Contact.objects.filter(
        stage=Contact.Stage.SQL,
        owner__isnull=True,
        stage_entered_at__gt=mark.mark,
        stage_entered_at__lte=upto,
    ).aggregate(count=Count("pk"), one=Min("pk"))
    SweepMark.objects.filter(pk=mark.pk).update(mark=upto)
    count = arrived["count"]
    if not count:
        return 0
    reps = on_duty_sales_user_ids()
    if not reps:
        return count
    unread = {}
    for note in Notification.objects.filter(
        user_id__in=reps, kind=Notification.Kind.NEW_SQL, read_at__isnull=True
    ).order_by("user_id", "created_at", "id"):
        unread[note.user_id] = note  # the newest of a rep's unread ones
    for note in unread.values():
        params = note.params if isinstance(note.params, dict) else {}
        note.params = {**params, "count": max(int(params.get("count") or 1), 1) + count}
        note.contact_id, note.created_at, note.emailed_at = None, now, None
    Notification.objects.bulk_update(
        unread.values(), ["params", "contact", "created_at", "emailed_at"]
    )
    notify(
        user_ids=[rep for rep in reps if rep not in unread],
        kind=Notification.Kind.NEW_SQL,
        contact_id=arrived["one"] if count == 1 else None,
        params={"count": count},
        at=now,
    )
    return count


@transaction.atomic
def notifications_sla_warnings(*, now: datetime | None = None) -> int:
    """Warn the reps on duty and the sales managers of the unclaimed SQLs that breach the SLA
    (SLA_HOURS in the queue) within SLA_WARNING_HOURS. Each lead once: the sweep reads the
    leads that reached the warning since its mark (their time in the queue, so a lead back in
    SQL later is warned again). Returns how many leads were warned about."""
    now = now or timezone.now()
    sla = timedelta(hours=settings.SLA_HOURS)
    warn_after = max(sla - timedelta(hours=settings.SLA_WARNING_HOURS), timedelta(0))
    mark = _mark(SLA_MARK, now - sla)  # the first sweep warns of the leads already close
    upto = now - warn_after
    if upto <= mark.mark:
        return 0
    leads = list(
        Contact.objects.filter(
            stage=Contact.Stage.SQL,
            owner__isnull=True,
            stage_entered_at__gt=max(mark.mark, now - sla),  # not those already breached
            stage_entered_at__lte=upto,
        )
        .order_by("stage_entered_at", "pk")
        .values_list("pk", "stage_entered_at")
    )
    SweepMark.objects.filter(pk=mark.pk).update(mark=upto)
    people = sorted(set(on_duty_sales_user_ids()) | set(sales_manager_ids()))
    if not leads or not people:
        return len(leads)

    def hours_left(entered: datetime) -> int:
        return max(math.ceil((entered + sla - now) / timedelta(hours=1)), 1)

    if len(leads) > SLA_WARNING_ITEMIZE:
        params = {"count": len(leads), "hours_left": hours_left(leads[0][1])}
        notify(user_ids=people, kind=Notification.Kind.SLA_WARNING, params=params, at=now)
        return len(leads)
    for pk, entered in leads:
        notify(
            user_ids=people,
            kind=Notification.Kind.SLA_WARNING,
            contact_id=pk,
            params={"hours_left": hours_left(entered)},
            at=now,
        )
    return len(leads)
