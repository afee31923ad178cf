"""The ``paywall`` command: database, server, keys, and each feature's commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from paywall.access import cli as access_cli
from paywall.campaigns import cli as campaigns_cli
from paywall.clicontext import Context, pass_ctx
from paywall.config import CONFIG_DIR, MIGRATIONS_DIR
from paywall.experiments import cli as experiments_cli
from paywall.mail import cli as mail_cli
from paywall.readers import cli as readers_cli
from paywall.reports import cli as reports_cli
from paywall.webhooks import cli as webhooks_cli

__all__ = ["Context", "main", "pass_ctx", "upgrade_database"]


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = url
    return cfg


def upgrade_database(url: str, revision: str = "heads") -> None:
    """Apply migrations up to ``revision`` (the same function the tests use).

    "heads": features add their migrations on branches of their own, all applied.
    """
    from alembic import command

    command.upgrade(alembic_config(url), revision)


class Group(click.Group):
    """The ``paywall`` group: a database that cannot be used ends a command with one line saying
    what to fix (the URL, the server, ``paywall db upgrade``), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not _from_database(exc):
                raise
            from paywall.db import describe_error

            obj = ctx.find_object(Context)
            message = describe_error(exc, obj.settings.database.url if obj is not None else "")
            if message is None:
                raise
            raise click.ClickException(message) from None


def _from_database(exc: BaseException) -> bool:
    # sqlalchemy is only imported by commands that use the database; no need to import it here.
    return type(exc).__module__.startswith(("sqlalchemy.", "paywall.db"))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="paywall")
@click.pass_context
def main(ctx: click.Context) -> None:
    """paywall: donations and subscriptions for independent publishers."""
    ctx.ensure_object(Context)


def add_feature_commands(group: click.Group) -> None:
    """Add each feature's top-level words to ``group``.

    The feature modules import paywall.clicontext, never this module, so each imports on its own;
    they keep heavy imports inside their commands, so ``paywall --help`` stays light.
    """
    for command in (
        access_cli.comp_cli,
        access_cli.meter_cli,
        campaigns_cli.cli,
        experiments_cli.cli,
        mail_cli.mail,
        mail_cli.receipts_group,
        mail_cli.worker,
        readers_cli.readers,
        reports_cli.cli,
        webhooks_cli.stripe_group,
        webhooks_cli.events_group,
    ):
        group.add_command(command)


add_feature_commands(main)


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True, help="Target revision.")
@pass_ctx
def db_upgrade(obj: Context, revision: str) -> None:
    """Apply migrations (creates the SQLite file under var/ when needed)."""
    url = obj.settings.database.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    upgrade_database(url, revision)
    click.echo(f"database at {revision}: {_safe_url(url)}")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
def db_downgrade(obj: Context, revision: str) -> None:
    """Undo migrations down to REVISION ("base" removes every table)."""
    from alembic import command

    command.downgrade(alembic_config(obj.settings.database.url), revision)
    click.echo(f"database at {revision}")


@db.command("current")
@pass_ctx
def db_current(obj: Context) -> None:
    """Print the database's migration revisions (one per branch), and whether any are missing."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    # Features migrate on branches of their own, so a database has one current revision per head.
    with obj.db.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    script = ScriptDirectory.from_config(alembic_config(obj.settings.database.url))
    heads = set(script.get_heads())
    click.echo(" ".join(sorted(current)) or "base")
    if current == heads:
        click.echo("up to date")
    else:
        click.echo(f"behind: run `paywall db upgrade` (heads: {' '.join(sorted(heads))})")


def _safe_url(url: str) -> str:
    """The URL without its password, for output."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command()
@click.option("--bind", default=None, help="HOST:PORT (default: PAYWALL_BIND or config).")
@click.option(
    "--apply/--no-apply",
    default=None,
    help="Run the Stripe applier beside the server (default: [stripe] apply_with_server, true). "
    "With --no-apply, run `paywall stripe apply` yourself.",
)
@pass_ctx
def serve(obj: Context, bind: str | None, apply: bool | None) -> None:
    """Run the web service under gunicorn with config/gunicorn.conf.py, the Stripe applier and,
    with [server] events_bind, the beacon intake."""
    obj.check_signing()
    bind = bind or obj.settings.server.bind
    os.environ["PAYWALL_BIND"] = bind
    args = [sys.executable, "-m", "gunicorn", "-c", str(CONFIG_DIR / "gunicorn.conf.py"), "--bind", bind]
    args.append("paywall.wsgi:app")
    if apply is None:
        apply = obj.settings.stripe.apply_with_server
    events_bind = obj.settings.server.events_bind
    if not apply and not events_bind:
        os.execv(sys.executable, args)  # noqa: S606 - replaces this process with gunicorn
    from paywall.supervise import serve_with_applier

    appliers = obj.settings.stripe.appliers if apply else 0
    sys.exit(serve_with_applier(args, appliers=appliers, events_bind=events_bind))


@main.group()
def keys() -> None:
    """API keys (roles: site, finance, admin)."""


@keys.command("create")
@click.option("--role", type=click.Choice(["site", "finance", "admin"]), required=True)
@click.option("--name", required=True, help="A unique label, e.g. the site's host name.")
@pass_ctx
def keys_create(obj: Context, role: str, name: str) -> None:
    """Create a key and print it once (the last word of the output); only its hash is kept."""
    from paywall.auth import create_key

    try:
        with obj.db.transaction() as session:
            _, key = create_key(session, role=role, name=name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {role} key {name!r}; store it now, it is not shown again: {key}")


@keys.command("signing-key")
def keys_signing_key() -> None:
    """Print a new Ed25519 signing key (PEM) for PAYWALL_SIGNING_KEY; nothing is stored.

    To rotate: put the new key first, keep the old one after it until its tokens have expired.
    """
    from paywall.signing import generate_pem

    click.echo(generate_pem(), nl=False)


@keys.command("list")
@pass_ctx
def keys_list(obj: Context) -> None:
    """List keys (never their secrets)."""
    from paywall.auth import list_keys

    with obj.db.transaction(readonly=True) as session:
        rows = list_keys(session)
        for row in rows:
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            click.echo(f"{row.name}\t{row.role}\tpw_{row.key_id}_…\t{row.created_at:%Y-%m-%d}\t{state}")
        if not rows:
            click.echo("no keys; create one with: paywall keys create --role site --name SITE")


@keys.command("revoke")
@click.argument("name")
@pass_ctx
def keys_revoke(obj: Context, name: str) -> None:
    """Revoke the key NAME (takes effect within seconds on running servers)."""
    from paywall.auth import revoke_key

    with obj.db.transaction() as session:
        outcome = revoke_key(session, name)
    if outcome == "not_found":
        raise click.ClickException(f"no key named {name!r}")
    click.echo(f"{name}: {outcome}")


if __name__ == "__main__":  # pragma: no cover - ``python -m paywall.cli``
    main()
