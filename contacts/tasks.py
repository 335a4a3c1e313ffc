from celery import shared_task

from contacts import services


@shared_task
def process_events_task(event_ids: list[int]) -> int:
    return services.events_process(event_ids=event_ids)


@shared_task
def sweep_unprocessed_events_task() -> int:
    return services.events_sweep()
