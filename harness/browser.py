"""Headless Chromium (Debian's, driven by Playwright) for the web page's tests and screenshots:
one launcher, and a watch on each page for console errors and requests that leave the origin."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

CHROMIUM = os.environ.get("FLEETPULSE_CHROMIUM", "/usr/bin/chromium")


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless (never a downloaded browser: no `playwright install`)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watch:
    """What a page did that it should not: console errors, uncaught errors, other origins."""

    origin: str
    console: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def on_console(self, msg: ConsoleMessage) -> None:
        """Errors and warnings only (CSP violations and failed loads are logged as these)."""
        if msg.type in ("error", "warning"):
            self.console.append(f"{msg.type}: {msg.text}")

    def on_request(self, req: Request) -> None:
        """Every request, and separately each one that leaves the page's own origin."""
        self.requests.append(req.url)
        parts = urlsplit(req.url)
        here = f"{parts.scheme}://{parts.netloc}" == self.origin
        if parts.scheme not in ("data", "blob") and not here:
            self.outside.append(req.url)


def watched(page: Page, origin: str) -> Watch:
    """Attach a Watch to ``page``; anything that would leave ``origin`` is also aborted."""
    w = Watch(origin.rstrip("/"))
    page.on("console", w.on_console)
    page.on("pageerror", lambda e: w.console.append(f"pageerror: {e}"))
    page.on("request", w.on_request)
    page.route(
        lambda url: not url.startswith(w.origin + "/"),
        lambda route: route.abort(),
    )
    return w
