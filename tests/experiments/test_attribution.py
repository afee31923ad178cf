"""paywall/experiments/attribution.py: what a Checkout is attributed to, from an ask or the buyer's arm."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from paywall.config import Settings
from paywall.experiments.asks import Ask, encode_ask
from paywall.experiments.assignment import assign
from paywall.experiments.attribution import (
    DIRECT,
    Attribution,
    attribution,
    carried_ask,
    from_ask,
    resolve,
    variant_of,
)
from paywall.widget.settings import appeal_settings

NOW = dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.UTC)
EXPERIMENTS: dict[str, Any] = {
    "footer-copy": {
        "holdback": 0.2,
        "start": "2026-12-01",
        "end": "2027-01-31",
        "channels": ["footer"],
        "variants": {
            "plain": {"weight": 1, "headline": "Help keep us open"},
            "urgent": {"weight": 1, "headline": "We are in survival mode", "presets": [1500, 3000]},
        },
    },
    "gate-copy": {
        "start": "2026-12-01",
        "end": "2027-01-31",
        "channels": ["gate", "giving-tuesday"],
        "variants": {"short": {"weight": 1}, "long": {"weight": 1}},
    },
}


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(appeal={"experiments": EXPERIMENTS})


def subject_in(settings: Settings, arm: str, experiment: str = "footer-copy", prefix: str = "reader-") -> str:
    """The first subject ``prefix<n>`` the hash puts in ``arm``."""
    found = appeal_settings(settings).experiments[experiment]
    return next(f"{prefix}{n}" for n in range(10_000) if assign(found, f"{prefix}{n}").variant == arm)


def ask(settings: Settings, subject: str, *, channel: str = "footer", experiment: str = "footer-copy",
        variant: str = "urgent", issued: dt.datetime = NOW, preview: bool = False) -> str:  # fmt: skip
    return encode_ask(settings, Ask(channel, experiment, variant, subject, issued, preview=preview))


def test_an_ask_of_the_buyer_names_its_channel_experiment_and_variant(settings: Settings) -> None:
    token = ask(settings, "reader-1", channel="gate", experiment="gate-copy", variant="long")
    assert attribution(settings, token, "reader-1", NOW) == {
        "appeal_experiment": "gate-copy",
        "appeal_variant": "long",
        "appeal_channel": "gate",
    }
    # A guest (no token of ours) clicked the link: the ask alone says who was asked.
    assert attribution(settings, token, None, NOW)["appeal_channel"] == "gate"


def test_an_ask_for_somebody_else_is_ignored_for_the_buyers_own_arm(settings: Settings) -> None:
    buyer = subject_in(settings, "plain")
    token = ask(settings, "reader-other", variant="urgent")
    assert attribution(settings, token, buyer, NOW) == {
        "appeal_experiment": "footer-copy",
        "appeal_variant": "plain",
        "appeal_channel": DIRECT,
    }


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        "a.b.c",
        "x" * 5000,
        "@@@.@@@",
    ],
)
def test_bad_asks_never_fail_and_fall_back_to_the_arm(settings: Settings, bad: str) -> None:
    buyer = subject_in(settings, "urgent")
    assert attribution(settings, bad, buyer, NOW)["appeal_channel"] == DIRECT
    assert attribution(settings, bad, None, NOW) == {}


def test_tampered_expired_and_preview_asks_are_ignored(settings: Settings) -> None:
    buyer = subject_in(settings, "plain")
    good = ask(settings, buyer)
    body, mac = good.split(".")
    tampered = f"{body}.{mac[:-2]}AA" if not mac.endswith("AA") else f"{body}.{mac[:-2]}BB"
    expired = ask(settings, buyer, issued=NOW - dt.timedelta(hours=25))
    preview = ask(settings, buyer, preview=True)
    for token in (tampered, expired, preview):
        assert attribution(settings, token, buyer, NOW) == {
            "appeal_experiment": "footer-copy",
            "appeal_variant": "plain",
            "appeal_channel": DIRECT,
        }
    assert attribution(settings, good, buyer, NOW)["appeal_variant"] == "urgent"


def test_a_holdback_reader_who_gives_anyway_is_holdback_direct(settings: Settings) -> None:
    buyer = subject_in(settings, "holdback")
    assert attribution(settings, None, buyer, NOW) == {
        "appeal_experiment": "footer-copy",
        "appeal_variant": "holdback",
        "appeal_channel": DIRECT,
    }


def test_an_anonymous_browser_is_assigned_by_its_key(settings: Settings) -> None:
    browser = subject_in(settings, "urgent", prefix=" anon:browser-id-000000-")
    found = resolve(settings, None, browser, NOW)
    assert found == Attribution(DIRECT, "footer-copy", "urgent", browser)


def test_nothing_runs_nothing_is_sent(settings: Settings, make_settings: Callable[..., Settings]) -> None:
    assert attribution(settings, None, "reader-1", NOW - dt.timedelta(days=30)) == {}
    assert attribution(settings, None, None, NOW) == {}
    plain = make_settings()
    assert attribution(plain, None, "reader-1", NOW) == {}
    # An ask from a channel without an experiment still says where the reader clicked.
    token = ask(plain, "reader-1", experiment="", variant="")
    assert attribution(plain, token, "reader-1", NOW) == {"appeal_channel": "footer"}


def test_a_plain_copy_ask_counts_for_the_readers_footer_arm(settings: Settings) -> None:
    """Intention to treat: the gate showed no experiment, the payment still counts for the arm."""
    buyer = subject_in(settings, "holdback")
    token = ask(settings, buyer, channel="signin-gate", experiment="", variant="")
    assert attribution(settings, token, buyer, NOW) == {
        "appeal_experiment": "footer-copy",
        "appeal_variant": "holdback",
        "appeal_channel": "signin-gate",
    }


def test_a_mail_ask_is_held_to_its_lifetime_at_the_links_time(settings: Settings) -> None:
    sent = NOW - dt.timedelta(days=3)
    token = ask(
        settings, "reader-9", channel="giving-tuesday", experiment="gate-copy", variant="short", issued=sent
    )
    assert from_ask(settings, token, "reader-9", NOW) is None
    found = from_ask(settings, token, "reader-9", NOW, checked_at=sent)
    assert found == Attribution("giving-tuesday", "gate-copy", "short", "reader-9")


def test_the_carried_ask_names_the_same_attribution(settings: Settings) -> None:
    browser = subject_in(settings, "plain", prefix=" anon:browser-id-000000-")
    found = resolve(settings, None, browser, NOW)
    assert found is not None
    later = NOW + dt.timedelta(hours=1)
    token = carried_ask(settings, found, NOW)
    # The form token of a guest names no reader: the carried ask alone brings the arm back.
    assert resolve(settings, token, None, later) == found
    assert resolve(settings, token, "reader-else", later) != found


def test_the_variant_of_an_attribution(settings: Settings) -> None:
    urgent = variant_of(settings, Attribution("footer", "footer-copy", "urgent", "r"))
    assert urgent is not None and urgent.presets == {"": (1500, 3000)}  # a plain list: the default currency
    assert variant_of(settings, Attribution(DIRECT, "footer-copy", "holdback", "r")) is None
    assert variant_of(settings, Attribution("footer", "gone", "urgent", "r")) is None
    assert variant_of(settings, Attribution("footer", "", "", "r")) is None
    assert variant_of(settings, None) is None
