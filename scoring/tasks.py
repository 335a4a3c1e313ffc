from celery import shared_task

from scoring import services


@shared_task
def apply_decay_task() -> int:
    return services.decay_apply()
