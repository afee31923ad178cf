"""Anonymous browsers in client mode: the widget's random id, kept apart from every reader id.

In client mode (POST /support/access) a browser names itself by a random id the widget made. A
browser can claim anything, so an anonymous id must never resolve to a registered reader or a
subscriber: it is evaluated with no entitlements at all (only its meter and its dismissal), and
its meter rows are keyed ``ANON_PREFIX + id``. The prefix starts with a space, which no site reader
id may (paywall.schemas.validate_identifier), so no reader id can name an anonymous meter and no
anonymous id can name a reader's. Only a valid reader token (paywall/signin/tokens.py) names a reader.
"""

from __future__ import annotations

import re

ANON_PREFIX = " anon:"
# What the widget makes: 16 to 64 URL-safe characters (it uses 22, 128 random bits).
BROWSER_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def valid_browser_id(value: object) -> bool:
    return isinstance(value, str) and BROWSER_ID.match(value) is not None


def anonymous_key(browser_id: str) -> str:
    """The meter and dismissal key of an anonymous browser (check valid_browser_id first)."""
    return ANON_PREFIX + browser_id
