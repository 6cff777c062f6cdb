"""Bearer tokens and coarse permissions for every API (`server.require_auth`, ucity/access.py).

A real app on the test's store backend, with configured tokens of each role; requests through the
TestClient (the fast routes included), the alarm stream on a live server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from openapi_spec_validator import validate
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from tests.conftest import LiveServer
from ucity.access import DATA, EXEMPT, SELF, UNMAPPED, AccessTable, access_table
from ucity.core.bus import Context
from ucity.core.config import Settings, load_settings
from ucity.core.http import ApiRoute
from ucity.ops.auth import ROLE_PERMISSIONS, Permission, Role, TokenSpec
from ucity.rules.events import RuleMatched
from ucity.server import NGSI, TableRoute, create_app

ADMIN, OPERATOR, READER, AGENCY, OTHER = ("a" * 32, "o" * 32, "r" * 32, "g" * 32, "t" * 32)
TENANT = "urn:ngsi-ld:tenant:default"
SECOND = "city-two"
AGENCIES = [{"id": "fire-119", "kind": "fire", "name": {"ko": "구로소방서", "en": "Guro fire station"},
             "services": ["119_DISPATCH"]}]
TOKENS = [{"id": "op-1", "role": "operator", "token": OPERATOR},
          {"id": "wall", "role": "reader", "token": READER},
          {"id": "fire", "role": "agency", "agency": "fire-119", "token": AGENCY},
          {"id": "op-two", "role": "operator", "tenant": SECOND, "token": OTHER}]
ENTITY = {"id": "urn:ngsi-ld:Device:acc-1", "type": "Device", "temperature": {"type": "Property", "value": 20}}


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def auth_settings(tmp_path: Path, **server: Any) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         server={"require_auth": True, **server}, domains={"enabled": ["facility_safety"]},
                         ops={"admin_token": ADMIN, "tokens": TOKENS, "agencies": AGENCIES})


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(auth_settings(tmp_path)), base_url="http://127.0.0.1:8000") as client:
        yield client


def refusals(http: TestClient, tenant: str = TENANT) -> list[dict[str, Any]]:
    response = http.get("/api/v1/audit", params={"kind": "auth", "limit": "100"},
                        headers=bearer(ADMIN, **{"NGSILD-Tenant": tenant}))
    assert response.status_code == 200, response.text
    return [line for line in response.json()["entries"] if line["action"] == "refused"]


# -- the setting --------------------------------------------------------------------------------------
def test_on_in_production_off_otherwise_unless_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"alarms": {"webhook_secret": "w" * 32},
               "ops": {"grant_secret": "s" * 32, "pseudonym_secret": "p" * 32}}
    assert load_settings(environment="production", data_dir=str(tmp_path), **secrets).auth_required
    assert not load_settings(environment="development", data_dir=str(tmp_path)).auth_required
    assert not load_settings(environment="test", data_dir=str(tmp_path)).auth_required
    assert not load_settings(environment="production", data_dir=str(tmp_path), server={"require_auth": False},
                             **secrets).auth_required
    monkeypatch.setenv("UCITY_SERVER__REQUIRE_AUTH", "true")
    assert load_settings(environment="development", data_dir=str(tmp_path)).auth_required


def test_off_the_apis_stay_open_and_no_guard_is_built(client: TestClient) -> None:
    assert getattr(client.app, "guard", "missing") is None
    assert client.get(f"{NGSI}/entities", params={"type": "Device"}).status_code == 200
    assert client.get("/api/v1/rules").status_code == 200


# -- 401 ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("headers", [{}, bearer("z" * 32), {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer "}])
def test_no_or_an_unknown_token_is_401_with_a_bearer_challenge(http: TestClient, headers: dict[str, str]) -> None:
    for method, path in (("GET", f"{NGSI}/entities?type=Device"), ("GET", "/api/v1/alarms"),
                         ("GET", "/api/v1/rules"), ("POST", "/iot/devices"), ("GET", "/api/v1/devices/health"),
                         ("GET", "/api/v1/facility-safety/facilities"), ("GET", "/api/v1/dashboard/care-areas"),
                         ("GET", "/api/v1/nowhere")):
        response = http.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == 'Bearer realm="ucity"'
        body = response.json()
        assert body["type"] == "urn:ucity:errors:Unauthorized" and body["status"] == 401 and " / " in body["detail"]
        expected = "application/json" if path.startswith(NGSI) else "application/problem+json"
        assert response.headers["content-type"] == expected
    assert refusals(http) == []  # 401s are not audited


def test_the_fast_routes_are_guarded_too(http: TestClient) -> None:
    assert http.post(f"{NGSI}/entities", json=ENTITY, headers=bearer(OPERATOR)).status_code == 201
    patch = f"{NGSI}/entities/{ENTITY['id']}/attrs/temperature"
    assert http.app.fast_routes.match({"type": "http", "method": "PATCH", "path": patch}) is not None  # type: ignore[attr-defined]
    refused = http.patch(patch, json={"value": 30})
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Bearer realm="ucity"'
    assert http.patch(patch, json={"value": 31}, headers=bearer(READER)).status_code == 403
    assert http.patch(patch, json={"value": 32}, headers=bearer(OPERATOR)).status_code == 204
    value = http.get(f"{NGSI}/entities/{ENTITY['id']}", headers=bearer(READER)).json()["temperature"]["value"]
    assert value == 32


# -- 403 and what each role may do --------------------------------------------------------------------
def test_roles_and_permissions(http: TestClient) -> None:
    entities = f"{NGSI}/entities"
    assert http.get(entities, params={"type": "Device"}, headers=bearer(READER)).status_code == 200
    query = {"type": "Query", "entities": [{"type": "Device"}]}
    assert http.post(f"{NGSI}/entityOperations/query", json=query, headers=bearer(READER)).status_code == 200
    refused = http.post(entities, json=ENTITY, headers=bearer(READER))
    assert refused.status_code == 403 and refused.json()["permission"] == "data:write"
    assert http.get("/api/v1/rules", headers=bearer(READER)).json()["permission"] == "config:read"
    assert http.get(entities, params={"type": "Device"}, headers=bearer(AGENCY)).json()["permission"] == "data:read"
    assert http.get("/api/v1/alarms", headers=bearer(AGENCY)).status_code == 403
    # operator: data, and configuration read-only
    assert http.get("/api/v1/rules", headers=bearer(OPERATOR)).status_code == 200
    refused = http.post("/api/v1/rules", json={}, headers=bearer(OPERATOR))
    assert refused.status_code == 403 and refused.json()["permission"] == "config:admin"
    assert refused.headers["content-type"] == "application/problem+json" and " / " in refused.json()["detail"]
    assert http.post("/iot/services", json={"services": []}, headers=bearer(OPERATOR)).status_code == 403
    assert http.get("/api/v1/notifications/dead-letters", headers=bearer(OPERATOR)).status_code == 200
    assert http.post(entities, json=ENTITY, headers=bearer(OPERATOR)).status_code == 201
    # admin: everything
    assert http.get("/api/v1/rules", headers=bearer(ADMIN)).status_code == 200
    assert http.get("/api/v1/devices/health", headers=bearer(ADMIN)).status_code == 200
    assert http.post("/api/v1/recipients", json={}, headers=bearer(ADMIN)).status_code == 400  # past the guard
    assert http.delete(f"{entities}/{ENTITY['id']}", headers=bearer(ADMIN)).status_code == 204
    # the operations API is unchanged: a reader is refused there by the API itself
    assert http.get("/api/v1/events", headers=bearer(READER)).status_code == 403
    assert http.get("/api/v1/auth/me", headers=bearer(READER)).json()["role"] == "reader"
    lines = refusals(http)
    assert {(line["actor"], line["reason"], line.get("permission"), line["outcome"]) for line in lines} >= {
        ("reader:wall", "permission", "data:write", "denied"), ("operator:op-1", "permission", "config:admin", "denied"),
        ("agency:fire", "permission", "data:read", "denied")}
    assert all(line["token"] in ("wall", "op-1", "fire") for line in lines)


def test_an_issued_reader_token_works_until_revoked(http: TestClient) -> None:
    issued = http.post("/api/v1/auth/tokens", json={"id": "portal", "role": "reader", "name": "data portal"},
                       headers=bearer(ADMIN))
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    assert http.get(f"{NGSI}/types", headers=bearer(token)).status_code == 200
    assert http.post(f"{NGSI}/entities", json=ENTITY, headers=bearer(token)).status_code == 403
    assert http.delete("/api/v1/auth/tokens/portal", headers=bearer(ADMIN)).status_code in (200, 204)
    assert http.get(f"{NGSI}/types", headers=bearer(token)).status_code == 401  # not remembered once revoked


def test_a_token_of_another_tenant_is_refused(http: TestClient) -> None:
    two = {"NGSILD-Tenant": SECOND}
    assert http.post(f"{NGSI}/entities", json=ENTITY, headers=bearer(OTHER, **two)).status_code == 201
    assert http.get(f"{NGSI}/entities", params={"type": "Device"}, headers=bearer(OTHER, **two)).status_code == 200
    refused = http.get(f"{NGSI}/entities", params={"type": "Device"}, headers=bearer(OTHER))  # the default tenant
    assert refused.status_code == 403 and "city-two" in refused.json()["detail"]
    assert refused.json()["reason"] == "tenant" and refused.json()["tokenTenant"] == SECOND  # for clients to act on
    assert http.get("/iot/devices", headers=bearer(OTHER, **{"fiware-service": SECOND})).status_code == 200
    assert http.get("/iot/devices", headers=bearer(OTHER, **{"fiware-service": "elsewhere"})).status_code == 403
    assert http.get("/api/v1/rules", headers=bearer(OTHER, **{"NGSILD-Tenant": "elsewhere"})).status_code == 403
    lines = refusals(http, SECOND)  # in the token's own tenant, with the one it asked for
    # one line per token, reason and permission per minute: the refusal of GET /api/v1/rules (config:read again,
    # just after /iot/devices) is counted, not written
    assert [(line["actor"], line["reason"], line["requestedTenant"]) for line in lines] == [
        ("operator:op-two", "tenant", TENANT), ("operator:op-two", "tenant", "elsewhere")]
    assert refusals(http) == []


def test_a_disabled_agencys_token_is_refused_as_the_operations_api_does(http: TestClient) -> None:
    http.app.state.ucity.ops.auth.agency_refusal = lambda tenant, agency: "agency-disabled"  # type: ignore[attr-defined]
    refused = http.get(f"{NGSI}/entities", params={"type": "Device"}, headers=bearer(AGENCY))
    assert refused.status_code == 403 and refused.json()["reason"] == "agency-disabled"
    assert [(line["actor"], line["reason"]) for line in refusals(http)] == [("agency:fire", "agency-disabled")]


def test_exempt_paths_stay_open(http: TestClient) -> None:
    assert http.get("/health").status_code == 200
    assert http.get("/").status_code == 200 and http.get("/favicon.ico").status_code == 200
    assert http.get("/static/app.js").status_code in (200, 404)
    assert http.get("/openapi.json").status_code == 200 and http.get("/docs").status_code == 200
    assert http.get("/docs/oauth2-redirect").status_code == 200
    # device measures with the device's API key (as FIWARE), after an admin provisioned the device
    group = {"apikey": "acc-key", "entity_type": "Device", "resource": "/iot/json"}
    assert http.post("/iot/services", json={"services": [group]}, headers=bearer(ADMIN)).status_code == 201
    device = {"device_id": "acc-1", "entity_name": ENTITY["id"], "entity_type": "Device",
              "attributes": [{"object_id": "t", "name": "temperature", "type": "Number"}]}
    assert http.post("/iot/devices", json={"devices": [device]}, headers=bearer(ADMIN)).status_code == 201
    assert http.post("/iot/json", params={"k": "acc-key", "i": "acc-1"}, json={"t": 21.5}).status_code in (200, 204)
    assert http.post("/iot/json", params={"k": "wrong", "i": "acc-1"}, json={"t": 1}).status_code != 401
    about = http.get("/iot/about")  # the agent's version, open as FIWARE's IoT Agent has it
    assert about.status_code == 200 and about.json()["version"]
    assert http.post("/iot/about").status_code == 401  # only the read is open
    # footage links check their signed grant themselves (the operations API audits the attempt)
    footage = http.get("/api/v1/cameras/cam-1/still", params={"grant": "nope"})
    assert footage.status_code != 401 and "www-authenticate" not in footage.headers


# -- the actor is the principal -----------------------------------------------------------------------
def test_the_actor_of_a_write_is_the_tokens(http: TestClient) -> None:
    ucity = http.app.state.ucity  # type: ignore[attr-defined]

    async def raise_alarm() -> None:
        await ucity.platform.bus.publish(RuleMatched(Context(), TENANT, "tilt", "urn:ngsi-ld:Device:tilt-1", "warning",
                                                     entity_types=("Device",)))
        await ucity.publisher.drain()
        await ucity.alarms.settle()

    http.portal.call(raise_alarm)  # type: ignore[union-attr]
    alarms = http.get("/api/v1/alarms", headers=bearer(READER)).json()
    alarm_id = (alarms["alarms"] if isinstance(alarms, dict) else alarms)[0]["id"]
    # no X-Ucity-Actor needed any more; one sent is only a display name
    name = {"X-Ucity-Actor": quote("김민수")}
    ack = http.post(f"/api/v1/alarms/{alarm_id}/acknowledge", headers=bearer(OPERATOR, **name))
    assert ack.status_code == 200, ack.text
    comment = http.post(f"/api/v1/alarms/{alarm_id}/comments", json={"text": "확인"},
                        headers=bearer(ADMIN, **{"X-Ucity-Actor": "system"}))
    assert comment.status_code in (200, 201), comment.text
    assert http.post(f"/api/v1/alarms/{alarm_id}/comments", json={"text": "x"},
                     headers=bearer(READER)).status_code == 403
    history = http.get(f"/api/v1/alarms/{alarm_id}", headers=bearer(READER)).json()["history"]
    actors = [(entry["action"], entry["actor"]) for entry in history if entry["actor"] != "system"]
    assert ("acknowledged", "operator:op-1 (김민수)") in actors
    assert any(actor == "admin:admin (system)" for _, actor in actors), actors


# -- the alarm stream ---------------------------------------------------------------------------------
def test_the_alarm_stream_needs_a_token(tmp_path: Path) -> None:
    with LiveServer(auth_settings(tmp_path)) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        refused = client.get("/api/v1/stream")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Bearer realm="ucity"'
        assert client.get("/api/v1/stream", headers=bearer(AGENCY)).status_code == 403
        assert client.get("/api/v1/stream", params={"tenant": "elsewhere"}, headers=bearer(OTHER)).status_code == 403
        with client.stream("GET", "/api/v1/stream", params={"tenant": SECOND}, headers=bearer(OTHER)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert any("ucity alarm stream" in next(lines) for _ in range(5))


# -- the table covers every mounted route --------------------------------------------------------------
def concrete(path: str) -> str:
    """A path template with every parameter filled in."""
    import re

    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_mounted_route_is_exempt_or_mapped(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path)
    app = create_app(settings)
    table = access_table(settings)
    seen: list[tuple[str, str, str]] = []
    for route in app.router.routes:
        if isinstance(route, TableRoute):
            pairs = [(m, route.path) for m in route.handlers]
        elif isinstance(route, (Route, APIRoute)):
            pairs = [(m, route.path) for m in route.methods or ()]
        else:
            assert isinstance(route, Mount), route
            pairs = [("GET", route.path + "/x.js")]
        for method, path in pairs:
            rule = table.rule(method, concrete(path))
            assert rule is not UNMAPPED, f"{method} {path} is neither exempt nor mapped in ucity/access.py ACCESS"
            seen.append((method, path, rule.kind))
    kinds = {(m, p): k for m, p, k in seen}
    assert kinds[("POST", "/iot/json")] == "exempt" and kinds[("GET", "/health")] == "exempt"
    assert kinds[("GET", "/api/v1/cameras/{cameraId}/stream")] == "self"
    assert kinds[("GET", "/api/v1/stream")] == "data" and kinds[("DELETE", "/api/v1/rules/{ruleId}")] == "config"
    assert kinds[("POST", "/api/v1/facility-safety/facilities")] == "data"
    assert len(seen) > 100


def test_the_mapping_by_method_and_a_domains_own_permission() -> None:
    table = AccessTable([ApiRoute("POST", "/api/v1/demo/{x}/reset", lambda p: p, permission="config:admin"),
                         ApiRoute("GET", "/api/v1/demo/{x}", lambda p: p)])
    assert table.rule("POST", "/api/v1/demo/7/reset").permission("POST", "/") == Permission.CONFIG_ADMIN
    assert table.rule("GET", "/api/v1/demo/7") is DATA and table.rule("GET", "/api/v1/demo/7/other") is UNMAPPED
    assert DATA.permission("HEAD", "/x") == Permission.DATA_READ and DATA.permission("PUT", "/x") == Permission.DATA_WRITE
    assert table.rule("GET", "/ngsi-ld/v1/entities/urn:x") is DATA and table.rule("GET", "/ngsi-ld/v1x") is UNMAPPED
    assert table.rule("GET", "/api/v1/alarmsx") is UNMAPPED and table.rule("GET", "/api/v1/audit") is SELF
    assert table.rule("GET", "/iot/json") is UNMAPPED and table.rule("POST", "/iot/json") is EXEMPT
    with pytest.raises(ValueError):
        AccessTable([ApiRoute("GET", "/api/v1/demo", lambda p: p, permission="data:everything")])


def test_the_roles_of_the_new_permissions() -> None:
    four = {Permission.DATA_READ, Permission.DATA_WRITE, Permission.CONFIG_READ, Permission.CONFIG_ADMIN}
    assert four <= ROLE_PERMISSIONS[Role.ADMIN]
    assert four & ROLE_PERMISSIONS[Role.OPERATOR] == four - {Permission.CONFIG_ADMIN}
    assert not four & ROLE_PERMISSIONS[Role.AGENCY]
    assert ROLE_PERMISSIONS[Role.READER] == {Permission.DATA_READ}
    assert TokenSpec(id="portal", role=Role.READER).principal().can(Permission.DATA_READ)
    with pytest.raises(ValueError):
        TokenSpec(id="portal", role=Role.READER, agency="fire-119")


def test_a_start_with_auth_on_and_no_token_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"), server={"require_auth": True})
    with caplog.at_level(logging.WARNING, logger="ucity.server"), \
            TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/v1/alarms").status_code == 401
    assert any("no token is configured" in r.getMessage() for r in caplog.records)


def test_a_hosted_context_is_open_to_fetch_but_not_to_list_or_change(http: TestClient) -> None:
    """Notifications name a hosted @context in their Link header: receivers without a token must fetch it."""
    created = http.post(f"{NGSI}/jsonldContexts", json={"@context": {"t": "https://example.org/t"}},
                        headers=bearer(OPERATOR))
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    assert http.get(location).status_code == 200
    assert http.get(f"{NGSI}/jsonldContexts").status_code == 401
    assert http.delete(location).status_code == 401
    assert http.delete(location, headers=bearer(READER)).status_code == 403


def test_the_openapi_document_marks_what_the_guard_checks(http: TestClient) -> None:
    document = http.get("/openapi.json").json()
    validate(document)
    entities = document["paths"]["/ngsi-ld/v1/entities"]
    assert entities["get"]["security"] == [{"bearer": []}] and "data:read" in entities["get"]["description"]
    assert "data:write" in entities["post"]["description"] and "401" in entities["post"]["responses"]
    assert "config:admin" in document["paths"]["/api/v1/rules"]["post"]["description"]
    assert "security" not in document["paths"]["/health"]["get"]
    assert "security" not in document["paths"]["/iot/json"]["post"]


def test_without_the_guard_the_document_asks_for_no_token(tmp_path: Path) -> None:
    settings = load_settings(environment="test", data_dir=str(tmp_path / "data"))
    with TestClient(create_app(settings)) as client:
        document = client.get("/openapi.json").json()
    assert "security" not in document["paths"]["/ngsi-ld/v1/entities"]["get"]


def test_a_stream_ends_once_its_token_is_revoked(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path)
    settings.alarms.sse_heartbeat_s = 0.1  # the check runs before every write, heartbeats included
    with LiveServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        issued = client.post("/api/v1/auth/tokens", json={"id": "wall-2", "role": "reader"}, headers=bearer(ADMIN))
        assert issued.status_code == 201, issued.text
        with client.stream("GET", "/api/v1/stream", headers=bearer(issued.json()["token"])) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            assert any("ucity alarm stream" in next(lines) for _ in range(5))
            assert [line for line in (next(lines) for _ in range(6)) if line].count(": heartbeat") == 3  # kept alive
            assert client.delete("/api/v1/auth/tokens/wall-2", headers=bearer(ADMIN)).status_code in (200, 204)
            rest = []
            for line in lines:  # it ends: a stream that went on would give 100 lines in about 5 s
                rest.append(line)
                if len(rest) >= 100:
                    break
        assert [line for line in rest if line].count(": heartbeat") <= 1  # at most one written before the revocation
        # a token that stays valid keeps its stream past as many heartbeats
        with client.stream("GET", "/api/v1/stream", headers=bearer(READER)) as response:
            lines = response.iter_lines()
            assert [line for line in (next(lines) for _ in range(20)) if line].count(": heartbeat") >= 8


# -- QA3 findings --------------------------------------------------------------------------------------
def test_a_blank_tenant_parameter_cannot_lead_a_bound_token_to_the_default_tenant(tmp_path: Path) -> None:
    """QA3 F1: `?tenant=city-two&tenant=` read as city-two by the guard and as the default tenant by the stream."""
    with LiveServer(auth_settings(tmp_path)) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        for query in ("tenant=city-two&tenant=", "tenant=city-two&tenant"):
            refused = client.get(f"/api/v1/stream?{query}", headers=bearer(OTHER))
            assert refused.status_code == 403, query
        with client.stream("GET", f"/api/v1/stream?tenant={SECOND}", headers=bearer(OTHER)) as response:
            assert response.status_code == 200


def test_the_hosted_context_list_stays_guarded_with_trailing_slashes(http: TestClient) -> None:
    """QA3 F4: `/jsonldContexts/` was exempt as a document, then routed to the list."""
    for path in (f"{NGSI}/jsonldContexts/", f"{NGSI}/jsonldContexts///", f"{NGSI}/jsonldContexts/?details=true"):
        assert http.get(path).status_code == 401, path


def test_a_query_with_a_trailing_slash_is_still_a_read(http: TestClient) -> None:
    """QA3 F11: a reader's POST .../entityOperations/query/ was taken for a write."""
    body = {"type": "Query", "entities": [{"type": "Device"}]}
    assert http.post(f"{NGSI}/entityOperations/query/", json=body, headers=bearer(READER)).status_code == 200


def test_refusals_of_one_token_are_audited_once_a_minute_with_a_count(http: TestClient) -> None:
    """QA3 F6: every 403 wrote an audit line, so one token could flood the audit log."""
    guard = http.app.guard  # type: ignore[attr-defined]
    now = [1000.0]
    guard.now = lambda: now[0]
    for _ in range(30):
        assert http.post(f"{NGSI}/entities", json=ENTITY, headers=bearer(READER)).status_code == 403
    lines = [line for line in refusals(http) if line["actor"] == "reader:wall"]
    assert len(lines) == 1
    now[0] += 61
    assert http.post(f"{NGSI}/entities", json=ENTITY, headers=bearer(READER)).status_code == 403
    lines = [line for line in refusals(http) if line["actor"] == "reader:wall"]
    assert len(lines) == 2 and any(line.get("detail", line).get("alsoRefused") == 29 for line in lines)
    # a refusal for another permission is a line of its own at once
    assert http.post("/api/v1/rules", json={}, headers=bearer(READER)).status_code == 403
    lines = [line for line in refusals(http) if line["actor"] == "reader:wall"]
    assert len(lines) == 3


def test_a_display_name_cannot_rewrite_the_recorded_actor() -> None:
    """QA3 F9: `x) admin:admin (y` read as two actors; U+202E turned the line around."""
    from ucity.core.errors import BadRequest
    from ucity.core.params import actor_text, principal_actor

    assert principal_actor("operator:op1", "x) admin:admin (y") == "operator:op1 (x admin:admin y)"
    assert principal_actor("operator:op1", "김민수") == "operator:op1 (김민수)"
    with pytest.raises(BadRequest):
        actor_text("abc\u202edef")


def test_health_is_open_but_its_detail_needs_a_token_that_reads(http: TestClient) -> None:
    """Liveness and readiness probes have no token; the component detail (devices, ingest, configuration
    warnings naming agencies) is not for anyone who reaches the port."""
    bare = http.get("/health")
    assert bare.status_code == 200 and bare.json()["ready"] is True and "components" not in bare.json()
    assert "components" not in http.get("/health", headers=bearer("x" * 32)).json()  # an unknown token
    assert "components" not in http.get("/health", headers=bearer(AGENCY)).json()  # reads neither data nor config
    for token in (READER, OPERATOR, ADMIN):
        assert "store" in http.get("/health", headers=bearer(token)).json()["components"]


def test_without_the_guard_health_shows_its_detail_to_anyone(client: TestClient) -> None:
    assert "components" in client.get("/health").json()


@pytest.mark.parametrize("path", ["/api/v1/devices/health", "/api/v1/ingest/stats"])
def test_ingest_reads_are_guarded_in_the_tenant_they_read(http: TestClient, path: str) -> None:
    """Device health and ingest statistics read the tenant as the IoT Agent does (`fiware-service` first). The guard
    read `NGSILD-Tenant` there, so a token bound to one tenant named its own in that header and read another
    tenant's devices and apikeys through `fiware-service` (QA12 follow-up). Now the guard reads what the handler
    reads: the other tenant is refused, the token's own tenant named either way is served."""
    own = {"NGSILD-Tenant": SECOND}
    assert http.get(path, headers=bearer(OTHER, **own, **{"fiware-service": "elsewhere"})).status_code == 403
    assert http.get(path, headers=bearer(OTHER, **{"fiware-service": SECOND})).status_code == 200
    assert http.get(path, headers=bearer(OTHER, **own)).status_code == 200
    assert http.get(path, headers=bearer(OPERATOR, **{"fiware-service": "elsewhere"})).status_code == 200  # unbound
