"""The tables, one module per feature; importing this package registers them all on ``Base.metadata``."""

from paywall.models.billing import (
    CheckoutSession,
    Dispute,
    Invoice,
    Payment,
    Refund,
    StripeCustomer,
    StripeEvent,
    Subscription,
    SyncCursor,
)
from paywall.models.readers import ApiKey, Reader

__all__ = [
    "ApiKey",
    "CheckoutSession",
    "Dispute",
    "Invoice",
    "Payment",
    "Reader",
    "Refund",
    "StripeCustomer",
    "StripeEvent",
    "Subscription",
    "SyncCursor",
]
