from celery import shared_task

from nurturing import services


@shared_task
def nurturing_tick_task() -> dict[str, int]:
    return services.nurturing_tick()


@shared_task
def send_messages_task() -> int:
    return services.messages_send()
