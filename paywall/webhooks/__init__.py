"""Stripe sync: the webhook inbox, handlers, the mirror of Stripe objects, replay and reconcile."""
