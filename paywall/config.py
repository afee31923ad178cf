"""Settings, built once from config/default.toml, the file named by PAYWALL_CONFIG, and PAYWALL_* variables.

Precedence, lowest first: ``config/default.toml`` < ``$PAYWALL_CONFIG`` < environment. Secrets are
read from the environment only; a secret found in a TOML file is a configuration error, so a key
never ends up committed next to the defaults.

One way to declare a section: a frozen dataclass whose fields are the table's keys, types and
defaults, and whose ``__post_init__`` checks the values (raising ConfigError naming the key).
``settings.section("access", AccessSettings)`` builds it from the merged table once, checking for
unknown keys and wrong types first, and caches it. ``paywall/sections.py`` lists every section so
``create_app`` and the CLI build them all at start. ``load_settings`` checks the keys and types of
the core tables at once; their values, like every feature's, are checked when they are built.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

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
    "PAYWALL_EVENTS_BIND": ("server", "events_bind"),
    "PAYWALL_EVENTS_URL": ("server", "events_url"),
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


LOG_LEVELS = ("DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL")


def check_url(where: str, value: str, *, origin_only: bool = False) -> None:
    """Raise ConfigError unless ``value`` is an http(s) URL (only scheme://host[:port] if ``origin_only``)."""
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigError(f"{where}: {value!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: {value!r} is not an http(s) URL")
    if origin_only and (parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ConfigError(f"{where}: {value!r} is not an origin (scheme://host[:port], no path)")


@dataclass(frozen=True)
class ServerSettings:
    bind: str = "127.0.0.1:8000"
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 1048576
    allowed_origins: list[str] = field(default_factory=list)
    # The beacon intake (paywall/widget/intake.py): HOST:PORT it listens on ("" = none: the web
    # workers answer /support/events), and the public base URL the widget sends beacons to.
    events_bind: str = ""
    events_url: str = ""

    def __post_init__(self) -> None:
        host, sep, port = self.bind.rpartition(":")
        if not self.bind.startswith("unix:") and not (sep and host and port.isdigit()):
            raise ConfigError(f"server.bind: {self.bind!r} is not HOST:PORT (or unix:PATH)")
        check_url("server.public_url", self.public_url)
        if self.events_bind:
            host, sep, port = self.events_bind.rpartition(":")
            if not (sep and host and port.isdigit()):
                raise ConfigError(f"server.events_bind: {self.events_bind!r} is not HOST:PORT")
            if self.events_bind == self.bind:
                raise ConfigError("server.events_bind: must differ from server.bind")
        if self.events_url:
            check_url("server.events_url", self.events_url)
        for origin in self.allowed_origins:
            check_url("server.allowed_origins", origin, origin_only=True)
        if self.max_body_bytes < 1:
            raise ConfigError("server.max_body_bytes must be at least 1")


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty: the SQLite file in data_dir() (filled in by load_settings).
    url: str = ""
    pool_size: int = 5
    lock_timeout_seconds: int = 5

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ConfigError("database.pool_size must be at least 1")
        if self.lock_timeout_seconds < 0:
            raise ConfigError("database.lock_timeout_seconds must be 0 or more")


@dataclass(frozen=True)
class StripeSettings:
    api_base: str = "https://api.stripe.com"
    webhook_tolerance_seconds: int = 300
    # The applier (paywall.webhooks.applier): run by `paywall serve` itself unless false.
    apply_with_server: bool = True
    appliers: int = 1
    apply_batch_size: int = 100
    apply_poll_seconds: float = 0.05
    # /readyz says "degraded" when the oldest waiting event has waited longer than this.
    max_apply_lag_seconds: int = 60

    def __post_init__(self) -> None:
        if self.webhook_tolerance_seconds < 1:
            raise ConfigError("stripe.webhook_tolerance_seconds must be at least 1")
        if not 1 <= self.appliers <= 32:
            raise ConfigError("stripe.appliers must be between 1 and 32")
        if not 1 <= self.apply_batch_size <= 1000:
            raise ConfigError("stripe.apply_batch_size must be between 1 and 1000")
        if not 0.001 <= self.apply_poll_seconds <= 60:
            raise ConfigError("stripe.apply_poll_seconds must be between 0.001 and 60")
        if self.max_apply_lag_seconds < 1:
            raise ConfigError("stripe.max_apply_lag_seconds must be at least 1")


@dataclass(frozen=True)
class SmtpSettings:
    """``[mail]``: the SMTP connection (the mailer's own table is ``[mailer]``)."""

    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: str = "starttls"
    smtp_username: str = ""
    mail_from: str = ""

    def __post_init__(self) -> None:
        if self.smtp_security not in ("starttls", "tls", "none"):
            raise ConfigError("mail.smtp_security must be starttls, tls or none")
        if not 0 < self.smtp_port < 65536:
            raise ConfigError("mail.smtp_port must be between 1 and 65535")


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    format: str = "json"

    def __post_init__(self) -> None:
        if self.level.upper() not in LOG_LEVELS:
            raise ConfigError(f"logging.level must be one of {', '.join(LOG_LEVELS)}")
        if self.format not in ("json", "text"):
            raise ConfigError("logging.format must be json or text")


# The tables load_settings() types at once: the rest of the start-up needs them.
CORE_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "database": DatabaseSettings,
    "stripe": StripeSettings,
    "mail": SmtpSettings,
    "logging": LoggingSettings,
}


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
    """The merged configuration: the secrets, and each ``[section]`` built on first use by section()."""

    secrets: Secrets
    # The merged TOML + environment tables, which section() builds from.
    raw: Mapping[str, Any] = field(repr=False)
    root: Path = ROOT
    _sections: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def section(self, name: str, cls: type[T]) -> T:
        """The table ``[name]`` as a checked ``cls``, built on first use and cached.

        ``cls`` is a section dataclass, or a class with a ``from_table(name, table)`` classmethod
        for a section whose keys are names (``[plans.<name>]``).
        """
        cached = self._sections.get(name)
        if isinstance(cached, cls):
            return cached
        table = self.raw.get(name, {})
        from_table = getattr(cls, "from_table", None)
        value: T = from_table(name, table) if from_table else build_section(name, table, cls)
        self._sections[name] = value
        return value

    @property
    def server(self) -> ServerSettings:
        return self.section("server", ServerSettings)

    @property
    def database(self) -> DatabaseSettings:
        return self.section("database", DatabaseSettings)

    @property
    def stripe(self) -> StripeSettings:
        return self.section("stripe", StripeSettings)

    @property
    def mail(self) -> SmtpSettings:
        return self.section("mail", SmtpSettings)

    @property
    def logging(self) -> LoggingSettings:
        return self.section("logging", LoggingSettings)

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


# The environment gives only strings: these read one as the type its key wants.
_BOOL_WORDS = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}
_SCALARS: dict[Any, tuple[Callable[[str], Any], tuple[type, ...], str]] = {
    bool: (lambda v: _BOOL_WORDS.get(v.lower(), v), (bool,), "true or false"),
    int: (int, (int,), "an integer"),
    float: (float, (int, float), "a number"),
    str: (str, (str,), "a string"),
}


def _check_type(where: str, value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` wants it (a comma-separated string is a list), or ConfigError at ``where``."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build_section(where, value, typing.cast(type[Any], hint))
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list")
        item = (typing.get_args(hint) or (Any,))[0]
        items = [_check_type(f"{where}[]", v, item) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table")
        item = (typing.get_args(hint) or (Any,))[-1]
        return {key: _check_type(f"{where}.{key}", v, item) for key, v in value.items()}
    if hint not in _SCALARS:
        return value
    parse, accepted, expected = _SCALARS[hint]
    if isinstance(value, str):
        try:
            value = parse(value)
        except ValueError:
            raise ConfigError(f"{where}: expected {expected}") from None
    # bool is an int to Python, never to a settings file.
    typed = isinstance(value, accepted) and isinstance(value, bool) is (hint is bool)
    if not typed:
        raise ConfigError(f"{where}: expected {expected}")
    return float(value) if hint is float else value


def _typed_values(name: str, table: Any, cls: type[Any]) -> dict[str, Any]:
    """The table's values, each as its field's type; unknown or missing keys are errors."""
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
    unknown = sorted(set(table) - {f.name for f in fields})
    if unknown:
        raise ConfigError(f"[{name}] has unknown key(s): {', '.join(unknown)}")
    required = dataclasses.MISSING
    missing = [f.name for f in fields if f.name not in table and f.default is f.default_factory is required]
    if missing:
        raise ConfigError(f"[{name}] is missing key(s): {', '.join(missing)}")
    return {key: _check_type(f"{name}.{key}", table[key], hints[key]) for key in table}


def build_section(name: str, table: Any, cls: type[T]) -> T:
    """A TOML table as a ``cls`` dataclass: unknown keys and wrong types are errors, and the
    dataclass's own ``__post_init__`` checks the values."""
    return cls(**_typed_values(name, table, cls))


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
    for name, cls in CORE_SECTIONS.items():
        _typed_values(name, raw.get(name, {}), cls)
    database = raw.setdefault("database", {})
    if not database.get("url", "").strip():
        database["url"] = f"sqlite:///{data_dir(env) / SQLITE_FILE}"
    return Settings(secrets=secrets, raw=raw)
