from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LeadfunnelConfig(AppConfig):
    name = "leadfunnel"
    verbose_name = _("LeadFunnel")

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from leadfunnel import checks  # noqa: F401 (registers the settings checks)
        from leadfunnel.database import timestamps_fast

        connection_created.connect(timestamps_fast, dispatch_uid="leadfunnel.timestamps_fast")
