"""/docs and /redoc in a real headless browser, with no internet (issue 20 point 3).

The app runs under uvicorn on 127.0.0.1 in a thread (no Ray, no stack: building the app and its
document touches no backend); Debian's Chromium (scripts/bootstrap.sh), driven by Playwright,
opens each page and waits for the operations to render. Every request the page makes is
recorded: any to another host than 127.0.0.1 fails the test (and is refused, so the check does not
wait for a network this machine lacks), and so does any Content-Security-Policy violation. The
screenshots are left in pytest's tmp dir; their paths are printed.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.sync_api import Route, sync_playwright

from serve_app.rest.api import Backend, build_app

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class NoBackend:
    verifier = None


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(cast(Backend, NoBackend())), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.parametrize(("page", "ready"), [
    ("/docs", ".opblock-summary-path[data-path='/sweep-intent']"),
    ("/redoc", "[data-section-id='tag/orders'], [data-section-id^='operation/']"),
])
def test_the_page_renders_the_operations_offline(base_url: str, page: str, ready: str, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "no chromium: scripts/bootstrap.sh installs Debian's"
    requested: list[str] = []
    external: list[str] = []
    console: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})

            def route(r: Route) -> None:
                url = r.request.url
                requested.append(url)
                if urlsplit(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
                    r.continue_()
                else:
                    external.append(url)
                    r.abort()

            context.route("**/*", route)
            tab = context.new_page()
            tab.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            tab.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            tab.goto(base_url + page, wait_until="load")
            tab.wait_for_selector(ready, timeout=30_000)
            assert tab.locator("text=/sweep-intent").count() > 0
            tab.wait_for_load_state("networkidle")
            shot = tmp_path / f"{page.strip('/')}.png"
            tab.screenshot(path=str(shot), full_page=False)
            print(f"screenshot of {page}: {shot}")
        finally:
            browser.close()
    assert external == [], external
    assert any(u.endswith("/openapi.json") for u in requested), requested
    assert [line for line in console if "pageerror" in line] == [], console
    # The policy may refuse only what is not ours: ReDoc's sidebar logo from its CDN (it hides the
    # image when it fails), refused before any request leaves. Nothing of this origin is refused.
    refused = [line for line in console if "Content Security Policy" in line]
    print(f"refused by the page's CSP: {refused}")
    assert [line for line in console if "Content Security Policy" in line and "127.0.0.1" in line] == [], refused
    assert all(re.search(r"'https://[^'/]+/", line) for line in refused), refused
    assert shot.stat().st_size > 10_000
