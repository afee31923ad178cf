"""The paywall command: help, db upgrade, keys, and serve answering over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner

from paywall.cli import alembic_config, main
from paywall.db import Database
from tests.support.faults import free_port, wait_healthy


def test_help_lists_everything(runner: CliRunner) -> None:
    out = runner.invoke(main, ["--help"]).output
    for name in ("db", "serve", "keys"):
        assert name in out


def test_keys_create_list_revoke(runner: CliRunner, db: Database) -> None:
    out = runner.invoke(main, ["keys", "create", "--role", "finance", "--name", "books"])
    assert out.exit_code == 0, out.output
    key = out.output.split()[-1]
    assert key.startswith("pw_")
    listing = runner.invoke(main, ["keys", "list"]).output
    assert "books" in listing and "finance" in listing and key not in listing
    assert runner.invoke(main, ["keys", "create", "--role", "finance", "--name", "books"]).exit_code != 0
    assert "revoked" in runner.invoke(main, ["keys", "revoke", "books"]).output
    assert "already_revoked" in runner.invoke(main, ["keys", "revoke", "books"]).output
    assert runner.invoke(main, ["keys", "revoke", "nobody"]).exit_code != 0


@pytest.mark.slow
def test_db_upgrade_and_serve_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    """What `make run` does: migrate a new SQLite file, then serve with gunicorn and answer /healthz."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    env["PAYWALL_DATABASE_URL"] = f"sqlite:///{tmp_path}/var/paywall.sqlite3"
    env["PAYWALL_WORKERS"] = "1"
    paywall = [sys.executable, "-m", "paywall.cli"]
    subprocess.run([*paywall, "db", "upgrade"], env=env, check=True, cwd=tmp_path, capture_output=True)
    key = subprocess.run(
        [*paywall, "keys", "create", "--role", "site", "--name", "x"],
        env=env,
        check=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    port = free_port()
    proc = subprocess.Popen(
        [*paywall, "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_healthy(proc, f"http://127.0.0.1:{port}", seconds=30)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/readers/cli-reader",
            data=b'{"email": "cli@example.org"}',
            method="PUT",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 201
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    # Missing secrets are announced once at start, by name; the key never appears in the log.
    assert output.count("not configured: PAYWALL_STRIPE_SECRET_KEY") == 1
    assert key not in output


def test_db_current_names_every_branch_and_says_when_behind(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PAYWALL_DATABASE_URL", f"sqlite:///{tmp_path}/current.sqlite3")
    assert runner.invoke(main, ["db", "upgrade", "--revision", "0003"]).exit_code == 0
    result = runner.invoke(main, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "0003"
    assert "behind: run `paywall db upgrade`" in result.output
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(main, ["db", "current"])
    assert result.exit_code == 0, result.output
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) > 1  # features migrate on branches of their own
    assert result.output.splitlines() == [" ".join(sorted(heads)), "up to date"]
