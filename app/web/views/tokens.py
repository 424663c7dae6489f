"""Token administration (CONTRACT.md section 2): admin only."""

from __future__ import annotations

from flask import Response

from app.web.errors import ApiError
from app.web.schemas import TokenIn, TokenListItem, TokenOut
from app.web.views.common import blueprint, endpoint, ext

bp = blueprint("tokens", __name__, url_prefix="/api/v1", description="API tokens (admin)")
ADMIN = (401, 403, 429, 503)  # tokens live in the metadata store, which can be busy
GONE = {"errors": (*ADMIN, 404), "e404": "no such live token"}


@endpoint(bp, "POST /tokens", "admin", TokenOut, args=TokenIn, status=201, errors=(400, *ADMIN))
def create_token(args: dict) -> dict:
    """A new token; the text is shown this once, only its hash is kept."""
    info, token = ext().meta.create_token(args["role"], args.get("host"))
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
