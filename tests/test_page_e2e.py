"""The web page in a real headless Chromium against a real gunicorn (CONTRACT.md section 9).

One server and one browser for the module; hosts written through the API as agents would. Each
test opens a fresh browser context (fresh session storage) and ends by checking that the page
logged no error and sent no request outside the server's origin.
"""

from __future__ import annotations

import calendar
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.demo import write_host
from harness.server import LiveApi, stop_gunicorn
from tests.conftest import start_gunicorn

playwright = pytest.importorskip("playwright", reason="pip install -r requirements-dev.txt")
from harness.browser import CHROMIUM, Watch, chromium, watched  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SPAN = 600  # 20 windows of 30 s per series
WINDOWS = SPAN // 30
MARKUP = '<img src=x onerror="document.title=\'owned\'"><b>bold</b> & "q"'
HOSTS = {
    "alpha": (
        [
            ("cpu.percent", {"cpu": "total"}, "percent", 40.0, 10.0),
            ("cpu.percent", {"cpu": "0"}, "percent", 30.0, 10.0),
            ("mem.percent", {}, "percent", 55.0, 5.0),
            ("disk.percent", {"mount": "/"}, "percent", 70.0, 1.0),
            ("gpu.utilization.percent", {"gpu": "0"}, "percent", 80.0, 10.0),
            ("gpu.power.watts", {"gpu": "0"}, "W", 200.0, 50.0),
        ],
        0,
    ),
    "beta": ([("cpu.percent", {"cpu": "total"}, "percent", 20.0, 5.0)], 0),
    "quiet": ([("cpu.percent", {"cpu": "total"}, "percent", 10.0, 2.0)], 600),
    "tagged": ([("power.watts", {"psu": MARKUP}, "W", 100.0, 10.0)], 0),
}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which(CHROMIUM) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveApi, str]]:
    """A gunicorn on SQLite with the hosts above written through the API, and a reader token."""
    api = start_gunicorn(tmp_path_factory.mktemp("page"), env_extra={"FLEETPULSE_JOBS": "0"})
    try:
        for host, (spec, silent) in HOSTS.items():
            assert write_host(api, host, spec, SPAN, silent_s=silent) == WINDOWS * len(spec)
        yield api, api.token_for("reader")
    finally:
        stop_gunicorn(api.proc)


@pytest.fixture
def tab(browser, site):
    """A fresh context's page at phone-or-desktop size, with its Watch."""
    api, _ = site
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    watch = watched(page, api.url)
    yield page, watch
    context.close()


def clean(watch: Watch, allowed: tuple[str, ...] = ()) -> None:
    """No console error or warning (but the ``allowed`` ones), nothing from another origin."""
    assert [m for m in watch.console if not any(a in m for a in allowed)] == []
    assert watch.outside == []


def loaded(page, n: int = 1) -> None:
    """Wait until the page finished ``n`` loads (body[data-loads]); CSP-safe, no eval."""
    page.wait_for_function("(n) => Number(document.body.dataset.loads || 0) >= n", arg=n)


def api_get(api: LiveApi, token: str, path: str, **params) -> dict:
    r = api.request("GET", path, token, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_link_signs_in_lists_every_host_and_marks_the_silent_one(site, tab):
    api, reader = site
    page, watch = tab
    page.goto(f"{api.url}/#token={reader}")
    loaded(page)
    assert "token" not in page.url  # taken from the address, kept in session storage
    assert page.evaluate("() => sessionStorage.getItem('fleetpulse.token')") == reader
    rows = page.locator("#hosts tbody tr")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.host)") == sorted(HOSTS)
    quiet = page.locator("tr[data-host=quiet]")
    assert quiet.get_attribute("data-silent") == "true"
    assert quiet.locator(".badge").inner_text().lower() == "silent"
    assert "min ago" in quiet.locator("[data-col=seen]").inner_text()
    assert page.locator("tr[data-silent=true]").count() == 1
    state = api_get(api, reader, "/api/v1/hosts/alpha")
    cpu = next(s for s in state["series"] if s["tags"] == {"cpu": "total"})["value"]
    alpha = page.locator("tr[data-host=alpha]")
    assert alpha.locator("[data-col=cpu]").inner_text() == f"{round(cpu)} %"
    for col in ("mem", "disk", "gpu", "power"):
        assert alpha.locator(f"[data-col={col}]").inner_text() != "–", col
    assert page.locator("tr[data-host=beta] [data-col=gpu]").inner_text() == "–"
    clean(watch)


def test_typed_token_and_the_keyboard_reach_a_host(site, tab):
    api, reader = site
    page, watch = tab
    page.goto(api.url + "/")
    assert page.locator("#signin").is_visible()
    page.keyboard.type(reader)  # the token field has the focus
    page.keyboard.press("Enter")
    loaded(page)
    link = page.locator("tr[data-host=alpha] a")
    link.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("figure.chart[data-points]")
    assert page.locator("#host-title").inner_text() == "alpha"
    page.locator("#ranges button[data-range='6h']").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#host[data-resolution='1m']")
    clean(watch)


def expected_points(api: LiveApi, reader: str, metric: str, start: int, end: int, step: int):
    """Windows of ``step`` the page should draw: from the 30-s windows the API holds."""
    found = api_get(
        api, reader, "/api/v1/series", host="alpha", metric=metric, start=start, end=end
    )
    labels = {
        math.ceil(calendar.timegm(time.strptime(p["time"], "%Y-%m-%dT%H:%M:%SZ")) / step)
        for s in found["series"]
        for p in s["points"]
    }
    return len(labels) * len(found["series"])


def charts(page) -> dict[str, tuple[int, int, int]]:
    return {
        f.get_attribute("data-metric"): tuple(
            int(f.get_attribute(a)) for a in ("data-points", "data-windows", "data-lines")
        )
        for f in page.locator("figure.chart").all()
    }


def test_host_charts_every_series_with_the_right_points_and_ranges(site, tab):
    api, reader = site
    page, watch = tab
    page.goto(f"{api.url}/#token={reader}&host=alpha&range=1h")
    loaded(page)
    assert page.locator("#host").get_attribute("data-resolution") == "30s"
    assert charts(page) == {
        "cpu.percent": (2 * WINDOWS, 120, 2),
        "disk.percent": (WINDOWS, 120, 1),
        "gpu.power.watts": (WINDOWS, 120, 1),
        "gpu.utilization.percent": (WINDOWS, 120, 1),
        "mem.percent": (WINDOWS, 120, 1),
    }
    families = page.locator("#charts section.family").evaluate_all(
        "fs => fs.map(f => f.dataset.family)"
    )
    assert families == ["cpu", "disk", "gpu", "mem"]
    legend = page.locator("figure[data-metric='cpu.percent'] .u-legend").inner_text()
    assert "cpu=0" in legend and "cpu=total" in legend
    # hover: the legend shows the values under the cursor
    over = page.locator("figure[data-metric='mem.percent'] .u-over")
    box = over.bounding_box()
    over.hover(position={"x": box["width"] * 0.97, "y": box["height"] / 2})
    value = page.locator(
        "figure[data-metric='mem.percent'] .u-legend .u-series:nth-child(2) .u-value"
    )
    assert value.inner_text().endswith("%")

    page.locator("#ranges button[data-range='6h']").click()
    page.wait_for_selector("#host[data-resolution='1m']")
    page.wait_for_function("() => document.querySelector('figure.chart').dataset.windows === '360'")
    host = page.locator("#host")
    start, end = (int(host.get_attribute(a)) for a in ("data-start", "data-end"))
    assert end - start == 6 * 3600 and end % 60 == 0
    assert charts(page)["cpu.percent"] == (
        expected_points(api, reader, "cpu.percent", start, end, 60),
        360,
        2,
    )
    energy = api_get(
        api, reader, "/api/v1/energy", host="alpha", start=start, end=end, resolution="1m"
    )
    shown = float(page.locator("#energy [data-wh]").get_attribute("data-wh"))
    assert shown == pytest.approx(energy["total_wh"]) and shown > 0
    assert "gpu.power.watts gpu=0" in page.locator("#energy").inner_text()
    assert "range=6h" in page.url
    # 30 days at 2 h: each line's few windows; one with gaps on both sides is drawn as a dot
    page.locator("#ranges button[data-range='30d']").click()
    page.wait_for_selector("#host[data-resolution='2h']")
    mem = page.locator("figure[data-metric='mem.percent']")
    points, isolated = (int(mem.get_attribute(a)) for a in ("data-points", "data-isolated"))
    assert points in (1, 2) and isolated == (1 if points == 1 else 0)
    clean(watch)


def test_fleet_and_host_refresh_without_reloading(site, tab):
    api, reader = site
    page, watch = tab
    page.goto(f"{api.url}/?refresh=1#token={reader}")
    loaded(page)
    page.evaluate("() => { window.stillHere = true; }")
    write_host(api, "late-01", [("cpu.percent", {"cpu": "total"}, "percent", 5.0, 1.0)], 60)
    page.wait_for_selector("tr[data-host=late-01]")
    page.locator("tr[data-host=late-01] a").click()
    page.locator("#ranges button[data-range='1h']").click()
    page.wait_for_selector("figure.chart[data-metric='cpu.percent'][data-points='2']")
    now = page.evaluate("() => Number(document.body.dataset.loads)")
    write_host(api, "late-01", [("mem.percent", {}, "percent", 50.0, 1.0)], 60)
    page.wait_for_selector("figure.chart[data-metric='mem.percent'][data-points='2']")
    assert page.evaluate("() => Number(document.body.dataset.loads)") > now
    assert page.evaluate("() => window.stillHere") is True  # never reloaded
    assert page.locator("body").get_attribute("data-refresh") == "1"
    clean(watch)


def test_wrong_or_agent_token_gives_a_clear_message(site, tab):
    api, _ = site
    page, watch = tab
    page.goto(f"{api.url}/#token=not-a-token")
    problem = page.locator("#problem")
    problem.wait_for()
    assert "401" in problem.inner_text() and "token" in problem.inner_text()
    assert page.locator("#signin").is_visible()
    assert not page.locator("#fleet").is_visible()
    agent = api.token_for("agent", "alpha")
    page.goto(f"{api.url}/#token={agent}&host=alpha")
    page.wait_for_function("() => document.querySelector('#problem').textContent.includes('403')")
    assert "reader token" in problem.inner_text()
    assert page.locator("figure.chart").count() == 0
    assert page.evaluate("() => sessionStorage.getItem('fleetpulse.token')") is None
    clean(watch, allowed=("status of 401", "status of 403"))


def test_markup_in_a_tag_value_is_shown_as_text(site, tab):
    api, reader = site
    page, watch = tab
    page.goto(f"{api.url}/#token={reader}&host=tagged&range=1h")
    loaded(page)
    assert MARKUP in page.locator("figure[data-metric='power.watts'] .u-legend").inner_text()
    assert f"psu={MARKUP}" in page.locator("#energy").inner_text()
    assert page.locator("main img, main b").count() == 0
    assert page.title() == "fleetpulse"
    clean(watch)


def test_phone_width_has_no_sideways_scroll(site, tab):
    api, reader = site
    page, watch = tab
    page.set_viewport_size({"width": 390, "height": 800})
    for where in ("", "&host=alpha"):
        page.goto(f"{api.url}/#token={reader}{where}")
        loaded(page)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, where
    clean(watch)
