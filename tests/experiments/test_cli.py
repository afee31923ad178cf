"""paywall experiments preview: a staff preview link for one variant."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from paywall.cli import main
from paywall.config import load_settings
from paywall.experiments.preview import verify_preview
from tests.conftest import SIGNING_KEY

CONFIG = """
[server]
public_url = "https://paywall.example.org"

[appeal.experiments.footer-copy]
start = "2020-01-01"
end = "2020-12-31"
channels = ["footer", "gate"]
[appeal.experiments.footer-copy.variants.urgent]
headline = "We are in survival mode"
"""


@pytest.fixture
def configured(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    path = tmp_path / "paywall.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("PAYWALL_CONFIG", str(path))
    monkeypatch.setenv("PAYWALL_SIGNING_KEY", SIGNING_KEY)
    return runner


def test_preview_prints_a_link_to_the_preview_page(configured: CliRunner) -> None:
    out = configured.invoke(main, ["experiments", "preview", "footer-copy", "urgent"])
    assert out.exit_code == 0, out.output
    page, token = out.output.strip().split("#paywall_preview=")
    assert page == "https://paywall.example.org/support/preview"
    preview = verify_preview(load_settings(), token)
    assert (preview.experiment.name, preview.variant.name, preview.channel) == (
        "footer-copy",
        "urgent",
        "footer",
    )


def test_preview_on_a_page_of_the_site_and_the_gate(configured: CliRunner) -> None:
    args = [
        "experiments",
        "preview",
        "footer-copy",
        "urgent",
        "--channel",
        "gate",
        "--url",
        "https://news.example.org/a#x",
    ]
    out = configured.invoke(main, args)
    assert out.exit_code == 0, out.output
    page, token = out.output.strip().split("#paywall_preview=")
    assert page == "https://news.example.org/a"
    assert verify_preview(load_settings(), token).channel == "gate"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "urgent"], "no experiment 'nope'"),
        (["footer-copy", "calm"], "has no variant 'calm' (its variants: urgent)"),
        (["footer-copy", "urgent", "--url", "javascript:alert(1)"], "must be an http(s) URL"),
    ],
)
def test_preview_refuses_what_is_not_configured(configured: CliRunner, args: list[str], message: str) -> None:
    out = configured.invoke(main, ["experiments", "preview", *args])
    assert out.exit_code == 2 and message in out.output
