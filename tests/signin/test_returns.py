"""safe_return_url: only pages of the site or of this service; everything else is None."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from paywall.config import Settings
from paywall.signin.returns import safe_return_url


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        server={"allowed_origins": ["https://news.example.org"]},
        checkout={"site_url": "https://www.example.net/home"},
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example.org/2026/11/story?x=1#top",
        "https://NEWS.example.org/a",
        "https://www.example.net/other",
        "https://paywall.example.org/account",
    ],
)
def test_allowed(settings: Settings, url: str) -> None:
    assert safe_return_url(settings, url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "https://evil.example.com/",
        "http://news.example.org/a",  # another scheme is another origin
        "https://news.example.org:8443/a",
        "https://news.example.org@evil.example.com/",
        "https://news.example.org\\@evil.example.com/",
        "//news.example.org/a",
        "/relative",
        "javascript:alert(1)",
        "https://news.example.org/a b",
        "https://news.example.org/\nx",
        "https://news.example.org:99999/",
        "https://news.example.org/" + "a" * 2000,
    ],
)
def test_refused(settings: Settings, url: str | None) -> None:
    assert safe_return_url(settings, url) is None
