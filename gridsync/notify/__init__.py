"""Notifications: outbox, routing, Apprise delivery, templates."""
