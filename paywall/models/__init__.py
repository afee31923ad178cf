"""The tables, one module per feature; importing this package registers them all on ``Base.metadata``."""

from paywall.models.access import AppealDismissal, Comp, MeterRead
from paywall.models.appeals import AppealAsk, AppealDaily, AppealEvent, AppealExposure, AppealFold
from paywall.models.billing import (
    CheckoutSession,
    Dispute,
    Invoice,
    Payment,
    Refund,
    StripeCustomer,
    StripeEvent,
    StripePrice,
    Subscription,
    SyncCursor,
)
from paywall.models.mail import AppealSend, Suppression, YearlyReceipt
from paywall.models.outbox import OutboxMessage
from paywall.models.payouts import Payout, PayoutTransaction
from paywall.models.readers import ApiKey, ErasedIdentity, Reader, ReportSession, SigninCode

__all__ = [
    "ApiKey",
    "AppealAsk",
    "AppealDaily",
    "AppealDismissal",
    "AppealEvent",
    "AppealExposure",
    "AppealFold",
    "AppealSend",
    "CheckoutSession",
    "Comp",
    "Dispute",
    "ErasedIdentity",
    "Invoice",
    "MeterRead",
    "OutboxMessage",
    "Payment",
    "Payout",
    "PayoutTransaction",
    "Reader",
    "Refund",
    "ReportSession",
    "SigninCode",
    "StripeCustomer",
    "StripeEvent",
    "StripePrice",
    "Subscription",
    "Suppression",
    "SyncCursor",
    "YearlyReceipt",
]
