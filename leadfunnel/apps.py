from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LeadfunnelConfig(AppConfig):
    name = "leadfunnel"
    verbose_name = _("LeadFunnel")

    def ready(self) -> None:
        from leadfunnel import checks  # noqa: F401 (registers the settings checks)
