"""Token administration (CONTRACT.md section 2): admin only."""

from __future__ import annotations

from flask import Response

from app.storage.meta import EnrollConflict, EnrollRefused
from app.web.auth import current_principal
from app.web.errors import ApiError
from app.web.schemas import EnrollIn, TokenIn, TokenListItem, TokenOut
from app.web.views.common import blueprint, endpoint, ext

bp = blueprint("tokens", __name__, url_prefix="/api/v1", description="API tokens (admin)")
ADMIN = (401, 403, 429, 503)  # tokens live in the metadata store, which can be busy
GONE = {"errors": (*ADMIN, 404), "e404": "no such live token"}
ENROLL = {"errors": (400, *ADMIN, 409), "e409": "the host already has an agent token"}


@endpoint(bp, "POST /tokens", "admin", TokenOut, args=TokenIn, status=201, errors=(400, *ADMIN))
def create_token(args: dict) -> dict:
    """A new token; the text is shown this once, only its hash is kept."""
    meta = ext().meta
    info, token = meta.create_token(args["role"], args["host"], args["expires"], args["uses"])
    return {**info.__dict__, "token": token}


@endpoint(bp, "POST /enroll", "enroll", TokenOut, args=EnrollIn, status=201, **ENROLL)
def enroll(args: dict) -> dict:
    """A new host's own agent token, paid with one use of the enrollment token (section 7)."""
    try:
        info, token = ext().meta.enroll(current_principal().id, args["host"])
    except EnrollConflict as e:
        raise ApiError(
            409, str(e), {"host": ["already has an agent token: revoke it first"]}
        ) from e
    except EnrollRefused as e:
        raise ApiError(401, str(e), {"Authorization": ["enrollment token no longer valid"]}) from e
    return {**info.__dict__, "token": token}


@endpoint(bp, "GET /tokens", "admin", TokenListItem(many=True), errors=ADMIN)
def list_tokens() -> list:
    """Ids, roles, hosts and creation times: never the token text."""
    return ext().meta.list_tokens()


@endpoint(bp, "DELETE /tokens/<string:token_id>", "admin", None, status=204, **GONE)
def revoke_token(token_id: str) -> Response:
    """Revoke at once: every worker reads the token table on each request."""
    if not ext().meta.revoke(token_id):
        raise ApiError(404, f"no live token with id {token_id!r}", {"id": ["not found"]})
    return Response(status=204)
