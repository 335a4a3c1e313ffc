from celery import shared_task

from contacts import services


@shared_task
def process_events_task(event_ids: list[int]) -> int:
    return services.events_process(event_ids=event_ids)


@shared_task
def sweep_unprocessed_events_task() -> int:
    return services.events_sweep()


@shared_task(soft_time_limit=services.IMPORT_SOFT_TIME_LIMIT, time_limit=services.IMPORT_TIME_LIMIT)
def import_contacts_task(job_id: int) -> bool:
    from contacts.models import ImportJob

    job = ImportJob.objects.filter(pk=job_id).first()
    return job is not None and services.contacts_import(job=job)


@shared_task
def sweep_imports_task() -> tuple[int, int]:
    return services.imports_sweep()


@shared_task
def drain_page_views_task() -> int:
    return services.page_views_drain()


@shared_task
def release_stale_claims_task() -> int:
    return services.claims_release_stale()


@shared_task
def purge_inactive_contacts_task() -> int:
    return services.contacts_purge_inactive()


@shared_task
def purge_anonymous_views_task() -> int:
    return services.anonymous_views_purge()
