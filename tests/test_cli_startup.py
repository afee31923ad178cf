"""`paywall --help` and other light commands start in well under a second (issue 13, point 18).

Asserted on what gets imported, not on a time (timed tests flake on a shared machine): stripe-python,
SQLAlchemy, Flask and flask-smorest were most of the second of CPU `paywall --help` used to take.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("stripe", "sqlalchemy", "flask", "flask_smorest", "marshmallow", "alembic", "openpyxl", "jinja2")

PROBE = """
import json, sys
from paywall.cli import main
try:
    main(sys.argv[1:], prog_name="paywall")
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.readline())))
print(json.dumps(heavy), file=sys.stderr)
"""


def heavy_imports(*args: str) -> tuple[list[str], str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(HEAVY) + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stderr.strip().splitlines()[-1]), proc.stdout


@pytest.mark.slow
def test_help_and_light_commands_start_without_heavy_imports() -> None:
    heavy, out = heavy_imports("--help")
    assert heavy == []
    for word in (
        "appeals",
        "comp",
        "db",
        "events",
        "keys",
        "mail",
        "meter",
        "receipts",
        "report",
        "serve",
        "stripe",
    ):
        assert f"\n  {word} " in out, word  # every feature's command is still listed, with its help
    for args in (["stripe", "--help"], ["report", "revenue", "--help"], ["appeals", "--help"], ["--version"]):
        heavy, out = heavy_imports(*args)
        assert heavy == [], (args, heavy)
        assert out.strip(), args
