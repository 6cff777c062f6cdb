"""/docs works on an offline network: Swagger UI from the `swagger-ui-bundle-v2` package, no CDN (ucity/web/apidocs.py)."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from ucity.web.apidocs import ASSETS


def test_the_docs_page_names_no_other_host(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.text
    urls = re.findall(r'(?:src|href)="([^"]*)"', page.text) + re.findall(r"url: '([^']*)'", page.text)
    assert len(urls) >= 4 and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert f"{ASSETS}/swagger-ui-bundle.js" in urls and "/openapi.json" in urls
    assert not re.search(r"https?://|cdn\.", page.text)  # nor the validator badge (validatorUrl: null)
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self' 'sha256-" in csp and "http" not in csp


def test_the_assets_answer_with_their_types(client: TestClient) -> None:
    for name, kind in [("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css"),
                       ("favicon-32x32.png", "image/png")]:
        asset = client.get(f"{ASSETS}/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name
        assert len(asset.content) > 500
    assert "SwaggerUIBundle" in client.get(f"{ASSETS}/swagger-ui-bundle.js").text
    missing = client.get(f"{ASSETS}/nothing.js")
    assert missing.status_code == 404


def test_redoc_which_needs_a_cdn_is_not_served(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs/oauth2-redirect").status_code == 200  # inline, no CDN
