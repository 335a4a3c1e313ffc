from celery import shared_task

from nurturing.scheduler import nurturing_tick
from nurturing.sending import messages_send


@shared_task
def nurturing_tick_task() -> dict[str, int]:
    return nurturing_tick()


@shared_task
def send_messages_task() -> int:
    return messages_send()
