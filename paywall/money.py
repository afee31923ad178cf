"""Money: integer minor units plus an ISO 4217 currency. Formatting happens only at the edges."""

from __future__ import annotations

from decimal import Decimal

# Stripe's zero-decimal and three-decimal currencies (docs: "Zero-decimal currencies").
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])


def exponent(currency: str) -> int:
    """Digits after the decimal point for ``currency`` (JPY 0, EUR 2, KWD 3)."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_major(amount_minor: int, currency: str) -> Decimal:
    """Minor units as an exact Decimal in major units: 1234 usd -> Decimal('12.34')."""
    return Decimal(amount_minor).scaleb(-exponent(currency))


def format_major(amount_minor: int, currency: str) -> str:
    """Minor units as a plain decimal string in major units, e.g. '12.34' or '500' for JPY."""
    exp = exponent(currency)
    value = to_major(amount_minor, currency)
    return f"{value:.{exp}f}"


def display(amount_minor: int, currency: str) -> str:
    """A human string such as '12.34 USD'."""
    return f"{format_major(amount_minor, currency)} {currency.upper()}"
