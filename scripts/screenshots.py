"""docs/page-*.png: the web page over a demo fleet, in the same headless Chromium the tests use.

    python scripts/screenshots.py      # or: make screenshots

Starts gunicorn on a fresh SQLite file (harness.server), writes 24 h of four demo hosts through
the API (harness.demo), signs in with a reader token and saves the fleet and a host page, wide
and phone-sized. Also prints what the first load of the page transfers (its own files, gzipped,
and the API answers), as recorded in README.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.browser import chromium, watched  # noqa: E402
from harness.demo import demo_fleet  # noqa: E402
from harness.server import start_gunicorn, stop_gunicorn  # noqa: E402

DOCS = ROOT / "docs"


def transfer(page) -> dict[str, int]:
    """Bytes received for the page's own files and for its API calls (bodies as sent)."""
    sizes = {"files": 0, "api": 0}
    page.on(
        "requestfinished",
        lambda req: sizes.__setitem__(
            "api" if "/api/" in req.url else "files",
            sizes["api" if "/api/" in req.url else "files"] + req.sizes()["responseBodySize"],
        ),
    )
    return sizes


def shoot(browser, url: str, reader: str, width: int, height: int) -> dict[str, int]:
    """The fleet and gpu-01's page at one size; the first load's transfer sizes."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    watch = watched(page, url)
    sizes = transfer(page)
    suffix = "" if width > 600 else "-phone"
    page.goto(f"{url}/#token={reader}")
    page.wait_for_selector("body[data-loads]")
    page.wait_for_load_state("networkidle")
    first = dict(sizes)
    page.screenshot(path=DOCS / f"page-fleet{suffix}.png")
    page.locator("tr[data-host=gpu-01] a").click()
    page.wait_for_selector("body[data-loads='2']")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=DOCS / f"page-host{suffix}.png", full_page=width > 600)
    host = {k: sizes[k] - first[k] for k in sizes}
    assert not watch.console and not watch.outside, (watch.console, watch.outside)
    context.close()
    return {"fleet files": first["files"], "fleet api": first["api"], "host api": host["api"]}


def main() -> None:
    """Start, fill, shoot, report."""
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fp-shots-") as tmp:
        api = start_gunicorn(Path(tmp), workers=2)
        try:
            demo_fleet(api)
            reader = api.token_for("reader")
            with chromium() as browser:
                wide = shoot(browser, api.url, reader, 1280, 800)
                shoot(browser, api.url, reader, 390, 844)
        finally:
            stop_gunicorn(api.proc)
    for k, v in wide.items():
        print(f"{k:12s} {v:8,d} bytes")
    print("saved:", ", ".join(sorted(p.name for p in DOCS.glob("page-*.png"))))


if __name__ == "__main__":
    main()
