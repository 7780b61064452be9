"""The API docs work offline: every page under /schema references only this server, and every
asset it references is served here (gridsync/api/docs.py)."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from gridsync.api.docs import ASSETS_PATH

ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.\-]+(?::\d+)?""")
REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)""")


def schema_pages(app) -> list[str]:
    """Every page route of the docs (not the parameterised catch-all, not the asset mount)."""
    return sorted(
        {
            route.path
            for route in app.routes
            if route.path.startswith("/schema")
            and "{" not in route.path
            and not route.path.startswith(ASSETS_PATH)
        }
    )


def test_every_docs_page_references_only_this_server(client):
    pages = schema_pages(client.app)
    assert {"/schema", "/schema/swagger", "/schema/openapi.json"} <= set(pages)
    base = str(client.base_url)
    host = urlsplit(base).netloc
    assets: set[str] = set()
    for page in pages:
        r = client.get(page)
        assert r.status_code == 200, (page, r.status_code)
        text = r.text
        foreign = [
            m.group(0)
            for m in ABSOLUTE_URL.finditer(text)
            if urlsplit(m.group(0) if ":" in m.group(0)[:6] else "http:" + m.group(0)).netloc
            != host
        ]
        assert foreign == [], f"{page} references other hosts: {foreign[:5]}"
        if "html" in r.headers["content-type"]:
            assets.update(urljoin(base + page, ref) for ref in REFERENCE.findall(text))
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for asset in sorted(assets):
        assert urlsplit(asset).netloc == host, asset
        r = client.get(urlsplit(asset).path)
        assert r.status_code == 200, (asset, r.status_code)
        assert len(r.content) > 0
        if asset.endswith(".css"):  # a stylesheet may load fonts or images of its own
            outside = [u for u in CSS_URL.findall(r.text) if not u.startswith("data:")]
            assert outside == [], outside


def test_the_docs_page_is_swagger_ui_from_the_package(client):
    r = client.get("/schema")
    assert "SwaggerUIBundle" in r.text
    assert "cdn.jsdelivr.net" not in r.text and "unpkg.com" not in r.text
    js = client.get(f"{ASSETS_PATH}/swagger-ui-bundle.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 1_000_000  # the real bundle, not a stub
