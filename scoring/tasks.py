from celery import shared_task

from scoring import decay, fading, rescore, suggestions


@shared_task
def apply_decay_task() -> int:
    return decay.decay_apply()


@shared_task
def apply_fading_task() -> int:
    return fading.fade_apply()


@shared_task(soft_time_limit=3600, time_limit=3900)
def rescore_task(rescore_id: int) -> None:
    rescore.rescore_run(rescore_id=rescore_id)


@shared_task
def sweep_rescores_task() -> int:
    return rescore.rescore_sweep()


@shared_task(soft_time_limit=1800, time_limit=1900)
def suggest_rules_task(suggestion_id: int) -> None:
    suggestions.suggestion_run(suggestion_id=suggestion_id)
