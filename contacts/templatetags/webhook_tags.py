from django import template

from contacts.models import WebhookSubscription

register = template.Library()


@register.simple_tag
def disabled_webhooks() -> list[WebhookSubscription]:
    """Subscriptions LeadFunnel turned off after repeated failures (the admin index warns)."""
    return list(WebhookSubscription.objects.filter(active=False, disabled_at__isnull=False))
