"""One reader's message of a campaign: its template variables (personal links) and the built mail."""

from __future__ import annotations

from collections.abc import Mapping
from email.message import Message
from typing import Any

from paywall.campaigns.definition import Campaign
from paywall.config import Settings
from paywall.mail.links import reader_links, unsubscribe_url
from paywall.mail.message import build_message

# The copy an experiment's variant may change in a mail ("": the template's own words).
COPY_VARIABLES = ("headline", "text", "subscribe_label", "donate_label")


def appeal_context(
    settings: Settings,
    campaign: Campaign,
    external_id: str,
    name: str | None,
    copy: Mapping[str, str] | None = None,
    ask: str | None = None,
) -> dict[str, Any]:
    """The template variables for one reader: ``copy`` is their experiment variant's words, and
    ``ask`` goes into their personal links' token (claim ``ask``)."""
    links = reader_links(settings, external_id, ("subscribe", "donate"), campaign.name, ask)
    words = copy or {}
    return {
        "reader_name": (name or "").strip(),
        "campaign": campaign.name,
        "subscribe_url": links["subscribe"],
        "donate_url": links["donate"],
        "unsubscribe_url": unsubscribe_url(settings, external_id, campaign.name),
        **{key: words.get(key, "") for key in COPY_VARIABLES},
    }


def build_appeal(
    settings: Settings,
    campaign: Campaign,
    *,
    external_id: str,
    email: str,
    name: str | None,
    copy: Mapping[str, str] | None = None,
    ask: str | None = None,
) -> Message:
    """The message one reader gets (also what `paywall appeals preview` prints)."""
    context = appeal_context(settings, campaign, external_id, name, copy, ask)
    rendered = campaign.render(context)
    return build_message(
        sender=campaign.sender_for(settings),
        to=email,
        to_name=name,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        unsubscribe_url=context["unsubscribe_url"],
        headers={"X-Campaign": campaign.name},
    )
