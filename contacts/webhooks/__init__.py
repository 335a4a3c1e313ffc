"""Outbound webhooks, signed per the Standard Webhooks spec: ``outbox`` writes a delivery per
event and subscription in the caller's transaction; ``delivery`` sends them from the worker
with retries, and disables a subscription that keeps failing."""
