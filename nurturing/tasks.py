from celery import shared_task

from nurturing.bounce_mailbox import bounce_mailbox_read
from nurturing.esp import esp_reports_record, esp_reports_sweep
from nurturing.scheduler import nurturing_tick
from nurturing.sending import messages_send


@shared_task
def nurturing_tick_task() -> dict[str, int]:
    return nurturing_tick()


@shared_task
def send_messages_task() -> int:
    return messages_send()


@shared_task
def read_bounce_mailbox_task() -> dict[str, int]:
    return bounce_mailbox_read()


@shared_task
def record_esp_reports_task() -> int:
    return esp_reports_record()


@shared_task
def sweep_esp_reports_task() -> int:
    return esp_reports_sweep()
