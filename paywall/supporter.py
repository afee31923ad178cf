"""What the reader view says about a reader's support: subscription, donations, comps.

Each feature contributes its part through a provider registered here, so the reader view does not
import the features (and the features do not import the reader view).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from paywall.models import Reader

Provider = Callable[[Session, Reader], dict[str, Any]]
_providers: list[Provider] = []


def register(provider: Provider) -> Provider:
    """Add a provider; its dict is merged into the ``supporter`` section."""
    if provider not in _providers:
        _providers.append(provider)
    return provider


def supporter_summary(session: Session, reader: Reader) -> dict[str, Any]:
    """The ``supporter`` section of a reader: defaults overlaid by every provider."""
    summary: dict[str, Any] = {"subscription": None, "subscriptions": [], "donations": [], "comp": None}
    for provider in _providers:
        summary.update(provider(session, reader))
    return summary
