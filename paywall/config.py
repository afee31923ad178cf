"""Settings, built once from config/default.toml, the file named by PAYWALL_CONFIG, and PAYWALL_* variables.

Precedence, lowest first: ``config/default.toml`` < ``$PAYWALL_CONFIG`` < environment. Secrets are
read from the environment only; a secret found in a TOML file is a configuration error, so a key
never ends up committed next to the defaults.

Feature packages keep their own typed section (a dataclass) and read it with
``settings.section("access", AccessSettings)``: the core does not need to know every feature's keys,
and each section is still validated (unknown keys and wrong types fail at start, not at first use).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent


def _shipped(name: str) -> Path:
    """The top-level ``config/`` or ``migrations/``: in a checkout the folder itself; in an installed
    wheel the copy that pyproject.toml maps into the package (``paywall/_config``, ...)."""
    bundled = PACKAGE_DIR / f"_{name}"
    return bundled if bundled.is_dir() else ROOT / name


CONFIG_DIR = _shipped("config")
MIGRATIONS_DIR = _shipped("migrations")
DEFAULT_CONFIG = CONFIG_DIR / "default.toml"
# A source checkout (or an editable install of one), as opposed to an installed wheel.
IN_CHECKOUT = CONFIG_DIR == ROOT / "config" and (ROOT / "pyproject.toml").is_file()
SQLITE_FILE = "paywall.sqlite3"

T = TypeVar("T")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key at fault."""


# Environment variable -> (section, key). Anything else can be set as PAYWALL__SECTION__KEY.
ENV_KEYS: dict[str, tuple[str, str]] = {
    "PAYWALL_BIND": ("server", "bind"),
    "PAYWALL_PUBLIC_URL": ("server", "public_url"),
    "PAYWALL_ALLOWED_ORIGINS": ("server", "allowed_origins"),
    "PAYWALL_DATABASE_URL": ("database", "url"),
    "PAYWALL_STRIPE_API_BASE": ("stripe", "api_base"),
    "PAYWALL_SMTP_HOST": ("mail", "smtp_host"),
    "PAYWALL_SMTP_PORT": ("mail", "smtp_port"),
    "PAYWALL_SMTP_SECURITY": ("mail", "smtp_security"),
    "PAYWALL_SMTP_USERNAME": ("mail", "smtp_username"),
    "PAYWALL_MAIL_FROM": ("mail", "mail_from"),
    "PAYWALL_LOG_LEVEL": ("logging", "level"),
    "PAYWALL_LOG_FORMAT": ("logging", "format"),
}

# Secrets: environment only.
SECRET_ENV = {
    "stripe_secret_key": "PAYWALL_STRIPE_SECRET_KEY",
    "stripe_webhook_secrets": "PAYWALL_STRIPE_WEBHOOK_SECRET",
    "smtp_password": "PAYWALL_SMTP_PASSWORD",
    "signing_key": "PAYWALL_SIGNING_KEY",
    "session_secret": "PAYWALL_SESSION_SECRET",
}
SECRET_KEY_NAMES = {"secret_key", "webhook_secret", "smtp_password", "password", "signing_key", "api_key"}


@dataclass(frozen=True)
class ServerSettings:
    bind: str = "127.0.0.1:8000"
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 1048576
    allowed_origins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty: the SQLite file in data_dir() (filled in by load_settings).
    url: str = ""
    pool_size: int = 5
    lock_timeout_seconds: int = 5


@dataclass(frozen=True)
class StripeSettings:
    api_base: str = "https://api.stripe.com"
    webhook_tolerance_seconds: int = 300


@dataclass(frozen=True)
class SmtpSettings:
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str = ""
    mail_from: str = ""


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "json"


@dataclass(frozen=True)
class Secrets:
    """Values that only ever come from the environment. ``repr`` never shows them."""

    stripe_secret_key: str = field(default="", repr=False)
    stripe_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    smtp_password: str = field(default="", repr=False)
    signing_key: str = field(default="", repr=False)
    # Signs the /reports sign-in cookie; generated under var/ when unset (development).
    session_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    database: DatabaseSettings
    stripe: StripeSettings
    mail: SmtpSettings
    logging: LoggingSettings
    secrets: Secrets
    # The merged TOML + environment tables, for feature sections read through section().
    raw: Mapping[str, Any] = field(repr=False)
    root: Path = ROOT
    _sections: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def section(self, name: str, cls: type[T]) -> T:
        """The table ``[name]`` as a validated ``cls`` dataclass (cached)."""
        cached = self._sections.get(name)
        if isinstance(cached, cls):
            return cached
        value = build_section(name, self.raw.get(name, {}), cls)
        self._sections[name] = value
        return value

    def missing(self) -> list[str]:
        """Environment settings a feature needs but that are not set, for the start-up log."""
        out = []
        if not self.secrets.stripe_secret_key:
            out.append("PAYWALL_STRIPE_SECRET_KEY (Checkout, portal and `paywall stripe sync` answer 503)")
        if not self.secrets.stripe_webhook_secrets:
            out.append("PAYWALL_STRIPE_WEBHOOK_SECRET (POST /webhooks/stripe answers 503)")
        if not self.mail.smtp_host:
            out.append(
                "PAYWALL_SMTP_HOST (mail is not sent: the worker writes it as .eml files under [signin] mail_dir)"
            )
        if not self.mail.mail_from:
            out.append("PAYWALL_MAIL_FROM (mail is not sent)")
        return out

    @property
    def stripe_livemode(self) -> bool | None:
        """True for a live key, False for a test key, None when no key is set."""
        key = self.secrets.stripe_secret_key
        if not key:
            return None
        return "_live_" in key

    def resolve_path(self, relative: str) -> Path:
        """A path from the configuration: relative ones are taken from the working directory."""
        return Path(relative).expanduser()


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the default SQLite file lives, whatever the working directory: ``var/`` in a checkout;
    installed, the per-user data directory ``$XDG_DATA_HOME/paywall`` (``~/.local/share/paywall``)."""
    if IN_CHECKOUT:
        return ROOT / "var"
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "paywall"


def _check_type(where: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_check_type(f"{where}[]", v, item) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        return value
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(where, value, arg)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: unexpected value {value!r}")
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if hint is int:
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{where}: expected an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        return value
    return value


def build_section(name: str, table: Any, cls: type[T]) -> T:
    """Validate a TOML table against a dataclass: unknown keys and wrong types are errors."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"[{name}] has unknown key(s): {', '.join(unknown)}")
    values = {key: _check_type(f"{name}.{key}", table[key], hints[key]) for key in table}
    return cls(**values)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _reject_secrets(table: Mapping[str, Any], path: str, source: str) -> None:
    for key, value in table.items():
        if isinstance(value, Mapping):
            _reject_secrets(value, f"{path}{key}.", source)
        elif key in SECRET_KEY_NAMES:
            raise ConfigError(f"{source}: {path}{key} is a secret; set it in the environment instead")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _database(table: Any, env: Mapping[str, str]) -> DatabaseSettings:
    database = build_section("database", table, DatabaseSettings)
    if not database.url.strip():
        database = dataclasses.replace(database, url=f"sqlite:///{data_dir(env) / SQLITE_FILE}")
    return database


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build the settings: defaults, then $PAYWALL_CONFIG, then the environment, then ``overrides``."""
    env = os.environ if environ is None else environ
    raw = _read_toml(DEFAULT_CONFIG)
    extra_path = env.get("PAYWALL_CONFIG")
    if extra_path:
        extra = _read_toml(Path(extra_path))
        _reject_secrets(extra, "", extra_path)
        raw = _deep_merge(raw, extra)
    for var, (section, key) in ENV_KEYS.items():
        if var in env:
            raw.setdefault(section, {})[key] = env[var]
    for var, value in env.items():
        # Generic form for any other key: PAYWALL__ACCESS__FREE_ARTICLES_PER_MONTH=5
        if var.startswith("PAYWALL__") and var.count("__") == 2:
            _, section, key = var.split("__")
            raw.setdefault(section.lower(), {})[key.lower()] = value
    if overrides:
        raw = _deep_merge(raw, overrides)

    webhook = env.get(SECRET_ENV["stripe_webhook_secrets"], "")
    secrets = Secrets(
        stripe_secret_key=env.get(SECRET_ENV["stripe_secret_key"], "").strip(),
        stripe_webhook_secrets=tuple(s.strip() for s in webhook.split(",") if s.strip()),
        smtp_password=env.get(SECRET_ENV["smtp_password"], ""),
        signing_key=env.get(SECRET_ENV["signing_key"], ""),
        session_secret=env.get(SECRET_ENV["session_secret"], ""),
    )
    settings = Settings(
        server=build_section("server", raw.get("server", {}), ServerSettings),
        database=_database(raw.get("database", {}), env),
        stripe=build_section("stripe", raw.get("stripe", {}), StripeSettings),
        mail=build_section("mail", raw.get("mail", {}), SmtpSettings),
        logging=build_section("logging", raw.get("logging", {}), LoggingSettings),
        secrets=secrets,
        raw=raw,
    )
    if settings.mail.smtp_security not in ("starttls", "tls", "none"):
        raise ConfigError("mail.smtp_security must be starttls, tls or none")
    return settings
