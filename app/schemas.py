"""Marshmallow schemas at the boundary: requests are checked here, the OpenAPI comes from here."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

HOST_RE = r"^[A-Za-z0-9._-]{1,128}\Z"
METRIC_RE = r"^[a-z0-9._]{1,128}\Z"
TAG_KEY_RE = re.compile(r"^[a-z0-9_]{1,64}\Z")
RESERVED_TAG_KEYS = ("host", "time")  # they would clash with the series' host and time columns
MAX_TAGS = 8


def _tag_value(value: str) -> None:
    if not 1 <= len(value) <= 128 or not value.isprintable():
        raise ValidationError("must be 1-128 printable characters")


def _tag_key(key: str) -> None:
    if not TAG_KEY_RE.match(key):
        raise ValidationError("tag keys are 1-64 of a-z 0-9 _")
    if key in RESERVED_TAG_KEYS:
        raise ValidationError(f"tag key {key!r} is reserved")


def _max_tags(tags: dict) -> None:
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"at most {MAX_TAGS} tags")


POINT_JSONSCHEMA = {
    "type": "array",
    "minItems": 2,
    "maxItems": 2,
    "items": {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]},
    "description": "[timestamp (epoch seconds or RFC 3339 with offset), finite number]",
}


class SeriesIn(Schema):
    metric = fields.String(
        required=True, validate=validate.Regexp(METRIC_RE, error="must be 1-128 of a-z 0-9 . _")
    )
    tags = fields.Dict(
        keys=fields.String(validate=_tag_key),
        values=fields.String(validate=_tag_value),
        load_default=dict,
        # A plain validator: apispec turns validate.Length on a Dict into "maxLength", which
        # JSON Schema ignores on objects; maxProperties is the keyword that says it.
        validate=_max_tags,
        metadata={"maxProperties": MAX_TAGS},
    )
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32))
    # Points are checked vectorised in app.ingest (a field per point would cost ~2 us each).
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
    host = fields.String(
        required=True, validate=validate.Regexp(HOST_RE, error="must be 1-128 of A-Z a-z 0-9 . _ -")
    )
    series = fields.List(
        fields.Nested(SeriesIn),
        required=True,
        validate=validate.Length(min=1, error="at least one series"),
    )


class SamplesOut(Schema):
    accepted = fields.Integer(required=True)
    windows = fields.Integer(required=True)


class ErrorOut(Schema):
    error = fields.String(required=True)
    details = fields.Dict(required=True, metadata={"description": "field path -> list of reasons"})


class RangeArgs(Schema):
    """``start``/``end`` as epoch seconds or RFC 3339; parsed by the view into floats."""

    class Meta:
        unknown = INCLUDE

    host = fields.String(required=True, validate=validate.Regexp(HOST_RE))
    start = fields.String(required=True, metadata={"description": "epoch seconds or RFC 3339"})
    end = fields.String(required=True, metadata={"description": "epoch seconds or RFC 3339"})
    resolution = fields.String(
        load_default="auto",
        validate=validate.OneOf(["30s", "30m", "auto"], error="must be one of 30s, 30m, auto"),
    )


class SeriesArgs(RangeArgs):
    metric = fields.String(required=True, validate=validate.Regexp(METRIC_RE))

    @validates_schema(pass_original=True)
    def _only_tag_extras(self, data: dict, original: dict, **_: Any) -> None:
        known = set(self.fields)
        bad = {
            k: ["unknown parameter (tag filters are tag.KEY=VALUE)"]
            for k in original
            if k not in known and not k.startswith("tag.")
        }
        if bad:
            raise ValidationError(bad)


class EnergyArgs(RangeArgs):
    @validates_schema(pass_original=True)
    def _no_extras(self, data: dict, original: dict, **_: Any) -> None:
        bad = {k: ["unknown parameter"] for k in original if k not in self.fields}
        if bad:
            raise ValidationError(bad)


class WindowOut(Schema):
    time = fields.String(required=True, metadata={"description": "window right edge, RFC 3339 UTC"})
    mean = fields.Float(required=True)
    min = fields.Float(required=True)
    max = fields.Float(required=True)
    last = fields.Float(required=True)
    count = fields.Integer(required=True)
    covered = fields.Float(required=True)
    energy_wh = fields.Float(metadata={"description": "series with unit W only"})


class SeriesOutItem(Schema):
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    unit = fields.String(allow_none=True)
    points = fields.List(fields.Nested(WindowOut))


class SeriesOut(Schema):
    host = fields.String()
    metric = fields.String()
    resolution = fields.String()
    start = fields.String()
    end = fields.String()
    series = fields.List(fields.Nested(SeriesOutItem))


class HostOut(Schema):
    host = fields.String()
    last_seen = fields.String()
    series = fields.Integer()


class StateItem(Schema):
    metric = fields.String()
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    unit = fields.String(allow_none=True)
    time = fields.String()
    value = fields.Float()


class HostStateOut(Schema):
    host = fields.String()
    last_seen = fields.String()
    series = fields.List(fields.Nested(StateItem))


class EnergyItem(Schema):
    metric = fields.String()
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    energy_wh = fields.Float()


class EnergyOut(Schema):
    host = fields.String()
    start = fields.String()
    end = fields.String()
    resolution = fields.String()
    series = fields.List(fields.Nested(EnergyItem))
    total_wh = fields.Float()


class TokenIn(Schema):
    role = fields.String(required=True, validate=validate.OneOf(["agent", "reader", "admin"]))
    host = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(HOST_RE))

    @validates_schema
    def _host_iff_agent(self, data: dict, **_: Any) -> None:
        if data["role"] == "agent" and not data.get("host"):
            raise ValidationError({"host": ["required for an agent token"]})
        if data["role"] != "agent" and data.get("host"):
            raise ValidationError({"host": ["only agent tokens are bound to a host"]})


class TokenOut(Schema):
    id = fields.String()
    token = fields.String(metadata={"description": "shown this once only"})
    role = fields.String()
    host = fields.String(allow_none=True)
    created_at = fields.String()


class TokenListItem(Schema):
    id = fields.String()
    role = fields.String()
    host = fields.String(allow_none=True)
    created_at = fields.String()


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
