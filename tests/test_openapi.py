"""/openapi.json (and /docs) describes every API route the app mounts, as mounted, and is valid OpenAPI 3.

A route added later without documentation still appears (path, method, its handler's docstring); these
tests fail if one does not, or if documentation data names a route nobody mounts (a misspelt or moved path).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from openapi_spec_validator import validate
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from ucity.core.config import Settings, load_settings
from ucity.core.openapi import openapi_path
from ucity.domains import domain_routes
from ucity.ngsild.request import ROUTE_PARAMS
from ucity.openapi import api_docs
from ucity.ops.api import ROUTES
from ucity.rules.api import RulesApi
from ucity.server import NGSI, TableRoute, create_app

PAGES = {"/", "/favicon.ico"}  # the dashboard's page: no API (its static files are Mounts)
DOMAIN = "facility_safety"


def app_settings(tmp_path: Path, domains: list[str]) -> Settings:
    return load_settings(environment="test", data_dir=str(tmp_path / "data"), store={"group_commit_ms": 1.0},
                         domains={"enabled": domains})


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    with TestClient(create_app(app_settings(tmp_path, [DOMAIN])), base_url="http://127.0.0.1:8000") as client:
        yield client, client.get("/openapi.json").json()


def mounted(app: Any) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every API route on the app: route tables, plain routes, FastAPI's own."""
    out: set[tuple[str, str]] = set()
    for route in app.router.routes:
        if isinstance(route, TableRoute):  # its Route.methods also lists the ones answered 405
            out |= {(method, openapi_path(route.path)) for method in route.handlers}
        elif isinstance(route, APIRoute) or (type(route) is Route and route.include_in_schema
                                             and route.path not in PAGES):
            out |= {(method, openapi_path(route.path)) for method in route.methods or () if method != "HEAD"}
        else:
            assert isinstance(route, Mount) or not getattr(route, "include_in_schema", True) or route.path in PAGES
    return out


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, operations in doc["paths"].items() for method in operations}


def test_every_mounted_route_is_documented_with_its_methods(tmp_path: Path,
                                                            started: tuple[TestClient, dict[str, Any]]) -> None:
    client, doc = started
    routes = mounted(client.app)
    assert routes - documented(doc) == set()
    assert documented(doc) - routes == set()  # and nothing that is not served
    # the framework-free tables themselves, not only what the walk above recognised
    tables = {(m, openapi_path(NGSI + p)) for m, p in ROUTE_PARAMS} | {(r.method, r.path) for r in ROUTES}
    tables |= {(r.method, r.path) for r in domain_routes(app_settings(tmp_path, [DOMAIN]))}
    assert tables - documented(doc) == set() and len(tables) > 90
    assert ("POST", "/iot/json") in routes and ("GET", "/api/v1/stream") in routes
    assert not {p for p in doc["paths"] if p.startswith("/static") or p in PAGES}


def test_every_piece_of_documentation_data_names_a_mounted_route(started: tuple[TestClient, dict[str, Any]]) -> None:
    client, _ = started
    routes = mounted(client.app)
    for api in api_docs([DOMAIN]):
        assert {(m, openapi_path(p)) for m, p in api.routes} - routes == set()


def test_the_document_is_valid_openapi_3(started: tuple[TestClient, dict[str, Any]]) -> None:
    client, doc = started
    assert doc["openapi"].startswith("3.")
    validate(doc)
    assert "swagger-ui" in client.get("/docs").text


def test_a_sample_of_parameters_bodies_and_responses(started: tuple[TestClient, dict[str, Any]]) -> None:
    _, doc = started
    paths, schemas = doc["paths"], doc["components"]["schemas"]

    def params(op: dict[str, Any], where: str = "query") -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in op["parameters"] if p["in"] == where}

    query = paths["/ngsi-ld/v1/entities"]["get"]  # NGSI-LD: the parameters ROUTE_PARAMS accepts, no others
    assert set(params(query)) == ROUTE_PARAMS[("GET", "/entities")] and "join" not in params(query)
    assert params(query)["q"]["description"] and query["tags"] == ["ngsi-ld"]
    def problem(op: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = doc["components"]["responses"][op["responses"]["4XX"]["$ref"].split("/")[-1]]
        return response

    assert problem(query)["content"] == {"application/json": {"schema": {
        "$ref": "#/components/schemas/ProblemDetails"}}}  # as ETSI says, not problem+json
    attr = paths["/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}"]["patch"]
    assert set(params(attr, "path")) == {"entityId", "attrId"} and "requestBody" in attr
    tag = next(t for t in doc["tags"] if t["name"] == "ngsi-ld")
    assert "https://forge.etsi.org/rep/cim/NGSI-LD" in tag["description"]

    alarms = paths["/api/v1/alarms"]["get"]  # /api/v1: RFC 7807's media type
    assert {"status", "level", "bbox", "limit", "offset"} <= set(params(alarms))
    assert list(problem(alarms)["content"]) == ["application/problem+json"]
    close = paths["/api/v1/alarms/{alarmId}/close"]["post"]
    assert params(close, "header")["X-Ucity-Actor"]["required"] is True
    assert close["requestBody"]["content"]["application/json"]["schema"]["required"] == ["outcome"]
    notifier = paths["/api/v1/notifiers"]["post"]
    assert notifier["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NotifierConfig"}
    assert "NotifierConfig" in schemas and "EscalationStep" in schemas and notifier["responses"]["201"]
    assert "text/event-stream" in paths["/api/v1/stream"]["get"]["responses"]["200"]["content"]

    measure = paths["/iot/json"]["post"]
    assert {n: p["required"] for n, p in params(measure).items()} == {"k": True, "i": True, "t": False}
    rules = paths["/api/v1/rules"]["get"]  # the summary is the handler's docstring's first line
    assert rules["summary"] == inspect.getdoc(RulesApi.list).splitlines()[0]  # type: ignore[union-attr]
    assert rules["tags"] == ["rules"] and "enabled" in params(rules)

    grants = paths["/api/v1/grants"]["post"]  # the operations API: bearer, permission, body model
    assert grants["security"] == [{"bearer": []}] and "grants:issue" in grants["description"]
    assert grants["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/GrantIn"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert params(paths["/api/v1/cameras/{cameraId}/stream"]["get"])["grant"]["required"] is True
    assert "security" not in paths["/api/v1/alarms"]["get"]  # no token checked there (yet)


def test_a_domain_is_documented_when_it_is_enabled(tmp_path: Path,
                                                   started: tuple[TestClient, dict[str, Any]]) -> None:
    _, doc = started
    facilities = doc["paths"]["/api/v1/facility-safety/facilities"]
    assert facilities["get"]["tags"] == [DOMAIN] and facilities["post"]["summary"]
    assert facilities["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FacilityIn"}
    assert {p["name"] for p in facilities["get"]["parameters"]} >= {"facilityType", "dataGrade", "NGSILD-Tenant"}
    assert any(t["name"] == DOMAIN and t.get("description") for t in doc["tags"])
    without = create_app(app_settings(tmp_path / "other", []))
    assert not [p for p in without.openapi()["paths"] if p.startswith("/api/v1/facility-safety")]


def test_the_routes_are_documented_before_the_platform_runs(tmp_path: Path) -> None:
    app = create_app(app_settings(tmp_path, [DOMAIN]))
    doc = app.openapi()  # no lifespan: summaries fall back to the handler names, the routes are all there
    assert documented(doc) == mounted(app)
    validate(doc)
    assert app.openapi_schema is None  # not kept: the running platform's docstrings replace it
