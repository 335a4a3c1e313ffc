from celery import shared_task

from contacts.digest import digests_send
from contacts.imports.jobs import (
    IMPORT_SOFT_TIME_LIMIT,
    IMPORT_TIME_LIMIT,
    contacts_import,
    imports_sweep,
)
from contacts.intake.page_views import anonymous_views_purge, page_views_drain
from contacts.intake.webhook_capture import (
    inbound_deliveries_record,
    inbound_deliveries_sweep,
    inbound_delivery_process,
)
from contacts.notification_sweeps import notifications_new_sqls, notifications_sla_warnings
from contacts.pipeline import events_process, events_sweep
from contacts.privacy import contacts_purge_inactive
from contacts.sales.assignment import sqls_assign
from contacts.sales.claims import claims_release_stale
from contacts.sales.follow_ups import no_next_step_flag, reminders_send
from contacts.webhooks.delivery import deliveries_send, webhooks_tick


@shared_task
def process_events_task(event_ids: list[int]) -> int:
    return events_process(event_ids=event_ids)


@shared_task
def sweep_unprocessed_events_task() -> int:
    return events_sweep()


@shared_task(soft_time_limit=IMPORT_SOFT_TIME_LIMIT, time_limit=IMPORT_TIME_LIMIT)
def import_contacts_task(job_id: int) -> bool:
    from contacts.models import ImportJob

    job = ImportJob.objects.filter(pk=job_id).first()
    return job is not None and contacts_import(job=job)


@shared_task
def sweep_imports_task() -> tuple[int, int]:
    return imports_sweep()


@shared_task
def drain_page_views_task() -> int:
    return page_views_drain()


@shared_task
def release_stale_claims_task() -> int:
    return claims_release_stale()


@shared_task
def purge_inactive_contacts_task() -> int:
    return contacts_purge_inactive()


@shared_task
def purge_anonymous_views_task() -> int:
    return anonymous_views_purge()


@shared_task
def process_inbound_delivery_task(delivery_id: int) -> bool:
    return inbound_delivery_process(delivery_id=delivery_id)


@shared_task
def sweep_inbound_deliveries_task() -> int:
    return inbound_deliveries_sweep()


@shared_task
def record_inbound_deliveries_task() -> int:
    return inbound_deliveries_record()


@shared_task
def send_webhooks_task() -> int:
    return deliveries_send()


@shared_task
def webhooks_tick_task() -> dict[str, int]:
    return webhooks_tick()


@shared_task
def assign_sqls_task() -> int:
    return sqls_assign()


@shared_task
def notify_new_sqls_task() -> int:
    return notifications_new_sqls()


@shared_task
def notify_sla_warnings_task() -> int:
    return notifications_sla_warnings()


@shared_task
def send_digests_task() -> int:
    return digests_send()


@shared_task
def send_reminders_task() -> int:
    return reminders_send()


@shared_task
def flag_no_next_step_task() -> int:
    return no_next_step_flag()
