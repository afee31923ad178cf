"""Campaigns as files: ``config/appeals/<name>/campaign.toml`` plus Jinja2 ``body.txt``/``body.html``.

``campaign.toml`` keys: ``segment`` and ``subject`` (required; the subject may use the template
variables), ``description``, ``sender`` (default PAYWALL_MAIL_FROM), ``rate_per_minute``, and a
``[window]`` table: ``start``/``end`` ("HH:MM"), ``timezone`` (IANA name), ``days`` (["mon", …]).
Folders named by PAYWALL_APPEALS_DIR add campaigns; a name found there replaces the built-in one.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from paywall.config import CONFIG_DIR, Settings
from paywall.mail.settings import appeals_dirs

BUILTIN_DIR = CONFIG_DIR / "appeals"
SEGMENTS = ("never_supported", "lapsed_subscribers", "past_donors", "all_opted_in")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
KEYS = {"segment", "subject", "description", "sender", "rate_per_minute", "window"}
WINDOW_KEYS = {"start", "end", "timezone", "days"}


class CampaignError(Exception):
    """A campaign that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SendWindow:
    """Local hours (and weekdays) in which a campaign may be sent; ``end`` is exclusive."""

    start: dt.time
    end: dt.time
    timezone: str
    days: tuple[int, ...] = tuple(range(7))

    def contains(self, when: dt.datetime) -> bool:
        local = when.astimezone(ZoneInfo(self.timezone))
        t = local.time().replace(tzinfo=None)
        inside = self.start <= t < self.end if self.start <= self.end else (t >= self.start or t < self.end)
        return inside and local.weekday() in self.days

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in self.days)
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.timezone} ({days})"


@dataclass(frozen=True)
class Rendered:
    """One reader's subject (on one line), text and HTML."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Campaign:
    """One validated campaign folder, with its templates' Jinja2 environment."""

    name: str
    path: Path
    segment: str
    subject: str
    description: str = ""
    sender: str | None = None
    rate_per_minute: int | None = None
    window: SendWindow | None = None
    env: jinja2.Environment = field(repr=False, compare=False, default_factory=jinja2.Environment)
    _compiled: dict[str, jinja2.Template] = field(repr=False, compare=False, default_factory=dict)

    def render(self, context: Mapping[str, Any]) -> Rendered:
        """Subject, text and HTML for one reader (HTML autoescaped; unknown variables are errors)."""
        try:
            subject = self.subject_template().render(context)
            text = self.env.get_template("body.txt").render(context)
            html = self.env.get_template("body.html").render(context)
        except jinja2.TemplateError as exc:
            raise CampaignError(f"{self.name}: template error: {exc}") from exc
        return Rendered(subject=" ".join(subject.split()), text=text, html=html)

    def subject_template(self) -> jinja2.Template:
        """The subject, compiled once per campaign (compiling it per message was costly)."""
        template = self._compiled.get("subject")
        if template is None:
            template = self._compiled["subject"] = self.env.from_string(self.subject)
        return template

    def sender_for(self, settings: Settings) -> str:
        """The campaign's own From address, else PAYWALL_MAIL_FROM (may be empty)."""
        return self.sender or settings.mail.mail_from


def _parse_time(where: str, value: Any) -> dt.time:
    if not isinstance(value, str) or not re.fullmatch(r"\d{2}:\d{2}", value):
        raise CampaignError(f'{where}: expected "HH:MM"')
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise CampaignError(f'{where}: expected "HH:MM"') from None


def _parse_window(where: str, table: Any) -> SendWindow:
    if not isinstance(table, dict):
        raise CampaignError(f"{where}: must be a table")
    unknown = sorted(set(table) - WINDOW_KEYS)
    if unknown:
        raise CampaignError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("start", "end", "timezone"):
        if key not in table:
            raise CampaignError(f"{where}.{key} is required")
    tz = table["timezone"]
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise CampaignError(f"{where}.timezone: unknown time zone {tz!r}") from None
    days_value = table.get("days", list(DAYS))
    if not isinstance(days_value, list) or not all(
        isinstance(d, str) and d.lower() in DAYS for d in days_value
    ):
        raise CampaignError(f"{where}.days: a list of {', '.join(DAYS)}")
    return SendWindow(
        start=_parse_time(f"{where}.start", table["start"]),
        end=_parse_time(f"{where}.end", table["end"]),
        timezone=str(tz),
        days=tuple(sorted({DAYS.index(d.lower()) for d in days_value})),
    )


def load_campaign_dir(path: Path) -> Campaign:
    """Read and validate one campaign folder."""
    name = path.name
    if not NAME_RE.match(name):
        raise CampaignError(f"{path}: a campaign folder name is lower-case letters, digits, '-' and '_'")
    toml_path = path / "campaign.toml"
    try:
        with toml_path.open("rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise CampaignError(f"{toml_path}: missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise CampaignError(f"{toml_path}: {exc}") from None
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise CampaignError(f"{toml_path}: unknown key(s) {', '.join(unknown)}")
    for key in ("segment", "subject"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise CampaignError(f"{toml_path}: {key} is required")
    if table["segment"] not in SEGMENTS:
        raise CampaignError(f"{toml_path}: segment must be one of {', '.join(SEGMENTS)}")
    rate = table.get("rate_per_minute")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 0):
        raise CampaignError(f"{toml_path}: rate_per_minute must be a whole number >= 0")
    sender = table.get("sender")
    if sender is not None and (not isinstance(sender, str) or "@" not in sender):
        raise CampaignError(f"{toml_path}: sender must be an address")
    for body in ("body.txt", "body.html"):
        if not (path / body).is_file():
            raise CampaignError(f"{path / body}: missing")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return Campaign(
        name=name,
        path=path,
        segment=table["segment"],
        subject=table["subject"],
        description=str(table.get("description", "")),
        sender=sender,
        rate_per_minute=rate,
        window=_parse_window(f"{toml_path}: window", table["window"]) if "window" in table else None,
        env=env,
    )


def load_campaigns(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Campaign]:
    """Every campaign, built-in first; extra folders (PAYWALL_APPEALS_DIR) add or replace by name."""
    found: dict[str, Campaign] = {}
    dirs = [BUILTIN_DIR, *(Path(p).expanduser() for p in appeals_dirs(settings, environ))]
    for base in dirs:
        if not base.is_dir():
            if base != BUILTIN_DIR:
                raise CampaignError(f"PAYWALL_APPEALS_DIR: {base} is not a folder")
            continue
        for sub in sorted(base.iterdir()):
            if sub.is_dir() and (sub / "campaign.toml").exists():
                found[sub.name] = load_campaign_dir(sub)
    return found


def load_campaign(settings: Settings, name: str, environ: Mapping[str, str] | None = None) -> Campaign:
    """One campaign by name; CampaignError names the known ones when it does not exist."""
    campaigns = load_campaigns(settings, environ)
    if name not in campaigns:
        known = ", ".join(sorted(campaigns)) or "none"
        raise CampaignError(f"no campaign named {name!r} (known: {known})")
    return campaigns[name]
