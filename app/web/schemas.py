"""Marshmallow schemas of the HTTP boundary: query arguments in, every answer out (views answer
through these), and the OpenAPI from both. The samples envelope lives in ``app.ingest.schema``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app.core import resolution
from app.core.records import Windows
from app.core.times import format_rfc3339, parse_rfc3339
from app.ingest.schema import host_field, metric_field


class Time(fields.Field):
    """Epoch seconds out as RFC 3339 UTC."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format_rfc3339(value)


class SamplesOut(Schema):
    accepted = fields.Integer(required=True)
    windows = fields.Integer(required=True)


class ErrorOut(Schema):
    error = fields.String(required=True)
    details = fields.Dict(required=True, metadata={"description": "field path -> list of reasons"})


class InfluxErrorOut(ErrorOut):
    """The error of the line protocol endpoints: ours plus what InfluxDB clients read."""

    code = fields.String(required=True, metadata={"description": "InfluxDB 2.x's error code"})
    message = fields.String(required=True, metadata={"description": "the same as error"})


class QueryOut(Schema):
    results = fields.List(fields.Dict(), required=True)


class StatusOut(Schema):
    status = fields.String(required=True)


def _resolution(text: str) -> None:
    if text != "auto" and resolution.seconds(text) is None:
        raise ValidationError(f"must be {resolution.FORMS}")


class RangeArgs(Schema):
    """``start``/``end`` as epoch seconds or RFC 3339; parsed by the view into floats."""

    class Meta:
        unknown = INCLUDE

    host = host_field(required=True)
    start = fields.String(required=True, metadata={"description": "epoch seconds or RFC 3339"})
    end = fields.String(required=True, metadata={"description": "epoch seconds or RFC 3339"})
    resolution = fields.String(
        load_default="auto",
        validate=_resolution,
        metadata={"description": f"one of {resolution.FORMS}"},
    )


class SeriesArgs(RangeArgs):
    metric = metric_field(required=True)

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
    time = fields.String(
        required=True,
        metadata={"format": "date-time", "description": "window right edge, RFC 3339 UTC"},
    )
    mean = fields.Float(required=True)
    min = fields.Float(required=True)
    max = fields.Float(required=True)
    last = fields.Float(required=True)
    count = fields.Integer(required=True)
    covered = fields.Float(required=True)
    energy_wh = fields.Float(metadata={"description": "series with unit W only"})


class WindowList(fields.List):
    """A series' ``Windows`` as a list of ``WindowOut``, built column-wise: 10,000 windows
    through marshmallow field by field would cost more than the read itself."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(fields.Nested(WindowOut), **kw)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> list | None:
        if not isinstance(value, Windows):
            return super()._serialize(value, attr, obj, **kwargs)
        if len(value.time) == 0:
            return []
        times = np.datetime_as_string(value.time.astype("datetime64[s]"), unit="s")
        cols = {
            "time": [t + "Z" for t in times.tolist()],
            "mean": value.mean.tolist(),
            "min": value.min.tolist(),
            "max": value.max.tolist(),
            "last": value.last.tolist(),
            "count": value.count.tolist(),
            "covered": value.covered.tolist(),
        }
        if getattr(obj, "unit", None) == "W":
            cols["energy_wh"] = (value.integral / 3600.0).tolist()
        names = list(cols)
        return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]


class SeriesOutItem(Schema):
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    unit = fields.String(allow_none=True)
    points = WindowList(attribute="windows")


NOTE = fields.String(
    metadata={"description": "only when nothing matched: why (unknown host, metric or tags)"}
)


class SeriesOut(Schema):
    host = fields.String()
    metric = fields.String()
    resolution = fields.String()
    start = Time()
    end = Time()
    series = fields.List(fields.Nested(SeriesOutItem))
    note = NOTE


class HostOut(Schema):
    host = fields.String()
    last_seen = Time()
    series = fields.Integer()


class StateItem(Schema):
    metric = fields.String()
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    unit = fields.String(allow_none=True)
    time = Time()
    value = fields.Float()


class HostStateOut(Schema):
    host = fields.String()
    last_seen = Time()
    series = fields.List(fields.Nested(StateItem))


class EnergyItem(Schema):
    metric = fields.String()
    tags = fields.Dict(keys=fields.String(), values=fields.String())
    energy_wh = fields.Float()


class EnergyOut(Schema):
    host = fields.String()
    start = Time()
    end = Time()
    resolution = fields.String()
    series = fields.List(fields.Nested(EnergyItem))
    total_wh = fields.Float()
    note = NOTE


class TokenIn(Schema):
    role = fields.String(
        required=True, validate=validate.OneOf(["agent", "reader", "admin", "enroll"])
    )
    host = host_field(load_default=None, allow_none=True)
    expires = fields.String(
        load_default=None,
        metadata={"format": "date-time", "description": "enroll tokens: refused from then on"},
    )
    uses = fields.Integer(
        load_default=None,
        strict=True,
        validate=validate.Range(min=1, error="must be a positive count"),
        metadata={"description": "enroll tokens: how many hosts it may enroll (default: any)"},
    )

    @validates_schema
    def _host_iff_agent(self, data: dict, **_: Any) -> None:
        if data["role"] == "agent" and not data.get("host"):
            raise ValidationError({"host": ["required for an agent token"]})
        if data["role"] != "agent" and data.get("host"):
            raise ValidationError({"host": ["only agent tokens are bound to a host"]})
        for key in ("expires", "uses"):
            if data.get(key) is not None and data["role"] != "enroll":
                raise ValidationError({key: ["only enrollment tokens expire or count uses"]})
        if data.get("expires") is not None:
            when = parse_rfc3339(data["expires"])
            if when is None:
                raise ValidationError({"expires": ["must be RFC 3339 with an offset"]})
            if when <= time.time():
                raise ValidationError({"expires": ["must lie in the future"]})
            data["expires"] = when


class EnrollIn(Schema):
    host = host_field(required=True)


class TokenListItem(Schema):
    id = fields.String()
    role = fields.String()
    host = fields.String(allow_none=True)
    created_at = Time()
    expires = Time(allow_none=True)
    uses_left = fields.Integer(allow_none=True)


class TokenOut(TokenListItem):
    token = fields.String(metadata={"description": "shown this once only"})
