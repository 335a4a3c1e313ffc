from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NurturingConfig(AppConfig):
    name = "nurturing"
    verbose_name = _("Nurturing")

    def ready(self) -> None:
        # The services send these tasks by name (enrolment.TICK_TASK, scheduler.SEND_TASK):
        # registered in every process, not only in workers, which import them by themselves.
        from nurturing import tasks  # noqa: F401
