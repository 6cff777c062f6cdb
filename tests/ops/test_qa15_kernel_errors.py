"""QA15 F9f, F9g, F9e, F3: the kernel's own refusals in Korean and English with fixed English titles, a Basic
`Authorization` header said as such, an agency's GET → edit → PUT round trip (masked webhook headers kept),
and the warning about agency tokens bound to no tenant while their agency is in several tenants."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.ops.support import TOKENS, agency, ops_settings
from ucity.cli import main
from ucity.core.config import load_settings
from ucity.ops.auth import configured_unbound_agency_tokens
from ucity.server import create_app

HANGUL = re.compile("[가-힣]")
CITYB = "urn:ngsi-ld:tenant:cityb"


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def bilingual(detail: str) -> tuple[str, str]:
    """The Korean and English halves of a detail; exactly one " / " between them (the dashboard's `localText`)."""
    parts = detail.split(" / ")
    assert len(parts) == 2, detail
    assert HANGUL.search(parts[0]) and not HANGUL.search(parts[1]), detail
    return parts[0], parts[1]


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    settings = ops_settings(tmp_path, agencies=[agency("police-112", "police", ["112_VIDEO", "112_DISPATCH"])])
    settings.server.max_body_bytes = 4096
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        yield client


# -- F9f: the kernel's generic errors -----------------------------------------------------------------------------
def test_an_unknown_route_is_a_bilingual_404_the_dashboard_still_recognises(http: TestClient) -> None:
    for path, media in (("/api/v1/nope", "application/problem+json"), ("/ngsi-ld/v1/nope", "application/json")):
        resp = http.get(path, headers=bearer("operator"))
        assert resp.status_code == 404 and resp.headers["content-type"] == media
        body = resp.json()
        assert (body["type"], body["title"]) == ("https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
                                                 "Resource not found")
        ko, en = bilingual(body["detail"])
        assert path in ko and en == f"no resource at {path}"  # api.js `missingRoute` looks for "no resource at"


def test_a_wrong_method_is_a_bilingual_405_with_allow(http: TestClient) -> None:
    resp = http.delete("/api/v1/events", headers=bearer("operator"))
    assert resp.status_code == 405 and resp.headers["allow"] == "GET, POST"
    body = resp.json()
    assert (body["type"], body["title"]) == ("https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported",
                                             "Method not allowed")
    ko, en = bilingual(body["detail"])
    assert "DELETE" in ko and "GET, POST" in ko and en == "DELETE is not allowed on /api/v1/events; allowed: GET, POST"
    # a route of the framework's own (/health): the same shape, and its Allow header is kept (RFC 9110 §15.5.6)
    resp = http.post("/health")
    assert resp.status_code == 405 and resp.headers["content-type"] == "application/problem+json"
    assert "GET" in resp.headers["allow"]
    body = resp.json()
    assert (body["type"], body["title"]) == ("https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported",
                                             "Method not allowed")
    ko, en = bilingual(body["detail"])
    assert en.startswith("POST is not allowed on /health; allowed: ") and "POST" in ko


def test_a_body_over_the_limit_is_a_bilingual_413(http: TestClient) -> None:
    big = b"{" + b" " * 5000 + b"}"
    for path in ("/api/v1/events", "/iot/json?k=x&i=d"):  # an app route, and a fast route (server.FastRoutes)
        resp = http.post(path, content=big, headers={**bearer("operator"), "Content-Type": "application/json"})
        assert resp.status_code == 413, resp.text
        body = resp.json()
        assert (body["type"], body["title"]) == ("https://uri.etsi.org/ngsi-ld/errors/RequestEntityTooLarge",
                                                 "Request entity too large")
        ko, en = bilingual(body["detail"])
        assert "4096" in ko and en == "the body is 5002 bytes; the limit is 4096"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is found while reading
        yield b"{" + b" " * 3000
        yield b" " * 3000 + b"}"

    resp = http.post("/api/v1/events", content=chunks(), headers={**bearer("operator"),
                                                                  "Content-Type": "application/json"})
    assert resp.status_code == 413
    ko, en = bilingual(resp.json()["detail"])
    assert en == "the body exceeds the limit of 4096 bytes" and "4096" in ko


def test_a_missing_ngsi_ld_entity_is_said_in_both_languages(http: TestClient) -> None:
    resp = http.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:none")
    assert resp.status_code == 404
    body = resp.json()
    assert body["title"] == "Resource not found"
    ko, en = bilingual(body["detail"])
    assert "urn:ngsi-ld:Building:none" in ko and en == "entity urn:ngsi-ld:Building:none does not exist"


# -- F9g: a Basic header ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/events", "/ngsi-ld/v1/entities?type=Building"])
def test_basic_authentication_is_said_to_be_unsupported(tmp_path: Path, path: str) -> None:
    settings = ops_settings(tmp_path)
    settings.server.require_auth = True  # the guard of every API (access.py) and the operations API alike
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        resp = client.get(path, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
        assert resp.status_code == 401 and resp.headers["www-authenticate"] == 'Bearer realm="ucity"'
        body = resp.json()
        assert (body["type"], body["title"], body["reason"]) == ("urn:ucity:errors:Unauthorized",
                                                                 "Authentication required", "not-bearer")
        ko, en = bilingual(body["detail"])
        assert "Basic" in ko and "Bearer" in ko
        assert en == ("ucity takes bearer tokens only, not Basic authentication: send Authorization: Bearer <token>")
        # a token sent without its scheme: the same answer, and the token is not repeated in it
        resp = client.get(path, headers={"Authorization": TOKENS["operator"]})
        assert resp.status_code == 401 and resp.json()["reason"] == "not-bearer"
        assert TOKENS["operator"] not in resp.text
        # a Bearer token that is unknown is still said as such
        resp = client.get(path, headers={"Authorization": "Bearer uct_nothing-known-here"})
        assert resp.status_code == 401 and "unknown or revoked token" in resp.json()["detail"]


# -- F9e: GET → edit → PUT of an agency ---------------------------------------------------------------------------
def test_an_agency_round_trips_from_get_to_put(http: TestClient) -> None:
    admin = bearer("admin")
    new = agency("disaster-room3", "disaster", ["DISASTER"], "https://hooks.example/in",
                 headers={"Authorization": "Token hook-credential-1"})
    assert http.post("/api/v1/agencies", json=new, headers=admin).status_code == 201
    shown = http.get("/api/v1/agencies/disaster-room3", headers=admin).json()
    assert shown["headers"] == {"Authorization": "***"} and "delivery" in shown and shown["source"] == "api"
    shown["enabled"] = False  # the admin disabling it in a hurry sends back what GET gave
    resp = http.put("/api/v1/agencies/disaster-room3", json=shown, headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["enabled"] is False and resp.json()["source"] == "api"
    registry = http.app.state.ucity.ops.agencies  # type: ignore[attr-defined]
    kept = registry.get("urn:ngsi-ld:tenant:default", "disaster-room3")
    assert kept.enabled is False and kept.headers == {"Authorization": "Token hook-credential-1"}  # not "***"
    # a masked value with nothing stored under its name would become the credential: refused
    shown["headers"] = {"Authorization": "***", "X-Key": "***"}
    resp = http.put("/api/v1/agencies/disaster-room3", json=shown, headers=admin)
    assert resp.status_code == 400 and "X-Key" in resp.json()["detail"]
    bilingual(resp.json()["detail"])
    fresh: dict[str, Any] = {**new, "id": "disaster-room4", "headers": {"Authorization": "***"}}
    resp = http.post("/api/v1/agencies", json=fresh, headers=admin)
    assert resp.status_code == 400 and "Authorization" in resp.json()["detail"]
    # a real new value replaces the stored one
    shown["headers"] = {"Authorization": "Token hook-credential-2"}
    assert http.put("/api/v1/agencies/disaster-room3", json=shown, headers=admin).status_code == 200
    assert registry.get("urn:ngsi-ld:tenant:default", "disaster-room3").headers == {
        "Authorization": "Token hook-credential-2"}


# -- F3: agency tokens bound to no tenant ---------------------------------------------------------------------------
def _ops_warnings(client: TestClient) -> list[str]:
    health = client.get("/health", headers=bearer("admin")).json()
    return list(health["components"]["ops"].get("configWarnings", []))


def test_an_unbound_agency_token_is_warned_of_once_a_second_tenant_exists(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    police = [agency("police-112", "police", ["112_VIDEO", "112_DISPATCH"])]
    settings = ops_settings(tmp_path, agencies=police)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        assert not any("police-terminal" in w for w in _ops_warnings(client))  # one tenant: nothing to say
        entity = {"id": "urn:ngsi-ld:Building:b1", "type": "Building", "name": {"type": "Property", "value": "x"}}
        assert client.post("/ngsi-ld/v1/entities", json=entity, headers={"NGSILD-Tenant": CITYB}).status_code == 201
    caplog.set_level(logging.WARNING, logger="ucity.server")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:  # restarted: two tenants
        warnings = [w for w in _ops_warnings(client) if "police-terminal" in w]
        assert len(warnings) == 1
        ko, en = bilingual(warnings[0])
        assert CITYB in en and "urn:ngsi-ld:tenant:default" in en and '"tenant"' in en and "NGSILD-Tenant" in ko
        assert any("police-terminal" in r.getMessage() for r in caplog.records)
        assert not any("op-kim" in w for w in _ops_warnings(client))  # an operator token is not an agency's


def test_a_bound_agency_token_and_an_agency_of_one_tenant_are_not_warned_of(tmp_path: Path) -> None:
    tokens = [{"id": "police-a", "token": TOKENS["police"], "role": "agency", "agency": "police-112",
               "tenant": "urn:ngsi-ld:tenant:default"},
              {"id": "fire-b", "token": TOKENS["fire"], "role": "agency", "agency": "fire-b", "tenant": CITYB},
              {"id": "room-b", "token": TOKENS["disaster"], "role": "agency", "agency": "room-b"}]
    settings = ops_settings(tmp_path, tokens=tokens, agencies=[agency("police-112", "police", ["112_VIDEO"])])
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        admin = {**bearer("admin"), "NGSILD-Tenant": CITYB}
        assert client.post("/api/v1/agencies", json=agency("room-b", "disaster", ["DISASTER"]),
                           headers=admin).status_code == 201
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        # two tenants (a token names cityb), but room-b exists in cityb only and police-a is bound
        assert not any("police-a" in w or "room-b" in w for w in _ops_warnings(client))


def test_config_validate_warns_from_the_configuration_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = [{"id": "police-terminal", "token": TOKENS["police"], "role": "agency", "agency": "police-112"},
              {"id": "admin-b", "token": TOKENS["admin"], "role": "admin", "tenant": CITYB}]
    agencies = [agency("police-112", "police", ["112_VIDEO"])]
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"),
                             ops={"tokens": tokens, "agencies": agencies})
    warnings = configured_unbound_agency_tokens(settings.ops, settings.ngsild.default_tenant)
    assert len(warnings) == 1 and "police-terminal" in warnings[0] and CITYB in warnings[0]
    single = load_settings(environment="test", data_dir=str(tmp_path / "data"),
                           ops={"tokens": tokens[:1], "agencies": agencies})
    assert configured_unbound_agency_tokens(single.ops, single.ngsild.default_tenant) == []
    config = tmp_path / "ucity.toml"
    config.write_text('[[ops.agencies]]\nid = "police-112"\nkind = "police"\nname = {ko = "112", en = "112"}\n'
                      'services = ["112_VIDEO"]\n\n'
                      f'[[ops.tokens]]\nid = "police-terminal"\ntoken = "{TOKENS["police"]}"\nrole = "agency"\n'
                      'agency = "police-112"\n\n'
                      f'[[ops.tokens]]\nid = "admin-b"\ntoken = "{TOKENS["admin"]}"\nrole = "admin"\ntenant = "{CITYB}"\n')
    assert main(["config", "validate", "--config", str(config), "--data-dir", str(tmp_path / "data")]) == 0
    err = capsys.readouterr().err
    assert "police-terminal" in err and "bound to no tenant" in err.replace("\n", " ")
