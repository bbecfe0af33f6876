"""/docs and /redoc work without the internet (issue 20 point 3): every file they name is served here.

The pages are read from the app in-process (no stack): each ``src``/``href``/``url(`` is a path
of this origin (or inline ``data:``), each such file answers 200 with its content type, and the
pages send their Content-Security-Policy and refuse framing. The browser's view of the same:
tests/integration/test_docs_browser.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import httpx
import pytest

from serve_app.rest.api import Backend, build_app
from serve_app.rest.routes import docs_ui


class NoBackend:
    verifier = None


class Links(HTMLParser):
    """Every ``src=``/``href=``/``spec-url=`` and every ``url(...)`` in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is not None and name in ("src", "href", "spec-url", "data-openapi-url", "action"):
                self.found.append(value)
            if value is not None and name == "style":
                self.found.extend(css_urls(value))

    def handle_data(self, data: str) -> None:
        self.found.extend(css_urls(data))


def css_urls(text: str) -> list[str]:
    return [m.strip("'\" ") for m in re.findall(r"url\(([^)]*)\)", text)]


def links(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.found


def is_local(url: str) -> bool:
    """A path of this origin, or inline data: anything naming a scheme or a host is external."""
    if url.startswith("data:"):
        return True
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith("//")


class Client:
    """The app in-process over httpx's ASGI transport (optionally behind a root path)."""

    def __init__(self, root_path: str = "") -> None:
        self.transport = httpx.ASGITransport(app=build_app(cast(Backend, NoBackend())), root_path=root_path)

    async def get(self, url: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=self.transport, base_url="http://api") as http:
            return await http.get(url)


@pytest.fixture(scope="module")
def client() -> Client:
    return Client()


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/console"])  # the console too (tests/unit/test_console.py)
async def test_the_page_names_no_external_host_and_every_file_is_served(client: Client, page: str) -> None:
    answer = await client.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    found = links(answer.text)
    assert found, "the page names its script"
    assert [u for u in found if not is_local(u)] == []
    assert "http://" not in answer.text and "https://" not in answer.text
    expected = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json",
                ".svg": "image/svg+xml"}
    for url in found:
        if url.startswith("data:"):
            continue
        asset = await client.get(url)
        assert asset.status_code == 200, url
        kind = expected[url[url.rindex("."):]]
        assert asset.headers["content-type"].startswith(kind), (url, asset.headers["content-type"])
        if "/static/docs/" in url or "/console/" in url:
            assert asset.headers["x-content-type-options"] == "nosniff", url


async def test_swagger_ui_runs_no_inline_script_and_its_start_is_a_served_file(client: Client) -> None:
    html = (await client.get("/docs")).text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts)
    assert "/static/docs/swagger-init.js" in html and "/static/docs/swagger-ui-bundle.js" in html
    init = await client.get("/static/docs/swagger-init.js")
    assert init.status_code == 200 and "SwaggerUIBundle(" in init.text and "validatorUrl: null" in init.text
    assert "<style" not in html


@pytest.mark.parametrize(("page", "csp"), [("/docs", docs_ui.SWAGGER_CSP), ("/redoc", docs_ui.REDOC_CSP)])
async def test_the_pages_send_their_csp_and_refuse_framing(client: Client, page: str, csp: str) -> None:
    headers = (await client.get(page)).headers
    policy = headers["content-security-policy"]
    assert policy == csp
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'" and directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and headers["x-frame-options"] == "DENY"
    assert "unsafe-eval" not in policy and "http" not in policy
    if page == "/docs":
        assert directives["style-src"] == "'self'"


async def test_only_the_listed_files_are_served(client: Client) -> None:
    for name in ("core.py", "..%2Fcore.py", "../../api.py", "%2e%2e/consts.py", "nope.js"):
        assert (await client.get(f"/static/docs/{name}")).status_code == 404, name


async def test_the_pages_are_outside_the_openapi_document(client: Client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc", "/static"))]


async def test_the_pages_follow_the_root_path() -> None:
    behind = Client(root_path="/api")
    html = (await behind.get("/docs")).text
    assert 'data-openapi-url="/api/openapi.json"' in html and 'src="/api/static/docs/swagger-ui-bundle.js"' in html
    assert 'spec-url="/api/openapi.json"' in (await behind.get("/redoc")).text


def test_security_md_states_the_policy_sent() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    assert f"`{docs_ui.SWAGGER_CSP}`" in text
    assert "`style-src 'self' 'unsafe-inline'`" in text and "`worker-src 'self' blob:`" in text
    assert docs_ui.SWAGGER_CSP.replace(
        "style-src 'self'", "style-src 'self' 'unsafe-inline'; worker-src 'self' blob:") == docs_ui.REDOC_CSP
