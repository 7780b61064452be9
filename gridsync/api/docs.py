"""The API docs at ``/schema``, complete without the internet.

Litestar's render plugins load their UI from a CDN (Scalar at ``@latest``): on a government
network without internet access, and often in mainland China, the page stayed blank. Here the
page is Swagger UI, its JavaScript, CSS and icon served by this server from the
``swagger-ui-bundle-v2`` wheel (Swagger UI 5.31.0, pinned by that package's version; no Python
package ships Scalar's assets). Every page under ``/schema`` references only this server
(``tests/test_ops_docs.py``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from litestar import Router
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

ASSETS_PATH = "/schema/assets"


def swagger_ui_dir() -> Path:
    vendor = Path(str(files("swagger_ui_bundle"))) / "vendor"
    found = sorted(vendor.glob("swagger-ui-*"))
    if not found:  # pragma: no cover - a broken install
        raise RuntimeError(f"no Swagger UI files in {vendor}: pip install swagger-ui-bundle-v2")
    return found[-1]


def render_plugin() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        path=["/", "/swagger"],
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )


def assets_router() -> Router:
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[swagger_ui_dir()],
        include_in_schema=False,
        name="docs-assets",
    )
