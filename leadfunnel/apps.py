from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LeadfunnelConfig(AppConfig):
    name = "leadfunnel"
    verbose_name = _("LeadFunnel")
