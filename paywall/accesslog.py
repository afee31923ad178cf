"""gunicorn's access log, made safe: every value is redacted and escaped for a JSON string.

gunicorn writes its access lines itself (config/gunicorn.conf.py names this logger class), outside
our logging filter, and its own escaping only doubles quotes: a ``%0A`` in a request path (decoded
into PATH_INFO) would start a forged line, and a backslash would break the JSON.
"""

from __future__ import annotations

import json
from typing import Any

from gunicorn import glogging

from paywall.observability import redact


class JsonSafeAtoms(dict[str, Any]):
    """The access-log atoms; each is redacted and escaped when the format reads it (only the few
    the format names, not every header and environment variable gunicorn collects)."""

    def __getitem__(self, key: str) -> Any:
        if key.startswith("{"):
            key = key.lower()
        value = self.get(key, "-")
        if value is None:
            # The byte count of a response gunicorn did not measure: a bare None is not JSON.
            return "null"
        if isinstance(value, str):
            # json.dumps escapes quotes, backslashes, control characters and line separators.
            return json.dumps(redact(value))[1:-1]
        return value


class AccessLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger with :class:`JsonSafeAtoms`."""

    atoms_wrapper_class = JsonSafeAtoms
