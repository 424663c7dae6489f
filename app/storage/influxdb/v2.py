"""InfluxDB 2.x: the same data path as 1.x (v1-compatible /write and InfluxQL /query through
DBRP mappings), set up with the ``influxdb-client`` package: buckets with retention rules,
DBRP mappings, and a Flux task for the 30-minute series (InfluxQL on 2.x cannot CREATE).

Not tested against a real 2.x server (none can run here): the setup calls are tested against
a recording HTTP server, the Flux text by inspection. See DESIGN.md (The InfluxDB store).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

import orjson

from app.core.errors import StorageUnavailable
from app.storage.influxdb.layout import RP_30M, RP_30S, parse_url
from app.storage.influxdb.setup import wanted_policies
from app.storage.influxdb.store import JOB_TIMEOUT, InfluxStore
from app.storage.options import StoreOptions

log = logging.getLogger(__name__)

TASK_NAME = "fleetpulse_30m"
TASK_EVERY = "15m"


def bucket_name(db: str, rp: str) -> str:
    """``db/rp``: the name 2.x's automatic mapping would also pick for a v1 (db, rp) pair."""
    return f"{db}/{rp}"


def flux_time(t: int) -> str:
    """An epoch second as a Flux time literal."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def flux_string(s: str) -> str:
    """A Flux string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def task_flux(db: str, span: tuple[int, int] | None = None, host: str | None = None) -> str:
    """The 30-minute rollup as a Flux script (``option task`` is appended by the client).

    As the task, it re-covers at least the last hour from a whole hour (``date.truncate`` takes
    only ``1h``-style units), so every 30-minute window it rewrites is complete up to now; with
    ``span`` (epoch seconds, window starts in [start, stop)) and ``host`` it is the job's
    recompute of late windows. Windows are stamped with their START (``timeSrc: "_start"``),
    like the 1.x continuous query, so the read side is the same for both.
    mean = sum(integral) / sum(covered): time-weighted.
    """
    src = flux_string(bucket_name(db, RP_30S))
    dst = flux_string(bucket_name(db, RP_30M))
    head = f"src = from(bucket: {src})"
    if span is None:
        head = f"start = date.truncate(t: -1h, unit: 1h)\n{head}\n    |> range(start: start)"
    else:
        head += f"\n    |> range(start: {flux_time(span[0])}, stop: {flux_time(span[1])})"
    if host is not None:
        head += f"\n    |> filter(fn: (r) => r.host == {flux_string(host)})"
    return f"""import "date"

{head}
roll = (field, fn) => src
    |> filter(fn: (r) => r._field == field)
    |> aggregateWindow(every: 30m, fn: fn, timeSrc: "_start", createEmpty: false)
integral = roll(field: "integral", fn: sum)
covered = roll(field: "covered", fn: sum)

union(
    tables: [
        integral,
        covered,
        roll(field: "count", fn: sum),
        roll(field: "energy_wh", fn: sum),
        roll(field: "min", fn: min),
        roll(field: "max", fn: max),
        roll(field: "last", fn: last),
    ],
)
    |> to(bucket: {dst})

union(tables: [integral, covered])
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> map(fn: (r) => ({{r with _field: "mean", _value: r.integral / r.covered}}))
    |> drop(columns: ["integral", "covered"])
    |> to(bucket: {dst})
"""


class Influx2Store(InfluxStore):
    """``influxdb2://HOST:PORT/?org=ORG[&db=fleetpulse][&ssl=true]``: 2.x setup, 1.x data path."""

    def __init__(self, url: str, options: StoreOptions) -> None:
        base, _, opts = parse_url(url)
        self.org_name = opts.get("org", "")
        if not self.org_name:
            raise ValueError("influxdb2:// needs ?org=ORG (the 2.x organization)")
        if not options.credentials.token:
            raise ValueError("influxdb2:// needs FLEETPULSE_INFLUXDB_TOKEN (an all-access token)")
        self.base_url = base
        self.token = options.credentials.token
        super().__init__(url, options)

    def ensure_schema(self) -> None:
        """Buckets (retention rules kept in step with the settings), DBRP mappings, the task."""
        try:
            from influxdb_client import InfluxDBClient
        except ImportError as e:  # pragma: no cover - documented pin
            raise RuntimeError("influxdb2:// needs: pip install influxdb-client==1.50.0") from e
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            with InfluxDBClient(
                url=self.base_url,
                token=self.token,
                org=self.org_name,
                timeout=int(self.timeout * 1000),
            ) as client:
                self._setup(client)
        except HTTPError as e:
            raise StorageUnavailable(f"influxdb 2.x setup: {e.__class__.__name__}: {e}") from e
        except ApiException as e:
            if (e.status or 0) >= 500 or e.status in (401, 403):
                raise StorageUnavailable(f"influxdb 2.x setup: {e.status} {e.reason}") from e
            raise
        self._ready = True

    def _setup(self, client) -> None:  # type: ignore[no-untyped-def]
        from influxdb_client import BucketRetentionRules
        from influxdb_client.domain.dbrp_create import DBRPCreate
        from influxdb_client.service.dbr_ps_service import DBRPsService

        orgs = client.organizations_api().find_organizations(org=self.org_name)
        if not orgs:
            raise RuntimeError(f"influxdb 2.x: no organization named {self.org_name!r}")
        org = orgs[0]
        buckets_api = client.buckets_api()
        dbrps = DBRPsService(client.api_client)
        for rp, kind, default in wanted_policies(self.keep_raw):
            name = bucket_name(self.db, rp)
            secs = int(self.retention.get(kind, 0.0))
            rules = [BucketRetentionRules(type="expire", every_seconds=secs)] if secs else []
            found = buckets_api.find_buckets(name=name, org_id=org.id).buckets or []
            if not found:
                bucket = buckets_api.create_bucket(bucket_name=name, retention_rules=rules, org=org)
            else:
                bucket = found[0]
                have = [r.every_seconds for r in (bucket.retention_rules or [])]
                if have != [r.every_seconds for r in rules]:
                    log.info("bucket %s: retention -> %ss", name, secs)
                    bucket.retention_rules = rules
                    bucket = buckets_api.update_bucket(bucket)
            mapped = dbrps.get_dbr_ps(org_id=org.id, db=self.db, rp=rp).content or []
            if not any(m.bucket_id == bucket.id for m in mapped):
                dbrps.post_dbrp(
                    DBRPCreate(
                        org_id=org.id,
                        bucket_id=bucket.id,
                        database=self.db,
                        retention_policy=rp,
                        default=default,
                    )
                )
        self._ensure_task(client, org)

    def _ensure_task(self, client, org) -> None:  # type: ignore[no-untyped-def]
        from influxdb_client.domain.task_update_request import TaskUpdateRequest

        tasks_api = client.tasks_api()
        script = task_flux(self.db)
        found = tasks_api.find_tasks(name=TASK_NAME, org_id=org.id) or []
        if not found:
            tasks_api.create_task_every(TASK_NAME, script, TASK_EVERY, org)
            return
        task = found[0]
        if script.strip() not in (task.flux or ""):
            log.info("task %s: updating its Flux script", TASK_NAME)
            full = tasks_api._create_task(TASK_NAME, script, TASK_EVERY, None, org.id).flux
            tasks_api.update_task_request(task.id, TaskUpdateRequest(flux=full, status="active"))

    def rollup(self, after: int, upto: int, host: str | None) -> int:
        """The task's Flux over [after, upto) (InfluxQL on 2.x cannot SELECT INTO), through
        the v2 query API; the task itself keeps the last hour fresh inside influxd."""
        flux = task_flux(self.db, (after, upto), host)
        body = orjson.dumps({"query": flux, "type": "flux"})
        path = "/api/v2/query?" + urlencode({"org": self.org_name})
        headers = {"Content-Type": "application/json", "Accept": "application/csv"}
        with self.http.budget(JOB_TIMEOUT):
            r = self.http._request("POST", path, body=body, headers=headers)
        if r.status != 200:
            raise RuntimeError(f"influxdb 2.x /api/v2/query answered {r.status}")
        return r.data.count(b",_result,")  # the rows to() wrote, as annotated CSV
