"""Strict readers for the values in a Stripe payload: an absurd value fails, nothing is coerced.

A genuinely signed event can still carry what no real Stripe object has: a fractional, negative,
string or 9e18 amount, NaN, a missing or non-ISO-4217 currency, a control character, a timestamp
outside any sane range, an id of 300 characters. The readers raise ``InvalidField``; the inbox then
records the event ``failed`` with the field's path (``data.object.amount: ...``) and rolls back
everything the handler did, so no such value reaches a row, a sum or a spreadsheet.

Error texts name the field and the kind of value, never the value itself (it may be personal).
``mapping`` and ``metadata`` read containers: a field that is not an object (null, an unexpanded
id) reads as an empty one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from paywall import clock

# Stripe caps one charge at 99,999,999 minor units; 10**12 leaves room for any currency while
# about nine million such rows still sum inside a signed 64-bit integer (SQLite's, BIGINT's).
MAX_AMOUNT = 10**12
MAX_ID = 255
# Quantities, interval counts, attempts: a million keeps unit amount x quantity inside a BIGINT.
MAX_COUNT = 10**6
# 2000-01-01 to 2200-01-01 UTC: every Stripe timestamp (created, periods, trials, cancel_at) fits.
MIN_TIMESTAMP = 946_684_800
MAX_TIMESTAMP = 7_258_118_400
CURRENCY = re.compile(r"[a-z]{3}")
# C0 controls, DEL and C1 controls: never in a name, an id or a code.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# A Stripe object as the JSON parser made it.
Obj = Mapping[str, Any]


class InvalidField(ValueError):
    """A payload value no real Stripe object has. ``key`` and ``container`` name where it is when
    the reader knows; otherwise the inbox finds ``value`` in the payload (see ``describe``)."""

    def __init__(
        self, reason: str, *, value: Any = None, key: str | None = None, container: Any = None
    ) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.reason = reason
        self.value = value
        self.key = key
        self.container = container

    def describe(self, root: Any, prefix: str = "") -> str:
        """``<path>: <reason>``, the path found in ``root`` (the event) by object identity.

        Readers are handed the very objects the JSON parser made, so identity finds the field
        read. Only values the interpreter shares (True, False, small ints) can sit in several
        places at once: then every place holding it is named ("one of a, b")."""
        if self.key is not None and self.container is not None:
            base = next(iter(find(root, self.container, prefix)), None)
            path = f"{base}.{self.key}" if base else self.key
        else:
            paths = find(root, self.value, prefix)
            path = paths[0] if len(paths) == 1 else f"one of {', '.join(paths)}" if paths else "data.object"
        return f"{path}: {self.reason}"


def find(root: Any, target: Any, prefix: str = "", limit: int = 5) -> list[str]:
    """The dotted paths of the first ``limit`` places in ``root`` holding ``target`` itself."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [(prefix, root)]
    while stack and len(found) < limit:
        path, value = stack.pop()
        if value is target:
            found.append(path)
            continue
        if isinstance(value, Mapping):
            items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))
    return found


def _kind(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return type(value).__name__


def mapping(value: Any) -> Obj:
    """``value`` when it is an object; an empty one otherwise (an absent or unexpanded field)."""
    return value if isinstance(value, Mapping) else {}


def metadata(obj: Obj) -> Obj:
    """The object's ``metadata``; empty when it has none."""
    return mapping(obj.get("metadata"))


# The appeal a Checkout was attributed to (paywall/experiments/attribution.py): metadata key =
# column on checkout_sessions, subscriptions and payments, with the column's length.
APPEAL_COLUMNS = {"appeal_experiment": 64, "appeal_variant": 64, "appeal_channel": 100}


def read_appeal(meta: Obj) -> dict[str, str | None]:
    """The appeal columns a metadata names (None where it names none)."""
    return {key: read_text(meta.get(key), limit) for key, limit in APPEAL_COLUMNS.items()}


def read_id(value: Any) -> str | None:
    """A Stripe id given as a string or an expanded object; None when absent."""
    if isinstance(value, Mapping):
        value = value.get("id")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidField(f"an id must be a string, got {_kind(value)}", value=value)
    if CONTROL.search(value):
        raise InvalidField("id contains a control character", value=value)
    if len(value) > MAX_ID:
        raise InvalidField(f"id longer than {MAX_ID} characters", value=value)
    return value


def safe_id(value: Any) -> str | None:
    """``read_id`` for bookkeeping (lock keys, the inbox's object id): an absurd id is None."""
    try:
        return read_id(value)
    except InvalidField:
        return None


def read_text(value: Any, limit: int = 255) -> str | None:
    """A string field, stripped; None when absent or blank."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(f"must be a string, got {_kind(value)}", value=value)
    stripped = value.strip()
    if not stripped:
        return None
    if CONTROL.search(stripped):
        raise InvalidField("text contains a control character", value=value)
    if len(stripped) > limit:
        raise InvalidField(f"text longer than {limit} characters", value=value)
    return stripped


def read_timestamp(value: Any) -> dt.datetime | None:
    """A unix timestamp in whole seconds between 2000 and 2200, as aware UTC; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(f"a timestamp must be whole seconds, got {_kind(value)}", value=value)
    if not MIN_TIMESTAMP <= value < MAX_TIMESTAMP:
        raise InvalidField("timestamp outside 2000-01-01..2200-01-01", value=value)
    return clock.from_timestamp(value)


def read_amount(obj: Mapping[str, Any], key: str, *, signed: bool = False) -> int | None:
    """``obj[key]`` as integer minor units (0..MAX_AMOUNT, or ±MAX_AMOUNT when ``signed``)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(
            f"must be a whole number of minor units, got {_kind(value)}", key=key, container=obj
        )
    low = -MAX_AMOUNT if signed else 0
    if not low <= value <= MAX_AMOUNT:
        raise InvalidField(f"outside {low}..{MAX_AMOUNT} minor units", key=key, container=obj)
    return value


def read_currency(obj: Mapping[str, Any], key: str = "currency", *, required: bool = True) -> str | None:
    """``obj[key]`` as a lowercase ISO 4217 code; a missing one fails unless not ``required``."""
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidField("is missing (an ISO 4217 currency code is required)", key=key, container=obj)
        return None
    if not isinstance(value, str) or not CURRENCY.fullmatch(value):
        raise InvalidField("must be a lowercase ISO 4217 currency code such as usd", key=key, container=obj)
    return value


def json_safe(value: Any) -> Any:
    """A copy of a payload that any JSON column accepts: NaN and infinities become strings.

    Python's json parses them; PostgreSQL's json type does not. Only a failed event can hold one
    (no reader accepts a float), and its stored copy keeps the token as text for the operator."""
    return json.loads(json.dumps(value), parse_constant=str)


def has_non_finite(value: Any) -> bool:
    """Whether a parsed payload holds NaN or an infinity anywhere (iterative: any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_count(obj: Mapping[str, Any], key: str, limit: int = MAX_COUNT) -> int | None:
    """``obj[key]`` as a whole count (quantity, interval count, attempts) in 0..``limit``."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(f"must be a whole number, got {_kind(value)}", key=key, container=obj)
    if not 0 <= value <= limit:
        raise InvalidField(f"outside 0..{limit}", key=key, container=obj)
    return value
