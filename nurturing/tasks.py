from celery import shared_task

from nurturing.bounce_mailbox import bounce_mailbox_read
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
