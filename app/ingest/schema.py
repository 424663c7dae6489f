"""The samples envelope (CONTRACT.md section 3) as a marshmallow schema; the OpenAPI comes from
here too. Points are checked vectorised in ``json_samples`` (a field per point costs ~2 us)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from app.core import names


def rule(check: Callable[[str], str | None]) -> Callable[[str], None]:
    """A marshmallow validator from one of ``core.names``' rules."""

    def validator(value: str) -> None:
        reason = check(value)
        if reason is not None:
            raise ValidationError(reason)

    return validator


def _max_tags(tags: dict) -> None:
    if len(tags) > names.MAX_TAGS:
        raise ValidationError(f"at most {names.MAX_TAGS} tags")


def host_field(**kw: Any) -> fields.String:
    """A host name field, with its pattern in the OpenAPI."""
    return fields.String(
        validate=rule(names.host_error), metadata={"pattern": names.HOST_PATTERN}, **kw
    )


def metric_field(**kw: Any) -> fields.String:
    """A metric name field, with its pattern in the OpenAPI."""
    return fields.String(
        validate=rule(names.metric_error), metadata={"pattern": names.METRIC_PATTERN}, **kw
    )


POINT_JSONSCHEMA = {
    "type": "array",
    "minItems": 2,
    "maxItems": 2,
    "items": {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]},
    "description": "[timestamp (epoch seconds or RFC 3339 with offset), finite number]",
}


class SeriesIn(Schema):
    metric = metric_field(required=True)
    tags = fields.Dict(
        keys=fields.String(
            validate=rule(names.tag_key_error), metadata={"pattern": names.TAG_KEY_PATTERN}
        ),
        values=fields.String(validate=rule(names.tag_value_error)),
        load_default=dict,
        # A plain validator: apispec turns validate.Length on a Dict into "maxLength", which
        # JSON Schema ignores on objects; maxProperties is the keyword that says it.
        validate=_max_tags,
        metadata={"maxProperties": names.MAX_TAGS},
    )
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32))
    carry = fields.Raw(
        load_default=None,
        allow_none=True,
        metadata={**POINT_JSONSCHEMA, "description": "the sender's last sample before this batch"},
    )
    points = fields.Raw(
        required=True,
        metadata={"type": "array", "minItems": 1, "items": POINT_JSONSCHEMA},
    )


class SamplesIn(Schema):
    host = host_field(required=True)
    series = fields.List(
        fields.Nested(SeriesIn),
        required=True,
        validate=validate.Length(min=1, error="at least one series"),
    )


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Marshmallow's nested errors as ``{"series.3.points": [...]}`` paths."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for k, v in messages.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if k == "_schema":
                path = prefix or "_schema"
            for p, msgs in flatten_errors(v, path).items():
                out.setdefault(p, []).extend(msgs)
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "_schema"] = list(messages)
    else:
        out[prefix or "_schema"] = [str(messages)]
    return out
