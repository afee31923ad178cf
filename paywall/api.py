"""The flask-smorest pieces every JSON API view shares: the strict Blueprint and the Api."""

from __future__ import annotations

import threading
from typing import Any

import flask_smorest
from apispec import BasePlugin
from marshmallow import RAISE
from webargs.flaskparser import FlaskParser

from paywall.schemas import ProblemSchema


class StrictParser(FlaskParser):
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
    """flask-smorest's Api with our problem schema as the documented error body ("Error"), and
    the OpenAPI description of each blueprint written when it is first read, not at start.

    Documenting the views (resolving every schema) is half the cost of ``create_app``; only
    ``/openapi.json`` and ``/docs`` read it. Each gunicorn worker, each CLI command that builds
    the app and each test pays it only if it asks. The description comes out the same: the
    blueprints are documented in the order they were registered, before the spec is first read.
    """

    ERROR_SCHEMA = ProblemSchema

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._undocumented: list[tuple[Any, str, Any]] = []
        # gthread workers: two first requests for /openapi.json must not document a view twice.
        self._documenting = threading.Lock()
        self._spec: Any = None
        super().__init__(*args, **kwargs)

    @property
    def spec(self) -> Any:
        # While one thread documents, the others wait for the finished description.
        if self._undocumented or self._documenting.locked():
            with self._documenting:
                pending, self._undocumented = self._undocumented, []
                for blp, name, parameters in pending:
                    blp.register_views_in_doc(self, self._app, self._spec, name=name, parameters=parameters)
                    self._spec.tag({"name": name, "description": blp.description})
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        """flask-smorest's register_blueprint (0.47), with its documentation step deferred."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        self._undocumented.append((blp, name, parameters))


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
