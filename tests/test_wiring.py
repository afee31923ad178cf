"""Wiring is explicit: every module imports on its own, and features work without the web app.

No module may depend on another having been imported first (an import cycle that only the app's
import order hid), and no feature may depend on a registry the app fills while it is built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import flask_smorest
import pytest
from flask import Flask
from flask.testing import FlaskClient

import paywall
from paywall.api import Blueprint
from paywall.db import Database
from tests.support.stripe_events import deliver_all
from tests.test_erasure import GUEST_EMAIL, GUEST_NAME, donation_for, personal_data_left

PACKAGE = Path(paywall.__file__).resolve().parent

# Imports each module named on stdin in a forked child of a process that has imported no paywall
# module: each child starts as a fresh interpreter would, so a module that needs another one
# imported first fails. Third-party libraries are loaded once before forking, only for speed
# (they never import paywall, so they cannot hide a cycle in it).
PROBE = r"""
import importlib, json, os, sys, traceback

for lib in ("flask", "flask_smorest", "sqlalchemy.orm", "marshmallow", "stripe", "prometheus_client",
            "jinja2", "click", "webargs.flaskparser", "apispec", "alembic", "jwt", "flask_limiter"):
    importlib.import_module(lib)
assert not [m for m in sys.modules if m == "paywall" or m.startswith("paywall.")]
failed = []
for name in sys.stdin.read().split():
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            importlib.import_module(name)
        except BaseException:
            print(f"--- import {name}", file=sys.stderr)
            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name)
print(json.dumps(failed))
"""


def paywall_modules() -> list[str]:
    """Every module under paywall/, by its dotted name (read from the files, not imported)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.slow
def test_every_module_imports_on_its_own() -> None:
    modules = paywall_modules()
    assert "paywall.webhooks.cli" in modules and "paywall.app" in modules
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        input="\n".join(modules),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [], done.stderr


def test_webhooks_cli_imports_in_a_fresh_interpreter() -> None:
    """The cycle the issue named: it failed unless paywall.cli had been imported first."""
    done = subprocess.run(
        [sys.executable, "-c", "import paywall.webhooks.cli"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


ERASE = """
import sys
from paywall.db import Database
from paywall.erasure import erase_reader

database = Database(sys.argv[1])
with database.transaction() as session:
    print(erase_reader(session, sys.argv[2]))
built = sorted(m for m in ("paywall.app", "paywall.cli") if m in sys.modules)
print(" ".join(built) or "no app, no cli")
"""


def test_erasure_from_a_plain_script_blanks_the_donors_payment(
    client: FlaskClient, db: Database, migrated: str
) -> None:
    """erase_reader called by a script that builds neither the app nor the CLI still reaches the
    donor's address on ``payments`` (it once answered "erased" and left it there)."""
    deliver_all(client, donation_for("donor_7"))
    assert any(place.startswith("payments:") for place in personal_data_left(db, GUEST_EMAIL))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWALL_")}
    done = subprocess.run(
        [sys.executable, "-c", ERASE, migrated, "donor_7"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["erased", "no app, no cli"]
    assert personal_data_left(db, GUEST_EMAIL, GUEST_NAME) == []


def test_every_api_blueprint_refuses_unknown_query_parameters(app: Flask) -> None:
    """The strict parser comes with paywall.api.Blueprint, not a process-wide patch: an API
    blueprint made from flask-smorest's own class would quietly accept ``?stauts=failed``."""
    plain = [
        name
        for name, blueprint in app.blueprints.items()
        if isinstance(blueprint, flask_smorest.Blueprint) and not isinstance(blueprint, Blueprint)
    ]
    assert plain == []
    assert flask_smorest.Blueprint.ARGUMENTS_PARSER is not Blueprint.ARGUMENTS_PARSER
