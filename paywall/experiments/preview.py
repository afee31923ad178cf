"""Staff previews: a signed link that shows one variant of an experiment without counting anything.

``paywall experiments preview EXPERIMENT VARIANT`` prints ``PAGE#paywall_preview=TOKEN``. The
widget on PAGE reads the token from the location hash (a hash never reaches a server log) and adds
``&preview=TOKEN`` to its GET /support/appeal; the answer is that variant's copy, whatever arm the
reader would be in and whether or not the experiment runs now, with ``preview: true`` and an ask
whose preview flag is set: the widget sends no events for it, and POST /support/events would drop
them anyway. The token (purpose ``appeal-preview``) is valid for ``PREVIEW_TTL``; it names the
experiment, the variant and the channel (``footer`` or ``gate``), and nobody.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlsplit

from paywall import signing
from paywall.config import Settings
from paywall.experiments.definition import Experiment, Variant
from paywall.widget.settings import appeal_settings

PURPOSE = "appeal-preview"
PREVIEW_TTL = dt.timedelta(days=7)
PREVIEW_CHANNELS = ("footer", "gate")


class InvalidPreview(Exception):
    """A preview that is not ours, expired, or names an experiment or variant not configured."""


@dataclass(frozen=True)
class Preview:
    experiment: Experiment
    variant: Variant
    channel: str


def _find(settings: Settings, experiment: str, variant: str, channel: str) -> Preview:
    found = appeal_settings(settings).experiments.get(experiment)
    if found is None:
        raise InvalidPreview(f"no experiment {experiment!r} in [appeal.experiments]")
    arm = found.variant(variant)
    if arm is None:
        names = ", ".join(v.name for v in found.variants)
        raise InvalidPreview(f"{experiment} has no variant {variant!r} (its variants: {names})")
    if channel not in PREVIEW_CHANNELS:
        raise InvalidPreview(f"a preview shows the footer or the gate, not {channel!r}")
    return Preview(found, arm, channel)


def sign_preview(settings: Settings, experiment: str, variant: str, channel: str = "footer") -> str:
    """A preview token for a configured variant; raises InvalidPreview for one that is not."""
    _find(settings, experiment, variant, channel)
    claims = {"experiment": experiment, "variant": variant, "channel": channel}
    token, _ = signing.sign(settings, claims, purpose=PURPOSE, ttl=PREVIEW_TTL)
    return token


def verify_preview(settings: Settings, token: str) -> Preview:
    """The preview a token asks for; raises InvalidPreview (bad, expired, or no longer configured)."""
    try:
        claims = signing.verify(settings, token, purpose=PURPOSE)
    except signing.InvalidToken as exc:
        raise InvalidPreview(str(exc)) from None
    values = [claims.get(key) for key in ("experiment", "variant", "channel")]
    if not all(isinstance(value, str) for value in values):
        raise InvalidPreview("not a preview")
    experiment, variant, channel = (str(value) for value in values)
    return _find(settings, experiment, variant, channel)


def preview_page(settings: Settings) -> str:
    """The built-in page with a sample article and the widget: ``{public_url}/support/preview``."""
    return settings.server.public_url.rstrip("/") + "/support/preview"


def preview_url(
    settings: Settings, experiment: str, variant: str, channel: str = "footer", page: str | None = None
) -> str:
    """``PAGE#paywall_preview=TOKEN`` (PAGE: the built-in preview page); raises InvalidPreview."""
    token = sign_preview(settings, experiment, variant, channel)
    target = page or preview_page(settings)
    if urlsplit(target).scheme not in ("http", "https"):
        raise InvalidPreview(f"the page must be an http(s) URL, not {target!r}")
    return f"{target.split('#', 1)[0]}#paywall_preview={token}"
