"""The docs name only what exists: every `paywall …` command and every `METHOD /path` route written
in README.md and docs/*.md resolves, and every docs/*.md is linked from the README.

Commands are read from code (fenced blocks and `inline` spans), where "paywall" starts a command
line, not from prose, where it names the product. Alternatives (`keys create|list`, `mail drain |
status`) are each checked; words after a command that takes no subcommand are its arguments."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from flask import Flask
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from paywall.cli import main
from paywall.front import FRONT_ROUTES

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]

FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE = re.compile(r"`([^`]+)`")
# "paywall" at the start of a line or span, after a shell prompt, `$(`, `&&`, `;`, or a bin/ folder.
COMMAND = re.compile(r"(?:^|\$\(|&&|;|\$ |bin/)\s*paywall[ \t]+([^\n`)\"]*)", re.MULTILINE)
WORD = re.compile(r"[a-z][a-z0-9-]*")
ROUTE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) +(/[^\s`)\"',;]*)")
PLACEHOLDER = re.compile(r"<[^>/]*>|\{[^}/]*\}")


def code_of(text: str) -> list[str]:
    """The fenced blocks and inline code spans of a Markdown text."""
    blocks = FENCED.findall(text)
    rest = FENCED.sub("", text)
    return blocks + INLINE.findall(rest)


def documented_commands(text: str) -> list[list[str]]:
    """Each command a page writes, as its words; `a|b` and `a | b` give one entry per alternative."""
    found = []
    for code in code_of(text):
        for tail in COMMAND.findall(code):
            segments: list[list[str]] = [[]]
            for token in re.findall(r"\||[^\s|]+", tail):
                if token == "|":
                    segments.append([])
                elif token.startswith(("[", "-", "<", "{")):
                    break  # options and optional parts: no more command words
                else:
                    segments[-1].append(token)
            first = _leading_words(segments[0])
            if not first:
                continue
            found.append(first)
            for alternative in segments[1:]:
                words = _leading_words(alternative)
                if words:
                    found.append([*first[:-1], *words])
    return found


def _leading_words(tokens: list[str]) -> list[str]:
    words = []
    for token in tokens:
        if not WORD.fullmatch(token):
            break
        words.append(token)
    return words


def resolve(words: list[str]) -> str | None:
    """None when the words name commands of `paywall`; else what failed to resolve."""
    command: click.Command = main
    ctx = click.Context(main)
    for word in words:
        if not isinstance(command, click.Group):
            return None  # the rest are the command's arguments
        sub = command.get_command(ctx, word)
        if sub is None:
            return f"no command {word!r} under {command.name!r}"
        command = sub
    return None


def documented_routes(text: str) -> list[tuple[str, str]]:
    """Each (METHOD, path) a page mentions, without its query, placeholders filled with a value."""
    found = []
    for method, path in ROUTE.findall(text):
        path = path.split("?", 1)[0].rstrip(".:")
        found.append((method, PLACEHOLDER.sub("1", path)))
    return found


def route_exists(app: Flask, method: str, path: str) -> bool:
    if (method, path) in app.extensions.get(FRONT_ROUTES, ()):
        return True  # served in front of Flask (POST /support/events, POST /v1/access)
    adapter = app.url_map.bind("paywall.example.org")
    try:
        adapter.match(path, method=method)
    except RequestRedirect:
        return True  # the route, reached with or without its trailing slash
    except (NotFound, MethodNotAllowed):
        return False
    return True


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_documented_command_exists(page: Path) -> None:
    commands = documented_commands(page.read_text())
    unknown = [(" ".join(words), why) for words in commands if (why := resolve(words))]
    assert unknown == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_documented_route_exists(page: Path, app: Flask) -> None:
    routes = documented_routes(page.read_text())
    assert [f"{m} {p}" for m, p in routes if not route_exists(app, m, p)] == []


def test_every_doc_is_linked_from_the_readme() -> None:
    linked = set(re.findall(r"\]\((docs/[^)#\s]+\.md)", README.read_text()))
    assert {d.relative_to(ROOT).as_posix() for d in DOCS} - linked == set()


def test_the_docs_are_read_at_all() -> None:
    """A pattern that stopped matching would pass every check above without reading a word."""
    text = "\n".join(page.read_text() for page in PAGES)
    assert len(documented_commands(text)) >= 40 and len(documented_routes(text)) >= 40


def test_the_checks_find_what_the_docs_write() -> None:
    """The extraction itself: alternatives, arguments, options, and prose that is not a command."""
    text = (
        "```\npaywall db upgrade|downgrade REV|current\n"
        "paywall mail drain | status | retry ID\n"
        "paywall report revenue|donors [--format csv|json]\n```\n"
        "Run `paywall appeals send fall-2026 --dry-run`; paywall is a service, see `paywall/cli.py`.\n"
        'and `export KEY="$(paywall keys signing-key)"`, `GET /v1/readers/<reader>?x=1`.'
    )
    assert documented_commands(text) == [
        ["db", "upgrade"],
        ["db", "downgrade"],
        ["db", "current"],
        ["mail", "drain"],
        ["mail", "status"],
        ["mail", "retry"],
        ["report", "revenue"],
        ["report", "donors"],
        ["appeals", "send", "fall-2026"],
        ["keys", "signing-key"],
    ]
    assert resolve(["appeals", "send", "fall-2026"]) is None
    assert resolve(["keys", "nope"]) == "no command 'nope' under 'keys'"
    assert documented_routes(text) == [("GET", "/v1/readers/1")]
