"""Configuration: defaults, an override file, the environment, secrets only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from paywall import config
from paywall.config import ConfigError, load_settings
from paywall.sections import SECTIONS


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s.database.url == f"sqlite:///{config.ROOT / 'var' / 'paywall.sqlite3'}"
    assert s.server.bind == "127.0.0.1:8000"
    assert s.stripe.api_base == "https://api.stripe.com"
    assert s.secrets.stripe_webhook_secrets == ()
    assert "PAYWALL_STRIPE_SECRET_KEY" in " ".join(s.missing())


def test_file_then_environment_precedence(tmp_path: Path) -> None:
    extra = tmp_path / "site.toml"
    extra.write_text('[server]\nbind = "0.0.0.0:9000"\npublic_url = "https://from-file"\n')
    s = load_settings(environ={"PAYWALL_CONFIG": str(extra), "PAYWALL_PUBLIC_URL": "https://from-env"})
    assert s.server.bind == "0.0.0.0:9000"
    assert s.server.public_url == "https://from-env"


def test_webhook_secrets_are_comma_separated_for_rotation() -> None:
    s = load_settings(environ={"PAYWALL_STRIPE_WEBHOOK_SECRET": "whsec_new, whsec_old"})
    assert s.secrets.stripe_webhook_secrets == ("whsec_new", "whsec_old")
    assert "whsec_new" not in repr(s)


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    extra = tmp_path / "bad.toml"
    extra.write_text('[stripe]\nsecret_key = "sk_live_x"\n')
    with pytest.raises(ConfigError, match="secret"):
        load_settings(environ={"PAYWALL_CONFIG": str(extra)})


def test_unknown_key_and_wrong_type_are_errors(tmp_path: Path) -> None:
    extra = tmp_path / "bad.toml"
    extra.write_text("[server]\nbindd = 1\n")
    with pytest.raises(ConfigError, match="bindd"):
        load_settings(environ={"PAYWALL_CONFIG": str(extra)})
    with pytest.raises(ConfigError, match="integer"):
        load_settings(environ={"PAYWALL__SERVER__MAX_BODY_BYTES": "lots"})


def test_livemode_from_key() -> None:
    assert load_settings(environ={"PAYWALL_STRIPE_SECRET_KEY": "sk_live_abc"}).stripe_livemode is True
    assert load_settings(environ={"PAYWALL_STRIPE_SECRET_KEY": "sk_test_abc"}).stripe_livemode is False
    assert load_settings(environ={}).stripe_livemode is None


def test_shipped_defaults_are_the_dataclass_defaults() -> None:
    """config/default.toml documents every key; each section's dataclass holds the same defaults,
    so a section built without the file (a test, a script) behaves as shipped."""
    s = load_settings(environ={})
    for name, cls in SECTIONS.items():
        if name in ("database", "plans"):
            continue  # the URL is filled in by load_settings; plans are tables of names, not keys
        assert s.section(name, cls) == cls(), name
