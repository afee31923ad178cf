"""HTTP for readers: PUT/GET (site) and DELETE (admin) /v1/readers/<reader>."""

from __future__ import annotations

from typing import Any

from paywall import erasure
from paywall.api import Blueprint
from paywall.auth import require_role
from paywall.clock import isoformat
from paywall.context import current_db
from paywall.errors import ApiError, bad_request, not_found
from paywall.models import Reader
from paywall.readers import service
from paywall.readers.schemas import ErasedSchema, ReaderInSchema, ReaderOutSchema
from paywall.schemas import validate_identifier
from paywall.supporter import supporter_summary

blp = Blueprint("readers", __name__, url_prefix="/v1/readers", description="The site's readers")


def _check_external_id(reader: str) -> None:
    from marshmallow import ValidationError

    try:
        validate_identifier(reader)
    except ValidationError as exc:
        raise bad_request(
            "reader", str(exc.messages[0]) if isinstance(exc.messages, list) else "invalid"
        ) from None


def reader_body(session: Any, reader: Reader) -> dict[str, Any]:
    return {
        "reader": reader.external_id,
        "email": reader.email,
        "name": reader.name,
        "marketing_opt_in": reader.marketing_opt_in,
        "unsubscribed": reader.unsubscribed_at is not None,
        "erased": reader.erased_at is not None,
        "registered": reader.registered_at is not None,
        "created_at": isoformat(reader.created_at),
        "updated_at": isoformat(reader.updated_at),
        "supporter": supporter_summary(session, reader),
    }


@blp.route("/<reader:reader>", methods=["PUT"])
@require_role("site")
@blp.arguments(ReaderInSchema, required=False)
@blp.response(200, ReaderOutSchema, description="Updated.")
@blp.alt_response(201, schema=ReaderOutSchema, description="Created.")
def put_reader(data: dict[str, Any], reader: str) -> Any:
    """Create or update a reader (201 when created, 200 when updated).

    The site vouches for the reader: from then on they are registered (`registered`), so they pass
    a `registered` level and get `[access] registered_free_articles_per_month`.
    """
    _check_external_id(reader)
    with current_db().transaction() as session:
        row, created = service.upsert_reader(session, reader, data)
        body = reader_body(session, row)
    return body, 201 if created else 200


@blp.route("/<reader:reader>", methods=["GET"])
@require_role("site")
@blp.response(200, ReaderOutSchema)
@blp.alt_response(404, schema="Error", description="No such reader.")
def get_reader(reader: str) -> Any:
    """A reader with their supporter section (subscription, donations, comp)."""
    _check_external_id(reader)
    with current_db().transaction(readonly=True) as session:
        row = service.find_reader(session, reader)
        if row is None:
            raise not_found(f"No reader {reader!r}.", "reader")
        return reader_body(session, row)


@blp.route("/<reader:reader>", methods=["DELETE"])
@require_role("admin")
@blp.response(200, ErasedSchema)
@blp.alt_response(404, schema="Error", description="No such reader.")
def delete_reader(reader: str) -> Any:
    """Erase a reader's personal data; payments stay, anonymised."""
    _check_external_id(reader)
    with current_db().transaction() as session:
        outcome = erasure.erase_reader(session, reader)
    if outcome == "not_found":
        raise not_found(f"No reader {reader!r}.", "reader")
    return {"reader": reader, "outcome": outcome}


_ = ApiError
