"""Count the SQL statements the Stripe sync runs per applied event, per shared scenario.

Every scenario of the shared fixtures (after its base scenario, as the tests replay them) goes
through the path a webhook takes after the signature check, on a fresh database, once on SQLite
and once on PostgreSQL: each event recorded as the request records it (``inbox.accept``), then
the scenario applied as the applier does (``applier.drain``: one batch). Statements are counted
with a SQLAlchemy ``before_cursor_execute`` listener on both engines plus every
``DriverStatement`` execution (none on this path today), and include the claim, the advisory
locks, SAVEPOINT/RELEASE and SQLite's BEGIN IMMEDIATE, not PostgreSQL's BEGIN/COMMIT (the DBAPI
issues those without a statement). Counts are deterministic; no time is measured.

    .venv/bin/python bench/sync_statements.py                      # SQLite + PostgreSQL (h8)
    .venv/bin/python bench/sync_statements.py --pg none --show a   # SQLite, print a's statements
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event as sa_event

import paywall.models  # noqa: F401 - registers every table
from paywall.cli import upgrade_database
from paywall.config import Settings, load_settings
from paywall.db import Database, DriverStatement
from paywall.webhooks import applier, inbox
from tests.conftest import WEBHOOK_SECRET
from tests.support.stripe_events import BASES, SCENARIOS, body_of, load_scenario, scenario_file

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/h8_bench"


class Counting:
    """Statements seen on an engine (and by DriverStatement) while ``on``."""

    def __init__(self, db: Database) -> None:
        self.on = False
        self.statements: list[str] = []
        sa_event.listen(db.engine, "before_cursor_execute", self._seen)
        if db.dialect == "postgresql":  # on SQLite the durable engine is db.engine with options
            sa_event.listen(db.durable_autocommit_engine, "before_cursor_execute", self._seen)
        original = DriverStatement.execute
        counter = self

        def execute(stmt: DriverStatement, conn: Any, params: dict[str, Any]) -> Any:
            if counter.on:
                counter.statements.append("driver: " + stmt.sql)
            return original(stmt, conn, params)

        DriverStatement.execute = execute  # type: ignore[method-assign]

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.on:
            self.statements.append(statement)

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        start = len(self.statements)
        self.on = True
        out: list[str] = []
        try:
            yield out
        finally:
            self.on = False
            out.extend(self.statements[start:])


def _fresh(url: str) -> None:
    db = Database(url)
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    db.dispose()
    upgrade_database(url)


def _settings(url: str) -> Settings:
    return load_settings(
        environ={
            "PAYWALL_DATABASE_URL": url,
            "PAYWALL_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PAYWALL_PUBLIC_URL": "https://paywall.example.org",
        }
    )


def scenarios() -> list[tuple[str, str]]:
    """(letter, name) of every shared scenario, in file order."""
    out = []
    for path in sorted(SCENARIOS.glob("?_*.json")):
        letter, name = path.stem.split("_", 1)
        out.append((letter, name))
    return out


def short(statement: str) -> str:
    """A statement's first words and table, for the listing."""
    flat = re.sub(r"\s+", " ", statement).strip()
    return flat[:150]


def run(url: str, show: set[str]) -> dict[str, tuple[int, int, Counter[str]]]:
    """Scenario name -> (events, statements, statements by kind)."""
    results: dict[str, tuple[int, int, Counter[str]]] = {}
    for letter, name in scenarios():
        _fresh(url)
        db = Database(url)
        settings = _settings(url)
        counter = Counting(db)
        base = len(scenario_file(BASES[name])) if name in BASES else 0
        events = load_scenario(name)
        for event in events[:base]:
            inbox.accept(db, settings, body_of(event), event)
        applier.drain(db, settings)
        with counter.counting() as seen:
            for event in events[base:]:
                inbox.accept(db, settings, body_of(event), event)
            applier.drain(db, settings)
        total = len(seen)
        kinds: Counter[str] = Counter(" ".join(short(statement).split()[:4]) for statement in seen)
        if letter in show:
            print(f"  {name}: {len(seen)}")
            for statement in seen:
                print(f"      {short(statement)}")
        results[name] = (len(events) - base, total, kinds)
        db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL, or 'none'")
    parser.add_argument("--sqlite", default="yes", choices=("yes", "no"))
    parser.add_argument("--show", default="", help="scenario letters whose statements to print, e.g. 'ab'")
    args = parser.parse_args()
    targets: list[tuple[str, str]] = []
    tmp = tempfile.TemporaryDirectory()
    if args.sqlite == "yes":
        targets.append(("sqlite", f"sqlite:///{tmp.name}/bench.db"))
    if args.pg != "none":
        targets.append(("postgresql", args.pg))
    table: dict[str, dict[str, tuple[int, int, Counter[str]]]] = {}
    for label, url in targets:
        print(f"== {label}")
        table[label] = run(url, set(args.show))
    labels = [label for label, _ in targets]
    print()
    print("| scenario | events | " + " | ".join(f"{label} stmts/event" for label in labels) + " |")
    print("|---|---:|" + "---:|" * len(labels))
    names = [name for _, name in scenarios()]
    for name in names:
        events = table[labels[0]][name][0]
        cells = [f"{table[label][name][1] / events:.1f}" for label in labels]
        print(f"| {name} | {events} | " + " | ".join(cells) + " |")
    events_all = sum(table[labels[0]][name][0] for name in names)
    cells = [f"{sum(table[label][n][1] for n in names) / events_all:.2f}" for label in labels]
    print(f"| all | {events_all} | " + " | ".join(cells) + " |")
    for label in labels:
        kinds: Counter[str] = Counter()
        for name in names:
            kinds.update(table[label][name][2])
        print(f"\n{label}: statements by kind over all scenarios")
        for kind, count in kinds.most_common(25):
            print(f"  {count:6d}  {kind}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
