"""The server-mode example in the docs (docs/examples/server_mode.py), run as written against a live
service: readers with free articles read in full, the fourth article is an excerpt with the gate's
token, nothing past the excerpt leaves the site's server, and a paid reader is never gated."""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from paywall import clock, signing
from paywall.config import Settings
from paywall.db import Database
from tests.support import access_rows as f
from tests.support.servers import serving

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def example(app: Flask, site_key: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    monkeypatch.setenv("PAYWALL_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("PAYWALL_SITE_KEY", site_key["Authorization"].split()[1])
    spec = importlib.util.spec_from_file_location("server_mode", ROOT / "docs/examples/server_mode.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with serving(server):
        yield module


def _token(page: str) -> str:
    return page.split('data-token="', 1)[1].split('"', 1)[0]


def test_metered_readers_read_in_full_and_the_fourth_article_is_an_excerpt(
    example: Any, settings: Settings
) -> None:
    rest = example.ARTICLE[-1]
    for n in range(1, 4):
        page = example.render_article("cookie-123", f"a{n}")
        assert rest in page, f"article {n} of the free three was cut"
    gated = example.render_article("cookie-123", "a4")
    assert rest not in gated and example.ARTICLE[0] in gated
    claims = signing.verify(settings, _token(gated), purpose="access")
    assert (claims["sub"], claims["reason"], claims["art"]) == ("cookie-123", "meter_exhausted", "a4")
    # A supporters-only article is cut for a reader with free articles left, too.
    assert rest not in example.render_article("cookie-456", "a9", level="supporters")


def test_a_subscriber_reads_everything(example: Any, db: Database) -> None:
    with db.transaction() as s:
        f.subscription(s, f.reader(s, "member-1"), current_period_end=clock.now() + dt.timedelta(days=20))
    for n in range(6):
        page = example.render_article("member-1", f"a{n}", level="supporters")
        assert example.ARTICLE[-1] in page
