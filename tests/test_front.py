"""paywall/front.py: how a front route reads a body, as werkzeug would (tests through real routes
are beside each route: tests/access/test_endpoint.py, tests/webhooks/test_views.py, tests/widget)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from paywall import front
from paywall.errors import ApiError


class Unending(io.RawIOBase):
    """A stream that never ends: a read past what was sent would wait forever on a real socket."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("read to the end of an unterminated stream")
        return b"x" * size


def environ(length: str | None, body: Any, *, terminated: bool = False) -> dict[str, Any]:
    env: dict[str, Any] = {"wsgi.input": body}
    if length is not None:
        env["CONTENT_LENGTH"] = length
    if terminated:
        env["wsgi.input_terminated"] = True
    return env


def test_a_declared_length_is_read_and_no_more() -> None:
    assert front.read_body(environ("3", io.BytesIO(b"abcdef")), 10) == b"abc"
    assert front.read_body(environ("0", Unending()), 10) == b""


def test_no_or_a_bad_length_reads_only_a_terminated_stream() -> None:
    """Without a usable Content-Length the stream is read only when the server marks it
    terminated (gunicorn does, for a chunked body); otherwise there is no body (werkzeug's rule),
    rather than a request hanging on bytes that were never sent."""
    for length in (None, "", "abc", "-5", " "):
        assert front.read_body(environ(length, Unending()), 10) == b""
    assert front.read_body(environ(None, io.BytesIO(b'{"a": 1}'), terminated=True), 10) == b'{"a": 1}'


@pytest.mark.parametrize(
    "env",
    [
        environ("11", io.BytesIO(b"x" * 11)),
        environ(None, io.BytesIO(b"x" * 11), terminated=True),
    ],
)
def test_past_the_limit_is_a_413_naming_the_body(env: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as refused:
        front.read_body(env, 10)
    assert refused.value.status == 413 and "body" in refused.value.errors
