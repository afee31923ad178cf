"""What the reader view says about a reader's support: subscription, donations, comps.

Each feature that knows part of it is named here and asked in turn, so the summary is complete
whoever asks (the reader API, the account page), whether or not the web app was built.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from paywall.access.comps import comp_summary
from paywall.models import Reader
from paywall.webhooks.readers import supporter_section


def supporter_summary(session: Session, reader: Reader) -> dict[str, Any]:
    """The ``supporter`` section of a reader: defaults overlaid by each feature's part."""
    summary: dict[str, Any] = {"subscription": None, "subscriptions": [], "donations": [], "comp": None}
    summary.update(comp_summary(session, reader))
    summary.update(supporter_section(session, reader))
    return summary
