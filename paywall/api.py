"""The flask-smorest pieces every JSON API view shares: the strict Blueprint and the Api."""

from __future__ import annotations

from typing import Any

import flask_smorest
from apispec import BasePlugin
from marshmallow import RAISE
from webargs.flaskparser import FlaskParser

from paywall.schemas import ProblemSchema


class StrictParser(FlaskParser):  # type: ignore[misc]
    """webargs' parser, but unknown query parameters are refused like unknown JSON fields:
    a misspelt filter (``?stauts=failed``) must not silently return everything."""

    DEFAULT_UNKNOWN_BY_LOCATION = {  # noqa: RUF012 - webargs reads this class attribute
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": RAISE,
        "querystring": RAISE,
    }


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """flask-smorest's Blueprint with the strict parser: every API view declares it uses this one."""

    ARGUMENTS_PARSER = StrictParser()


class PaywallApi(flask_smorest.Api):  # type: ignore[misc]
    """flask-smorest's Api with our problem schema as the documented error body ("Error")."""

    ERROR_SCHEMA = ProblemSchema


class ProblemContentPlugin(BasePlugin):
    """Document error answers as ``application/problem+json``, the media type they are sent with."""

    @staticmethod
    def _rename(response: dict[str, Any]) -> None:
        content = response.get("content")
        if isinstance(content, dict) and "application/json" in content:
            content["application/problem+json"] = content.pop("application/json")

    def response_helper(self, response: dict[str, Any], **kwargs: Any) -> None:
        # flask-smorest registers only error responses as components (422, default, ...).
        self._rename(response)

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            for code, response in (operation.get("responses") or {}).items():
                if isinstance(response, dict) and str(code)[0] in "45":
                    self._rename(response)
