"""The read endpoints (CONTRACT.md section 6): windows of a series, energy, hosts."""

from __future__ import annotations

from flask import Response, request, stream_with_context

from app.core.records import Query
from app.web import csv_out
from app.web.errors import ApiError
from app.web.ranges import parse_range
from app.web.schemas import EnergyArgs, EnergyOut, HostOut, HostStateOut, SeriesArgs, SeriesOut
from app.web.views.common import blueprint, endpoint, ext

bp = blueprint("read", __name__, url_prefix="/api/v1", description="Reading series")
RANGE_ERRORS = (400, 401, 403, 429, 503)
HOST_ERRORS = (401, 403, 404, 429, 503)
NEVER = {"e404": "the host never wrote"}
CSV = {
    "responses": {
        "200": {
            "description": "the windows; with Accept: text/csv one CSV row per window",
            "content": {
                "application/json": {"schema": SeriesOut},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    }
}


@endpoint(bp, "GET /series", "reader", SeriesOut, args=SeriesArgs, errors=RANGE_ERRORS, doc=CSV)
def get_series(args: dict) -> dict | Response:
    """Windows of one metric of one host, each tag set a series; filter with tag.KEY=VALUE."""
    start, end, res = parse_range(args)
    # webargs drops unknown query keys, so tag filters come from the raw query string.
    tags = {k[4:]: v for k, v in request.args.items() if k.startswith("tag.")}
    q = Query(args["host"], start, end, res, metric=args["metric"], tags=tags)
    found = ext().store.query(q)
    if request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv":
        text = csv_out.rows(args["host"], args["metric"], found)
        return Response(stream_with_context(text), mimetype="text/csv")
    out = {
        "host": args["host"],
        "metric": args["metric"],
        "resolution": res,
        "start": start,
        "end": end,
        "series": found,
    }
    if not found:
        out["note"] = _why_nothing(args["host"], args["metric"], tags)
    return out


@endpoint(bp, "GET /energy", "reader", EnergyOut, args=EnergyArgs, errors=RANGE_ERRORS)
def get_energy(args: dict) -> dict:
    """Watt-hours of each power series (unit W) over windows labelled in (start, end]."""
    start, end, res = parse_range(args)
    found = ext().store.query(Query(args["host"], start, end, res, unit="W"))
    items = [
        {"metric": sp.metric, "tags": sp.tags, "energy_wh": float(sp.windows.integral.sum() / 3600)}
        for sp in found
    ]
    out = {
        "host": args["host"],
        "start": start,
        "end": end,
        "resolution": res,
        "series": items,
        "total_wh": float(sum(i["energy_wh"] for i in items)),
    }
    if not found:
        out["note"] = _why_nothing(args["host"], None, {})
    return out


def _why_nothing(host: str, metric: str | None, tags: dict[str, str]) -> str:
    """A visible reason for an empty answer, so a typo is not mistaken for a quiet host."""
    known = ext().store.metrics(host)
    if not known:
        return f"host {host!r} has never written (GET /api/v1/hosts lists the hosts)"
    listed = ", ".join(known[:50]) + (", ..." if len(known) > 50 else "")
    if metric is None:
        return f"host {host!r} has no power series (unit W); its metrics: {listed}"
    if metric not in known:
        return f"host {host!r} has no metric {metric!r}; its metrics: {listed}"
    if tags:
        found = ext().store.tag_sets(host, metric)
        sets = ", ".join(str(t) for t in found[:20]) + (", ..." if len(found) > 20 else "")
        return f"no series of {metric!r} on host {host!r} has the tags {tags}; its tag sets: {sets}"
    return f"no window of {metric!r} on host {host!r} lies in this range"


@endpoint(bp, "GET /hosts", "reader", HostOut(many=True), errors=(401, 403, 429, 503))
def get_hosts() -> list:
    """Every host that has written, when it was last seen and how many series it has."""
    return ext().store.hosts()


@endpoint(bp, "GET /hosts/<string:host>", "reader", HostStateOut, errors=HOST_ERRORS, **NEVER)
def get_host(host: str) -> dict:
    """The latest value of every series of a host: the fleet's state table."""
    state = ext().store.host_state(host)
    if not state:
        raise ApiError(404, f"host {host!r} has never written", {"host": ["unknown host"]})
    return {"host": host, "last_seen": max(s.time for s in state), "series": state}
